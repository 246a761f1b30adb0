import Foundation
import IacRunner
import NclavAuth
import NclavConfig
import NclavCore
import NclavDrivers
import NclavPostgres
import NclavSQLite
import NclavStore
import NclavTestSupport
import Orchestrator
import Testing

/// A real `nclav serve` for the state backend, and a reconciler in the test process that shares
/// its store: the SQLite file (WAL lets both processes use it), or a PostgreSQL database whose
/// job queue the server's own workers work (`startPostgres`).
struct ReconcileHarness {
    let server: ServerProcess
    let store: any StateStore
    let reconciler: Reconciler
    let tree: URL
    let scratch: URL
    /// Every progress line the reconciler printed.
    let progress: ProgressLog

    actor ProgressLog {
        private(set) var lines: [String] = []
        func append(_ line: String) { lines.append(line) }
    }

    /// `fixture` nil starts with an empty tree directory (`tree`), for tests that write their own.
    static func start(fixture: String? = "valid/landing-zone") async throws -> ReconcileHarness {
        let scratch = try TestSupport.makeScratchDirectory("nclav-reconcile")
        let home = scratch.appendingPathComponent("home")
        let server = try await ServerProcess.start(home: home)
        let store = try SQLiteStore(path: home.appendingPathComponent("state.db").path)
        let progress = ProgressLog()
        let environment = ReconcileEnvironment(
            store: store, registry: DriverRegistry(defaultCloud: .local, drivers: []),
            renderer: WorkspaceRenderer(root: home.appendingPathComponent("workspaces")),
            signer: RunCredentialSigner(adminToken: server.token), backendBaseURL: server.baseURL, secrets: [server.token],
            pluginCache: home.appendingPathComponent("plugin-cache"), progress: { await progress.append($0) })
        let tree: URL
        if let fixture {
            tree = try TestSupport.copyFixture(fixture, into: scratch)
        } else {
            tree = scratch.appendingPathComponent("tree")
            try FileManager.default.createDirectory(at: tree, withIntermediateDirectories: true)
        }
        return ReconcileHarness(
            server: server, store: store, reconciler: Reconciler(environment: environment), tree: tree, scratch: scratch,
            progress: progress)
    }

    /// The hosted shape: every run is a job the reconciler here queues in PostgreSQL and the
    /// server's replica workers run, against its state backend.
    static func startPostgres(fixture: String? = "valid/landing-zone") async throws -> ReconcileHarness {
        let scratch = try TestSupport.makeScratchDirectory("nclav-reconcile")
        let home = scratch.appendingPathComponent("home")
        let database = try await TestPostgres.shared().createDatabase("harness")
        let server = try await ServerProcess.start(
            home: home, arguments: ["--agent-lease", "3s"], environment: ["NCLAV_POSTGRES_URL": database])
        let store = try await PostgresStore.open(url: database)
        let progress = ProgressLog()
        var environment = ReconcileEnvironment(
            store: store, registry: DriverRegistry(defaultCloud: .local, drivers: []),
            renderer: WorkspaceRenderer(root: home.appendingPathComponent("workspaces")),
            signer: RunCredentialSigner(adminToken: server.token), backendBaseURL: server.baseURL, secrets: [server.token],
            pluginCache: home.appendingPathComponent("plugin-cache"), progress: { await progress.append($0) })
        environment.invoker = AgentDispatch(
            jobs: store, store: store, serverSecrets: [server.token], seal: JobPayloadSeal(adminToken: server.token), lease: .seconds(3))
        let tree: URL
        if let fixture {
            tree = try TestSupport.copyFixture(fixture, into: scratch)
        } else {
            tree = scratch.appendingPathComponent("tree")
            try FileManager.default.createDirectory(at: tree, withIntermediateDirectories: true)
        }
        return ReconcileHarness(
            server: server, store: store, reconciler: Reconciler(environment: environment), tree: tree, scratch: scratch,
            progress: progress)
    }

    var builder: TreeBuilder { try! TreeBuilder(root: tree) }

    func partition(_ enclave: String, _ partition: String) async throws -> PartitionState? {
        try await store.partitions(ofEnclave: enclave).first { $0.partitionID == partition }
    }

    func load() throws -> LoadedTree {
        let result = try ValidationResult.check(directory: tree.path)
        #expect(result.isValid, "\(result.diagnosticLines())")
        return result.tree
    }

    func apply(_ options: ReconcileOptions = ReconcileOptions(parallelism: 2)) async throws -> ReconcileReport {
        try await reconciler.reconcile(try load(), options: options)
    }

    func runCount() async throws -> Int {
        var count = 0
        for enclave in try await store.enclaves() {
            for partition in try await store.partitions(ofEnclave: enclave.id) {
                count += try await store.runs(enclave: enclave.id, partition: partition.partitionID, limit: 1000).count
            }
        }
        return count
    }

    func outputs(_ enclave: String, _ partition: String) async throws -> [String: String] {
        try await store.partitions(ofEnclave: enclave).first { $0.partitionID == partition }?.outputs ?? [:]
    }

    func edit(_ relative: String, _ change: (String) -> String) throws {
        let file = tree.appendingPathComponent(relative)
        try change(try String(contentsOf: file, encoding: .utf8)).write(to: file, atomically: true, encoding: .utf8)
    }

    /// Runs `body` with a started harness and always stops it (server, store, scratch) before
    /// returning: a `defer { Task { … } }` could still be pending when the test process exits,
    /// leaving a `nclav serve` behind.
    static func with(
        fixture: String? = "valid/landing-zone", postgres: Bool = false, _ body: (ReconcileHarness) async throws -> Void
    ) async throws {
        let harness = postgres ? try await startPostgres(fixture: fixture) : try await start(fixture: fixture)
        do {
            try await body(harness)
        } catch {
            await harness.stop()
            throw error
        }
        await harness.stop()
    }

    func stop() async {
        try? await store.close()
        await server.stop()
        try? FileManager.default.removeItem(at: scratch)
    }
}
