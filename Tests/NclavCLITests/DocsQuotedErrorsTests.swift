import Foundation
import NclavTestSupport
import Testing

/// Every error message quoted in README.md and docs/*.md is one the code still prints (troubleshooting.md
/// once quoted "the gcp driver is not part of this build yet" long after the code said something else).
///
/// A quote is: (1) in a ``` block, the message of a line `path:line:col: error: message` or `error: message`;
/// (2) a message in backticks or double quotes that opens a heading, paragraph or list item and is followed
/// by `:` or ` (`, troubleshooting's "message: what to do" form (``- `cannot open the state store at …`: …``,
/// `## "another reconcile is in progress" (409)`); (3) a backticked message right after "fails with" or
/// "says", or one starting `error: ` or `! ` (a failed partition's end line). Terraform's own messages
/// ("Error acquiring the state lock" / …) are quoted in none of these forms.
///
/// What a quote shows as an example (backticked values, `<placeholders>`, `…`, numbers, paths, a lone capital
/// like `N`) is cut out, and the rest is cut at `; ` and ` (`, since the code builds a hint or a list apart
/// from the sentence it ends. Each piece of 12 characters or more must be in Sources/: verbatim, or with
/// some words standing for values the code interpolates (`the gcp driver` is `"the \(cloud) driver"`).
@Suite("Error messages quoted in the docs")
struct DocsQuotedErrorsTests {
    @Test("every error message quoted in README.md and docs/ is one the code prints")
    func quotedErrorsExist() throws {
        let root = TestSupport.packageRoot
        let docs = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("docs").path)
            .filter { $0.hasSuffix(".md") }.sorted().map { "docs/\($0)" }
        var quotes = 0
        for doc in ["README.md"] + docs {
            let text = try String(contentsOf: root.appendingPathComponent(doc), encoding: .utf8)
            for quote in Self.quotes(in: text) {
                let pieces = Self.pieces(of: quote.message)
                if pieces.isEmpty { continue }
                quotes += 1
                for piece in pieces where !Self.isInCode(piece) {
                    Issue.record("\(doc):\(quote.line): “\(piece)” is in no file under Sources/ (the quote: “\(quote.message)”)")
                }
            }
        }
        // 26 when this was written: README.md 3, docs/troubleshooting.md 12, docs/yaml.md 11.
        #expect(quotes >= 22, "only \(quotes) quoted error messages found: do the rules above still match how the docs quote?")
    }

    @Test("a message the code no longer prints is caught; the same message with other values is not")
    func matcher() {
        #expect(!Self.isInCode("the gcp driver is not part of this build yet"))
        #expect(Self.isInCode("the azure driver is not enabled on this server"))
        #expect(Self.isInCode("no IaC tool found: tried terraform, tofu on PATH"))
    }

    static let fencedRules = [#"^(?:\S+:\d+:\d+: )?error: (.+)$"#]  // (1)
    static let proseRules = [
        #"^(?:#+ |- |\* |\d+\. )?(?:`([^`]* [^`]*)`|"([^"]* [^"]*)")(?::| \()"#,  // (2)
        #"(?:fails with|says) `([^`]+)`"#, #"`((?:error: |! )[^`]+)`"#,  // (3)
    ]

    /// The quoted messages of one document, with the line each starts on.
    static func quotes(in text: String) -> [(line: Int, message: String)] {
        var quotes: [(line: Int, message: String)] = []
        for block in blocks(text) {
            for rule in block.fenced ? fencedRules : proseRules {
                for message in matches(of: rule, in: block.text) where !quotes.contains(where: { $0.line == block.line && $0.message == message }) {
                    quotes.append((block.line, message))
                }
            }
        }
        return quotes
    }

    /// Lines inside ``` blocks one by one; outside them each heading, paragraph or list item as one line.
    static func blocks(_ text: String) -> [(line: Int, text: String, fenced: Bool)] {
        var blocks: [(line: Int, text: String, fenced: Bool)] = []
        var fenced = false
        var open = false
        for (index, raw) in text.components(separatedBy: "\n").enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("```") {
                fenced.toggle()
                open = false
            } else if fenced {
                blocks.append((index + 1, line, true))
            } else if line.isEmpty || line.hasPrefix("|") {  // tables quote no messages
                open = false
            } else {
                let starts = ["#", "- ", "* "].contains { line.hasPrefix($0) } || line.range(of: #"^\d+\. "#, options: .regularExpression) != nil
                if open && !starts { blocks[blocks.count - 1].text += " " + line } else { blocks.append((index + 1, line, false)) }
                open = !line.hasPrefix("#")
            }
        }
        return blocks
    }

    /// The message without what varies (values, placeholders, numbers, paths), cut at clause breaks.
    static func pieces(of message: String) -> [String] {
        message.replacingOccurrences(of: #"`[^`]*`|<[^>]*>|…|\S*[0-9/]\S*(?: s\b)?|\b[A-Z]\b|; | \("#, with: "\u{1}", options: .regularExpression)
            .components(separatedBy: "\u{1}")
            .map { $0.replacingOccurrences(of: #"\s+"#, with: " ", options: .regularExpression) }
            .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " :;,.?!()")) }
            .filter { $0.count >= 12 }
    }

    /// All Swift under Sources/ as one line, comment lines left out: every interpolation `\(…)` is `•`,
    /// literals joined with `+` are one, and backticks are gone (a quote in backticks cannot show them).
    static let code: String = {
        var text = ""
        let files = FileManager.default.enumerator(at: TestSupport.packageRoot.appendingPathComponent("Sources"), includingPropertiesForKeys: nil)
        for case let file as URL in files?.allObjects ?? [] where file.pathExtension == "swift" {
            let lines = ((try? String(contentsOf: file, encoding: .utf8)) ?? "").components(separatedBy: "\n")
            text += lines.filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("//") }.joined(separator: "\n") + "\n"
        }
        var flat = String.UnicodeScalarView()
        var depth = 0  // inside an interpolation: how many of its parentheses are open
        var escaping = false  // the scalar before was a backslash that escapes this one
        for scalar in text.unicodeScalars {
            if depth > 0 {
                depth += scalar == "(" ? 1 : scalar == ")" ? -1 : 0
            } else if escaping && scalar == "(" {
                flat.removeLast()
                flat.append("•")
                depth = 1
            } else {
                flat.append(scalar)
            }
            escaping = depth == 0 && scalar == "\\" && !escaping
        }
        return String(flat).replacingOccurrences(of: #""\s*\+\s*""#, with: "", options: .regularExpression)
            .replacingOccurrences(of: "`", with: "").replacingOccurrences(of: #"\""#, with: "\"")
            .replacingOccurrences(of: #"\s+"#, with: " ", options: .regularExpression)
    }()

    /// In the code verbatim, or with words standing for interpolated values: each word may be a `•`, and
    /// right after one, so may the rest of a list (`terraform, tofu`); values stand for at most half the words.
    static func isInCode(_ piece: String) -> Bool {
        if code.contains(piece) { return true }
        var pattern = ""
        for token in matches(of: #"[\w.@-]+|, |."#, in: piece) {
            let literal = NSRegularExpression.escapedPattern(for: token)
            if token == ", " {
                pattern += "(?:, |(?<=•))"
            } else if token.range(of: #"^[\w.@-]"#, options: .regularExpression) != nil {
                pattern += "(?:\(literal)|•|(?<=•))"
            } else {
                pattern += literal
            }
        }
        let values = max(1, matches(of: #"[\w.@-]+"#, in: piece).count / 2)
        return (try? NSRegularExpression(pattern: pattern))?.matches(in: code, range: NSRange(code.startIndex..., in: code)).contains { match in
            Range(match.range, in: code).map { code[$0].filter { $0 == "•" }.count <= values } ?? false
        } ?? false
    }

    /// Each match of `pattern`: its first group that took part, or the whole match when it has no groups.
    static func matches(of pattern: String, in text: String) -> [String] {
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return [] }
        return regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap { match in
            let groups = match.numberOfRanges > 1 ? Array(1..<match.numberOfRanges) : [0]
            return groups.lazy.compactMap { Range(match.range(at: $0), in: text) }.first.map { String(text[$0]) }
        }
    }
}
