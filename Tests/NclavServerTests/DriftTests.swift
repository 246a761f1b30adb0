import Foundation
import NclavTestSupport
import Testing

/// Drift detection with the real terraform: a partition whose configuration reads a fact from
/// outside its directory (a file standing in for the real world) drifts when that fact changes.
@Suite("nclav drift (real terraform)", .serialized)
struct DriftTests {
    func tree() throws -> (tree: URL, world: URL, cleanup: () -> Void) {
        let scratch = try TestSupport.makeScratchDirectory("nclav-drift")
        let world = scratch.appendingPathComponent("world.txt")
        try "blue\n".write(to: world, atomically: true, encoding: .utf8)
        let partition = scratch.appendingPathComponent("tree/app/web")
        try FileManager.default.createDirectory(at: partition, withIntermediateDirectories: true)
        try "id: app\nname: App\ncloud: local\n".write(to: scratch.appendingPathComponent("tree/app/config.yml"), atomically: true, encoding: .utf8)
        try "id: web\nname: Web\n".write(to: partition.appendingPathComponent("config.yml"), atomically: true, encoding: .utf8)
        try """
        resource "terraform_data" "probe" {
          input = trimspace(file("\(world.path)"))
        }
        """.write(to: partition.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        return (scratch.appendingPathComponent("tree"), world, { try? FileManager.default.removeItem(at: scratch) })
    }

    @Test("in sync, then drifted (read-only, recorded as a plan run), shown by status, graph and diff; apply puts it back")
    func driftLifecycle() async throws {
        let (tree, world, cleanup) = try tree()
        defer { cleanup() }
        try await withServer { server async throws in
            let applied = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server)
            #expect(applied.exitCode == 0, "\(applied.stderr)")
            let never = try await nclavCLI(["status"], server: server)
            #expect(never.stdout.contains("drift:          never checked"))

            let clean = try await nclavCLI(["drift"], server: server)
            #expect(clean.exitCode == 0, "\(clean.stdout)\(clean.stderr)")
            #expect(clean.stdout.contains("Drift: 1 in sync, 0 drifted, 0 error(s), 0 skipped."))

            let versionsBefore = try await http(.GET, server.baseURL + "/terraform/state/app/web/versions", auth: .bearer(server.token)).json()
            try "green\n".write(to: world, atomically: true, encoding: .utf8)
            let reportFile = tree.deletingLastPathComponent().appendingPathComponent("drift.json")
            let drifted = try await nclavCLI(["drift", "--enclave", "app", "--report-file", reportFile.path], server: server)
            #expect(drifted.exitCode == 2, "\(drifted.stdout)\(drifted.stderr)")
            #expect(
                drifted.stdoutLines.contains { $0.hasSuffix("  ~ app/web drifted: Plan: 0 to add, 1 to change, 0 to destroy.") }, "\(drifted.stdout)")
            #expect(!drifted.stdout.contains("succeeded"), "a drifted partition's progress says drifted: \(drifted.stdout)")
            #expect(
                drifted.stdoutLines.contains {
                    $0.hasPrefix("app/web    plan       drifted") && $0.hasSuffix("Plan: 0 to add, 1 to change, 0 to destroy.")
                },
                "\(drifted.stdout)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: reportFile)) as? [String: Any])
            #expect((report["outcomes"] as? [[String: Any]])?.first?["result"] as? String == "drifted")
            let versionsAfter = try await http(.GET, server.baseURL + "/terraform/state/app/web/versions", auth: .bearer(server.token)).json()
            #expect((versionsAfter["versions"] as? [Any])?.count == (versionsBefore["versions"] as? [Any])?.count, "a drift check writes no state")
            let runs = try await nclavCLI(["iac", "runs", "app", "web"], server: server)
            #expect(runs.stdoutLines.filter { $0.contains(" plan ") }.count == 2, "\(runs.stdout)")

            #expect(try await nclavCLI(["status"], server: server).stdout.contains("drift:          0 in-sync, 1 drifted, 0 error"))
            #expect(try await nclavCLI(["graph"], server: server).stdoutLines.contains("  partition app/web [active, drifted]"))
            let diff = try await nclavCLI(["diff", tree.path, "--detailed-exitcode"], server: server)
            #expect(diff.exitCode == 2)
            #expect(diff.stdoutLines.first == "~ partition app/web (drifted)", "\(diff.stdout)")

            let repaired = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server)
            #expect(repaired.exitCode == 0, "\(repaired.stderr)")
            #expect(repaired.stdout.contains("app/web    update     succeeded"), "\(repaired.stdout)")
            #expect(try await nclavCLI(["diff", tree.path], server: server).stdout == "No changes.\n")
            #expect(try await nclavCLI(["drift"], server: server).exitCode == 0)

