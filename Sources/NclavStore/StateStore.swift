import Foundation
import NclavCore

/// Everything nclav keeps, behind protocols so the server, the reconciler and the Terraform
/// state backend never know which database they use: `TerraformStateStore` (state versions and
/// locks, what the backend serves) and `OrchestrationStore` (enclaves, partitions, runs and
/// their logs, the audit log, the reconcile lock, recovery). A store is both: `StateStore`.
///
/// Every implementation must pass `StoreContractTests` (the same suite runs against each).
/// Conditional writes (state writes under a lock, lock acquisition, the reconcile lock) are
/// atomic *inside* the store: a check and the write it guards happen in one transaction, so
/// two servers or two tasks can never both win.
public protocol StateStore: TerraformStateStore, OrchestrationStore {}

/// Terraform states and their locks.
public protocol TerraformStateStore: Sendable {
    /// The newest version's metadata and body.
    func latestState(_ key: StateKey) async throws -> (info: StateVersionInfo, body: Data)?
    /// Newest first.
    func stateVersions(_ key: StateKey) async throws -> [StateVersionInfo]
    func stateVersion(_ key: StateKey, version: Int64) async throws -> (info: StateVersionInfo, body: Data)?
    /// Stores a new version if the write's conditions hold (see `StateWrite`).
    func writeState(_ key: StateKey, _ write: StateWrite) async throws -> StateWriteOutcome
    /// Removes every version of the state, unless it is locked.
    func deleteState(_ key: StateKey) async throws -> StateDeleteOutcome

    func lock(_ key: StateKey) async throws -> StateLock?
    func acquireLock(_ key: StateKey, _ lock: StateLock) async throws -> LockOutcome
    /// `id == nil` force-unlocks whatever lock is held.
    func releaseLock(_ key: StateKey, id: String?) async throws -> UnlockOutcome
    /// Frees every lock held by `runID` (a run that ended without unlocking); returns their keys.
    func releaseLocks(heldBy runID: UUID) async throws -> [StateKey]

    /// See the default implementation below.
    func stageStateBody(expectedSize: Int) throws -> (any StagedStateBody)?
    /// The newest version's body as an open file when the store keeps it in one (so the
    /// server can `sendfile` it), else its bytes. The default returns the bytes.
    func latestStateBody(_ key: StateKey) async throws -> (info: StateVersionInfo, body: StateBody)?
}

/// What the engine records: enclaves and partitions, runs and their logs, the audit log, the
/// reconcile lock, and recovery after a crash.
public protocol OrchestrationStore: Sendable {
    /// Succeeds when the store can serve reads and writes (used by `/ready`).
    func ping() async throws
    /// Flushes and releases the database. Further calls fail with `StoreError.closed`.
    func close() async throws

    // MARK: Enclaves and partitions
    func enclaves() async throws -> [EnclaveState]
    func enclave(_ id: String) async throws -> EnclaveState?
    func putEnclave(_ state: EnclaveState) async throws
    /// Removes the enclave and all its partition states in one transaction.
    func deleteEnclave(_ id: String) async throws
    func partitions(ofEnclave id: String) async throws -> [PartitionState]
    func putPartition(_ state: PartitionState) async throws
    func deletePartition(enclave: String, partition: String) async throws

    // MARK: Audit log
    /// Stores the event and returns it with its sequence number.
    @discardableResult
    func appendEvent(_ event: AuditEvent) async throws -> AuditEvent
    /// Newest first.
    func events(enclave: String?, limit: Int) async throws -> [AuditEvent]

    // MARK: IaC runs
    func createRun(_ run: IacRun) async throws
    /// Appends output to a run's log while it runs; readers see it immediately.
    func appendRunLog(_ runID: UUID, _ text: String) async throws
    func finishRun(_ runID: UUID, status: IacRun.Status, exitCode: Int32?, finishedAt: Date) async throws
    /// Records the tool's version when only the worker that ran it knew it (an agent's terraform).
    func setRunToolVersion(_ runID: UUID, _ version: String) async throws
    /// The run with its whole log.
    func run(_ runID: UUID) async throws -> IacRun?
    /// Newest first, logs left empty (fetch one run for its log).
    func runs(enclave: String, partition: String, limit: Int) async throws -> [IacRun]
    /// Every run in progress, logs left empty (the graph marks what is running from it).
    func runningRuns() async throws -> [IacRun]
    /// A run's status alone (no log): the backend asks on every call made with a run's
    /// credential, which stops working when the run ends.
    func runStatus(_ runID: UUID) async throws -> IacRun.Status?

