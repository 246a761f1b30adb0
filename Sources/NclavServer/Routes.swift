import Foundation
import HTTPTypes
import Hummingbird
import NclavAPI
import NclavAuth
import NclavCore
import NclavStore
import Orchestrator
import TFBackend

/// The HTTP API. Handlers are thin: parse and validate the request, call the store or the
/// state backend, encode the answer.
struct Routes: Sendable {
    let store: any StateStore
    let backend: StateBackend
    let configuration: ServerConfiguration
    let storeDescription: String

    func register(on router: Router<NclavRequestContext>) {
        router.get(RouterPath(APIPath.health)) { _, _ in Self.json(["status": "ok"]) }
        router.get(RouterPath(APIPath.ready)) { _, _ in try await ready() }
        router.get(RouterPath(APIPath.status)) { _, _ in try await status() }
        router.get(RouterPath(APIPath.enclaves)) { _, _ in try await enclaves() }
        router.get(RouterPath(APIPath.Template.enclave)) { _, context in try await enclave(context) }
        router.get(RouterPath(APIPath.events)) { request, _ in try await events(request) }
        router.get(RouterPath(APIPath.graph)) { _, _ in Self.json(try await graph()) }
        router.get(RouterPath(APIPath.Template.enclaveGraph)) { _, context in
            let enclaveID = try Self.id(context, "enclave")
            guard try await store.enclave(enclaveID) != nil else { throw APIError(.notFound, "no enclave `\(enclaveID)` in state") }
            return Self.json(try await graph().filtered(to: enclaveID))
        }
        router.get(RouterPath(APIPath.Template.runs)) { request, context in try await runs(request, context) }
        router.get(RouterPath(APIPath.Template.latestRun)) { _, context in try await latestRun(context) }
        router.get(RouterPath(APIPath.Template.run)) { _, context in try await run(context) }

        for route in StateRoutes.table {
            let path = APIPath.Template.state + route.suffix.replacingOccurrences(of: "{version}", with: ":version")
            router.on(RouterPath(path), method: HTTPRequest.Method(route.method)!) { request, context in
                try await state(route.operation, request, context)
            }
        }
    }

    /// The Terraform state backend's requests (the routes are `StateRoutes.table`).
    func state(_ operation: StateRoutes.Operation, _ request: Request, _ context: NclavRequestContext) async throws -> Response {
        let key = try key(context)
        switch operation {
        case .read: return try await Response(backend.get(key, as: try principal(context)))
        case .write: return try await putState(request, context)
        case .delete: return try await Response(backend.delete(key, as: try principal(context)))
        case .lock: return try await Response(backend.lock(key, body: try await body(request), as: try principal(context)))
        case .unlock: return try await Response(backend.unlock(key, body: try await body(request), as: try principal(context)))
        case .lockInfo: return try await Response(backend.lockInfo(key, as: try principal(context)))
        case .versions: return try await Response(backend.versions(key, as: try principal(context)))
        case .version:
            guard let version = context.parameters.get("version", as: Int64.self), version > 0 else {
                throw APIError(
                    .badRequest, "version must be a positive integer", details: ["list versions at /terraform/state/<enclave>/<partition>/versions"])
            }
            return try await Response(backend.version(key, version: version, as: try principal(context)))
        case .restore:
            guard let version = context.parameters.get("version", as: Int64.self), version > 0 else {
                throw APIError(.badRequest, "version must be a positive integer")
            }
            return try await Response(backend.rollback(key, to: version, as: try principal(context)))
        }
    }

    // MARK: Helpers

    static func json<T: Encodable>(_ value: T, status: Int = 200) -> Response {
        Response(BackendResponse.json(status, value))
    }

    func principal(_ context: NclavRequestContext) throws -> Principal {
        guard let principal = context.principal else { throw APIError(.unauthorized, "missing or invalid token") }
        return principal
    }

    /// Path ids are checked before anything uses them: they name files and rows.
    /// A path parameter that must be a UUID (a plan, a reconcile).
    static func uuid(_ context: NclavRequestContext, _ name: String) throws -> UUID {
        let text = context.parameters.get(name) ?? ""
        guard let id = UUID(uuidString: text) else { throw APIError(.badRequest, "`\(text.prefix(64))` is not a \(name) id (a UUID)") }
        return id
    }

    static func id(_ context: NclavRequestContext, _ name: String) throws -> String {
        let value = context.parameters.get(name) ?? ""
        if let problem = Identifier.problem(with: value) {
            throw APIError(.badRequest, "`\(value)` is not a valid \(name) id: \(problem)")
        }
        return value
    }

