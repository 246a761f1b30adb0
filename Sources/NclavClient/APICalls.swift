import AsyncHTTPClient
import Foundation
import NclavAPI
import NclavCore

/// A decoded answer and the bytes it came from (for `--output json`, printed as the server
/// sent them).
public struct Fetched<Value: Sendable>: Sendable {
    public let value: Value
    public let raw: Data
}

/// The HTTP API as typed calls: every path comes from `APIPath`, every body from `NclavAPI`.
extension NclavAPIClient {
    // MARK: Reading

    public func status() async throws -> Fetched<ServerStatus> { try await fetch(APIPath.status) }
    public func enclaves() async throws -> Fetched<EnclaveListing> { try await fetch(APIPath.enclaves) }
    public func enclave(_ id: String) async throws -> Fetched<EnclaveDetail> { try await fetch(APIPath.enclave(id)) }
    public func graph(enclave: String? = nil) async throws -> Fetched<StateGraph> {
        try await fetch(enclave.map(APIPath.enclaveGraph) ?? APIPath.graph)
    }
    public func runs(_ key: StateKey) async throws -> Fetched<RunListing> { try await fetch(APIPath.runs(key)) }
    /// One run with its log; `id` nil for the newest.
    public func run(_ key: StateKey, id: String?) async throws -> Fetched<IacRun> {
        try await fetch(id.map { APIPath.run(key, $0) } ?? APIPath.latestRun(key))
    }
    public func logChunk(_ key: StateKey, run: String, offset: Int) async throws -> LogChunk {
        try await fetch(APIPath.runLog(key, run, offset: offset)).value
    }
    public func stateVersions(_ key: StateKey) async throws -> Fetched<StateVersionListing> { try await fetch(APIPath.stateVersions(key)) }
    public func orphans(enclave: String?) async throws -> Fetched<OrphanReport> { try await fetch(APIPath.orphans(enclave: enclave)) }

    /// The newest state (or one version) as terraform stored it; nil when there is none.
    public func state(_ key: StateKey, version: Int64? = nil) async throws -> Data? {
        let answer = try await send(.GET, version.map { APIPath.stateVersion(key, $0) } ?? APIPath.state(key))
        if answer.status == 204 { return nil }
        try Self.requireSuccess(answer)
        return answer.body
    }

    /// The holder's lock JSON; nil when the state is not locked.
    public func lockInfo(_ key: StateKey) async throws -> Data? {
        let answer = try await send(.GET, APIPath.stateLock(key))
        if answer.status == 204 { return nil }
        try Self.requireSuccess(answer)
        return answer.body
    }

    // MARK: Changing

    /// The plan of a tree (`body` is a `ReconcileRequest`).
    public func dryRun(_ body: Data) async throws -> Fetched<DryRunAnswer> {
        let answer = try await send(.POST, APIPath.dryRun, body: body, contentType: "application/json")
        return try decode(answer, APIPath.dryRun)
    }

    /// A saved plan being made: progress events while terraform plans, then the plan.
    public func plan(_ body: Data) -> AsyncThrowingStream<PlanEvent, Error> { events(APIPath.plans, body: body) }

    public func plans() async throws -> Fetched<PlanListing> { try await fetch(APIPath.plans) }

    public func savedPlan(_ id: String) async throws -> Fetched<PlanBody> {
        try decode(try await send(.GET, APIPath.plan(id)), APIPath.plan(id))
    }

    /// An apply: progress events while it runs, then the report (or an error event).
    public func apply(_ body: Data) -> AsyncThrowingStream<ApplyEvent, Error> { events(APIPath.reconcile, body: body) }

    /// A destroy of enclaves (ordered by the server) or of one partition.
    public func destroy(_ request: DestroyRequest) throws -> AsyncThrowingStream<ApplyEvent, Error> {
        events(APIPath.destroy, body: try Wire.encoder().encode(request))
    }

    public func drift(enclave: String?) throws -> AsyncThrowingStream<DriftEvent, Error> {
        events(APIPath.drift, body: try Wire.encoder().encode(DriftRequest(enclave: enclave)))
    }

    public func forget(_ key: StateKey) async throws -> ForgetAnswer {
        try decode(try await send(.DELETE, APIPath.forget(key)), APIPath.forget(key)).value
    }

    /// Stores `body` as the newest state; `force` skips the lineage and serial checks (admin).
    public func pushState(_ key: StateKey, body: Data, force: Bool) async throws -> HTTPAnswer {
        try await send(.POST, APIPath.state(key) + (force ? "?force=true" : ""), body: body, contentType: "application/json")
    }

    public func restoreState(_ key: StateKey, version: Int64) async throws -> HTTPAnswer {
        try await send(.POST, APIPath.stateRestore(key, version))
    }

    public func forceUnlock(_ key: StateKey) async throws {
        try Self.requireSuccess(try await send(.DELETE, APIPath.stateLock(key)))
    }

    // MARK: Plumbing

    func fetch<T: Decodable & Sendable>(_ path: String) async throws -> Fetched<T> {
        try decode(try await send(.GET, path), path)
    }

    func decode<T: Decodable & Sendable>(_ answer: HTTPAnswer, _ path: String) throws -> Fetched<T> {
        try Self.requireSuccess(answer)
        do { return Fetched(value: try Wire.decoder().decode(T.self, from: answer.body), raw: answer.body) } catch {
            throw ClientError.invalidResponse("\(path): \(error)")
        }
    }

    /// An NDJSON answer as typed events; a line that is not an event is a protocol error.
    func events<Event: Decodable & Sendable>(_ path: String, body: Data) -> AsyncThrowingStream<Event, Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    try await streamLines(.POST, path, body: body) { line in
                        guard !line.isEmpty else { return }
                        do { continuation.yield(try Wire.decoder().decode(Event.self, from: Data(line.utf8))) } catch {
                            throw ClientError.invalidResponse("\(path): a line is not an event: \(line.prefix(200))")
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
