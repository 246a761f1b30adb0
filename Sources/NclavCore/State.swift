import Foundation

/// Where an enclave or partition stands after the last reconcile touched it.
public enum ProvisionStatus: String, Codable, Sendable, CaseIterable {
    case pending, provisioning, active, failed, tearingDown = "tearing_down"
}

/// What nclav last applied for an enclave, and what its driver reported back.
public struct EnclaveState: Codable, Sendable, Hashable {
    public var id: String
    /// The enclave as last applied (partitions are kept in `PartitionState`).
    public var desired: Enclave
    /// The cloud the enclave was provisioned in, kept so teardown uses the same driver
    /// after the YAML is gone.
    public var resolvedCloud: CloudTarget
    public var status: ProvisionStatus
    /// Driver-provided values (project id, account id, …) given to partitions as tokens.
    public var context: [String: String]
    public var fingerprint: String?
    public var lastError: String?
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, desired: Enclave, resolvedCloud: CloudTarget, status: ProvisionStatus = .pending,
        context: [String: String] = [:], fingerprint: String? = nil, lastError: String? = nil,
        createdAt: Date = Date(), updatedAt: Date = Date()
    ) {
        self.id = id
        self.desired = desired
        self.resolvedCloud = resolvedCloud
        self.status = status
        self.context = context
        self.fingerprint = fingerprint
        self.lastError = lastError
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, desired, resolvedCloud = "resolved_cloud", status, context, fingerprint
        case lastError = "last_error", createdAt = "created_at", updatedAt = "updated_at"
    }
}

/// What nclav last applied for one partition, and the outputs terraform produced.
/// The last drift check of a partition: `terraform plan` against its real infrastructure.
public struct DriftResult: Codable, Sendable, Hashable {
    public enum Status: String, Codable, Sendable, CaseIterable {
        case inSync = "in-sync", drifted, error
    }

    public var status: Status
    public var checkedAt: Date
    /// "Plan: 1 to add, 0 to change, 0 to destroy." when drifted; the error when not checked.
    public var summary: String
    public var runID: UUID?

    public init(status: Status, checkedAt: Date = Date(), summary: String, runID: UUID? = nil) {
        self.status = status
        self.checkedAt = checkedAt
        self.summary = summary
        self.runID = runID
    }

    enum CodingKeys: String, CodingKey { case status, checkedAt = "checked_at", summary, runID = "run_id" }
}

public struct PartitionState: Codable, Sendable, Hashable {
    public var enclaveID: String
    public var partitionID: String
    public var desired: Partition
    public var status: ProvisionStatus
    /// Declared outputs read from the partition's state, stringified for templates.
    public var outputs: [String: String]
    public var fingerprint: String?
    public var lastRunID: UUID?
    public var lastError: String?
    public var createdAt: Date
    public var updatedAt: Date
    /// The last drift check; cleared when the partition is applied again.
    public var drift: DriftResult?
    /// The partition's own cloud identity, from its driver (empty for local); removed by the
    /// driver after terraform's destroy.
    public var identity: [String: String]?
    /// When its last successful apply finished; nil until it has been created once.
    public var appliedAt: Date?

    /// True once an apply of it has succeeded (records from before `applied_at` was kept count
    /// when they are active or hold outputs).
    public var wasCreated: Bool { appliedAt != nil || status == .active || !outputs.isEmpty }

    public init(
        enclaveID: String, partitionID: String, desired: Partition, status: ProvisionStatus = .pending,
        outputs: [String: String] = [:], fingerprint: String? = nil, lastRunID: UUID? = nil,
        lastError: String? = nil, createdAt: Date = Date(), updatedAt: Date = Date(), drift: DriftResult? = nil
    ) {
        self.enclaveID = enclaveID
        self.partitionID = partitionID
        self.desired = desired
        self.status = status
        self.outputs = outputs
        self.fingerprint = fingerprint
        self.lastRunID = lastRunID
        self.lastError = lastError
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.drift = drift
    }

    enum CodingKeys: String, CodingKey {
        case enclaveID = "enclave_id", partitionID = "partition_id", desired, status, outputs, fingerprint
        case lastRunID = "last_run_id", lastError = "last_error", createdAt = "created_at", updatedAt = "updated_at", drift, identity
        case appliedAt = "applied_at"
    }
}

