import Foundation
import HTTPTypes
import Hummingbird
import IacRunner
import Logging
import NclavAPI
import NclavAuth
import NclavConfig
import NclavCore
import NclavDrivers
import NclavFiles
import NclavStore
import Orchestrator
import TFBackend

/// Where this server listens, known once it has bound its port.
public actor ServerAddress {
    public init() {}
    private(set) var port: Int = 0
    func set(_ port: Int) { self.port = port }
}

/// `POST /reconcile`, `POST /reconcile/dry-run`, `POST /drift`, `POST /destroy` and the
/// `DELETE` routes of enclaves and partitions. Wire types come from `NclavAPI`.
///
/// The body names a directory on the server (`{"enclaves_dir": "…"}`) or carries the tree
/// itself (`{"bundle": [{"path": "…", "content": "<base64>"}]}`, what the CLI sends so a
/// remote server works). The tree is validated first (422 with every diagnostic); a second
/// reconcile is refused (409) before anything starts. Long operations answer with NDJSON, one
/// event per line: `progress` while they run, then their result (or an `error`).
struct ReconcileRoutes: Sendable {
    let store: any StateStore
    let configuration: ServerConfiguration
    let token: String
    let address: ServerAddress
    let registry: DriverRegistry
    /// Where reconciles run, so a graceful shutdown cancels and awaits them.
    let reconciles: ReconcileTasks
    var observer: any ReconcileObserver = NoObserver()

    func register(on router: Router<NclavRequestContext>, body: @escaping @Sendable (HummingbirdCore.Request) async throws -> Data) {
        router.post(RouterPath(APIPath.dryRun)) { request, _ in try await dryRun(try await body(request)) }
        router.post(RouterPath(APIPath.reconcile)) { request, context in
            try await apply(try await body(request), trigger: Self.trigger(request, context))
        }
        router.post(RouterPath(APIPath.drift)) { request, context in
            try await drift(try await body(request), trigger: Self.trigger(request, context))
        }
        router.post(RouterPath(APIPath.plans)) { request, _ in try await makePlan(try await body(request)) }
        router.get(RouterPath(APIPath.plans)) { _, _ in
            Routes.json(PlanListing(plans: await reconciler().environment.plans.list().map(Self.planBody)))
        }
        router.get(RouterPath(APIPath.Template.plan)) { _, context in try await savedPlan(try Self.planID(context)) }
        router.delete(RouterPath(APIPath.Template.plan)) { _, context in
            let id = try Self.planID(context)
            _ = try await savedPlan(id)
            await reconciler().environment.plans.remove(id)
            return Response(status: .noContent)
        }
        router.post(RouterPath(APIPath.destroy)) { request, context in
            try await destroy(try await body(request), trigger: Self.trigger(request, context))
        }
        router.get(RouterPath(APIPath.orphansBase)) { request, _ in
            try await orphans(enclave: request.uri.queryParameters.get("enclave").flatMap { $0.isEmpty ? nil : String($0) })
        }
        router.delete(RouterPath(APIPath.Template.enclave)) { request, context in
            try await destroyNow(DestroyRequest(enclaves: [try Routes.id(context, "enclave")]), trigger: Self.trigger(request, context))
        }
        router.delete(RouterPath(APIPath.Template.partition)) { request, context in
            let enclave = try Routes.id(context, "enclave"), partition = try Routes.id(context, "partition")
            switch request.uri.queryParameters.get("forget") {
            case nil, "false":
                return try await destroyNow(DestroyRequest(enclaves: [enclave], partition: partition), trigger: Self.trigger(request, context))
            case "true": return try await forget(enclave: enclave, partition: partition)
            case let other?: throw APIError(.badRequest, "`forget=\(other)` is not understood; use forget=true")
            }
        }
    }

    /// Uploaded trees live only for one request. Unpacking thousands of small files onto a
    /// disk filesystem and deleting them again costs seconds in inode allocation; a RAM-backed
    /// directory takes a fraction of that (docs/benchmarks.md).
    /// Falls back to `$NCLAV_HOME/bundles` where /dev/shm is not writable.
    static func bundleDirectory(home: URL) -> URL {
        let shared = URL(fileURLWithPath: "/dev/shm", isDirectory: true)
        if FileManager.default.isWritableFile(atPath: shared.path) {
            return shared.appendingPathComponent("nclav-bundles-\(getuid())")
        }
        return home.appendingPathComponent("bundles")
    }

