/// The cloud an enclave lives in. `local` makes no cloud calls at all.
public enum CloudTarget: String, Codable, Sendable, CaseIterable, Comparable {
    case local, gcp, azure, aws

    public static func < (lhs: CloudTarget, rhs: CloudTarget) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// What kind of endpoint an export offers.
public enum ExportType: String, Codable, Sendable, CaseIterable {
    case http, tcp, queue

    /// The auth/type matrix: which authentication schemes make sense for this kind of endpoint.
    public var allowedAuth: [AuthType] {
        switch self {
        case .http: return [.none, .token, .oauth, .mtls]
        case .tcp: return [.none, .mtls, .native]
        case .queue: return [.none, .token, .native]
        }
    }

    /// Outputs a partition that `produces` this type must declare, so importers can wire to it.
    public var requiredOutputs: [String] {
        switch self {
        case .http, .tcp: return ["hostname", "port"]
        case .queue: return ["queue_url"]
        }
    }
}

/// How importers authenticate against an export.
public enum AuthType: String, Codable, Sendable, CaseIterable {
    case none, token, oauth, mtls, native
}

/// Who may import an export (`to:` in YAML).
public enum ExportAudience: Codable, Sendable, Hashable, CustomStringConvertible {
    /// Anyone, including the internet.
    case `public`
    /// Any enclave managed by nclav.
    case anyEnclave
    /// Anything on the private network.
    case vpn
    /// Only the named enclave.
    case enclave(String)
    /// Only the named partition of the exporting enclave.
    case partition(String)

    /// The scalar spellings accepted in YAML.
    public static let scalarSpellings = ["public", "any_enclave", "vpn"]

    public init?(scalar: String) {
        switch scalar {
        case "public": self = .public
        case "any_enclave": self = .anyEnclave
        case "vpn": self = .vpn
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .public: return "public"
        case .anyEnclave: return "any_enclave"
        case .vpn: return "vpn"
        case .enclave(let id): return "{enclave: \(id)}"
        case .partition(let id): return "{partition: \(id)}"
        }
    }

    // Encoded the way it is written in YAML: a string, or a one-key object.
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let scalar = try? container.decode(String.self) {
            guard let value = ExportAudience(scalar: scalar) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "unknown audience \(scalar)")
            }
            self = value
            return
        }
        let object = try container.decode([String: String].self)
        if let id = object["enclave"], object.count == 1 {
            self = .enclave(id)
            return
        }
        if let id = object["partition"], object.count == 1 {
            self = .partition(id)
            return
        }
        throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected {enclave: id} or {partition: id}")
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .public: try container.encode("public")
        case .anyEnclave: try container.encode("any_enclave")
        case .vpn: try container.encode("vpn")
        case .enclave(let id): try container.encode(["enclave": id])
        case .partition(let id): try container.encode(["partition": id])
        }
    }
}

/// Which IaC tool family a partition uses.
public enum IacBackend: String, Codable, Sendable, CaseIterable {
    case terraform, opentofu

    /// The binary name tried first for this backend.
    public var defaultTool: String { self == .terraform ? "terraform" : "tofu" }
}