/// One line of the audit log.
public struct AuditEvent: Codable, Sendable, Hashable {
    /// Assigned by the store, increasing.
    public var sequence: Int64
    public var time: Date
    public var kind: String
    public var enclaveID: String?
    public var partitionID: String?
    public var reconcileID: UUID?
    public var message: String

    public init(
        sequence: Int64 = 0, time: Date = Date(), kind: String, enclaveID: String? = nil,
        partitionID: String? = nil, reconcileID: UUID? = nil, message: String
    ) {
        self.sequence = sequence
        self.time = time
        self.kind = kind
        self.enclaveID = enclaveID
        self.partitionID = partitionID
        self.reconcileID = reconcileID
        self.message = message
    }

    enum CodingKeys: String, CodingKey {
        case sequence, time, kind, enclaveID = "enclave_id", partitionID = "partition_id", reconcileID = "reconcile_id", message
    }
}

/// One Terraform/OpenTofu operation on one partition.
public struct IacRun: Codable, Sendable, Hashable {
    public enum Operation: String, Codable, Sendable, CaseIterable { case provision, update, teardown, plan }
    public enum Status: String, Codable, Sendable, CaseIterable { case running, succeeded, failed, cancelled, interrupted }

    public var id: UUID
    public var enclaveID: String
    public var partitionID: String
    public var operation: Operation
    public var status: Status
    public var exitCode: Int32?
    public var startedAt: Date
    public var finishedAt: Date?
    public var tool: String
    public var toolVersion: String?
    public var reconcileID: UUID?
    /// Combined output; stores fill it when a run is read whole.
    public var log: String

    public init(
        id: UUID = UUID(), enclaveID: String, partitionID: String, operation: Operation, status: Status = .running,
        exitCode: Int32? = nil, startedAt: Date = Date(), finishedAt: Date? = nil, tool: String,
        toolVersion: String? = nil, reconcileID: UUID? = nil, log: String = ""
    ) {
        self.id = id
        self.enclaveID = enclaveID
        self.partitionID = partitionID
        self.operation = operation
        self.status = status
        self.exitCode = exitCode
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.tool = tool
        self.toolVersion = toolVersion
        self.reconcileID = reconcileID
        self.log = log
    }

    enum CodingKeys: String, CodingKey {
        case id, enclaveID = "enclave_id", partitionID = "partition_id", operation, status, exitCode = "exit_code"
        case startedAt = "started_at", finishedAt = "finished_at", tool, toolVersion = "tool_version"
        case reconcileID = "reconcile_id", log
    }
}

/// The address of one partition's Terraform state. Both parts are validated ids, so a key
/// can be used in a file path or URL without escaping.
public struct StateKey: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public let enclave: String
    public let partition: String

    public struct Invalid: Error, Sendable, Equatable, CustomStringConvertible {
        public let value: String
        public let problem: Identifier.Problem
        public var description: String { "`\(value)` is not a valid id: \(problem)" }
    }

    public init(enclave: String, partition: String) throws(Invalid) {
        if let problem = Identifier.problem(with: enclave) { throw Invalid(value: enclave, problem: problem) }
        if let problem = Identifier.problem(with: partition) { throw Invalid(value: partition, problem: problem) }
        self.enclave = enclave
        self.partition = partition
    }

    public var description: String { "\(enclave)/\(partition)" }

    public static func < (a: StateKey, b: StateKey) -> Bool { (a.enclave, a.partition) < (b.enclave, b.partition) }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let enclave = try container.decode(String.self, forKey: .enclave)
        let partition = try container.decode(String.self, forKey: .partition)
        do { try self.init(enclave: enclave, partition: partition) } catch {
            throw DecodingError.dataCorruptedError(forKey: .enclave, in: container, debugDescription: error.description)
        }
    }

    enum CodingKeys: String, CodingKey { case enclave, partition }
}

/// A Terraform state lock as terraform sent it, plus who holds it.
public struct StateLock: Codable, Sendable, Hashable {
    /// Terraform's lock id (`ID` in the lock info JSON).
    public var id: String
    /// The lock info JSON exactly as terraform sent it; returned to anyone who conflicts.
    public var info: Data
    /// The nclav run holding the lock, when the holder authenticated as a run.
    public var runID: UUID?
    public var createdAt: Date

