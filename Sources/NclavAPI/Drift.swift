import Foundation

/// `POST /drift` (the body may be empty).
public struct DriftRequest: Codable, Sendable, Equatable {
    public var enclave: String?
    public init(enclave: String? = nil) { self.enclave = enclave }
}

/// One partition's drift check.
public struct DriftEntry: Codable, Sendable, Equatable {
    public var partition: String
    /// `in-sync`, `drifted`, `error` or `skipped`.
    public var status: String
    public var summary: String
    public var runID: String?
    public var seconds: Double?

    public init(partition: String, status: String, summary: String, runID: String?, seconds: Double?) {
        self.partition = partition
        self.status = status
        self.summary = summary
        self.runID = runID
        self.seconds = seconds.map { ($0 * 1000).rounded() / 1000 }
    }

    public enum CodingKeys: String, CodingKey { case partition, status, summary, runID = "run_id", seconds }
}

/// One NDJSON line of `POST /drift`.
public enum DriftEvent: Codable, Sendable, Equatable {
    case progress(String)
    case drift(reconcileID: String, results: [DriftEntry])
    case error(String)

    private enum Keys: String, CodingKey { case type, line, reconcileID = "reconcile_id", results, error }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        switch try container.decode(String.self, forKey: .type) {
        case "progress": self = .progress(try container.decodeIfPresent(String.self, forKey: .line) ?? "")
        case "drift":
            self = .drift(
                reconcileID: try container.decodeIfPresent(String.self, forKey: .reconcileID) ?? "",
                results: try container.decodeIfPresent([DriftEntry].self, forKey: .results) ?? [])
        case "error": self = .error(try container.decodeIfPresent(String.self, forKey: .error) ?? "the drift check failed")
        case let other: throw DecodingError.dataCorruptedError(forKey: .type, in: container, debugDescription: "unknown event type `\(other)`")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        switch self {
        case .progress(let line):
            try container.encode("progress", forKey: .type)
            try container.encode(line, forKey: .line)
        case .drift(let reconcileID, let results):
            try container.encode("drift", forKey: .type)
            try container.encode(reconcileID, forKey: .reconcileID)
            try container.encode(results, forKey: .results)
        case .error(let message):
            try container.encode("error", forKey: .type)
            try container.encode(message, forKey: .error)
        }
    }
}
