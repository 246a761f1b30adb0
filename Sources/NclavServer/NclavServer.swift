import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NclavAuth
import NclavCore
import NclavDrivers
import NclavPostgres
import NclavSQLite
import NclavStore
import Orchestrator
import ServiceLifecycle
import TFBackend

/// Starts the HTTP API and Terraform state backend, and runs until SIGINT/SIGTERM.
public enum NclavServer {
    public static let version = NclavVersion.current

    public enum StartError: Error, CustomStringConvertible {
        case token(AdminToken.SetupError)
        case store(StoreError)

        public var description: String {
            switch self {
            case .token(let error): return error.description
            case .store(let error): return error.description
            }
        }
    }

    /// Runs the server. Returns after a graceful shutdown: in-flight requests have finished
    /// and the store is closed.
    public static func run(_ configuration: ServerConfiguration, environment: [String: String], logger: Logger) async throws {
        let token: AdminToken
        do { token = try AdminToken.load(environment: environment, home: configuration.home, rotate: configuration.rotateToken) } catch {
            throw StartError.token(error)
        }
        let store: any StateStore
        let storeDescription: String
        switch configuration.store {
        case .memory:
            store = MemoryStore(retainedVersions: configuration.retainedStateVersions)
            storeDescription = "memory"
        case .sqlite(let path):
            do { store = try SQLiteStore(path: path, retainedVersions: configuration.retainedStateVersions) } catch let error as StoreError {
                throw StartError.store(error)
            }
            storeDescription = "sqlite"
        case .postgres(let url):
            do { store = try await PostgresStore.open(url: url, retainedVersions: configuration.retainedStateVersions, logger: logger) } catch let
                error as StoreError
            {
                throw StartError.store(error)
            }
            storeDescription = "postgres"
        }

        let recovery = try await store.recoverAfterRestart(at: Date())
        for runID in recovery.interruptedRuns {
            logger.warning("run left running by a previous server is now interrupted", metadata: ["run": "\(runID)"])
        }
        for key in recovery.releasedLocks {
            logger.warning("released a state lock held by an interrupted run", metadata: ["state": "\(key)"])
        }
        if let lock = recovery.releasedReconcileLock {
            logger.warning("released a reconcile lock left by a previous server", metadata: ["holder": "\(lock.holder)"])
        }
        if let jobs = store as? any JobStore {
            for registration in configuration.agentTokenRegistrations {
                guard let (id, hash) = AgentTokenSecret.parseRegistration(registration) else { continue }
                if try await jobs.ensureAgentToken(AgentToken(id: id, name: "registered at start", secretSHA256: hash)) {
                    logger.info("registered an agent token given at start", metadata: ["id": "\(id)"])
                }
            }
        }
        let swept = BundleWriter.sweep(ReconcileRoutes.bundleDirectory(home: configuration.home))
        if swept > 0 { logger.info("removed uploaded trees left behind by servers that are gone", metadata: ["count": "\(swept)"]) }

        let address = ServerAddress()
        let metrics = ServerMetrics()
        let reconciles = ReconcileTasks(logger: logger)
        let router = makeRouter(
            store: store, storeDescription: storeDescription, configuration: configuration, token: token.value,
            address: address, metrics: metrics, reconciles: reconciles, logger: logger)
        let lockServices = StateFastPath.Services(
            backend: StateBackend(store: store), authenticator: Authenticator(adminToken: token.value),
            metrics: metrics, logger: logger, serverName: "nclav")

        let tokenNote: String
        switch token.source {
        case .environment: tokenNote = "from NCLAV_TOKEN"
        case .file(let path): tokenNote = "from \(path)"
        case .generated(let path): tokenNote = "generated and written to \(path) (mode 0600)"
        }
        let storeNote: String
        switch configuration.store {
        case .sqlite(let path): storeNote = "sqlite at \(path)"
        case .memory: storeNote = "in memory (lost on exit)"
        case .postgres:
            storeNote = "postgres at \((store as? PostgresStore)?.url.redacted ?? "?") (replica \((store as? PostgresStore)?.replicaNumber ?? 0))"
        }
        let host = configuration.bindHost
        let app = Application(
            router: router,
            // The connection-state handler goes before the fast path so it sees every request and
            // answer: its idle timeout then closes only connections with nothing in flight.
            server: .http1(
                configuration: .init(additionalChannelHandlers: [
                    LargeReads(),
                    HTTPConnectionStateHandler(idleTimeout: configuration.idleTimeout, logger: logger),
                    StateFastPath(services: lockServices),
                ])),
            configuration: .init(address: .hostname(host, port: configuration.port), serverName: "nclav"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                await address.set(port)
                // Plain lines on stdout for people and scripts; the token itself is never printed.
                Console.line("nclav \(version) listening on http://\(host.contains(":") ? "[\(host)]" : host):\(port)")
                Console.line("token: \(tokenNote)")
                Console.line("store: \(storeNote)")
                Console.line(
                    "clouds: \(configuration.activeClouds.map(\.rawValue).joined(separator: ", ")) (default \(configuration.defaultCloud.rawValue))")
            },
            logger: logger
        )
        // Shut down in reverse order: running reconciles and a scheduled drift check are
        // cancelled and awaited first (their terraform stops and saves state), then this
        // replica's workers end their runs, then the listener stops (terraform talks to the
        // state backend here until then), and the store closes last.
        var services: [any Service] = [StoreService(store: store, logger: logger), app]
        if let postgres = store as? PostgresStore, !configuration.agentsOnly, configuration.replicaWorkers > 0 {
            services.append(
                ReplicaWorkers(
                    count: configuration.replicaWorkers,
                    desk: JobDesk(
                        jobs: postgres, store: store, lease: configuration.agentLease, secrets: [token.value],
                        seal: JobPayloadSeal(adminToken: token.value)),
                    name: "\(PostgresStore.replicaWorkerPrefix)\(postgres.replicaNumber)/\(AgentJob.localInstance(pid: getpid()))", address: address,
                    bindHost: configuration.bindHost, work: configuration.home.appendingPathComponent("replica-jobs"), logger: logger))
        }
        if let interval = configuration.driftInterval {
            services.append(
                DriftSchedule(
                    interval: interval,
                    routes: reconcileRoutes(
                        store: store, configuration: configuration, token: token.value,
                        address: address, metrics: metrics, reconciles: reconciles),
                    logger: logger))
        }
        services.append(reconciles)
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do { try await group.run() } catch  where "\(error)".contains("Address already in use") {
            throw ServerStartError.addressInUse(host: configuration.bindHost, port: configuration.port)
        }
    }
}

