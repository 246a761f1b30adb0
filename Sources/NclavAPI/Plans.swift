import Foundation
import NclavCore

/// Which partitions a `diff`, `plan` or `apply` is about (`--enclave`, `--partition
/// enclave/partition`); the server adds what they read upstream.
public struct TargetsBody: Codable, Sendable, Equatable {
    public var enclaves: [String]?
    /// `enclave/partition`.
    public var partitions: [String]?

    public init(enclaves: [String]? = nil, partitions: [String]? = nil) {
        self.enclaves = enclaves
        self.partitions = partitions
    }
}

/// A saved plan as the API shows it (`POST /plans`, `GET /plans/{id}`).
public struct PlanBody: Codable, Sendable, Equatable {
    public struct Change: Codable, Sendable, Equatable {
        public var address: String
        /// `create`, `update`, `replace`, `delete`, `read`.
        public var action: String
        public init(address: String, action: String) {
            self.address = address
            self.action = action
        }

        /// How terraform's plan shows the action.
        public var symbol: String {
            switch action {
            case "create": "+"
            case "update": "~"
            case "replace": "-/+"
            case "delete": "-"
            case "read": "<="
            default: "?"
            }
        }
    }

    public struct Partition: Codable, Sendable, Equatable {
        public var partition: String
        /// `provision`, `update` or `teardown`.
        public var operation: String
        public var changes: [Change]
        public var summary: String
        /// Why it is planned again after its upstreams apply.
        public var deferred: String?
        public var error: String?
        public var runID: String?
        public var changedOutputs: [String]

        public init(
            partition: String, operation: String, changes: [Change], summary: String, deferred: String? = nil, error: String? = nil,
            runID: String? = nil, changedOutputs: [String] = []
        ) {
            self.partition = partition
            self.operation = operation
            self.changes = changes
            self.summary = summary
            self.deferred = deferred
            self.error = error
            self.runID = runID
            self.changedOutputs = changedOutputs
        }

        public enum CodingKeys: String, CodingKey {
            case partition, operation, changes, summary, deferred, error, runID = "run_id", changedOutputs = "changed_outputs"
        }
    }

    public struct Enclave: Codable, Sendable, Equatable {
        public var enclave: String
        public var operation: String
        public init(enclave: String, operation: String) {
            self.enclave = enclave
            self.operation = operation
        }
    }

    public var id: String
    public var createdAt: Date
    public var expiresAt: Date
    public var targets: TargetsBody?
    public var partitions: [Partition]
    public var enclaves: [Enclave]
    /// The partition-level diff (`nclav diff`'s lines).
    public var lines: [String]
    public var hasChanges: Bool
    /// Teardowns, and resources deleted or replaced: what approval is asked for.
    public var destructions: [String]
    public var errors: [String]

    public init(
        id: String, createdAt: Date, expiresAt: Date, targets: TargetsBody?, partitions: [Partition], enclaves: [Enclave], lines: [String],
        hasChanges: Bool, destructions: [String], errors: [String]
    ) {
        self.id = id
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.targets = targets
        self.partitions = partitions
        self.enclaves = enclaves
        self.lines = lines
        self.hasChanges = hasChanges
        self.destructions = destructions
        self.errors = errors
    }

    public enum CodingKeys: String, CodingKey {
        case id, createdAt = "created_at", expiresAt = "expires_at", targets, partitions, enclaves, lines, hasChanges = "has_changes",
            destructions, errors
    }

    /// "3 to add, 1 to change, 1 to replace, 0 to destroy" over every partition.
    public var summary: String {
        let changes = partitions.flatMap(\.changes)
        func count(_ action: String) -> Int { changes.filter { $0.action == action }.count }
        var parts = ["\(count("create")) to add", "\(count("update")) to change"]
        if count("replace") > 0 { parts.append("\(count("replace")) to replace") }
        parts.append("\(count("delete")) to destroy")
        return parts.joined(separator: ", ")
    }

    /// The plan as people read it: per partition its resource changes, then the totals.
    public var textLines: [String] {
        var out: [String] = []
        for enclave in enclaves {
            out.append(
                "\(enclave.operation == "teardown" ? "-" : enclave.operation == "provision" ? "+" : "~") enclave \(enclave.enclave) (\(enclave.operation))"
            )
        }
        for partition in partitions {
            if let error = partition.error {
                out.append("! \(partition.partition): plan failed: \(error)")
                continue
            }
            let symbol = partition.operation == "teardown" ? "-" : partition.operation == "provision" ? "+" : "~"
            let head = "\(symbol) \(partition.partition) (\(partition.operation))"
            if let deferred = partition.deferred {
                out.append("\(head) deferred: \(deferred)")
            } else {
                out.append("\(head): \(partition.summary)")
            }
            for change in partition.changes { out.append("    \(change.symbol.padding(toLength: 3, withPad: " ", startingAt: 0)) \(change.address)") }
        }
        let deferred = partitions.filter { $0.deferred != nil }.count
        if !hasChanges {
            out.append("No changes.")
        } else {
            out.append("Plan \(id): \(summary)" + (deferred > 0 ? "; \(deferred) partition(s) deferred" : "") + ".")
        }
        return out
    }
}

/// `GET /plans`: the plans that may still be applied, newest first.
public struct PlanListing: Codable, Sendable, Equatable {
    public var plans: [PlanBody]
    public init(plans: [PlanBody]) { self.plans = plans }
}

/// One NDJSON line of `POST /plans`: progress while it plans, then the plan, or an error.
public enum PlanEvent: Codable, Sendable, Equatable {
    case progress(String)
    case plan(PlanBody)
    case error(String)

    private enum Keys: String, CodingKey { case type, line, plan, error }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        switch try container.decode(String.self, forKey: .type) {
        case "progress": self = .progress(try container.decodeIfPresent(String.self, forKey: .line) ?? "")
        case "plan": self = .plan(try container.decode(PlanBody.self, forKey: .plan))
        case "error": self = .error(try container.decodeIfPresent(String.self, forKey: .error) ?? "the plan failed")
        case let other: throw DecodingError.dataCorruptedError(forKey: .type, in: container, debugDescription: "unknown event type `\(other)`")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        switch self {
        case .progress(let line):
            try container.encode("progress", forKey: .type)
            try container.encode(line, forKey: .line)
        case .plan(let plan):
            try container.encode("plan", forKey: .type)
            try container.encode(plan, forKey: .plan)
        case .error(let message):
            try container.encode("error", forKey: .type)
            try container.encode(message, forKey: .error)
        }
    }
}