    /// `GET /orphans[?enclave=]`: asks each enclave's driver for resources tagged as nclav's
    /// whose partition is not in state. An enclave whose cloud cannot be asked is reported in
    /// `errors`, the others are still scanned.
    func orphans(enclave: String?) async throws -> Response {
        var enclaves = try await store.enclaves()
        if let enclave {
            if let problem = Identifier.problem(with: enclave) { throw APIError(.badRequest, "`\(enclave)` is not a valid enclave id: \(problem)") }
            enclaves = enclaves.filter { $0.id == enclave }
            if enclaves.isEmpty { throw APIError(.notFound, "enclave `\(enclave)` is not in state") }
        }
        var found: [Orphan] = []
        var failures: [OrphanReport.Failure] = []
        for state in enclaves.sorted(by: { $0.id < $1.id }) {
            let known = Set(try await store.partitions(ofEnclave: state.id).map(\.partitionID))
            do {
                found += try await registry.driver(for: state.resolvedCloud).orphans(enclave: state, knownPartitions: known)
            } catch {
                failures.append(.init(enclave: state.id, error: "\(error)"))
            }
        }
        return Routes.json(OrphanReport(orphans: found, errors: failures, scanned: enclaves.map(\.id).sorted()))
    }

    // MARK: Destroy and forget

    /// Refusals found before anything is torn down, as HTTP answers.
    static func refusal(_ error: ReconcileError) -> APIError {
        switch error {
        case .notInState: return APIError(.notFound, error.description)
        default: return APIError(.conflict, error.description)
        }
    }

    /// Checks a destroy under the reconcile lock; the caller owns the lock afterwards.
    func prepareDestroy(_ request: DestroyRequest, reconciler: Reconciler) async throws -> ReconcileLock {
        guard !request.enclaves.isEmpty else { throw APIError(.badRequest, "name at least one enclave in `enclaves`") }
        for id in request.enclaves + (request.partition.map { [$0] } ?? []) {
            if let problem = Identifier.problem(with: id) { throw APIError(.badRequest, "`\(id)` is not a valid id: \(problem)") }
        }
        if request.partition != nil && request.enclaves.count != 1 {
            throw APIError(.badRequest, "`partition` needs exactly one enclave in `enclaves`")
        }
        let lock: ReconcileLock
        do { lock = try await reconciler.acquire() } catch let error as ReconcileError { throw Self.refusal(error) }
        do {
            try await reconciler.checkDestroy(enclaves: request.enclaves, partition: request.partition)
        } catch let error as ReconcileError {
            try? await store.releaseReconcileLock(lock.id)
            throw Self.refusal(error)
        }
        return lock
    }

    /// `DELETE /enclaves/{e}[/partitions/{p}]`: the destroy report as one JSON answer.
    func destroyNow(_ request: DestroyRequest, trigger: String) async throws -> Response {
        let reconciler = await reconciler()
        let lock = try await prepareDestroy(request, reconciler: reconciler)
        await record(trigger, of: lock)
        let report = try await reconciler.destroy(enclaves: request.enclaves, partition: request.partition, holding: lock)
        return Routes.json(ApplyEvent.report(Self.reportBody(report)))
    }

    /// `POST /destroy`: several enclaves (the engine orders them) or one partition; NDJSON
    /// progress, then the report.
    func destroy(_ data: Data, trigger: String) async throws -> Response {
        let request: DestroyRequest
        do { request = try Wire.decoder().decode(DestroyRequest.self, from: data) } catch {
            throw APIError(.badRequest, "the body must be JSON like {\"enclaves\": [\"<id>\"], \"partition\": \"<id>\"}")
        }
        if request.forget == true {
            guard let partition = request.partition, request.enclaves.count == 1 else {
                throw APIError(.badRequest, "`forget` needs exactly one enclave and a `partition`")
            }
            return try await forget(enclave: request.enclaves[0], partition: partition)
        }
        return try await ndjson { (emit: @escaping @Sendable (ApplyEvent) -> Void) in
            let reconciler = await reconciler { emit(.progress($0)) }
            let lock = try await prepareDestroy(request, reconciler: reconciler)
            return {
                await record(trigger, of: lock)
                do {
                    let report = try await reconciler.destroy(enclaves: request.enclaves, partition: request.partition, holding: lock)
                    emit(.report(Self.reportBody(report)))
                } catch {
                    emit(.error("\(error)"))
                }
            }
        }
    }

