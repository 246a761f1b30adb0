import Foundation
import NclavTestSupport
import Testing

/// What happens when terraform or the server dies in the middle of an apply.
@Suite("Crashes during apply (real terraform)", .serialized)
struct CrashTests {
    func nclav(_ arguments: [String], server: ServerProcess) async throws -> TestSupport.ProcessResult {
        try await nclavCLI(arguments, server: server)
    }

    /// The terraform process working in this server's workspace for app/slow, once it runs apply.
    func terraformApply(under home: URL) async throws -> Int32 {
        let workspace = home.appendingPathComponent("workspaces/app/slow").resolvingSymlinksInPath().path
        for _ in 0..<400 {
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                guard let pid = Int32(entry),
                    let command = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
                    command.contains("terraform\0apply"),
                    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) == workspace
                else { continue }
                return pid
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw ServerProcess.StartFailure(description: "terraform apply never started in \(workspace)")
    }

    func latestRun(_ server: ServerProcess) async throws -> [String: Any] {
        try await http(.GET, server.baseURL + "/enclaves/app/partitions/slow/iac/runs/latest", auth: .bearer(server.token)).json()
    }

    @Test("kill -9 of terraform mid-apply: the run fails, its lock is freed, the next apply recovers")
    func killTerraform() async throws {
        let (tree, cleanup) = try TreeBuilder.slowTree(seconds: 30)
        defer { cleanup() }
        try await withServer { server async throws in
            async let apply = nclav(["apply", tree.path, "--auto-approve"], server: server)
            let pid = try await terraformApply(under: server.home)
            try await Task.sleep(for: .milliseconds(300))
            kill(pid, SIGKILL)
            let result = try await apply
            #expect(result.exitCode == 1)
            #expect(result.stderr.contains("error: app/slow: terraform apply killed by signal 9"), "\(result.stderr)")
            let run = try await latestRun(server)
            #expect(run["status"] as? String == "failed")
            #expect(try await http(.GET, server.baseURL + "/terraform/state/app/slow/lock", auth: .bearer(server.token)).status == 204)

            let file = tree.appendingPathComponent("app/slow/main.tf")
            try (try String(contentsOf: file, encoding: .utf8)).replacingOccurrences(of: "sleep 30", with: "true").write(
                to: file, atomically: true, encoding: .utf8)
            let recovered = try await nclav(["apply", tree.path, "--auto-approve"], server: server)
            #expect(recovered.exitCode == 0, "\(recovered.stdout)\(recovered.stderr)")
            #expect(recovered.stdout.contains("Apply complete: 1 succeeded"))
        }
    }

    @Test("a run over --run-timeout is interrupted, reported as cancelled, and its lock freed")
    func runTimeout() async throws {
        let (tree, cleanup) = try TreeBuilder.slowTree(seconds: 60)
        defer { cleanup() }
        try await withServer(arguments: ["--run-timeout", "2", "--run-grace-period", "5"]) { server async throws in
            let start = Date()
            let result = try await nclav(["apply", tree.path, "--auto-approve"], server: server)
            #expect(result.exitCode == 1)
            #expect(Date().timeIntervalSince(start) < 30)
            #expect(result.stderr.contains("error: app/slow: terraform apply stopped: timed out"), "\(result.stderr)")
            let run = try await latestRun(server)
            #expect(run["status"] as? String == "cancelled")
            #expect((run["log"] as? String ?? "").contains("Interrupt received"))
            #expect(try await http(.GET, server.baseURL + "/terraform/state/app/slow/lock", auth: .bearer(server.token)).status == 204)
        }
    }

