import Foundation
import NclavCore

/// A store that lives in memory only (`nclav serve --ephemeral`, tests). An actor, so every
/// method is one atomic step.
public actor MemoryStore: StateStore {
    private var isClosed = false
    private var enclaveStates: [String: EnclaveState] = [:]
    private var partitionStates: [String: [String: PartitionState]] = [:]
    private var eventLog: [AuditEvent] = []
    private var runsByID: [UUID: IacRun] = [:]
    private var stateVersionsByKey: [StateKey: [(info: StateVersionInfo, body: Data)]] = [:]
    private var locks: [StateKey: StateLock] = [:]
    private var currentReconcileLock: ReconcileLock?
    private let retainedVersions: Int

    /// - Parameter retainedVersions: how many state versions to keep per partition.
    public init(retainedVersions: Int = 100) {
        self.retainedVersions = max(1, retainedVersions)
    }

    private func open() throws {
        if isClosed { throw StoreError.closed }
    }

    public func ping() async throws { try open() }

    public func close() async throws { isClosed = true }

    public func enclaves() async throws -> [EnclaveState] {
        try open()
        return enclaveStates.values.sorted { $0.id < $1.id }
    }

    public func enclave(_ id: String) async throws -> EnclaveState? {
        try open()
        return enclaveStates[id]
    }

    public func putEnclave(_ state: EnclaveState) async throws {
        try open()
        enclaveStates[state.id] = state
    }

    public func deleteEnclave(_ id: String) async throws {
        try open()
        enclaveStates[id] = nil
        partitionStates[id] = nil
    }

    public func partitions(ofEnclave id: String) async throws -> [PartitionState] {
        try open()
        return (partitionStates[id] ?? [:]).values.sorted { $0.partitionID < $1.partitionID }
    }

    public func putPartition(_ state: PartitionState) async throws {
        try open()
        partitionStates[state.enclaveID, default: [:]][state.partitionID] = state
    }

    public func deletePartition(enclave: String, partition: String) async throws {
        try open()
        partitionStates[enclave]?[partition] = nil
    }

    public func appendEvent(_ event: AuditEvent) async throws -> AuditEvent {
        try open()
        var stored = event
        stored.sequence = (eventLog.last?.sequence ?? 0) + 1
        eventLog.append(stored)
        return stored
    }

    public func events(enclave: String?, limit: Int) async throws -> [AuditEvent] {
        try open()
        let matching = eventLog.reversed().filter { enclave == nil || $0.enclaveID == enclave }
        return Array(matching.prefix(max(0, limit)))
    }

    public func createRun(_ run: IacRun) async throws {
        try open()
        runsByID[run.id] = run
    }

    public func appendRunLog(_ runID: UUID, _ text: String) async throws {
        try open()
        guard runsByID[runID] != nil else { throw StoreError.unknownRun(runID) }
        runsByID[runID]!.log += text
    }

    public func finishRun(_ runID: UUID, status: IacRun.Status, exitCode: Int32?, finishedAt: Date) async throws {
        try open()
        guard var run = runsByID[runID] else { throw StoreError.unknownRun(runID) }
        run.status = status
        run.exitCode = exitCode
        run.finishedAt = finishedAt
        runsByID[runID] = run
    }

    public func setRunToolVersion(_ runID: UUID, _ version: String) async throws {
        try open()
        guard runsByID[runID] != nil else { throw StoreError.unknownRun(runID) }
        runsByID[runID]?.toolVersion = version
    }

    public func run(_ runID: UUID) async throws -> IacRun? {
        try open()
        return runsByID[runID]
    }

    public func runStatus(_ runID: UUID) async throws -> IacRun.Status? {
        try open()
        return runsByID[runID]?.status
    }

    public func runs(enclave: String, partition: String, limit: Int) async throws -> [IacRun] {
        try open()
        let matching = runsByID.values
            .filter { $0.enclaveID == enclave && $0.partitionID == partition }
            .sorted { ($0.startedAt, $0.id.uuidString) > ($1.startedAt, $1.id.uuidString) }
            .prefix(max(0, limit))
        return matching.map { run in
            var summary = run
            summary.log = ""
            return summary
        }
    }

    public func runningRuns() async throws -> [IacRun] {
        try open()
        return runsByID.values.filter { $0.status == .running }.map { run in
            var summary = run
            summary.log = ""
            return summary
        }
    }

    public func latestState(_ key: StateKey) async throws -> (info: StateVersionInfo, body: Data)? {
        try open()
        return stateVersionsByKey[key]?.last
    }

    public func stateVersions(_ key: StateKey) async throws -> [StateVersionInfo] {
        try open()
        return (stateVersionsByKey[key] ?? []).reversed().map(\.info)
    }

    public func stateVersion(_ key: StateKey, version: Int64) async throws -> (info: StateVersionInfo, body: Data)? {
        try open()
        return stateVersionsByKey[key]?.first { $0.info.version == version }
    }

    public func writeState(_ key: StateKey, _ write: StateWrite) async throws -> StateWriteOutcome {
        try open()
        let history = stateVersionsByKey[key] ?? []
        if let answer = StateRules.decide(write, latest: history.last?.info, lock: locks[key]) { return answer }
        let info = StateVersionInfo(
            version: (history.last?.info.version ?? 0) + 1, serial: write.serial, lineage: write.lineage,
            sha256: write.sha256, md5: write.md5, size: write.body.count, createdAt: write.time, runID: write.runID)
        var updated = history + [(info, write.body)]
        if updated.count > retainedVersions { updated.removeFirst(updated.count - retainedVersions) }
        stateVersionsByKey[key] = updated
        return .stored(info)
    }

    public func deleteState(_ key: StateKey) async throws -> StateDeleteOutcome {
        try open()
        if let lock = locks[key] { return .locked(lock) }
        let count = stateVersionsByKey[key]?.count ?? 0
        stateVersionsByKey[key] = nil
        return .deleted(versions: count)
    }

    public func lock(_ key: StateKey) async throws -> StateLock? {
        try open()
        return locks[key]
    }

    public func acquireLock(_ key: StateKey, _ lock: StateLock) async throws -> LockOutcome {
        try open()
        if let answer = StateRules.decideLock(lock, existing: locks[key]) { return answer }
        locks[key] = lock
        return .acquired
    }

    public func releaseLock(_ key: StateKey, id: String?) async throws -> UnlockOutcome {
        try open()
        if let answer = StateRules.decideUnlock(id: id, existing: locks[key]) { return answer }
        let released = locks.removeValue(forKey: key)!
        return .released(released)
    }

    public func releaseLocks(heldBy runID: UUID) async throws -> [StateKey] {
        try open()
        let keys = locks.filter { $0.value.runID == runID }.map(\.key).sorted()
        for key in keys { locks[key] = nil }
        return keys
    }

    public func acquireReconcileLock(_ lock: ReconcileLock) async throws -> ReconcileLock? {
        try open()
        if let current = currentReconcileLock { return current }
        currentReconcileLock = lock
        return nil
    }

    public func releaseReconcileLock(_ id: UUID) async throws {
        try open()
        if currentReconcileLock?.id == id { currentReconcileLock = nil }
    }

    public func reconcileLock() async throws -> ReconcileLock? {
        try open()
        return currentReconcileLock
    }

    public func recoverAfterRestart(at time: Date) async throws -> RecoveryReport {
        try open()
        var report = RecoveryReport()
        for (id, run) in runsByID where run.status == .running {
            runsByID[id]!.status = .interrupted
            runsByID[id]!.finishedAt = time
            report.interruptedRuns.append(id)
        }
        let interrupted = Set(report.interruptedRuns)
        for (key, lock) in locks where lock.runID.map(interrupted.contains) == true {
            locks[key] = nil
            report.releasedLocks.append(key)
        }
        report.interruptedRuns.sort { $0.uuidString < $1.uuidString }
        report.releasedLocks.sort()
        report.releasedReconcileLock = currentReconcileLock
        currentReconcileLock = nil
        return report
    }
}
