/// An input value with `{{ … }}` placeholders.
///
/// Grammar: `{{{{` is a literal `{{`; `{{ name }}` is a context token (`nclav_region`);
/// `{{ alias.key }}` is an output of an imported export. Whitespace inside the braces is
/// optional. Any other `{{` use is an error, so a typo never reaches terraform verbatim.
public struct Template: Sendable, Hashable {
    public enum Segment: Sendable, Hashable {
        case literal(String)
        case context(name: String)
        case importOutput(alias: String, key: String)
    }

    /// A placeholder and where it starts (0-based character offset in the value).
    public struct Reference: Sendable, Hashable {
        public let segment: Segment
        public let offset: Int
    }

    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// 0-based character offset in the value.
        public let offset: Int
        public let message: String
        public var description: String { message }
    }

    public let segments: [Segment]
    public let references: [Reference]

    public init(parsing text: String) throws(ParseError) {
        var segments: [Segment] = []
        var references: [Reference] = []
        var literal = ""
        let characters = Array(text)
        var index = 0

        func hasPrefix(_ prefix: String, at position: Int) -> Bool {
            let needle = Array(prefix)
            guard position + needle.count <= characters.count else { return false }
            return Array(characters[position..<position + needle.count]) == needle
        }

        while index < characters.count {
            if hasPrefix("{{{{", at: index) {
                literal += "{{"
                index += 4
                continue
            }
            guard hasPrefix("{{", at: index) else {
                literal.append(characters[index])
                index += 1
                continue
            }
            let start = index
            var end = index + 2
            while end < characters.count, !hasPrefix("}}", at: end) { end += 1 }
            guard end < characters.count else {
                throw ParseError(offset: start, message: "`{{` is never closed with `}}` (write `{{{{` for a literal `{{`)")
            }
            let body = String(characters[(start + 2)..<end]).trimmingWhitespace()
            let segment = try Template.segment(for: body, offset: start)
            if !literal.isEmpty {
                segments.append(.literal(literal))
                literal = ""
            }
            segments.append(segment)
            references.append(Reference(segment: segment, offset: start))
            index = end + 2
        }
        if !literal.isEmpty { segments.append(.literal(literal)) }
        self.segments = segments
        self.references = references
    }

    private static func segment(for body: String, offset: Int) throws(ParseError) -> Segment {
        if body.isEmpty {
            throw ParseError(offset: offset, message: "empty placeholder `{{ }}`; expected `{{ alias.key }}` or `{{ nclav_… }}`")
        }
        let parts = body.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        let wellFormed = parts.allSatisfy { part in
            !part.isEmpty && part.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
        }
        guard wellFormed, parts.count <= 2 else {
            throw ParseError(offset: offset, message: "placeholder `{{ \(body) }}` is not of the form `{{ alias.key }}` or `{{ nclav_… }}`")
        }
        if parts.count == 2 { return .importOutput(alias: parts[0], key: parts[1]) }
        return .context(name: parts[0])
    }

    /// Fills every placeholder through `lookup`; a nil answer leaves the error to the caller.
    public func render(_ lookup: (Segment) throws -> String) rethrows -> String {
        var result = ""
        for segment in segments {
            switch segment {
            case .literal(let text): result += text
            default: result += try lookup(segment)
            }
        }
        return result
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}
