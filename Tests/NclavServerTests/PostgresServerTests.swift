import Foundation
import NclavTestSupport
import Testing

/// `nclav serve --postgres-url` against the real PostgreSQL server the tests start: the whole
/// apply path, and several replicas on one database behaving as one server.
@Suite("nclav serve on PostgreSQL (real postgres, real terraform)", .serialized)
struct PostgresServerTests {
    /// Replicas share a database and an admin token, as a hosted deployment does.
    func startReplicas(_ count: Int, database: String) async throws -> ([ServerProcess], () -> Void) {
        try await ServerProcess.startReplicas(count, database: database)
    }

    @Test("the local example applies, re-applies with no changes and is destroyed, with state kept in PostgreSQL across a restart")
    func applyExample() async throws {
        let database = try await TestPostgres.shared().createDatabase("apply")
        let scratch = try TestSupport.makeScratchDirectory("nclav-examples")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let tree = scratch.appendingPathComponent("local")
        try FileManager.default.copyItem(at: TestSupport.packageRoot.appendingPathComponent("examples/local"), to: tree)

        let (servers, cleanup) = try await startReplicas(1, database: database)
        defer { cleanup() }
        let server = servers[0]
        #expect(server.stdout.contains("store: postgres at postgres://nclav:***@127.0.0.1:"), "\(server.stdout)")
        #expect(!server.stdout.contains(try await TestPostgres.shared().password))
        let first = try await nclavCLI(["apply", tree.path, "--auto-approve", "--parallelism", "2"], server: server)
        #expect(first.exitCode == 0, "\(first.stdout)\(first.stderr)")
        #expect(first.stdout.contains("Apply complete: 5 succeeded, 0 failed, 0 skipped (partitions)."))
        await server.stop()

        // A new server process on the same database sees everything: no changes.
        let restarted = try await ServerProcess.start(home: server.home, environment: ["NCLAV_POSTGRES_URL": database])
        let again = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: restarted)
        #expect(again.exitCode == 0)
        #expect(again.stdout == "No changes.\n", "\(again.stdout)")
        let versions = try await nclavCLI(["state", "versions", "shop", "web"], server: restarted)
        #expect(versions.exitCode == 0)
        #expect(versions.stdoutLines.count >= 2, "\(versions.stdout)")
        let destroyed = try await nclavCLI(["destroy", "--all", "-y"], server: restarted)
        #expect(destroyed.exitCode == 0, "\(destroyed.stdout)\(destroyed.stderr)")
        let status = try await http(.GET, restarted.baseURL + "/enclaves", auth: .bearer(restarted.token))
        #expect(status.text == #"{"enclaves":[]}"#, "\(status.text)")
        await restarted.stop()
    }

    @Test("two replicas: a second apply through the other replica gets 409; terraform lockers through both get one holder")
    func oneReconcileOneLockHolder() async throws {
        let database = try await TestPostgres.shared().createDatabase("replicas")
        let (tree, cleanupTree) = try TreeBuilder.slowTree(seconds: 3)
        defer { cleanupTree() }
        let (servers, cleanup) = try await startReplicas(2, database: database)
        defer { cleanup() }
        let (a, b) = (servers[0], servers[1])

        async let first = nclavCLI(["apply", tree.path, "--auto-approve"], server: a)
        try await Task.sleep(for: .milliseconds(1200))
        let second = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: b)
        #expect(second.exitCode == 1)
        #expect(second.stderr.contains("server answered 409: another reconcile is in progress"), "\(second.stderr)")
        #expect(try await first.exitCode == 0)

        // Terraform's lock calls through both replicas at once: exactly one wins, and both
        // replicas then report the same holder.
        let answers = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<20 {
                let server = index.isMultiple(of: 2) ? a : b
                group.addTask {
                    try await http(
                        .POST, server.baseURL + "/terraform/state/app/other/lock", auth: .basic(user: "nclav", password: server.token),
                        body: lockJSON("lock-\(index)")
                    ).status
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(answers.filter { $0 == 200 }.count == 1, "\(answers)")
        #expect(answers.filter { $0 == 423 }.count == 19, "\(answers)")
        let seenByA = try await http(.GET, a.baseURL + "/terraform/state/app/other/lock", auth: .bearer(a.token)).json()
        let seenByB = try await http(.GET, b.baseURL + "/terraform/state/app/other/lock", auth: .bearer(b.token)).json()
        #expect(seenByA["ID"] as? String != nil)
        #expect(seenByA["ID"] as? String == seenByB["ID"] as? String)
        for server in servers { await server.stop() }
    }

    @Test(
        "kill -9 of one replica mid-apply: terraform through the other is locked out meanwhile; then the other takes over, marking the dead run interrupted and freeing its lock"
    )
    func takeOverFromDeadReplica() async throws {
        let database = try await TestPostgres.shared().createDatabase("takeover")
        let (tree, cleanupTree) = try TreeBuilder.slowTree(seconds: 4)
        defer { cleanupTree() }
        let (servers, cleanup) = try await startReplicas(2, database: database)
        defer { cleanup() }
        let (a, b) = (servers[0], servers[1])

        async let doomed = nclavCLI(["apply", tree.path, "--auto-approve"], server: a)
        // Wait until replica A's terraform holds the state lock (visible through B).
        var locked = false
        for _ in 0..<200 where !locked {
            locked = try await http(.GET, b.baseURL + "/terraform/state/app/slow/lock", auth: .bearer(b.token)).status == 200
            if !locked { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(locked)
        // A hand-run terraform on the same state through the other replica is refused and
        // told who holds the lock: replica A's run.
        let workspace = try TerraformWorkspace(server: b, enclave: "app", partition: "slow")
        defer { workspace.remove() }
        _ = try await workspace.terraform("init", "-input=false", "-no-color")
        let blocked = try await workspace.terraform("apply", "-auto-approve", "-input=false", "-no-color", "-lock-timeout=0s")
        #expect(blocked.exitCode != 0)
        #expect(blocked.stderr.contains("Error acquiring the state lock"), "\(blocked.stderr)")
        #expect(blocked.stderr.contains("HTTP remote state already locked:") && blocked.stderr.contains("Operation: OperationTypeApply"))
        let refused = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: b)
        #expect(refused.stderr.contains("409"), "a live replica's reconcile is respected: \(refused.stderr)")

        await a.stop(SIGKILL)
        #expect(try await doomed.exitCode == 1)
        // Let the orphaned terraform finish failing against its vanished backend.
        try await Task.sleep(for: .seconds(4))

        let takeover = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: b)
        #expect(takeover.exitCode == 0, "\(takeover.stdout)\(takeover.stderr)")
        let runs = try await nclavCLI(["iac", "runs", "app", "slow", "--output", "json"], server: b)
        let listing = try #require(try JSONSerialization.jsonObject(with: Data(runs.stdout.utf8)) as? [String: Any], "\(runs.stdout)")
        let list = try #require(listing["runs"] as? [[String: Any]])
        #expect(list.map { $0["status"] as? String } == ["succeeded", "interrupted"], "\(runs.stdout)")
        #expect(try await http(.GET, b.baseURL + "/terraform/state/app/slow/lock", auth: .bearer(b.token)).status == 204)
        await b.stop()
    }
}
