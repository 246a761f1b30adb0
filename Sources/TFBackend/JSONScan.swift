import Foundation

/// A strict, allocation-free JSON validator (RFC 8259) that also finds where the top-level
/// object's members are, without building them.
///
/// Why: every state write must be checked as JSON, but only `lineage`, `serial`,
/// `terraform_version` and `outputs` are read. Decoding a 10 MB state with `JSONDecoder`
/// builds millions of throwaway values and was the largest cost of a state POST; this pass
/// validates the same bytes several times faster and hands only the small members to a decoder.
enum JSONScan {
    struct Failure: Error {
        let offset: Int
        /// Set when the document is valid JSON but its top-level object names a key twice,
        /// which readers resolve differently (first wins, last wins).
        var duplicateKey: String? = nil
    }

    /// The byte ranges of the top-level object's member values, by key; `nil` when the document
    /// is valid JSON but not an object. Throws on anything that is not valid JSON.
    static func topLevelMembers(_ data: Data) throws(Failure) -> [String: Range<Int>]? {
        try scan(data, only: nil).members
    }

    /// The byte range of one top-level member's value (`nil` when absent or not an object),
    /// after validating the whole document. Records nothing else: the lock path needs only `ID`
    /// and reads it on every lock and unlock.
    static func topLevelMember(_ data: Data, key: StaticString) throws(Failure) -> Range<Int>? {
        try scan(data, only: key).only
    }

    private static func scan(_ data: Data, only: StaticString?) throws(Failure) -> (members: [String: Range<Int>]?, only: Range<Int>?) {
        var result: Result<[String: Range<Int>]?, Failure> = .success(nil)
        var onlyRange: Range<Int>?
        data.withUnsafeBytes { raw in
            let bytes = raw.bindMemory(to: UInt8.self)
            var scanner = Scanner(bytes: bytes)
            scanner.only = only.map { UnsafeBufferPointer(start: $0.utf8Start, count: $0.utf8CodeUnitCount) }
            defer { onlyRange = scanner.onlyRange }
            do {
                scanner.skipWhitespace()
                let members: [String: Range<Int>]?
                if scanner.peek() == UInt8(ascii: "{") {
                    members = try scanner.object(recordMembers: true)
                } else {
                    try scanner.value(depth: 0)
                    members = nil
                }
                scanner.skipWhitespace()
                guard scanner.position == bytes.count else { throw Failure(offset: scanner.position) }
                result = .success(members)
            } catch let failure as Failure {
                result = .failure(failure)
            } catch {
                result = .failure(Failure(offset: scanner.position))
            }
        }
        return (try result.get(), onlyRange)
    }

    /// Nesting deeper than this is refused rather than risking the stack.
    static let maximumDepth = 512

    private struct Scanner {
        let bytes: UnsafeBufferPointer<UInt8>
        var position = 0
        /// When set, only the member with exactly this (unescaped) key is recorded, in `onlyRange`.
        var only: UnsafeBufferPointer<UInt8>?
        var onlyRange: Range<Int>?

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

        mutating func skipWhitespace() {
            while position < bytes.count {
                switch bytes[position] {
                case 0x20, 0x09, 0x0A, 0x0D: position += 1
                default: return
                }
            }
        }

        func fail() -> Failure { Failure(offset: position) }

        mutating func expect(_ byte: UInt8) throws(Failure) {
            guard position < bytes.count, bytes[position] == byte else { throw fail() }
            position += 1
        }

        mutating func value(depth: Int) throws(Failure) {
            guard depth < JSONScan.maximumDepth else { throw fail() }
            skipWhitespace()
            guard let byte = peek() else { throw fail() }
            switch byte {
            case UInt8(ascii: "{"): _ = try object(recordMembers: false, depth: depth)
            case UInt8(ascii: "["): try array(depth: depth)
            case UInt8(ascii: "\""): _ = try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            default: try number()
            }
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let count = word.utf8CodeUnitCount
            guard position + count <= bytes.count else { throw fail() }
            for index in 0..<count where bytes[position + index] != word.utf8Start[index] { throw fail() }
            position += count
        }

        @discardableResult
        mutating func object(recordMembers: Bool, depth: Int = 0) throws(Failure) -> [String: Range<Int>] {
            var members: [String: Range<Int>] = [:]
            try expect(UInt8(ascii: "{"))
            skipWhitespace()
            if peek() == UInt8(ascii: "}") {
                position += 1
                return members
            }
            while true {
                skipWhitespace()
                let keyRange = try string()
                skipWhitespace()
                try expect(UInt8(ascii: ":"))
                skipWhitespace()
                let start = position
                try value(depth: depth + 1)
                if recordMembers {
                    if let only {
                        if keyRange.count == only.count, memcmp(bytes.baseAddress! + keyRange.lowerBound, only.baseAddress!, only.count) == 0 {
                            if onlyRange != nil {
                                throw Failure(
                                    offset: keyRange.lowerBound,
                                    duplicateKey: String(decoding: UnsafeBufferPointer(rebasing: only[...]), as: UTF8.self))
                            }
                            onlyRange = start..<position
                        }
                    } else if let key = Self.decodeKey(bytes, keyRange) {
                        if members.updateValue(start..<position, forKey: key) != nil { throw Failure(offset: keyRange.lowerBound, duplicateKey: key) }
                    }
                }
                skipWhitespace()
                guard let next = peek() else { throw fail() }
                position += 1
                if next == UInt8(ascii: "}") { return members }
                guard next == UInt8(ascii: ",") else {
                    position -= 1
                    throw fail()
                }
            }
        }

