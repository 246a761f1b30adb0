import Foundation
import NclavCore

/// `POST /reconcile`, `POST /reconcile/dry-run` and `POST /plans`: a directory on the server,
/// or the tree itself. The CLI writes the bundle part of this body by hand (thousands of small
/// files encode faster that way); the keys are these.
public struct ReconcileRequest: Codable, Sendable {
    public struct File: Codable, Sendable, Equatable {
        public var path: String
        /// Base64 of the file's bytes.
        public var content: String
        public init(path: String, content: String) {
            self.path = path
            self.content = content
        }
    }

    public var enclavesDir: String?
    public var bundle: [File]?
    public var parallelism: Int?
    public var allowDeleteAll: Bool?
    /// Only these and what they read upstream (`diff`, `plan`, `apply`).
    public var targets: TargetsBody?
    /// `POST /reconcile`: apply exactly this saved plan (the tree is checked against it).
    public var planID: String?
    /// With `plan_id`: partitions the plan deferred may destroy or replace resources once
    /// planned after their upstreams.
    public var autoApprove: Bool?

    public init(
        enclavesDir: String? = nil, bundle: [File]? = nil, parallelism: Int? = nil, allowDeleteAll: Bool? = nil, targets: TargetsBody? = nil,
        planID: String? = nil
    ) {
        self.enclavesDir = enclavesDir
        self.bundle = bundle
        self.parallelism = parallelism
        self.allowDeleteAll = allowDeleteAll
        self.targets = targets
        self.planID = planID
    }

    public enum CodingKeys: String, CodingKey {
        case enclavesDir = "enclaves_dir", bundle, parallelism, allowDeleteAll = "allow_delete_all", targets, planID = "plan_id",
            autoApprove = "auto_approve"
    }
}

/// One change of a diff, for scripts: what (`create_enclave`, `update_enclave`,
/// `delete_enclave`, `create_partition`, `update_partition`, `may_update_partition`,
/// `delete_partition`, `wire_export`, `wire_import`), where, and why.
public struct DiffEntry: Codable, Sendable, Equatable {
    public var kind: String
    public var enclave: String
    public var partition: String?
    /// The export's name or the import's alias, for wiring.
    public var name: String?
    /// `changed`, `drifted`, `failed last time`, or the condition of a partition that runs
    /// only if what it reads changes.
    public var reason: String?

    public init(kind: String, enclave: String, partition: String? = nil, name: String? = nil, reason: String? = nil) {
        self.kind = kind
        self.enclave = enclave
        self.partition = partition
        self.name = name
        self.reason = reason
    }
}

/// `POST /reconcile/dry-run`: the plan, without changing anything.
public struct DryRunAnswer: Codable, Sendable, Equatable {
    /// The diff's lines, the summary last.
    public var changes: [String]
    /// The same changes, structured (the summary left out).
    public var entries: [DiffEntry]
    /// Changes an apply makes whatever happens upstream (`--detailed-exitcode` counts these).
    public var changeCount: Int
    /// Partitions that run only if what they read changes (`~ partition e/p (if …)`).
    public var conditionalCount: Int
    public var deletesEverything: Bool

    public init(changes: [String], entries: [DiffEntry] = [], changeCount: Int, conditionalCount: Int, deletesEverything: Bool) {
        self.changes = changes
        self.entries = entries
        self.changeCount = changeCount
        self.conditionalCount = conditionalCount
        self.deletesEverything = deletesEverything
    }

    public enum CodingKeys: String, CodingKey {
        case changes, entries, changeCount = "change_count", conditionalCount = "conditional_count", deletesEverything = "deletes_everything"
    }
}

/// What happened to one partition, as the API reports it.
public struct OutcomeLine: Codable, Sendable, Equatable {
    public var partition: String
    public var operation: String
    /// `succeeded`, `failed`, `skipped`, `unchanged`; for drift `in-sync`, `drifted`, `error`.
    public var result: String
    public var runID: String?
    /// Why it failed, was skipped or stayed unchanged (for drift: the plan's summary).
    public var reason: String?
    public var seconds: Double?

    public init(partition: String, operation: String, result: String, runID: String? = nil, reason: String? = nil, seconds: Double? = nil) {
        self.partition = partition
        self.operation = operation
        self.result = result
        self.runID = runID
        self.reason = reason
        self.seconds = seconds.map { ($0 * 1000).rounded() / 1000 }
    }

