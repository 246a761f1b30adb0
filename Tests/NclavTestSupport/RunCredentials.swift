import Foundation
import NclavAuth
import NclavCore
import NclavSQLite
import NclavStore

extension ServerProcess {
    /// A run credential for `key`, for a run recorded as running in this server's SQLite
    /// store (a run credential works only while its run does). Returns the run's id too.
    public func runCredential(for key: StateKey, lifetime: TimeInterval = 600) async throws -> (credential: String, runID: UUID) {
        let runID = UUID()
        let store = try SQLiteStore(path: home.appendingPathComponent("state.db").path)
        try await store.createRun(IacRun(id: runID, enclaveID: key.enclave, partitionID: key.partition, operation: .update, tool: "terraform"))
        try await store.close()
        let credential = RunCredentialSigner(adminToken: token).mint(
            RunScope(key: key, runID: runID, expiresAt: Date(timeIntervalSinceNow: lifetime)))
        return (credential, runID)
    }

    /// Ends a run started by `runCredential(for:)`, as the reconciler does when terraform exits.
    public func finishRun(_ runID: UUID, status: IacRun.Status = .succeeded) async throws {
        let store = try SQLiteStore(path: home.appendingPathComponent("state.db").path)
        try await store.finishRun(runID, status: status, exitCode: 0, finishedAt: Date())
        try await store.close()
    }
}