    /// `DELETE /enclaves/{e}/partitions/{p}?forget=true`: drops the partition from nclav's
    /// records without a teardown, and says what may be left in the cloud.
    func forget(enclave: String, partition: String) async throws -> Response {
        let forgotten: Reconciler.Forgotten
        do { forgotten = try await reconciler().forget(enclave: enclave, partition: partition) } catch let error as ReconcileError {
            throw Self.refusal(error)
        }
        return Routes.json(
            ForgetAnswer(
                forgotten: forgotten.key.description, resources: forgotten.resources, identity: forgotten.identity,
                workspace: forgotten.workspace))
    }

    // MARK: Plumbing

    /// Who started a reconcile, as its page shows it: the command (from the CLI's user agent),
    /// the credential and the peer address. `"`nclav apply` (nclav-cli/0.1.0) with the admin token from 127.0.0.1"`.
    static func trigger(_ request: HummingbirdCore.Request, _ context: NclavRequestContext) -> String {
        let agent = request.headers[.userAgent].map { String($0.prefix(120)) }
        var text = "\(request.method.rawValue) \(request.uri.path)"
        if let agent, agent.hasPrefix("nclav-cli"), let command = agent.split(separator: " ", maxSplits: 1).dropFirst().first {
            text = "`nclav \(command.filter { $0.isLetter || $0 == " " || $0 == "-" })`"
        }
        if let agent { text += " (\(agent.split(separator: " ").first ?? ""))" }
        if case .admin? = context.principal { text += " with the admin token" }
        if let address = context.remoteAddress { text += " from \(address)" }
        return text
    }

    /// Records what started the reconcile holding `lock` (with its saved plan and targets), for
    /// `GET /reconciles`.
    func record(_ trigger: String, of lock: ReconcileLock, options: ReconcileOptions? = nil) async {
        var text = trigger
        if let plan = options?.savedPlan { text += "; saved plan \(plan.uuidString.lowercased())" }
        _ = try? await store.appendEvent(AuditEvent(kind: ReconcileReports.triggerKind, reconcileID: lock.id, message: text))
    }

    func reconciler(progress: @escaping @Sendable (String) async -> Void = { _ in }) async -> Reconciler {
        let host = ["0.0.0.0", "::", ""].contains(configuration.bindHost) ? "127.0.0.1" : configuration.bindHost
        let base = host.contains(":") ? "http://[\(host)]:\(await address.port)" : "http://\(host):\(await address.port)"
        var environment = ReconcileEnvironment(
            store: store, registry: registry, renderer: WorkspaceRenderer(root: configuration.home.appendingPathComponent("workspaces")),
            signer: RunCredentialSigner(adminToken: token), backendBaseURL: base, secrets: [token],
            pluginCache: configuration.home.appendingPathComponent("plugin-cache"),
            stopPolicy: StopPolicy(timeout: configuration.runTimeout, gracePeriod: configuration.runGracePeriod), progress: progress)
        environment.observer = observer
        environment.plans.lifetime = Double(configuration.planLifetime.components.seconds)
        if let jobs = store as? any JobStore {
            environment.invoker = AgentDispatch(
                jobs: jobs, store: store, serverSecrets: [token], seal: JobPayloadSeal(adminToken: token),
                lease: configuration.agentLease)
        }
        return Reconciler(environment: environment)
    }

    static func reportBody(_ report: ReconcileReport) -> ReconcileReportBody {
        ReconcileReportBody(
            reconcileID: report.reconcileID.uuidString, changes: report.plan.changes.isEmpty ? [] : report.plan.lines,
            outcomes: report.outcomes.map {
                OutcomeLine(
                    partition: $0.key.description, operation: $0.operation.rawValue, result: $0.result.rawValue,
                    runID: $0.runID?.uuidString, reason: $0.reason, seconds: $0.seconds)
            },
            enclaves: report.enclaves.map {
                EnclaveOutcomeLine(enclave: $0.enclave, operation: $0.operation.rawValue, result: $0.result.rawValue, reason: $0.reason)
            },
            errors: report.errors)
    }