    // MARK: Reconcile lock
    /// Takes the store-wide reconcile lock; returns the current holder when someone else has it.
    func acquireReconcileLock(_ lock: ReconcileLock) async throws -> ReconcileLock?
    func releaseReconcileLock(_ id: UUID) async throws
    func reconcileLock() async throws -> ReconcileLock?

    // MARK: Recovery
    /// Called once at server start: runs left `running` by a dead process become
    /// `interrupted`, and the state locks and reconcile lock they held are released.
    func recoverAfterRestart(at time: Date) async throws -> RecoveryReport
}

/// A state body as bytes, or as an open file descriptor the caller must close.
public enum StateBody: Sendable {
    case data(Data)
    case file(descriptor: Int32, size: Int)
}

extension TerraformStateStore {
    /// Where the server writes a large state body while it arrives, when the store keeps
    /// bodies outside its database; nil (the default) means the body is passed in memory.
    public func stageStateBody(expectedSize: Int) throws -> (any StagedStateBody)? { nil }

    public func latestStateBody(_ key: StateKey) async throws -> (info: StateVersionInfo, body: StateBody)? {
        try await latestState(key).map { ($0.info, .data($0.body)) }
    }
}

/// A state body the store writes somewhere of its own while it is still arriving (the SQLite
/// store: a file beside the database), so that storing it later only records where it is.
/// One task appends; whoever stores it claims it; the request handler discards it at the end
/// unless it was claimed, so a refused or failed upload leaves nothing behind.
public protocol StagedStateBody: AnyObject, Sendable {
    /// Appends bytes; a write error is kept and reported by `finish`.
    func append(_ bytes: UnsafeRawBufferPointer)
    /// Ends the upload and returns the whole body.
    func finish() throws -> Data
    /// Removes what was staged unless a store claimed it.
    func discardUnlessClaimed()
}

/// One state write as the backend received it, with the checks the store must apply.
public struct StateWrite: Sendable {
    public var body: Data
    public var serial: Int64
    public var lineage: String
    public var sha256: String
    /// Base64 MD5 of the body, served as `Content-MD5` without hashing on every read.
    public var md5: String
    /// The `?ID=` terraform sent; must match the lock holder while the state is locked.
    public var lockID: String?
    /// Skip the lineage and serial checks (`?force=true`).
    public var force: Bool
    public var runID: UUID?
    public var time: Date
    /// The body's file when it was staged by this store (`stageStateBody`); `body` holds
    /// the same bytes.
    public var staged: (any StagedStateBody)?

    public init(
        body: Data, serial: Int64, lineage: String, sha256: String, md5: String = "", lockID: String?, force: Bool = false,
        runID: UUID? = nil, time: Date = Date(), staged: (any StagedStateBody)? = nil
    ) {
        self.body = body
        self.staged = staged
        self.serial = serial
        self.lineage = lineage
        self.sha256 = sha256
        self.md5 = md5
        self.lockID = lockID
        self.force = force
        self.runID = runID
        self.time = time
    }
}

public enum StateWriteOutcome: Sendable, Equatable {
    /// Stored as a new version.
    case stored(StateVersionInfo)
    /// Identical to the newest version; nothing new stored.
    case unchanged(StateVersionInfo)
    /// Locked by someone whose lock id the write did not carry.
    case locked(StateLock)
    /// Lineage differs from the newest version's.
    case lineageConflict(current: StateVersionInfo)
    /// Serial lower than the newest version's, or equal with different content.
    case serialConflict(current: StateVersionInfo)
}

public enum StateDeleteOutcome: Sendable, Equatable {
    case deleted(versions: Int)
    case locked(StateLock)
}

public enum LockOutcome: Sendable, Equatable {
    case acquired
    /// The same lock id asked again: a retry, answered as success.
    case alreadyHeld
    case heldByOther(StateLock)
}

public enum UnlockOutcome: Sendable, Equatable {
    case released(StateLock)
    case notLocked
    case heldByOther(StateLock)
}

public struct RecoveryReport: Sendable, Equatable {
    public var interruptedRuns: [UUID]
    public var releasedLocks: [StateKey]
    public var releasedReconcileLock: ReconcileLock?