    func key(_ context: NclavRequestContext) throws -> StateKey {
        do { return try StateKey(enclave: context.parameters.get("enclave") ?? "", partition: context.parameters.get("partition") ?? "") } catch {
            throw APIError(.badRequest, "invalid state address: \(error)")
        }
    }

    /// The 413 for a body over `--max-state-size`.
    var tooLargeError: APIError {
        APIError(
            .contentTooLarge, "request body is larger than the \(configuration.maxStateBytes)-byte limit",
            details: ["raise it with `nclav serve --max-state-size`"])
    }

    /// Reads a request body up to the configured cap, refusing early when the declared
    /// length is already too large.
    func body(_ request: Request) async throws -> Data {
        let limit = configuration.maxStateBytes
        let tooLarge = tooLargeError
        let declared = request.headers.declaredLength
        if let declared, declared > limit { throw tooLarge }
        // Straight into one Data, sized from Content-Length when known: one copy per byte.
        var collected = Data()
        if let declared { collected.reserveCapacity(declared) }
        for try await chunk in request.body {
            if collected.count + chunk.readableBytes > limit { throw tooLarge }
            chunk.withUnsafeReadableBytes { collected.append(contentsOf: $0) }
        }
        return collected
    }

    // MARK: Handlers

    func graph() async throws -> StateGraph {
        let enclaves = try await store.enclaves()
        var partitions: [PartitionState] = []
        for enclave in enclaves { partitions += try await store.partitions(ofEnclave: enclave.id) }
        let graph = StateGraph(enclaves: enclaves, partitions: partitions)
        // Runs happen only under the reconcile lock: without it nothing runs, and nothing is looked up.
        guard try await store.reconcileLock() != nil else { return graph }
        let running = try await store.runningRuns().map { ("\($0.enclaveID)/\($0.partitionID)", $0.operation.rawValue) }
        return graph.marking(running: Dictionary(running) { newer, _ in newer })
    }

    func ready() async throws -> Response {
        do {
            try await store.ping()
            return Self.json(["status": "ready"])
        } catch {
            throw APIError(.serviceUnavailable, "the state store is not reachable")
        }
    }

    func status() async throws -> Response {
        let enclaves = try await store.enclaves()
        var status = ServerStatus(
            version: NclavServer.version, enclaveCount: enclaves.count,
            defaultCloud: configuration.defaultCloud.rawValue, activeDrivers: configuration.activeClouds.map(\.rawValue),
            store: storeDescription, reconcileInProgress: try await store.reconcileLock())
        for enclave in enclaves {
            for partition in try await store.partitions(ofEnclave: enclave.id) {
                guard let drift = partition.drift else { continue }
                status.drift[drift.status.rawValue, default: 0] += 1
                status.driftCheckedAt = max(status.driftCheckedAt ?? drift.checkedAt, drift.checkedAt)
            }
        }
        if let jobs = store as? any JobStore {
            let depth = try await jobs.queueDepth()
            status.jobsQueued = depth.queued
            status.oldestJobQueuedAt = depth.oldest
        }
        return Self.json(status)
    }

    func enclaves() async throws -> Response {
        var details: [EnclaveDetail] = []
        for enclave in try await store.enclaves() {
            details.append(EnclaveDetail(enclave: enclave, partitions: try await store.partitions(ofEnclave: enclave.id)))
        }
        return Self.json(EnclaveListing(enclaves: details))
    }

    func enclave(_ context: NclavRequestContext) async throws -> Response {
        let enclaveID = try Self.id(context, "enclave")
        guard let enclave = try await store.enclave(enclaveID) else {
            throw APIError(.notFound, "no enclave `\(enclaveID)` in state", details: ["`nclav apply` creates enclaves; GET /enclaves lists them"])
        }
        return Self.json(EnclaveDetail(enclave: enclave, partitions: try await store.partitions(ofEnclave: enclaveID)))
    }

    func limit(_ request: Request, default fallback: Int, maximum: Int) throws -> Int {
        guard let text = request.uri.queryParameters.get("limit") else { return fallback }
        guard let value = Int(text), (1...maximum).contains(value) else {
            throw APIError(.badRequest, "`limit` must be a whole number from 1 to \(maximum)")
        }
        return value
    }

    func events(_ request: Request) async throws -> Response {
        let enclave = request.uri.queryParameters.get("enclave_id").flatMap { $0.isEmpty ? nil : $0 }
        if let enclave, let problem = Identifier.problem(with: enclave) {
            throw APIError(.badRequest, "`enclave_id` is not a valid id: \(problem)")
        }
        let events = try await store.events(enclave: enclave, limit: try limit(request, default: 100, maximum: 1000))
        return Self.json(EventListing(events: events))
    }

