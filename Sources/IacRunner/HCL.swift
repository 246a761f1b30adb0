/// Writing values into HCL files terraform reads (`*.auto.tfvars`, generated `.tf`).
public enum HCL {
    /// `value` as a quoted HCL string that terraform reads back as exactly `value`:
    /// backslashes, quotes and control characters are escaped, and the template sequences
    /// `${` and `%{` are doubled so user input is never evaluated as an expression.
    public static func quoted(_ value: String) -> String {
        var result = "\""
        var previous: Character?
        for character in value {
            switch character {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case "{" where previous == "$":
                result += "{"
                result.insert("$", at: result.index(before: result.endIndex))
            case "{" where previous == "%":
                result += "{"
                result.insert("%", at: result.index(before: result.endIndex))
            default:
                if let ascii = character.asciiValue, ascii < 0x20 || ascii == 0x7f {
                    result += "\\u" + String(format: "%04X", ascii)
                } else {
                    result.append(character)
                }
            }
            previous = character
        }
        return result + "\""
    }

    /// Whether `name` can be written bare as an HCL attribute or block label.
    public static func isIdentifier(_ name: String) -> Bool {
        guard let first = name.first, first.isASCII, first.isLetter || first == "_" else { return false }
        return name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
    }
}
