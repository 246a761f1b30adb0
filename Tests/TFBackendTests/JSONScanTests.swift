import Foundation
import NclavTestSupport
import Testing

@testable import TFBackend

/// The validating scanner must accept exactly what a strict JSON parser accepts, except a
/// top-level key named twice, which it refuses (readers disagree on which value counts).
@Suite("JSON scan of state bodies")
struct JSONScanTests {
    static let valid = [
        #"{}"#, #"[]"#, #"0"#, #"-0.5e+10"#, #""x""#, #"true"#, #"null"#, #" { "a" : [1, 2.5, -3e2, "s", {"b": null}] } "#,
        #"{"esc":"\" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00"}"#, #"{"utf8":"héllo ✓ 😀"}"#, #"[[[[[]]]]]"#, #"{"a":{"b":1,"b":2}}"#,
    ]
    static let invalid = [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{'a':1}", "01", "1.", ".5", "-", "+1", "1e", "tru", "nul", "\"unterminated",
        "\"tab\there\"", "\"\\x\"", "\"\\u12G4\"", "{\"a\" 1}", "{\"a\":1 \"b\":2}", "[1 2]", "{} {}", "NaN", "[1]x",
        "\u{7F}", "{\"a\":undefined}",
    ]

    func scanAccepts(_ data: Data) -> Bool {
        do {
            _ = try JSONScan.topLevelMembers(data)
            return true
        } catch { return false }
    }

    /// Foundation's parser tolerates a trailing comma (`[1,]`); RFC 8259, Go's encoding/json
    /// (terraform's own) and this scan do not.
    func reference(_ data: Data) -> Bool {
        if String(decoding: data, as: UTF8.self).range(of: #",\s*[\]}]"#, options: .regularExpression) != nil { return false }
        return (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil
    }

    @Test("accepts and rejects what a strict parser does, on hand-written cases")
    func agreesOnCases() {
        for text in Self.valid + Self.invalid {
            let data = Data(text.utf8)
            #expect(scanAccepts(data) == reference(data), "\(text.debugDescription): scan \(scanAccepts(data)), reference \(reference(data))")
        }
    }

    @Test("a top-level key named twice is refused with its name; nested duplicates are the document's business")
    func duplicateTopLevelKey() throws {
        for (text, key) in [(#"{"a":1,"a":2}"#, "a"), (#"{"serial":1,"lineage":"l","serial":2}"#, "serial")] {
            #expect(throws: JSONScan.Failure.self) { try JSONScan.topLevelMembers(Data(text.utf8)) }
            do { _ = try JSONScan.topLevelMembers(Data(text.utf8)) } catch { #expect(error.duplicateKey == key) }
        }
        #expect(throws: StateDocument.Problem.duplicateKey("serial")) {
            try StateDocument(parsing: Data(#"{"serial":1,"lineage":"l","serial":2}"#.utf8))
        }
        #expect(throws: JSONScan.Failure.self) { try JSONScan.topLevelMember(Data(#"{"ID":"a","ID":"b"}"#.utf8), key: "ID") }
    }

    @Test("invalid UTF-8 inside a string is refused")
    func invalidUTF8() {
        for bytes: [UInt8] in [[0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xC3], [0x80]] {
            let data = Data([UInt8(ascii: "\"")] + bytes + [UInt8(ascii: "\"")])
            #expect(throws: JSONScan.Failure.self) { try JSONScan.topLevelMembers(data) }
        }
    }

    @Test("random damage to a real state body: the scan and a strict parser agree every time")
    func agreesUnderMutation() throws {
        let state = Data(
            #"{"version":4,"terraform_version":"1.11.4","serial":7,"lineage":"5f1c-é","outputs":{"url":{"value":"https://x","type":"string"},"n":{"value":[1,2.5,{"k":null}],"type":["tuple",["number"]]}},"resources":[{"mode":"managed","type":"terraform_data","name":"a","instances":[{"attributes":{"id":"\u0041b","input":{"value":"x\ny","type":"string"}}}]}],"check_results":null}"#
                .utf8)
        var generator = SeededGenerator(seed: 20261122)
        let alphabet = Array(#"{}[]",:0123456789.-eE+tfnul\ "#.utf8) + [0x00, 0x1F, 0xC3, 0xA9, 0xFF]
        for _ in 0..<3000 {
            var bytes = [UInt8](state)
            for _ in 0..<(1 + Int(generator.next() % 3)) {
                let index = Int(generator.next() % UInt64(bytes.count))
                switch generator.next() % 3 {
                case 0: bytes[index] = alphabet[Int(generator.next() % UInt64(alphabet.count))]
                case 1: bytes.remove(at: index)
                default: bytes.insert(alphabet[Int(generator.next() % UInt64(alphabet.count))], at: index)
                }
            }
            let data = Data(bytes)
            #expect(scanAccepts(data) == reference(data), "\(String(decoding: data, as: UTF8.self))")
            if scanAccepts(data) != reference(data) { return }
        }
    }

    @Test("in a long string, a special byte at every offset (word boundaries included) is found as a strict parser finds it")
    func longStringsEveryOffset() {
        let specials: [[UInt8]] = [
            [0x22], [0x5C, 0x6E], [0x5C, 0x78], [0x01], [0x1F], [0x7F], [0xC3, 0xA9], [0xFF], [0xE2, 0x9C, 0x93], [0xED, 0xA0, 0x80],
        ]
        for special in specials {
            for offset in 0..<41 {
                var bytes = Array(#"{"padding":""#.utf8) + Array(repeating: UInt8(ascii: "x"), count: 40)
                bytes.insert(contentsOf: special, at: 12 + offset)
                bytes += Array(#""}"#.utf8)
                let data = Data(bytes)
                #expect(scanAccepts(data) == reference(data), "\(special) at \(offset): scan \(scanAccepts(data)), reference \(reference(data))")
            }
        }
        let long = Data((#"{"padding":""# + String(repeating: "abcdefgh", count: 100_001) + #"","serial":3}"#).utf8)
        #expect(scanAccepts(long))
    }

    @Test("member ranges point at the values, and a deep nesting is refused rather than overflowing the stack")
    func membersAndDepth() throws {
        let data = Data(#"{ "serial" : 12 , "lineage":"abc", "outputs": {"a": {"value": 1}} }"#.utf8)
        let members = try #require(try JSONScan.topLevelMembers(data))
        #expect(String(decoding: data[members["serial"]!], as: UTF8.self) == "12")
        #expect(String(decoding: data[members["lineage"]!], as: UTF8.self) == "\"abc\"")
        #expect(String(decoding: data[members["outputs"]!], as: UTF8.self) == #"{"a": {"value": 1}}"#)
        #expect(try JSONScan.topLevelMembers(Data("[1]".utf8)) == nil, "valid JSON, not an object")
        let deep = Data((String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)).utf8)
        #expect(throws: JSONScan.Failure.self) { try JSONScan.topLevelMembers(deep) }
    }
}