    public enum CodingKeys: String, CodingKey { case partition, operation, result, runID = "run_id", reason, seconds }
}

/// An enclave boundary created, updated or torn down.
public struct EnclaveOutcomeLine: Codable, Sendable, Equatable {
    public var enclave: String
    public var operation: String
    public var result: String
    public var reason: String?

    public init(enclave: String, operation: String, result: String, reason: String? = nil) {
        self.enclave = enclave
        self.operation = operation
        self.result = result
        self.reason = reason
    }
}

/// The end of an apply or a destroy.
public struct ReconcileReportBody: Codable, Sendable, Equatable {
    public var reconcileID: String
    public var changes: [String]
    public var outcomes: [OutcomeLine]
    public var enclaves: [EnclaveOutcomeLine]
    public var errors: [String]

    public init(reconcileID: String, changes: [String], outcomes: [OutcomeLine], enclaves: [EnclaveOutcomeLine], errors: [String]) {
        self.reconcileID = reconcileID
        self.changes = changes
        self.outcomes = outcomes
        self.enclaves = enclaves
        self.errors = errors
    }
}

/// One NDJSON line of `POST /reconcile` (and of `POST /destroy`): progress while it runs,
/// then the report, or an error.
public enum ApplyEvent: Codable, Sendable, Equatable {
    case progress(String)
    case report(ReconcileReportBody)
    case error(String)

    private enum Keys: String, CodingKey {
        case type, line, reconcileID = "reconcile_id", changes, outcomes, enclaves, errors, error
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        switch try container.decode(String.self, forKey: .type) {
        case "progress": self = .progress(try container.decodeIfPresent(String.self, forKey: .line) ?? "")
        case "report":
            self = .report(
                ReconcileReportBody(
                    reconcileID: try container.decodeIfPresent(String.self, forKey: .reconcileID) ?? "",
                    changes: try container.decodeIfPresent([String].self, forKey: .changes) ?? [],
                    outcomes: try container.decodeIfPresent([OutcomeLine].self, forKey: .outcomes) ?? [],
                    enclaves: try container.decodeIfPresent([EnclaveOutcomeLine].self, forKey: .enclaves) ?? [],
                    errors: try container.decodeIfPresent([String].self, forKey: .errors) ?? []))
        case "error": self = .error(try container.decodeIfPresent(String.self, forKey: .error) ?? "the reconcile failed")
        case let other: throw DecodingError.dataCorruptedError(forKey: .type, in: container, debugDescription: "unknown event type `\(other)`")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        switch self {
        case .progress(let line):
            try container.encode("progress", forKey: .type)
            try container.encode(line, forKey: .line)
        case .report(let report):
            try container.encode("report", forKey: .type)
            try container.encode(report.reconcileID, forKey: .reconcileID)
            try container.encode(report.changes, forKey: .changes)
            try container.encode(report.outcomes, forKey: .outcomes)
            try container.encode(report.enclaves, forKey: .enclaves)
            try container.encode(report.errors, forKey: .errors)
        case .error(let message):
            try container.encode("error", forKey: .type)
            try container.encode(message, forKey: .error)
        }
    }
}

/// `POST /destroy`: tear down enclaves (importers before what they import), or one partition
/// of one enclave. The engine orders the teardowns across all the enclaves named.
public struct DestroyRequest: Codable, Sendable, Equatable {
    public var enclaves: [String]
    public var partition: String?
    /// With `partition`: drop it from state without a teardown.
    public var forget: Bool?

    public init(enclaves: [String], partition: String? = nil, forget: Bool? = nil) {
        self.enclaves = enclaves
        self.partition = partition
        self.forget = forget
    }
}

/// `DELETE /enclaves/{e}/partitions/{p}?forget=true`: what was dropped and what is left.
public struct ForgetAnswer: Codable, Sendable, Equatable {
    public var forgotten: String
    /// Resource addresses in its (kept) Terraform state.
    public var resources: [String]
    public var identity: [String: String]
    public var workspace: String

    public init(forgotten: String, resources: [String], identity: [String: String], workspace: String) {
        self.forgotten = forgotten
        self.resources = resources
        self.identity = identity
        self.workspace = workspace
    }
}
