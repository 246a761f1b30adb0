import Foundation

/// A small, strict reader for the XML AWS query and REST-XML services answer with. It keeps
/// element names (namespace prefixes dropped), text and children; attributes, comments and the
/// declaration are skipped. Written here instead of using FoundationXML so the binary does not
/// need libxml2 at run time (the release image is built with a static Swift stdlib).
public struct AWSXML: Sendable, Equatable {
    public var name: String
    public var text: String
    public var children: [AWSXML]

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformed(String, offset: Int)
        public var description: String {
            switch self {
            case .malformed(let what, let offset): return "malformed XML from AWS at byte \(offset): \(what)"
            }
        }
    }

    public init(name: String, text: String = "", children: [AWSXML] = []) {
        self.name = name
        self.text = text
        self.children = children
    }

    public init(parsing data: Data) throws(ParseError) {
        var parser = Parser(bytes: Array(data))
        self = try parser.document()
    }

    /// The first child with this name.
    public subscript(_ name: String) -> AWSXML? { children.first { $0.name == name } }
    /// Every child with this name.
    public func all(_ name: String) -> [AWSXML] { children.filter { $0.name == name } }
    /// The first element with this name anywhere below (depth first).
    public func find(_ name: String) -> AWSXML? {
        for child in children {
            if child.name == name { return child }
            if let found = child.find(name) { return found }
        }
        return nil
    }
    /// Text of the first descendant with this name.
    public func value(_ name: String) -> String? { find(name)?.text }

    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        mutating func document() throws(ParseError) -> AWSXML {
            skipMisc()
            guard let root = try element() else { throw .malformed("no root element", offset: index) }
            skipMisc()
            guard index == bytes.count else { throw .malformed("content after the root element", offset: index) }
            return root
        }

        /// Whitespace, `<?…?>`, `<!--…-->` and `<!DOCTYPE…>`.
        mutating func skipMisc() {
            while true {
                while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 { index += 1 }
                if starts("<?") {
                    skip(past: "?>")
                } else if starts("<!--") {
                    skip(past: "-->")
                } else if starts("<!") {
                    skip(past: ">")
                } else {
                    return
                }
            }
        }

        func starts(_ text: String) -> Bool {
            let needle = Array(text.utf8)
            return index + needle.count <= bytes.count && Array(bytes[index..<index + needle.count]) == needle
        }

        mutating func skip(past text: String) {
            let needle = Array(text.utf8)
            while index < bytes.count, !starts(text) { index += 1 }
            index = min(bytes.count, index + needle.count)
        }

        mutating func name() throws(ParseError) -> String {
            let start = index
            while index < bytes.count, !([0x20, 0x0A, 0x0D, 0x09, 0x2F, 0x3E] as [UInt8]).contains(bytes[index]) { index += 1 }
            guard index > start else { throw .malformed("empty element name", offset: start) }
            let full = String(decoding: bytes[start..<index], as: UTF8.self)
            return full.split(separator: ":").last.map(String.init) ?? full
        }

        mutating func element() throws(ParseError) -> AWSXML? {
            guard index < bytes.count, bytes[index] == 0x3C else { return nil }
            index += 1
            let elementName = try name()
            // Attributes: skipped, but quoted values may contain `>`.
            var quote: UInt8? = nil
            while index < bytes.count {
                let byte = bytes[index]
                if let q = quote {
                    if byte == q { quote = nil }
                } else if byte == 0x22 || byte == 0x27 {
                    quote = byte
                } else if byte == 0x3E || byte == 0x2F {
                    break
                }
                index += 1
            }
            guard index < bytes.count else { throw .malformed("unterminated <\(elementName)>", offset: index) }
            if bytes[index] == 0x2F {
                guard index + 1 < bytes.count, bytes[index + 1] == 0x3E else {
                    throw .malformed("bad empty element <\(elementName)/>", offset: index)
                }
                index += 2
                return AWSXML(name: elementName)
            }
            index += 1
            var node = AWSXML(name: elementName)
            var text: [UInt8] = []
            while true {
                guard index < bytes.count else { throw .malformed("<\(elementName)> is never closed", offset: index) }
                if starts("</") {
                    index += 2
                    let closing = try name()
                    guard closing == elementName else { throw .malformed("</\(closing)> closes <\(elementName)>", offset: index) }
                    while index < bytes.count, bytes[index] != 0x3E { index += 1 }
                    guard index < bytes.count else { throw .malformed("unterminated </\(closing)>", offset: index) }
                    index += 1
                    node.text = try Self.unescape(text, offset: index).trimmingCharacters(in: .whitespacesAndNewlines)
                    return node
                } else if starts("<![CDATA[") {
                    index += 9
                    while index < bytes.count, !starts("]]>") {
                        text.append(bytes[index])
                        index += 1
                    }
                    index += 3
                } else if starts("<!--") {
                    skip(past: "-->")
                } else if bytes[index] == 0x3C {
                    guard let child = try element() else { throw .malformed("bad child of <\(elementName)>", offset: index) }
                    node.children.append(child)
                } else {
                    text.append(bytes[index])
                    index += 1
                }
            }
        }

        static func unescape(_ bytes: [UInt8], offset: Int) throws(ParseError) -> String {
            let raw = String(decoding: bytes, as: UTF8.self)
            guard raw.contains("&") else { return raw }
            var out = ""
            var rest = Substring(raw)
            while let amp = rest.firstIndex(of: "&") {
                out += rest[..<amp]
                guard let semi = rest[amp...].firstIndex(of: ";") else { throw .malformed("unterminated entity", offset: offset) }
                let entity = rest[rest.index(after: amp)..<semi]
                switch entity {
                case "amp": out += "&"
                case "lt": out += "<"
                case "gt": out += ">"
                case "quot": out += "\""
                case "apos": out += "'"
                default:
                    let number =
                        entity.hasPrefix("#x") ? UInt32(entity.dropFirst(2), radix: 16) : entity.hasPrefix("#") ? UInt32(entity.dropFirst()) : nil
                    guard let number, let scalar = Unicode.Scalar(number) else { throw .malformed("unknown entity &\(entity);", offset: offset) }
                    out.unicodeScalars.append(scalar)
                }
                rest = rest[rest.index(after: semi)...]
            }
            return out + rest
        }
    }
}