/// Why the server could not start, with what to do about it.
public enum ServerStartError: Error, Sendable, CustomStringConvertible {
    case addressInUse(host: String, port: Int)

    public var description: String {
        switch self {
        case .addressInUse(let host, let port):
            return
                "cannot listen on \(host):\(port): the address is already in use (another `nclav serve`, or another program); stop it, or pass another --port"
        }
    }
}

extension NclavServer {
    /// Every route the server answers, with its middleware. Separate from `run` so tests can
    /// list the routes (`router.routes`) and hold them against the OpenAPI document.
    public static func makeRouter(
        store: any StateStore, storeDescription: String, configuration: ServerConfiguration, token: String,
        address: ServerAddress = ServerAddress(), logger: Logger
    ) -> Router<NclavRequestContext> {
        makeRouter(
            store: store, storeDescription: storeDescription, configuration: configuration, token: token, address: address,
            metrics: ServerMetrics(), reconciles: ReconcileTasks(logger: logger), logger: logger)
    }

    static func reconcileRoutes(
        store: any StateStore, configuration: ServerConfiguration, token: String, address: ServerAddress,
        metrics: ServerMetrics, reconciles: ReconcileTasks
    ) -> ReconcileRoutes {
        var routes = ReconcileRoutes(
            store: store, configuration: configuration, token: token, address: address,
            registry: DriverRegistry(defaultCloud: configuration.defaultCloud, drivers: configuration.drivers),
            reconciles: reconciles)
        routes.observer = metrics
        return routes
    }

    /// `metrics`: shared with `StateFastPath`, which answers lock requests before the router.
    static func makeRouter(
        store: any StateStore, storeDescription: String, configuration: ServerConfiguration, token: String,
        address: ServerAddress, metrics: ServerMetrics, reconciles: ReconcileTasks, logger: Logger
    ) -> Router<NclavRequestContext> {
        let router = Router(context: NclavRequestContext.self)
        router.add(middleware: RequestLogMiddleware(logger: logger))
        router.add(middleware: MetricsMiddleware(metrics: metrics))
        router.add(middleware: AuthMiddleware(authenticator: Authenticator(adminToken: token), agentTokens: store as? any JobStore))
        let routes = Routes(store: store, backend: StateBackend(store: store), configuration: configuration, storeDescription: storeDescription)
        routes.register(on: router)
        LogRoutes(store: store).register(on: router) { context in try routes.key(context) }
        ReconcileReports(store: store).register(on: router)
        reconcileRoutes(store: store, configuration: configuration, token: token, address: address, metrics: metrics, reconciles: reconciles)
            .register(on: router) { request in try await routes.body(request) }
        AgentRoutes(
            queue: store as? any JobStore, store: store, lease: configuration.agentLease, secrets: [token], seal: JobPayloadSeal(adminToken: token)
        )
        .register(on: router) { request in try await routes.body(request) }
        router.get("/metrics") { _, _ in
            var text = metrics.render()
            if let jobs = store as? any JobStore, let depth = try? await jobs.queueDepth() {
                text += ServerMetrics.queueLines(queued: depth.queued, oldest: depth.oldest)
            }
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        // The web UI: static files only (no data in them), so they load without the token; the
        // page asks for the token and sends it as a header on every API call.
        router.get("/ui") { _, _ in try UIAssets.response("index.html") }
        router.get("/ui/:asset") { _, context in try UIAssets.response(context.parameters.get("asset") ?? "") }
        router.get("/openapi.yaml") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: ByteBuffer(bytes: EmbeddedAssets.openAPI)))
        }
        return router
    }
}

enum Console {
    /// Writes a whole line to stdout unbuffered, so a supervising process sees it at once.
    static func line(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }
}