    public init(id: String, info: Data, runID: UUID? = nil, createdAt: Date = Date()) {
        self.id = id
        self.info = info
        self.runID = runID
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey { case id, info, runID = "run_id", createdAt = "created_at" }
}

/// Metadata of one stored Terraform state version.
public struct StateVersionInfo: Codable, Sendable, Hashable {
    /// Assigned by the store: 1, 2, 3… per key. Terraform's own serial is `serial`.
    public var version: Int64
    public var serial: Int64
    public var lineage: String
    public var sha256: String
    /// Base64 MD5 (the `Content-MD5` form).
    public var md5: String
    public var size: Int
    public var createdAt: Date
    public var runID: UUID?

    public init(
        version: Int64 = 0, serial: Int64, lineage: String, sha256: String, md5: String = "", size: Int,
        createdAt: Date = Date(), runID: UUID? = nil
    ) {
        self.version = version
        self.serial = serial
        self.lineage = lineage
        self.sha256 = sha256
        self.md5 = md5
        self.size = size
        self.createdAt = createdAt
        self.runID = runID
    }

    enum CodingKeys: String, CodingKey {
        case version, serial, lineage, sha256, md5, size, createdAt = "created_at", runID = "run_id"
    }
}

/// The whole-store lock a reconcile holds while it runs.
public struct ReconcileLock: Codable, Sendable, Hashable {
    public var id: UUID
    /// Host and process that holds it, for the 409 message.
    public var holder: String
    public var startedAt: Date

    public init(id: UUID = UUID(), holder: String, startedAt: Date = Date()) {
        self.id = id
        self.holder = holder
        self.startedAt = startedAt
    }

    enum CodingKeys: String, CodingKey { case id, holder, startedAt = "started_at" }
}

/// What `GET /status` answers; the server encodes it and the CLI decodes the same type.
public struct ServerStatus: Codable, Sendable, Equatable {
    public var version: String
    public var enclaveCount: Int
    public var defaultCloud: String
    public var activeDrivers: [String]
    public var store: String
    public var reconcileInProgress: ReconcileLock?
    /// Partitions by their last drift check (`in-sync`, `drifted`, `error`), and when the
    /// newest check ran; empty when none ran yet.
    public var drift: [String: Int] = [:]
    public var driftCheckedAt: Date? = nil
    /// Runs waiting for a worker in the job queue (PostgreSQL store only).
    public var jobsQueued: Int? = nil
    public var oldestJobQueuedAt: Date? = nil

    public init(version: String, enclaveCount: Int, defaultCloud: String, activeDrivers: [String], store: String, reconcileInProgress: ReconcileLock?)
    {
        self.version = version
        self.enclaveCount = enclaveCount
        self.defaultCloud = defaultCloud
        self.activeDrivers = activeDrivers
        self.store = store
        self.reconcileInProgress = reconcileInProgress
    }

    enum CodingKeys: String, CodingKey {
        case version, enclaveCount = "enclave_count", defaultCloud = "default_cloud", activeDrivers = "active_drivers"
        case store, reconcileInProgress = "reconcile_in_progress", drift, driftCheckedAt = "drift_checked_at"
        case jobsQueued = "jobs_queued", oldestJobQueuedAt = "oldest_job_queued_at"
    }
}

extension PartitionState {
    /// Its state address; nil only for a record whose ids were never validated.
    public var key: StateKey? { try? StateKey(enclave: enclaveID, partition: partitionID) }
}

/// A resource tagged as nclav's whose partition nclav no longer knows.
public struct Orphan: Codable, Sendable, Hashable {
    public var enclaveID: String
    public var cloud: String
    public var resource: String
    public var partition: String?
    public var tags: [String: String]

    public init(enclaveID: String, cloud: String, resource: String, partition: String?, tags: [String: String]) {
        self.enclaveID = enclaveID
        self.cloud = cloud
        self.resource = resource
        self.partition = partition
        self.tags = tags
    }

    enum CodingKeys: String, CodingKey { case enclaveID = "enclave_id", cloud, resource, partition, tags }
}