        mutating func array(depth: Int) throws(Failure) {
            try expect(UInt8(ascii: "["))
            skipWhitespace()
            if peek() == UInt8(ascii: "]") {
                position += 1
                return
            }
            while true {
                try value(depth: depth + 1)
                skipWhitespace()
                guard let next = peek() else { throw fail() }
                position += 1
                if next == UInt8(ascii: "]") { return }
                guard next == UInt8(ascii: ",") else {
                    position -= 1
                    throw fail()
                }
            }
        }

        /// The range of the string's contents (between the quotes), checked for escapes,
        /// control characters and UTF-8.
        mutating func string() throws(Failure) -> Range<Int> {
            try expect(UInt8(ascii: "\""))
            let start = position
            while position < bytes.count {
                skipPlainASCII()
                guard position < bytes.count else { break }
                let byte = bytes[position]
                if byte == UInt8(ascii: "\"") {
                    position += 1
                    return start..<(position - 1)
                } else if byte == UInt8(ascii: "\\") {
                    position += 1
                    guard let escaped = peek() else { throw fail() }
                    switch escaped {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                        UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        position += 1
                    case UInt8(ascii: "u"):
                        position += 1
                        guard position + 4 <= bytes.count else { throw fail() }
                        for _ in 0..<4 {
                            guard Self.isHexDigit(bytes[position]) else { throw fail() }
                            position += 1
                        }
                    default:
                        throw fail()
                    }
                } else if byte < 0x20 {
                    throw fail()
                } else if byte < 0x80 {
                    position += 1
                } else {
                    try utf8Sequence()
                }
            }
            throw fail()
        }

        /// Skips whole 8-byte words of string content that need no attention: no quote, no
        /// backslash, no control character, no byte of a multi-byte UTF-8 sequence. Why: state
        /// bodies are mostly long plain strings, and a byte at a time was most of a large write's
        /// validation time. The classic SWAR tests: `(w - 0x01…) & ~w & 0x80…` is non-zero when
        /// some byte of `w` is zero, applied to `w ^ '"'…`, `w ^ '\\'…`; `(w - 0x20…) & ~w & 0x80…`
        /// for a byte below 0x20; `w & 0x80…` for a byte at or above 0x80.
        @inline(__always)
        mutating func skipPlainASCII() {
            let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
            let quotes = ones &* 0x22, backslashes = ones &* 0x5C, spaces = ones &* 0x20
            let base = UnsafeRawPointer(bytes.baseAddress!)
            while position + 8 <= bytes.count {
                let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt64.self))
                let quote = word ^ quotes, backslash = word ^ backslashes
                let special = ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash) | ((word &- spaces) & ~word) | word
                if special & highs != 0 { return }
                position += 8
            }
        }

        /// One multi-byte UTF-8 sequence: well-formed, shortest form, no surrogates.
        mutating func utf8Sequence() throws(Failure) {
            let lead = bytes[position]
            let length: Int
            var lower: UInt8 = 0x80, upper: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0:
                length = 3
                lower = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED:
                length = 3
                upper = 0x9F
            case 0xF0:
                length = 4
                lower = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4:
                length = 4
                upper = 0x8F
            default: throw fail()
            }
            guard position + length <= bytes.count else { throw fail() }
            let second = bytes[position + 1]
            guard second >= lower && second <= upper else { throw fail() }
            for index in 2..<max(2, length) where bytes[position + index] & 0xC0 != 0x80 { throw fail() }
            position += length
        }

        mutating func number() throws(Failure) {
            if peek() == UInt8(ascii: "-") { position += 1 }
            guard let first = peek(), Self.isDigit(first) else { throw fail() }
            if first == UInt8(ascii: "0") {
                position += 1
            } else {
                while let digit = peek(), Self.isDigit(digit) { position += 1 }
            }
            if peek() == UInt8(ascii: ".") {
                position += 1
                guard let digit = peek(), Self.isDigit(digit) else { throw fail() }
                while let digit = peek(), Self.isDigit(digit) { position += 1 }
            }
            if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
                position += 1
                if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { position += 1 }
                guard let digit = peek(), Self.isDigit(digit) else { throw fail() }
                while let digit = peek(), Self.isDigit(digit) { position += 1 }
            }
        }

        static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

        static func isHexDigit(_ byte: UInt8) -> Bool {
            isDigit(byte) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "F"))
        }

        /// Keys are plain ASCII in practice; one with escapes is decoded properly.
        static func decodeKey(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> String? {
            let slice = UnsafeBufferPointer(rebasing: bytes[range])
            if !slice.contains(UInt8(ascii: "\\")) { return String(decoding: slice, as: UTF8.self) }
            let quoted = Data([UInt8(ascii: "\"")] + Array(slice) + [UInt8(ascii: "\"")])
            return try? JSONDecoder().decode(String.self, from: quoted)
        }
    }
}
