import Crypto
import Foundation

/// The parts of a Terraform state file the backend checks: it must be a JSON object with a
/// `lineage` string and a non-negative integer `serial`. Everything else is kept verbatim.
public struct StateDocument: Sendable, Equatable {
    public let lineage: String
    public let serial: Int64
    public let terraformVersion: String?
    /// `outputs.<name>.value`, as JSON values.
    public let outputs: [String: JSONValue]

    public enum Problem: Error, Sendable, Equatable, CustomStringConvertible {
        case notJSON
        case notAnObject
        case missingLineage
        case badSerial
        case duplicateKey(String)

        public var description: String {
            switch self {
            case .notJSON: return "the body is not JSON"
            case .notAnObject: return "the body is JSON but not a Terraform state object"
            case .missingLineage: return "the state has no `lineage` string"
            case .badSerial: return "the state has no non-negative integer `serial`"
            case .duplicateKey(let key): return "the state names the top-level key `\(key)` more than once (readers disagree on which one counts)"
            }
        }
    }

    /// One strict validating pass over the whole body (`JSONScan`), then only the few small
    /// members nclav reads are decoded: large states are never turned into objects.
    public init(parsing data: Data) throws(Problem) {
        let found: [String: Range<Int>]?
        do { found = try JSONScan.topLevelMembers(data) } catch { throw error.duplicateKey.map(Problem.duplicateKey) ?? .notJSON }
        guard let members = found else { throw .notAnObject }
        func slice(_ key: String) -> Data? { members[key].map { data[data.startIndex + $0.lowerBound..<data.startIndex + $0.upperBound] } }

        guard let lineageJSON = slice("lineage"), let lineage = Self.string(lineageJSON), !lineage.isEmpty else { throw .missingLineage }
        // A whole, non-negative number: digits only (no sign, fraction or exponent).
        guard let serialJSON = slice("serial"), !serialJSON.isEmpty, serialJSON.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let serial = Int64(String(decoding: serialJSON, as: UTF8.self))
        else { throw .badSerial }
        self.lineage = lineage
        self.serial = serial
        terraformVersion = slice("terraform_version").flatMap(Self.string)
        if let outputsJSON = slice("outputs"), outputsJSON.first != UInt8(ascii: "n") {
            do {
                outputs = try JSONDecoder().decode([String: Shape.Output].self, from: outputsJSON).compactMapValues(\.value)
            } catch {
                throw .notAnObject
            }
        } else {
            outputs = [:]
        }
    }

    /// A JSON string member's value; `nil` for any other JSON type.
    private static func string(_ json: Data) -> String? {
        guard json.first == UInt8(ascii: "\""), json.count >= 2 else { return nil }
        if !json.contains(UInt8(ascii: "\\")) { return String(decoding: json.dropFirst().dropLast(), as: UTF8.self) }
        return try? JSONDecoder().decode(String.self, from: json)
    }

    private enum Shape {
        struct Output: Decodable {
            let value: JSONValue?

            // A present `null` is a value (an empty string in templates); a missing key is not.
            init(from decoder: Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                value = container.contains(.value) ? try container.decode(JSONValue.self, forKey: .value) : nil
            }

            enum CodingKeys: String, CodingKey { case value }
        }
    }
}

/// A JSON value from a state file's outputs, stringified for templates the way users expect:
/// strings as themselves, numbers as written, everything else as compact JSON.
public indirect enum JSONValue: Sendable, Equatable, Codable {
    case string(String)
    case integer(Int64)
    case double(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let flag = try? container.decode(Bool.self) {
            self = .bool(flag)
        } else if let integer = try? container.decode(Int64.self) {
            self = .integer(integer)
        } else if let double = try? container.decode(Double.self) {
            self = .double(double)
        } else if let text = try? container.decode(String.self) {
            self = .string(text)
        } else if let array = try? container.decode([JSONValue].self) {
            self = .array(array)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let text): try container.encode(text)
        case .integer(let integer): try container.encode(integer)
        case .double(let double): try container.encode(double)
        case .bool(let flag): try container.encode(flag)
        case .null: try container.encodeNil()
        case .array(let array): try container.encode(array)
        case .object(let object): try container.encode(object)
        }
    }

    /// What `{{ alias.key }}` turns into.
    public var templateString: String {
        switch self {
        case .string(let text): return text
        case .integer(let integer): return String(integer)
        case .double(let double): return double == double.rounded() && abs(double) < 1e15 ? String(Int64(double)) : String(double)
        case .bool(let flag): return flag ? "true" : "false"
        case .null: return ""
        case .array, .object:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? ""
        }
    }
}

extension StateDocument {
    /// A parse's outcome as a value, to hand on or to run beside other work.
    public typealias Parsed = Result<StateDocument, Problem>

    public static func parse(_ body: Data) -> Parsed {
        Result { () throws(Problem) in try StateDocument(parsing: body) }
    }
}

public enum Digest {
    public static func sha256Hex(_ data: Data) -> String {
        hex(SHA256.hash(data: data))
    }

    /// Lowercase hex of any digest's bytes. A table lookup per nibble: `String(format:)` per
    /// byte was the largest single cost of fingerprinting a big tree.
    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        var ascii: [UInt8] = []
        ascii.reserveCapacity(64)
        for byte in bytes {
            ascii.append(hexDigits[Int(byte >> 4)])
            ascii.append(hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: ascii, as: UTF8.self)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Base64 MD5, the form terraform sends and expects in `Content-MD5`.
    public static func md5Base64(_ data: Data) -> String {
        Data(Insecure.MD5.hash(data: data)).base64EncodedString()
    }
}

/// The MD5 and SHA-256 of a state body, computed while it arrives instead of after.
public struct BodyDigests: Sendable, Equatable {
    /// Base64, the form of `Content-MD5`.
    public var md5Base64: String
    /// Lowercase hex.
    public var sha256Hex: String

    public init(md5Base64: String, sha256Hex: String) {
        self.md5Base64 = md5Base64
        self.sha256Hex = sha256Hex
    }

    public init(of body: Data) {
        self.init(md5Base64: Digest.md5Base64(body), sha256Hex: Digest.sha256Hex(body))
    }
}

/// Incremental hashers for a body that arrives in chunks.
public enum StreamingDigest {
    public struct MD5 {
        private var hasher = Insecure.MD5()
        public init() {}
        public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }
        public func base64() -> String { Data(hasher.finalize()).base64EncodedString() }
    }

    public struct SHA256 {
        private var hasher = Crypto.SHA256()
        public init() {}
        public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }
        public func hex() -> String { Digest.hex(hasher.finalize()) }
    }
}

extension StateDocument {
    /// The managed and data resources a state holds, as terraform addresses
    /// (`module.net.aws_vpc.main`, `data.terraform_remote_state.x`), or nil when the body is not
    /// a state. Decodes the resource list, so it is for teardown decisions and messages, not
    /// for the backend's hot path.
    public static func resourceAddresses(_ body: Data) -> [String]? {
        struct Shape: Decodable {
            struct Resource: Decodable {
                let module: String?
                let mode: String?
                let type: String
                let name: String
                let instances: [Instance]?
            }
            struct Instance: Decodable {}
            let resources: [Resource]?
        }
        guard let shape = try? JSONDecoder().decode(Shape.self, from: body) else { return nil }
        return (shape.resources ?? []).filter { ($0.instances?.count ?? 1) > 0 }.map { resource in
            let local = (resource.mode == "data" ? "data." : "") + "\(resource.type).\(resource.name)"
            return resource.module.map { "\($0).\(local)" } ?? local
        }
    }
}