    /// An NDJSON answer. `start` runs first, in the request: what it throws becomes the HTTP
    /// status (400, 409, 422) before any line is sent. The work it returns then runs as one of
    /// the server's reconciles (`ReconcileTasks`), not on the request's task — a client that
    /// disconnects must not cancel terraform runs; a graceful shutdown does — and every event it
    /// emits is written as one line while the client listens.
    func ndjson<Event: Encodable & Sendable>(
        _ start: (@escaping @Sendable (Event) -> Void) async throws -> @Sendable () async -> Void
    ) async throws -> Response {
        let (lines, continuation) = AsyncStream<String>.makeStream()
        let work = try await start { continuation.yield(Wire.line($0)) }
        do {
            try await reconciles.start {
                await work()
                continuation.finish()
            }
        } catch {
            continuation.finish()
            throw APIError(.serviceUnavailable, "\(error)")
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/x-ndjson"
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                // A vanished client stops the writing, never the work.
                var connected = true
                for await line in lines where connected {
                    do { try await writer.write(ByteBuffer(string: line)) } catch { connected = false }
                }
                if connected { try? await writer.finish(nil) }
            })
    }

    // MARK: Reconcile

    /// Decodes the request and loads a valid tree, or throws the 400/422 that says why.
    func load(
        _ data: Data
    ) throws -> (tree: LoadedTree, request: ReconcileRequest, cleanup: @Sendable () -> Void, graph: Digraph<TreeValidator.PartitionRef>) {
        let request: ReconcileRequest
        do { request = try JSONDecoder().decode(ReconcileRequest.self, from: data) } catch {
            throw APIError(.badRequest, "the body must be JSON with `enclaves_dir` or `bundle`", details: ["\(error)"])
        }
        if let parallelism = request.parallelism, parallelism < 1 {
            throw APIError(.badRequest, "`parallelism` must be at least 1, got \(parallelism)")
        }
        var directory: String
        var cleanup: @Sendable () -> Void = {}
        switch (request.enclavesDir, request.bundle) {
        case let (path?, nil):
            directory = path
        case let (nil, files?):
            let root = Self.bundleDirectory(home: configuration.home).appendingPathComponent(BundleWriter.directoryName())
            // Removing thousands of files is not the caller's wait: it happens after the answer.
            cleanup = { Task.detached(priority: .background) { try? FileManager.default.removeItem(at: root) } }
            do { try BundleWriter.write(files.map { ($0.path, $0.content) }, into: root) } catch {
                cleanup()
                throw APIError(.badRequest, "the bundle could not be unpacked", details: ["\(error)"])
            }
            directory = root.path
        default:
            throw APIError(.badRequest, "give exactly one of `enclaves_dir` and `bundle`")
        }
        let result: ValidationResult
        do { result = try ValidationResult.check(directory: directory) } catch {
            cleanup()
            throw APIError(.unprocessableContent, "\(error)")
        }
        guard result.isValid else {
            cleanup()
            let lines = request.bundle == nil ? result.diagnosticLines() : result.diagnostics.map(\.description)
            throw APIError(.unprocessableContent, "the enclaves tree is invalid (\(result.errors.count) error(s))", details: lines)
        }
        return (result.tree, request, cleanup, result.graph)
    }

    func dryRun(_ data: Data) async throws -> Response {
        let (tree, request, cleanup, graph) = try load(data)
        defer { cleanup() }
        let plan: Plan
        do { plan = try await reconciler().plan(tree, graph: graph, targets: try Self.targets(request)).plan } catch let error as TargetError {
            throw APIError(.unprocessableContent, error.description)
        }
        return Routes.json(
            DryRunAnswer(
                changes: plan.lines, entries: plan.changes.map(Self.entry), changeCount: plan.certainCount, conditionalCount: plan.conditionalCount,
                deletesEverything: plan.deletesEverything))
    }

    func apply(_ data: Data, trigger: String) async throws -> Response {
        try await lockedStream(data, progress: ApplyEvent.progress, failure: ApplyEvent.error) { reconciler, lock, tree, graph, options in
            await record(trigger, of: lock, options: options)
            let report = try await reconciler.reconcile(tree, options: options, holding: lock, graph: graph)
            var body = Self.reportBody(report)
            body.changes = report.plan.lines
            return .report(body)
        }
    }

    /// The NDJSON answer of work on a tree under the reconcile lock (`POST /reconcile`,
    /// `POST /plans`): the request is checked and the lock taken before any line is sent (400,
    /// 409, 422), then `work` runs as one of the server's reconciles; the uploaded tree is
    /// removed when it ends, however it ends.
    func lockedStream<Event: Encodable & Sendable>(
        _ data: Data, progress: @escaping @Sendable (String) -> Event, failure: @escaping @Sendable (String) -> Event,
        check: (ReconcileOptions) throws -> Void = { _ in },
        work: @escaping @Sendable (Reconciler, ReconcileLock, LoadedTree, Digraph<TreeValidator.PartitionRef>, ReconcileOptions) async throws -> Event
    ) async throws -> Response {
        let (tree, request, cleanup, graph) = try load(data)
        do {
            let options = try Self.options(request)
            try check(options)
            return try await ndjson { (emit: @escaping @Sendable (Event) -> Void) in
                let reconciler = await reconciler { emit(progress($0)) }
                let lock: ReconcileLock
                do { lock = try await reconciler.acquire() } catch let error as ReconcileError { throw APIError(.conflict, error.description) }
                return {
                    defer { cleanup() }
                    do { emit(try await work(reconciler, lock, tree, graph, options)) } catch { emit(failure("\(error)")) }
                }
            }
        } catch {
            cleanup()
            throw error
        }
    }

    /// The engine's options from a request: parallelism, the delete-everything guard,
    /// targets and a saved plan's id, each checked (400 when malformed).
    static func options(_ request: ReconcileRequest) throws -> ReconcileOptions {
        var planID: UUID? = nil
        if let text = request.planID {
            guard let id = UUID(uuidString: text) else { throw APIError(.badRequest, "`plan_id` `\(text)` is not a plan id (a UUID)") }
            planID = id
        }
        var options = ReconcileOptions(
            parallelism: request.parallelism ?? ProcessInfo.processInfo.activeProcessorCount, allowDeleteEverything: request.allowDeleteAll ?? false,
            targets: try targets(request), savedPlan: planID)
        options.autoApprove = request.autoApprove ?? false
        return options
    }

    static func targets(_ request: ReconcileRequest) throws -> Targets? {
        guard let body = request.targets else { return nil }
        for id in body.enclaves ?? [] {
            if let problem = Identifier.problem(with: id) { throw APIError(.badRequest, "target enclave `\(id)` is not a valid id: \(problem)") }
        }
        let partitions = try (body.partitions ?? []).map { text in
            let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, let key = try? StateKey(enclave: parts[0], partition: parts[1]) else {
                throw APIError(.badRequest, "target partition `\(text)` is not `enclave/partition` with valid ids")
            }
            return key
        }
        let targets = Targets(enclaves: body.enclaves ?? [], partitions: partitions)
        return targets.isEmpty ? nil : targets
    }

    static func planID(_ context: NclavRequestContext) throws -> UUID { try Routes.uuid(context, "plan") }

    // MARK: Plans

    /// `POST /plans`: terraform's plan of every partition an apply would run, saved; NDJSON
    /// progress, then the plan.
    func makePlan(_ data: Data) async throws -> Response {
        try await lockedStream(
            data, progress: PlanEvent.progress, failure: PlanEvent.error,
            check: { options in
                guard options.savedPlan == nil else { throw APIError(.badRequest, "`plan_id` belongs to `POST /reconcile`, not to a new plan") }
            }
        ) { reconciler, lock, tree, graph, options in
            .plan(Self.planBody(try await reconciler.makePlan(tree, options: options, holding: lock, graph: graph)))
        }
    }

    /// `GET /plans/{id}`.
    func savedPlan(_ id: UUID) async throws -> Response {
        do { return Routes.json(Self.planBody(try await reconciler().environment.plans.load(id))) } catch {
            switch error {
            case .notFound, .expired: throw APIError(.notFound, error.description)
            default: throw APIError(.internalServerError, error.description)
            }
        }
    }

    static func planBody(_ plan: SavedPlan) -> PlanBody {
        PlanBody(
            id: plan.id.uuidString.lowercased(), createdAt: plan.createdAt, expiresAt: plan.expiresAt,
            targets: plan.targets.map { TargetsBody(enclaves: $0.enclaves, partitions: $0.partitions.map(\.description)) },
            partitions: plan.partitions.map { entry in
                PlanBody.Partition(
                    partition: entry.key.description, operation: entry.operation.rawValue,
                    changes: entry.changes.map { PlanBody.Change(address: $0.address, action: $0.action.rawValue) }, summary: entry.summary,
                    deferred: entry.deferred, error: entry.error, runID: entry.runID?.uuidString, changedOutputs: entry.changedOutputs)
            },
            enclaves: plan.enclaves.map { PlanBody.Enclave(enclave: $0.id, operation: $0.operation.rawValue) }, lines: plan.lines,
            hasChanges: plan.hasChanges, destructions: plan.destructions, errors: plan.errors)
    }

    // MARK: Drift

    /// `POST /drift` (`{"enclave": "…"}` optional): NDJSON progress, then the results.
    func drift(_ data: Data, trigger: String) async throws -> Response {
        let request: DriftRequest
        do { request = data.isEmpty ? DriftRequest() : try JSONDecoder().decode(DriftRequest.self, from: data) } catch {
            throw APIError(.badRequest, "the body must be empty or JSON like {\"enclave\": \"<id>\"}")
        }
        if let enclave = request.enclave {
            guard Identifier.isValid(enclave) else { throw APIError(.badRequest, "`\(enclave)` is not an enclave id") }
            guard try await store.enclave(enclave) != nil else { throw APIError(.notFound, "enclave `\(enclave)` is not in state") }
        }
        return try await ndjson { (emit: @escaping @Sendable (DriftEvent) -> Void) in
            let reconciler = await reconciler { emit(.progress($0)) }
            let lock: ReconcileLock
            do { lock = try await reconciler.acquire() } catch let error as ReconcileError { throw APIError(.conflict, error.description) }
            return {
                await record(trigger, of: lock)
                do {
                    let report = try await reconciler.drift(enclave: request.enclave, holding: lock)
                    emit(.drift(reconcileID: report.reconcileID.uuidString, results: report.results.map(Self.entry)))
                } catch {
                    emit(.error("\(error)"))
                }
            }
        }
    }

    static func entry(_ change: Change) -> DiffEntry {
        switch change {
        case .createEnclave(let id): DiffEntry(kind: "create_enclave", enclave: id)
        case .updateEnclave(let id): DiffEntry(kind: "update_enclave", enclave: id)
        case .deleteEnclave(let id): DiffEntry(kind: "delete_enclave", enclave: id)
        case .createPartition(let key): DiffEntry(kind: "create_partition", enclave: key.enclave, partition: key.partition)
        case .updatePartition(let key, let reason):
            DiffEntry(kind: "update_partition", enclave: key.enclave, partition: key.partition, reason: reason)
        case .mayUpdatePartition(let key, let condition):
            DiffEntry(kind: "may_update_partition", enclave: key.enclave, partition: key.partition, reason: condition)
        case .deletePartition(let key): DiffEntry(kind: "delete_partition", enclave: key.enclave, partition: key.partition)
        case .wireExport(let enclave, let name): DiffEntry(kind: "wire_export", enclave: enclave, name: name)
        case .wireImport(let enclave, let partition, let alias): DiffEntry(kind: "wire_import", enclave: enclave, partition: partition, name: alias)
        }
    }

    static func entry(_ entry: DriftReport.Entry) -> DriftEntry {
        DriftEntry(
            partition: entry.key.description, status: entry.result?.status.rawValue ?? "skipped",
            summary: entry.result?.summary ?? entry.skipped ?? "", runID: entry.result?.runID?.uuidString, seconds: entry.seconds)
    }

    /// The `--drift-interval` loop: a drift check of everything, skipped when a reconcile holds
    /// the lock (it will be checked next time).
    func scheduledDrift(every interval: Duration, logger: Logger) async {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            let reconciler = await reconciler()
            do {
                let lock = try await reconciler.acquire()
                await record("the server's drift schedule (every \(interval))", of: lock)
                let report = try await reconciler.drift(holding: lock)
                logger.info(
                    "scheduled drift check",
                    metadata: [
                        "in_sync": "\(report.count(.inSync))", "drifted": "\(report.count(.drifted))", "errors": "\(report.count(.error))",
                    ])
            } catch let error as ReconcileError {
                logger.info("scheduled drift check skipped", metadata: ["reason": "\(error)"])
            } catch {
                logger.warning("scheduled drift check failed", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// Unpacks an uploaded enclaves tree. Every path is checked before anything is written: a
/// path that could leave the directory, one given twice, a file where another path needs a
/// directory, a path deeper or longer than a tree may be, content that is not base64. Errors
/// name the path as the client sent it, never where the server unpacks it.
enum BundleWriter {
    struct Refused: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String { "`\(path)`: \(reason)" }
    }

    static let limits = TreeFiles.Limits.standard

    static func write(_ files: [(path: String, base64: String)], into root: URL) throws {
        // 1. Every path on its own, then all of them together, before a byte is written.
        var seen: Set<String> = []
        var directories: Set<String> = []
        var decoded: [(path: String, data: Data)] = []
        for (path, base64) in files {
            let parts = path.split(separator: "/", omittingEmptySubsequences: false)
            guard !path.isEmpty, !path.hasPrefix("/"), !path.contains("\0"), parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else {
                throw Refused(path: path, reason: "is not a relative path inside the tree (no leading `/`, no empty, `.` or `..` parts)")
            }
            if parts.count > limits.maxDepth {
                throw Refused(path: String(path.prefix(120)), reason: "is \(parts.count) levels deep; a tree may be at most \(limits.maxDepth) deep")
            }
            if path.utf8.count > limits.maxPathBytes {
                throw Refused(
                    path: String(path.prefix(120)) + "…",
                    reason: "is \(path.utf8.count) bytes long; paths may be at most \(limits.maxPathBytes) bytes")
            }
            guard seen.insert(path).inserted else { throw Refused(path: path, reason: "appears more than once in the bundle") }
            guard let data = Data(base64Encoded: base64) else { throw Refused(path: path, reason: "its content is not valid base64") }
            for end in 1..<parts.count { directories.insert(parts[..<end].joined(separator: "/")) }
            decoded.append((path, data))
        }
        if let clash = seen.first(where: directories.contains) {
            throw Refused(path: clash, reason: "is sent as a file, but other paths in the bundle need it to be a directory")
        }
        // 2. Write: directories once each (creating one per file cost more than the writes).
        let rootPath = root.path
        do {
            try FileManager.default.createDirectory(atPath: rootPath, withIntermediateDirectories: true)
            for directory in directories.sorted() {
                try FileManager.default.createDirectory(atPath: rootPath + "/" + directory, withIntermediateDirectories: true)
            }
        } catch {
            throw Refused(
                path: ".", reason: "the server could not unpack the bundle (\((error as NSError).localizedFailureReason ?? "no space or permission"))"
            )
        }
        for (path, data) in decoded {
            guard FileManager.default.createFile(atPath: rootPath + "/" + path, contents: data) else {
                throw Refused(path: path, reason: "the server could not write it (no space or permission)")
            }
        }
    }

    /// A new bundle directory's name: this process's id, then a UUID, so a sweep can tell
    /// whose it is.
    static func directoryName() -> String { "\(getpid())-\(UUID().uuidString)" }

    /// Removes bundle directories left behind by servers that are gone (killed mid-request):
    /// those named after a process that no longer exists. Several servers of one user share
    /// the directory, so a live one's upload is never touched, however long its reconcile runs.
    static func sweep(_ directory: URL) -> Int {
        let manager = FileManager.default
        guard let names = try? manager.contentsOfDirectory(atPath: directory.path) else { return 0 }
        var removed = 0
        for name in names {
            guard let dash = name.firstIndex(of: "-"), let pid = pid_t(name[..<dash]),
                UUID(uuidString: String(name[name.index(after: dash)...])) != nil,
                pid != getpid(), kill(pid, 0) != 0, errno == ESRCH
            else { continue }
            if (try? manager.removeItem(atPath: directory.appendingPathComponent(name).path)) != nil { removed += 1 }
        }
        return removed
    }
}
