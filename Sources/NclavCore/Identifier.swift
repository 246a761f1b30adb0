/// Identifier rules shared by everything that turns a user-chosen name into a file path,
/// a URL segment, or a cloud resource name.
///
/// Enclave ids, partition ids, export names and import aliases all become path components
/// (`workspaces/<enclave>/<partition>`) and URL segments (`/terraform/state/<enc>/<part>`),
/// so the rule is deliberately narrow: 1–63 characters of `a-z 0-9 -`, starting with a
/// letter and not ending with `-`. Nothing that could mean `..`, `/`, whitespace or case
/// folding ever gets through.
public enum Identifier {
    public static let maxLength = 63

    /// What is wrong with a candidate id, phrased so it can follow "`x` is not a valid id: ".
    public enum Problem: Equatable, Sendable, CustomStringConvertible {
        case empty
        case tooLong(Int)
        case mustStartWithLetter
        case mustNotEndWithHyphen
        case forbiddenCharacter(Character)

        public var description: String {
            switch self {
            case .empty: return "it is empty"
            case .tooLong(let count): return "it has \(count) characters, at most \(Identifier.maxLength) are allowed"
            case .mustStartWithLetter: return "it must start with a lowercase letter"
            case .mustNotEndWithHyphen: return "it must not end with `-`"
            case .forbiddenCharacter(let character):
                let shown = character == " " ? "space" : "`\(character)`"
                return "it contains \(shown); only lowercase letters a-z, digits 0-9 and `-` are allowed"
            }
        }
    }

    /// Returns the first problem with `candidate`, or nil when it is a valid id.
    public static func problem(with candidate: String) -> Problem? {
        guard let first = candidate.first else { return .empty }
        if let bad = candidate.first(where: { !isAllowed($0) }) { return .forbiddenCharacter(bad) }
        if candidate.count > maxLength { return .tooLong(candidate.count) }
        if !("a"..."z").contains(first) { return .mustStartWithLetter }
        if candidate.hasSuffix("-") { return .mustNotEndWithHyphen }
        return nil
    }

    public static func isValid(_ candidate: String) -> Bool { problem(with: candidate) == nil }

    private static func isAllowed(_ character: Character) -> Bool {
        guard character.isASCII, let ascii = character.asciiValue else { return false }
        return (ascii >= 97 && ascii <= 122) || (ascii >= 48 && ascii <= 57) || ascii == 45
    }
}

/// Terraform identifiers: input keys become `variable` names and declared outputs are
/// `output` names, so they must be valid HCL identifiers.
public enum TerraformIdentifier {
    /// HCL identifiers: a letter or `_`, then letters, digits, `_` or `-`.
    public static func isValid(_ candidate: String) -> Bool {
        guard let first = candidate.first, first.isASCII, first.isLetter || first == "_" else { return false }
        return candidate.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
    }
}