    func runs(_ request: Request, _ context: NclavRequestContext) async throws -> Response {
        let key = try key(context)
        let runs = try await store.runs(enclave: key.enclave, partition: key.partition, limit: try limit(request, default: 50, maximum: 1000))
        // A partition torn down keeps its runs; one that never existed is a typo, not "no runs".
        if runs.isEmpty, try await !store.partitions(ofEnclave: key.enclave).contains(where: { $0.partitionID == key.partition }) {
            throw APIError(.notFound, "partition \(key) is not in state and has no runs; `nclav status` lists what is")
        }
        return Self.json(RunListing(runs: runs))
    }

    func latestRun(_ context: NclavRequestContext) async throws -> Response {
        let key = try key(context)
        guard let latest = try await store.runs(enclave: key.enclave, partition: key.partition, limit: 1).first,
            let run = try await store.run(latest.id)
        else {
            throw APIError(.notFound, "partition \(key) has no IaC runs yet")
        }
        return Self.json(run)
    }

    func run(_ context: NclavRequestContext) async throws -> Response {
        let key = try key(context)
        guard let text = context.parameters.get("run"), let runID = UUID(uuidString: text) else {
            throw APIError(.badRequest, "run id must be a UUID")
        }
        guard let run = try await store.run(runID), run.enclaveID == key.enclave, run.partitionID == key.partition else {
            throw APIError(.notFound, "partition \(key) has no run \(runID)")
        }
        return Self.json(run)
    }

    func putState(_ request: Request, _ context: NclavRequestContext) async throws -> Response {
        let key = try key(context)
        let principal = try principal(context)
        guard principal.mayUseState(key) else { throw APIError(.forbidden, "this credential may not use the state of \(key)") }
        let query = request.uri.queryParameters
        let force = query.get("force").map { $0 == "true" || $0 == "1" } ?? false
        let declared = request.headers.declaredLength
        let staged = try declared.flatMap { $0 <= configuration.maxStateBytes ? try store.stageStateBody(expectedSize: $0) : nil }
        // Stored, refused or failed: a staged file nobody claimed goes.
        defer { staged?.discardUnlessClaimed() }
        let (body, digests, document) = try await hashedBody(request, declared: declared, staging: staged)
        return try await Response(
            backend.put(
                key, body: body, digests: digests, document: document, staged: staged,
                contentMD5: request.headers.value(.contentMD5), lockID: query.get("ID"), force: force, as: principal))
    }

    /// A state body and its hashes, computed while it arrives: this task only receives, one
    /// child task runs MD5 over the chunks and another SHA-256, writing them to the store's
    /// staged file when there is one. Hashing after receiving added to every write's latency;
    /// hashing inside the receiving loop stalled the transfer (docs/benchmarks.md).
    ///
    /// It is also parsed here, after SHA-256 (the faster hash) is done and while MD5 finishes.
    func hashedBody(
        _ request: Request, declared: Int?, staging staged: (any StagedStateBody)?
    ) async throws
        -> (Data, BodyDigests, StateDocument.Parsed)
    {
        let limit = configuration.maxStateBytes
        let tooLarge = tooLargeError
        if let declared, declared > limit { throw tooLarge }
        var collected = Data()
        if staged == nil, let declared { collected.reserveCapacity(declared) }
        var received = 0
        let (md5Chunks, md5Feed) = AsyncStream<ByteBuffer>.makeStream()
        let (shaChunks, shaFeed) = AsyncStream<ByteBuffer>.makeStream()
        async let md5: String = {
            var hasher = StreamingDigest.MD5()
            for await chunk in md5Chunks { chunk.withUnsafeReadableBytes { hasher.update($0) } }
            return hasher.base64()
        }()
        async let sha256: String = {
            var hasher = StreamingDigest.SHA256()
            for await chunk in shaChunks {
                chunk.withUnsafeReadableBytes { bytes in
                    hasher.update(bytes)
                    staged?.append(bytes)
                }
            }
            return hasher.hex()
        }()
        do {
            for try await chunk in request.body {
                received += chunk.readableBytes
                if received > limit { throw tooLarge }
                md5Feed.yield(chunk)
                shaFeed.yield(chunk)
                if staged == nil { chunk.withUnsafeReadableBytes { collected.append(contentsOf: $0) } }
            }
        } catch {
            md5Feed.finish()
            shaFeed.finish()
            _ = await (md5, sha256)
            throw error
        }
        md5Feed.finish()
        shaFeed.finish()
        let sha256Hex = await sha256
        if let staged { collected = try staged.finish() }
        let document = StateDocument.parse(collected)
        return (collected, BodyDigests(md5Base64: await md5, sha256Hex: sha256Hex), document)
    }
}

extension HTTPField.Name {
    static let contentMD5 = Self("Content-MD5")!
}
