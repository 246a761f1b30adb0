import Foundation
import NclavCore
import NclavStore

/// A store that passes everything to `base`, except that writing the record of the listed
/// partitions fails, the way a full disk or a lost database connection would.
struct FaultyStore: StateStore {
    let base: any StateStore
    let failingRecords: Set<StateKey>

    struct InjectedFailure: Error, CustomStringConvertible { var description: String { "disk I/O error (injected)" } }

    func putPartition(_ state: PartitionState) async throws {
        if let key = state.key, failingRecords.contains(key) { throw InjectedFailure() }
        try await base.putPartition(state)
    }

    func ping() async throws { try await base.ping() }
    func close() async throws { try await base.close() }
    func enclaves() async throws -> [EnclaveState] { try await base.enclaves() }
    func enclave(_ id: String) async throws -> EnclaveState? { try await base.enclave(id) }
    func putEnclave(_ state: EnclaveState) async throws { try await base.putEnclave(state) }
    func deleteEnclave(_ id: String) async throws { try await base.deleteEnclave(id) }
    func partitions(ofEnclave id: String) async throws -> [PartitionState] { try await base.partitions(ofEnclave: id) }
    func deletePartition(enclave: String, partition: String) async throws { try await base.deletePartition(enclave: enclave, partition: partition) }
    func appendEvent(_ event: AuditEvent) async throws -> AuditEvent { try await base.appendEvent(event) }
    func events(enclave: String?, limit: Int) async throws -> [AuditEvent] { try await base.events(enclave: enclave, limit: limit) }
    func createRun(_ run: IacRun) async throws { try await base.createRun(run) }
    func appendRunLog(_ runID: UUID, _ text: String) async throws { try await base.appendRunLog(runID, text) }
    func finishRun(_ runID: UUID, status: IacRun.Status, exitCode: Int32?, finishedAt: Date) async throws {
        try await base.finishRun(runID, status: status, exitCode: exitCode, finishedAt: finishedAt)
    }
    func setRunToolVersion(_ runID: UUID, _ version: String) async throws { try await base.setRunToolVersion(runID, version) }
    func run(_ runID: UUID) async throws -> IacRun? { try await base.run(runID) }
    func runs(enclave: String, partition: String, limit: Int) async throws -> [IacRun] {
        try await base.runs(enclave: enclave, partition: partition, limit: limit)
    }
    func runStatus(_ runID: UUID) async throws -> IacRun.Status? { try await base.runStatus(runID) }
    func latestState(_ key: StateKey) async throws -> (info: StateVersionInfo, body: Data)? { try await base.latestState(key) }
    func stateVersions(_ key: StateKey) async throws -> [StateVersionInfo] { try await base.stateVersions(key) }
    func stateVersion(_ key: StateKey, version: Int64) async throws -> (info: StateVersionInfo, body: Data)? {
        try await base.stateVersion(key, version: version)
    }
    func writeState(_ key: StateKey, _ write: StateWrite) async throws -> StateWriteOutcome { try await base.writeState(key, write) }
    func deleteState(_ key: StateKey) async throws -> StateDeleteOutcome { try await base.deleteState(key) }
    func lock(_ key: StateKey) async throws -> StateLock? { try await base.lock(key) }
    func acquireLock(_ key: StateKey, _ lock: StateLock) async throws -> LockOutcome { try await base.acquireLock(key, lock) }
    func releaseLock(_ key: StateKey, id: String?) async throws -> UnlockOutcome { try await base.releaseLock(key, id: id) }
    func releaseLocks(heldBy runID: UUID) async throws -> [StateKey] { try await base.releaseLocks(heldBy: runID) }
    func acquireReconcileLock(_ lock: ReconcileLock) async throws -> ReconcileLock? { try await base.acquireReconcileLock(lock) }
    func releaseReconcileLock(_ id: UUID) async throws { try await base.releaseReconcileLock(id) }
    func reconcileLock() async throws -> ReconcileLock? { try await base.reconcileLock() }
    func recoverAfterRestart(at time: Date) async throws -> RecoveryReport { try await base.recoverAfterRestart(at: time) }
}