            // A check that cannot run is named as failed, not shown as a plan that succeeded.
            try FileManager.default.removeItem(at: world)
            let broken = try await nclavCLI(["drift"], server: server)
            #expect(broken.exitCode == 1, "\(broken.stdout)\(broken.stderr)")
            #expect(
                broken.stdoutLines.contains { $0.contains("  ! app/web drift check failed after ") && $0.contains("terraform plan failed") },
                "\(broken.stdout)")
            #expect(!broken.stdout.contains("succeeded"), "\(broken.stdout)")
            #expect(broken.stdoutLines.last == "Drift: 0 in sync, 0 drifted, 1 error(s), 0 skipped.")
        }
    }

    @Test("a state version pushed behind nclav's back with a different attribute is drift (exit 2); apply puts it back")
    func tamperedState() async throws {
        let (tree, _, cleanup) = try tree()
        defer { cleanup() }
        try await withServer { server async throws in
            #expect(try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server).exitCode == 0)
            let address = server.baseURL + "/terraform/state/app/web"
            let current = try await http(.GET, address, auth: .bearer(server.token))
            var state = try current.json()
            state["serial"] = (state["serial"] as? Int ?? 0) + 1
            var resources = try #require(state["resources"] as? [[String: Any]])
            var instances = try #require(resources[0]["instances"] as? [[String: Any]])
            var attributes = try #require(instances[0]["attributes"] as? [String: Any])
            attributes["input"] = ["value": "changed by hand", "type": "string"]
            instances[0]["attributes"] = attributes
            resources[0]["instances"] = instances
            state["resources"] = resources
            let pushed = try await http(.POST, address, auth: .bearer(server.token), body: try JSONSerialization.data(withJSONObject: state))
            #expect(pushed.status == 200, "\(pushed.text)")

            let drifted = try await nclavCLI(["drift"], server: server)
            #expect(drifted.exitCode == 2, "\(drifted.stdout)\(drifted.stderr)")
            #expect(
                drifted.stdoutLines.contains { $0.hasSuffix("  ~ app/web drifted: Plan: 0 to add, 1 to change, 0 to destroy.") }, "\(drifted.stdout)")
            #expect(!drifted.stdout.contains("succeeded"), "a drifted partition's progress says drifted: \(drifted.stdout)")
            #expect(drifted.stdout.contains("Plan: 0 to add, 1 to change, 0 to destroy."))
            #expect(try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server).exitCode == 0)
            let again = try await nclavCLI(["drift"], server: server)
            #expect(again.exitCode == 0, "\(again.stdout)")
            #expect(again.stdout.contains("Drift: 1 in sync, 0 drifted"))
        }
    }

    @Test("serve --drift-interval checks on its own; a malformed interval is a usage error")
    func scheduled() async throws {
        let (tree, _, cleanup) = try tree()
        defer { cleanup() }
        let bad = try TestSupport.run(TestSupport.nclavBinary.path, ["serve", "--drift-interval", "soon"])
        #expect(bad.exitCode == 64)
        #expect(bad.stderr.contains("--drift-interval `soon` is not a duration; use e.g. 90s, 30m, 6h, 1d or 1h30m"))
        try await withServer(arguments: ["--drift-interval", "1s"]) { server async throws in
            // The schedule may hold the lock for a moment: retry a 409.
            var applied = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server)
            for _ in 0..<20 where applied.stderr.contains("409") {
                try await Task.sleep(for: .milliseconds(300))
                applied = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server)
            }
            #expect(applied.exitCode == 0, "\(applied.stderr)")
            var checked = false
            for _ in 0..<100 where !checked {
                let status = try await http(.GET, server.baseURL + "/status", auth: .bearer(server.token)).json()
                checked = (status["drift"] as? [String: Int])?["in-sync"] == 1
                if !checked { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(checked, "a scheduled check ran and stored its result")
        }
    }
}