    @Test("kill -9 of the server mid-apply: after a restart the run is interrupted and no lock is stuck")
    func killServer() async throws {
        let (tree, cleanup) = try TreeBuilder.slowTree(seconds: 3)
        defer { cleanup() }
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let server = try await ServerProcess.start(home: home)
        async let apply = nclav(["apply", tree.path, "--auto-approve"], server: server)
        let pid = try await terraformApply(under: home)
        // The apply holds the state lock through the server right now (terraform takes it a
        // moment after its process starts; on a busy machine that moment varies).
        var lockStatus = 0
        for _ in 0..<100 {
            lockStatus = try await http(.GET, server.baseURL + "/terraform/state/app/slow/lock", auth: .bearer(server.token)).status
            if lockStatus == 200 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(lockStatus == 200)
        await server.stop(SIGKILL)
        let client = try await apply
        #expect(client.exitCode == 1)
        // The orphaned terraform cannot reach its backend any more; let it finish failing.
        while kill(pid, 0) == 0 { try await Task.sleep(for: .milliseconds(100)) }

        let restarted = try await ServerProcess.start(home: home)
        #expect(restarted.stderr.contains("is now interrupted"))
        let run = try await latestRun(restarted)
        #expect(run["status"] as? String == "interrupted")
        #expect(try await http(.GET, restarted.baseURL + "/terraform/state/app/slow/lock", auth: .bearer(restarted.token)).status == 204)
        let status = try await http(.GET, restarted.baseURL + "/status", auth: .bearer(restarted.token)).json()
        #expect(status["reconcile_in_progress"] is NSNull || status["reconcile_in_progress"] == nil)
        let again = try await nclav(["apply", tree.path, "--auto-approve"], server: restarted)
        #expect(again.exitCode == 0, "\(again.stdout)\(again.stderr)")
        await restarted.stop()
    }

    @Test("SIGTERM mid-apply: the reconcile is cancelled (terraform interrupted, run cancelled, locks freed) before the store closes; exit 0")
    func gracefulShutdownMidApply() async throws {
        let (tree, cleanup) = try TreeBuilder.slowTree(seconds: 60)
        defer { cleanup() }
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let server = try await ServerProcess.start(home: home, arguments: ["--run-grace-period", "20"])
        async let apply = nclav(["apply", tree.path, "--auto-approve"], server: server)
        _ = try await terraformApply(under: home)
        // Terraform is inside the provisioner's sleep when the signal comes.
        for _ in 0..<300 {
            if (try await latestRun(server)["log"] as? String ?? "").contains("sleeping") { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let start = Date()
        let exit = await server.stop(SIGTERM)
        #expect(exit == 0, "\(server.stderr)")
        #expect(Date().timeIntervalSince(start) < 40, "shutdown waited for the cancelled run, not for the whole sleep")
        #expect(server.stderr.contains("shutting down: cancelling running reconciles"), "\(server.stderr)")
        #expect(!server.stderr.contains("the state store is closed"), "nothing wrote to the store after it closed: \(server.stderr)")
        let client = try await apply
        #expect(client.exitCode == 1)

        // The run ended as cancelled, not interrupted: the reconcile finished before the store closed.
        let restarted = try await ServerProcess.start(home: home)
        #expect(!restarted.stderr.contains("is now interrupted"), "\(restarted.stderr)")
        let run = try await latestRun(restarted)
        #expect(run["status"] as? String == "cancelled")
        #expect((run["log"] as? String ?? "").contains("Interrupt received"))
        #expect(try await http(.GET, restarted.baseURL + "/terraform/state/app/slow/lock", auth: .bearer(restarted.token)).status == 204)
        let status = try await http(.GET, restarted.baseURL + "/status", auth: .bearer(restarted.token)).json()
        #expect(status["reconcile_in_progress"] is NSNull || status["reconcile_in_progress"] == nil)
        await restarted.stop()
    }

    @Test("state terraform could not save (errored.tfstate) is pushed as a version on the next run")
    func erroredState() async throws {
        let (tree, cleanup) = try TreeBuilder.slowTree(seconds: 2)
        defer { cleanup() }
        try await withServer { server async throws in
            let auth = Auth.bearer(server.token)
            async let apply = nclav(["apply", tree.path, "--auto-approve"], server: server)
            _ = try await terraformApply(under: server.home)
            // While terraform sleeps in its provisioner, an operator force-unlocks and takes the
            // lock: terraform's state write is refused and it saves errored.tfstate instead.
            var held = false
            for _ in 0..<100 where !held {
                if try await http(.GET, server.baseURL + "/terraform/state/app/slow/lock", auth: auth).status == 200 {
                    _ = try await http(.DELETE, server.baseURL + "/terraform/state/app/slow/lock", auth: auth)
                    held =
                        try await http(.POST, server.baseURL + "/terraform/state/app/slow/lock", auth: auth, body: lockJSON("operator")).status == 200
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(held)
            let failed = try await apply
            #expect(failed.exitCode == 1)
            let errored = server.home.appendingPathComponent("workspaces/app/slow/errored.tfstate")
            #expect(FileManager.default.fileExists(atPath: errored.path))
            #expect(try await http(.GET, server.baseURL + "/terraform/state/app/slow", auth: auth).status == 204, "nothing was saved")

            _ = try await http(.DELETE, server.baseURL + "/terraform/state/app/slow/lock", auth: auth, body: lockJSON("operator"))
            let again = try await nclav(["apply", tree.path, "--auto-approve"], server: server)
            #expect(again.exitCode == 0, "\(again.stdout)\(again.stderr)")
            let log = try await latestRun(server)["log"] as? String ?? ""
            #expect(log.contains("== pushed errored.tfstate (serial"), "\(log)")
            #expect(!FileManager.default.fileExists(atPath: errored.path))
            // Terraform found the resource it had created in the pushed state: nothing new to add.
            #expect(log.contains("Apply complete! Resources: 0 added") || log.contains("No changes."), "\(log)")
        }
    }
}