    public init(interruptedRuns: [UUID] = [], releasedLocks: [StateKey] = [], releasedReconcileLock: ReconcileLock? = nil) {
        self.interruptedRuns = interruptedRuns
        self.releasedLocks = releasedLocks
        self.releasedReconcileLock = releasedReconcileLock
    }
}

/// Store failures, each saying what to do about it.
public enum StoreError: Error, Sendable, CustomStringConvertible {
    /// The store was closed; the server is shutting down.
    case closed
    /// A run id that the store does not know.
    case unknownRun(UUID)
    /// The database file could not be opened (path, permissions, corruption).
    case cannotOpen(path: String, reason: String)
    /// The database failed a read or write; retry, and check disk space and permissions.
    case database(String)
    /// Stored data could not be decoded: written by a newer nclav, or damaged.
    case corrupt(String)

    public var description: String {
        switch self {
        case .closed: return "the state store is closed"
        case .unknownRun(let id): return "no IaC run with id \(id)"
        case .cannotOpen(let path, let reason): return "cannot open the state store at \(path): \(reason)"
        case .database(let message): return "state store error: \(message)"
        case .corrupt(let message): return "stored data could not be read: \(message)"
        }
    }
}

/// The queue of runs executed by agents (`nclav agent`), and the agents' tokens. Claims are
/// exclusive across replicas: one job, one agent, one lease at a time. A store with a clock of
/// its own (PostgreSQL) records claim and end times by it rather than by the caller's `time`, so
/// the attempts of a run are ordered as they happened across machines.
public protocol JobStore: Sendable {
    func enqueueJob(_ job: AgentJob) async throws
    /// The oldest queued job of one of `pools` (nil in the list: jobs of no pool), now claimed
    /// by `agent` until `leaseExpiresAt`; nil when none is waiting.
    func claimJob(agent: String, pools: [String?], leaseExpiresAt: Date, at time: Date) async throws -> AgentJob?
    /// Extends a lease the agent still holds; false when it no longer does (lost or finished).
    func renewLease(_ id: UUID, agent: String, until: Date) async throws -> Bool
    /// Records the outcome of a job the agent still holds; false when it no longer does. When
    /// the job's run has already ended (taken over after its replica died), the run's state
    /// locks go with it, in the same transaction.
    func finishJob(_ id: UUID, agent: String, outcome: Data, at time: Date) async throws -> Bool
    /// Marks a claimed job whose lease ran out as interrupted; false when it is not (any more).
    func interruptExpiredJob(_ id: UUID, at time: Date) async throws -> Bool
    /// Cancels a queued job, or asks the agent holding it to stop.
    func cancelJob(_ id: UUID, at time: Date) async throws
    func job(_ id: UUID) async throws -> AgentJob?
    /// Jobs of one partition, oldest first, without payloads.
    func jobs(enclave: String, partition: String) async throws -> [AgentJob]
    /// How many jobs wait, and since when the oldest has.
    func queueDepth() async throws -> (queued: Int, oldest: Date?)
    /// Taken before a claim that may find nothing, for `waitForJobs(after:upTo:)`.
    func jobTicket() async -> UInt64
    /// Returns when a job may have been queued (by any replica) since `ticket` was taken, when
    /// the waiting task is cancelled, or after `timeout`: what a claimer waits on between claims
    /// instead of asking the database over and over.
    func waitForJobs(after ticket: UInt64, upTo timeout: Duration) async
    /// Deletes jobs that ended before `time` (their runs and logs stay); how many went.
    func purgeEndedJobs(endedBefore time: Date) async throws -> Int

    func createAgentToken(_ token: AgentToken) async throws
    /// Creates the token unless one with its id exists (revoked or not); true when created.
    func ensureAgentToken(_ token: AgentToken) async throws -> Bool
    func agentToken(_ id: String) async throws -> AgentToken?
    func agentTokens() async throws -> [AgentToken]
    func revokeAgentToken(_ id: String, at time: Date) async throws -> Bool
}

extension OrchestrationStore {
    /// For stores without a query of their own: each partition's newest run, when it runs.
    public func runningRuns() async throws -> [IacRun] {
        var running: [IacRun] = []
        for enclave in try await enclaves() {
            for partition in try await partitions(ofEnclave: enclave.id) {
                if let latest = try await runs(enclave: enclave.id, partition: partition.partitionID, limit: 1).first, latest.status == .running {
                    running.append(latest)
                }
            }
        }
        return running
    }
}
