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

        public var description: String {
            switch self {
            case .notJSON: return "the body is not JSON"
            case .notAnObject: return "the body is JSON but not a Terraform state object"
            case .missingLineage: return "the state has no `lineage` string"
            case .badSerial: return "the state has no non-negative integer `serial`"
            }
        }
    }

    public init(parsing data: Data) throws(Problem) {
        guard let object = try? JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed) else { throw .notJSON }
        guard let dictionary = object as? [String: Any] else { throw .notAnObject }
        guard let text = dictionary["lineage"] as? String, !text.isEmpty else { throw .missingLineage }
        // The typed decode decides the rest: a serial that is not a whole number fails here.
        guard let decoded = try? JSONDecoder().decode(Shape.self, from: data), decoded.serial >= 0 else { throw .badSerial }
        lineage = decoded.lineage
        serial = decoded.serial
        terraformVersion = decoded.terraformVersion
        outputs = (decoded.outputs ?? [:]).compactMapValues(\.value)
    }

    private struct Shape: Decodable {
        let lineage: String
        let serial: Int64
        let terraformVersion: String?
        let outputs: [String: Output]?

        struct Output: Decodable {
            let value: JSONValue?

            // A present `null` is a value (an empty string in templates); a missing key is not.
            init(from decoder: Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                value = container.contains(.value) ? try container.decode(JSONValue.self, forKey: .value) : nil
            }

            enum CodingKeys: String, CodingKey { case value }
        }

        enum CodingKeys: String, CodingKey { case lineage, serial, terraformVersion = "terraform_version", outputs }
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
        if container.decodeNil() { self = .null }
        else if let flag = try? container.decode(Bool.self) { self = .bool(flag) }
        else if let integer = try? container.decode(Int64.self) { self = .integer(integer) }
        else if let double = try? container.decode(Double.self) { self = .double(double) }
        else if let text = try? container.decode(String.self) { self = .string(text) }
        else if let array = try? container.decode([JSONValue].self) { self = .array(array) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
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

public enum Digest {
    public static func sha256Hex(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// Base64 MD5, the form terraform sends and expects in `Content-MD5`.
    public static func md5Base64(_ data: Data) -> String {
        Data(Insecure.MD5.hash(data: data)).base64EncodedString()
    }
}
