import Foundation
import NclavTestSupport
import Testing

/// `nclav diff` / `apply` / `iac` against a real server, uploading the tree as the CLI does.
@Suite("nclav diff, apply and iac (real terraform)", .serialized)
struct ApplyCommandTests {
    func nclav(_ arguments: [String], server: ServerProcess) async throws -> TestSupport.ProcessResult {
        try await nclavCLI(arguments, server: server)
    }

    func examplesCopy() throws -> (URL, () -> Void) {
        let scratch = try TestSupport.makeScratchDirectory("nclav-examples")
        let target = scratch.appendingPathComponent("local")
        try FileManager.default.copyItem(at: TestSupport.packageRoot.appendingPathComponent("examples/local"), to: target)
        return (target, { try? FileManager.default.removeItem(at: scratch) })
    }

    @Test("apply the local example, re-apply without changes, change one input, read the logs")
    func applyExample() async throws {
        let (tree, cleanup) = try examplesCopy()
        defer { cleanup() }
        try await withServer { server async throws in
            let first = try await nclav(["apply", tree.path, "--parallelism", "2"], server: server)
            #expect(first.exitCode == 0, "\(first.stdout)\(first.stderr)")
            #expect(first.stdout.contains("Apply complete: 5 succeeded, 0 failed, 0 skipped (partitions)."))
            #expect(first.stdout.contains("Enclaves: 3 provisioned."), "the table's enclave rows are counted apart")
            #expect(first.stdoutLines.contains { $0.contains("shop/web provision started") })

            let graph = try await nclav(["graph"], server: server)
            #expect(graph.stdoutLines.contains("enclave shop [local, active]"))
            #expect(graph.stdoutLines.contains("  shop/web -> platform/network (edge = platform/edge)"))
            #expect(graph.stdoutLines.contains("  shop/api -> data/postgres (db = data/pg)"))
            let dot = try await nclav(["graph", "--output", "dot", "--enclave", "data"], server: server)
            #expect(dot.stdout.hasPrefix("digraph nclav {"))
            #expect(dot.stdout.contains("\"shop/api\" -> \"data/postgres\" [label=\"db\"];"))
            #expect(!dot.stdout.contains("platform/network"))

            let again = try await nclav(["apply", tree.path], server: server)
            #expect(again.exitCode == 0)
            #expect(again.stdout == "No changes.\n")
            let unchanged = try await nclav(["diff", tree.path, "--detailed-exitcode"], server: server)
            #expect(unchanged.exitCode == 0)
            #expect(unchanged.stdout == "No changes.\n")

            let config = tree.appendingPathComponent("platform/network/config.yml")
            try (try String(contentsOf: config, encoding: .utf8)).replacingOccurrences(of: "region: \"{{ nclav_region }}\"", with: "region: moon-1")
                .write(to: config, atomically: true, encoding: .utf8)
            let changed = try await nclav(["diff", tree.path, "--detailed-exitcode"], server: server)
            #expect(changed.exitCode == 2)
            #expect(changed.stdoutLines.first == "~ partition platform/network (changed)")
            let reapplied = try await nclav(["apply", tree.path], server: server)
            #expect(reapplied.exitCode == 0, "\(reapplied.stderr)")
            #expect(reapplied.stdout.contains("platform/network  update"))

            let runs = try await nclav(["iac", "runs", "platform", "network"], server: server)
            // Newest first: the update, its plan, the first provision, its plan (and the header).
            #expect(runs.stdoutLines.count == 5, "\(runs.stdout)")
            #expect(runs.stdoutLines[0].contains("DURATION") && runs.stdoutLines[1].contains("s "), "\(runs.stdout)")
            #expect(runs.stdoutLines[1].contains("update     succeeded"))
            #expect(runs.stdoutLines[2].contains("plan       succeeded"))
            // shop/web imports the edge hostname, so the region change re-ran it: an in-place update.
            let logs = try await nclav(["iac", "logs", "shop", "web"], server: server)
            #expect(logs.stdout.contains("Apply complete! Resources: 0 added, 1 changed, 0 destroyed."), "\(logs.stdout)")
            // The first run's provisioner printed the values it was given on the very first apply.
            let webRuns = try await nclav(["iac", "runs", "shop", "web"], server: server)
            let firstRun = try #require(webRuns.stdoutLines.last { $0.contains("provision") }?.split(separator: " ").first.map(String.init))
            let firstLog = try await nclav(["iac", "logs", "shop", "web", firstRun], server: server)
            #expect(
                firstLog.stdout.contains(
                    "storefront behind edge.local-1.platform.internal calls https://shop-api.internal:8443 (upstream pg.data.internal:5432)"),
                "\(firstLog.stdout)")
            #expect(firstLog.stdout.contains("Apply complete! Resources: 1 added"))
            #expect(!logs.stdout.contains(server.token))
        }
    }

    @Test("changing an input of a partition that imports something applies it, then its importer, and converges")
    func middlePartitionEdit() async throws {
        let (tree, cleanup) = try examplesCopy()
        defer { cleanup() }
        try await withServer { server async throws in
            #expect(try await nclav(["apply", tree.path, "--parallelism", "2"], server: server).exitCode == 0)
            // shop/api imports data/postgres and is imported by shop/web: neither a root nor a leaf.
            let config = tree.appendingPathComponent("shop/api/config.yml")
            try (try String(contentsOf: config, encoding: .utf8)).replacingOccurrences(of: "service_name: \"shop-", with: "service_name: \"shop2-")
                .write(to: config, atomically: true, encoding: .utf8)
            let diff = try await nclav(["diff", tree.path, "--detailed-exitcode"], server: server)
            #expect(diff.exitCode == 2)
            #expect(
                diff.stdoutLines == [
                    "~ partition shop/api (changed)",
                    "~ partition shop/web (if shop/api's outputs change)",
                    "1 change(s) would be applied; 1 more partition(s) run only if what they read changes.",
                ])
            // The same, structured, for scripts.
            let json = try await nclav(["diff", tree.path, "-o", "json"], server: server)
            let answer = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            let entries = try #require(answer["entries"] as? [[String: String]])
            #expect(
                entries == [
                    ["kind": "update_partition", "enclave": "shop", "partition": "api", "reason": "changed"],
                    ["kind": "may_update_partition", "enclave": "shop", "partition": "web", "reason": "if shop/api's outputs change"],
                ], "\(entries)")
            // shop/web's site is replaced when the API's url changes: approved here (the plan and
            // its approval are PlanCommandTests' subject; this is the engine's convergence).
            let apply = try await nclav(["apply", tree.path, "--auto-approve"], server: server)
            #expect(apply.exitCode == 0, "\(apply.stdout)\(apply.stderr)")
            #expect(!apply.stdout.contains("No changes."), "\(apply.stdout)")
            let started = apply.stdoutLines.filter { $0.contains(" started (run ") }
            #expect(started.count == 2)
            #expect(started.first?.contains("shop/api update started") == true, "shop/api runs first: \(apply.stdout)")
            #expect(started.last?.contains("shop/web update started") == true, "\(apply.stdout)")
            #expect(apply.stdoutLines.contains { $0.hasPrefix("shop/api") && $0.contains("update") && $0.contains("succeeded") })
            #expect(apply.stdoutLines.contains { $0.hasPrefix("shop/web") && $0.contains("update") && $0.contains("succeeded") })
            #expect(apply.stdout.contains("Apply complete: 2 succeeded, 0 failed, 0 skipped (partitions)."))
            let after = try await nclav(["diff", tree.path, "--detailed-exitcode"], server: server)
            #expect(after.exitCode == 0)
            #expect(after.stdout == "No changes.\n")
            let outputs = try await http(.GET, server.baseURL + "/enclaves/shop", auth: .bearer(server.token)).json()
            let api = (outputs["partitions"] as? [[String: Any]])?.first { $0["partition_id"] as? String == "api" }
            #expect(((api?["outputs"] as? [String: String])?["hostname"])?.hasPrefix("shop2-") == true, "\(String(describing: api))")
        }
    }

    @Test("destroy: refused while imported, one partition, then everything in dependency order")
    func destroy() async throws {
        let (tree, cleanup) = try examplesCopy()
        defer { cleanup() }
        try await withServer { server async throws in
            #expect(try await nclav(["apply", tree.path], server: server).exitCode == 0)
            let refused = try await nclav(["destroy", "data", "--yes"], server: server)
            #expect(refused.exitCode == 1)
            #expect(refused.stderr.contains("data/postgres is still imported by shop/api"), "\(refused.stderr)")
            let unconfirmed = try await nclav(["destroy", "shop"], server: server)
            #expect(unconfirmed.exitCode == 1)
            // What would go is listed before the question, with what each state holds.
            #expect(
                unconfirmed.stdoutLines == [
                    "This destroys:", "  - partition shop/api (1 resource in its state)", "  - partition shop/web (1 resource in its state)",
                    "  - enclave shop (its local boundary)",
                ], "\(unconfirmed.stdout)")
            #expect(unconfirmed.stderr.contains("pass --yes"))

            let reportFile = tree.deletingLastPathComponent().appendingPathComponent("destroy-report.json")
            let one = try await nclav(["destroy", "shop", "--partition", "web", "--yes", "--report-file", reportFile.path], server: server)
            #expect(one.exitCode == 0, "\(one.stderr)")
            #expect(
                one.stdout.hasPrefix(
                    "- shop/web teardown succeeded\ndestroyed partition shop/web\n\nPARTITION  OPERATION  RESULT     DURATION  RUN / REASON\nshop/web   teardown   succeeded  "
                ))
            let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: reportFile)) as? [String: Any])
            #expect(report["command"] as? String == "destroy")
            let outcomes = try #require(report["outcomes"] as? [[String: Any]])
            #expect(outcomes.count == 1)
            #expect(outcomes.first?["partition"] as? String == "shop/web")
            #expect(outcomes.first?["result"] as? String == "succeeded")
            #expect((outcomes.first?["seconds"] as? Double ?? 0) > 0)
            #expect((outcomes.first?["run_id"] as? String)?.count == 36)
            #expect((report["summary"] as? [String: Int])?["succeeded"] == 1)
            let remaining = try await http(.GET, server.baseURL + "/enclaves/shop", auth: .bearer(server.token)).json()
            #expect((remaining["partitions"] as? [[String: Any]])?.compactMap { $0["partition_id"] as? String } == ["api"])

            let everything = try await nclav(["destroy", "--all", "--yes"], server: server)
            #expect(everything.exitCode == 0, "\(everything.stderr)")
            #expect(
                everything.stdoutLines.filter { $0.hasPrefix("destroyed enclave") } == [
                    "destroyed enclave platform", "destroyed enclave shop", "destroyed enclave data",
                ], "shop imports from data, so it goes first")
            #expect(try await nclav(["graph"], server: server).stdout == "(nothing applied yet)\n")
            let missing = try await nclav(["destroy", "shop", "--yes"], server: server)
            #expect(missing.stderr.contains("server answered 404: enclave `shop` is not in state"))
        }
    }

    @Test("an invalid tree is refused before anything runs, with local paths")
    func invalidTree() async throws {
        try await withServer { server async throws in
            let tree = TestSupport.fixture("invalid/two-independent-mistakes/tree").path
            let result = try await nclav(["apply", tree], server: server)
            #expect(result.exitCode == 1)
            #expect(result.stderr.contains("error: the enclaves tree is invalid (2 error(s))"))
            #expect(result.stderr.contains("\(tree)/app/api/config.yml:3:11: error: `produces` has unknown value `htp`"))
            #expect(try await http(.GET, server.baseURL + "/enclaves", auth: .bearer(server.token)).text == #"{"enclaves":[]}"#)
        }
    }

    @Test("a failing partition makes apply exit 1 and name it; unrelated partitions still apply")
    func failingPartition() async throws {
        let (tree, cleanup) = try examplesCopy()
        defer { cleanup() }
        let file = tree.appendingPathComponent("data/cache/main.tf")
        try (try String(contentsOf: file, encoding: .utf8) + "\nresource \"terraform_data\" \"broken\" {\n  input = no_such_function()\n}\n")
            .write(to: file, atomically: true, encoding: .utf8)
        try await withServer { server async throws in
            let reportFile = tree.deletingLastPathComponent().appendingPathComponent("apply-report.json")
            let result = try await nclav(["apply", tree.path, "--report-file", reportFile.path], server: server)
            #expect(result.exitCode == 1)
            #expect(result.stderr.contains("error: data/cache: terraform"))
            // The report file says the same, with why each skipped partition was skipped.
            let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: reportFile)) as? [String: Any])
            let outcomes = try #require(report["outcomes"] as? [[String: Any]])
            let skipped = outcomes.filter { $0["result"] as? String == "skipped" }
            #expect(!skipped.isEmpty)
            #expect(skipped.allSatisfy { ($0["reason"] as? String)?.isEmpty == false && $0["run_id"] == nil })
            #expect(outcomes.first { $0["partition"] as? String == "data/cache" }?["result"] as? String == "failed")
            #expect((report["summary"] as? [String: Int])?["failed"] == 1)
            #expect((report["errors"] as? [String])?.isEmpty == false)
            #expect(result.stdout.contains("data/postgres     update     skipped") || result.stdout.contains("data/postgres     provision  skipped"))
            #expect(result.stdout.contains("platform/network  provision  succeeded"))
            let logs = try await nclav(["iac", "logs", "data", "cache"], server: server)
            #expect(logs.stdout.contains("Call to unknown function"))
        }
    }

    @Test("a second apply while one runs gets 409 and says so")
    func concurrentApply() async throws {
        let (tree, cleanup) = try examplesCopy()
        defer { cleanup() }
        let file = tree.appendingPathComponent("data/cache/main.tf")
        try (try String(contentsOf: file, encoding: .utf8)).replacingOccurrences(
            of: "resource \"terraform_data\" \"queue\" {",
            with: "resource \"terraform_data\" \"queue\" {\n  provisioner \"local-exec\" {\n    command = \"sleep 3\"\n  }"
        )
        .write(to: file, atomically: true, encoding: .utf8)
        try await withServer { server async throws in
            async let first = nclav(["apply", tree.path, "--auto-approve"], server: server)
            try await Task.sleep(for: .milliseconds(800))
            let second = try await nclav(["apply", tree.path, "--auto-approve"], server: server)
            #expect(second.exitCode == 1)
            #expect(second.stderr.contains("server answered 409: another reconcile is in progress"), "\(second.stderr)")
            // With --wait it waits for the first instead, then plans and finds it done.
            let waiting = try await nclav(["apply", tree.path, "--wait", "2m"], server: server)
            #expect(waiting.exitCode == 0, "\(waiting.stdout)\(waiting.stderr)")
            #expect(waiting.stdout.hasPrefix("waiting: server answered 409: another reconcile is in progress"), "\(waiting.stdout)")
            #expect(waiting.stdout.hasSuffix("No changes.\n"), "\(waiting.stdout)")
            #expect(try await first.exitCode == 0)
        }
    }

    @Test("bundle paths that would leave the upload directory are refused")
    func bundleTraversal() async throws {
        try await withServer { server async throws in
            for path in ["../escape.yml", "/etc/passwd", "a/../../b", "a//b"] {
                let body = try JSONSerialization.data(withJSONObject: ["bundle": [["path": path, "content": "eA=="]]])
                let answer = try await http(.POST, server.baseURL + "/reconcile/dry-run", auth: .bearer(server.token), body: body)
                #expect(answer.status == 400, "\(path)")
                #expect(answer.text.contains("is not a relative path inside the tree"))
            }
        }
    }
}
