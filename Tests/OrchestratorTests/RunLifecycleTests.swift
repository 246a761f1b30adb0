import Foundation
import IacRunner
import NclavAuth
import NclavConfig
import NclavCore
import NclavStore
import NclavTestSupport
import Orchestrator
import TFBackend
import Testing

/// The edges of a partition run's life, with real terraform and a real `nclav serve`: what
/// is reported when no process starts, what a teardown of something never applied does, what
/// a run leaves behind, and what outlives it.
@Suite("Run lifecycle (real terraform)", .serialized)
struct RunLifecycleTests {
    static let good = """
        resource "terraform_data" "thing" { input = "thing" }
        output "hostname" { value = "thing.internal" }
        """

    @Test("a partition that never applied and cannot even start is removed without terraform; so is its enclave")
    func neverAppliedTeardown() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            let tree = harness.builder
            try tree.enclave("app")
            try tree.enclave("base")
            try tree.partition("base", "net", main: Self.good)
            try tree.partition("app", "ok", main: Self.good)
            try tree.partition("app", "notool", "terraform:\n  tool: /nonexistent/terraform\n", main: Self.good)
            try tree.partition("app", "broken", main: "resource \"terraform_data\" \"x\" {\n  input = \n}\n")
            let first = try await harness.apply()
            let byKey = Dictionary(uniqueKeysWithValues: first.outcomes.map { ($0.key.description, $0) })
            #expect(byKey["app/ok"]?.result == .succeeded)
            #expect(byKey["app/notool"]?.result == .failed)
            #expect(byKey["app/notool"]?.runID == nil, "no process could start")
            #expect(byKey["app/notool"]?.operation == .provision)
            #expect(byKey["app/broken"]?.result == .failed)
            // Failures that start no process still get their end line.
            let lines = await harness.progress.lines
            #expect(lines.contains { $0.hasPrefix("  ! app/notool provision failed after") && $0.contains("no IaC tool found") }, "\(lines)")
            #expect(lines.contains { $0.hasPrefix("  ! app/broken provision failed after") }, "\(lines)")

            try tree.remove("app/notool")
            try tree.remove("app/broken")
            let removed = try await harness.apply()
            #expect(removed.errors.isEmpty, "\(removed.errors)")
            #expect(
                Set(removed.outcomes.map { "\($0.key) \($0.operation.rawValue) \($0.result.rawValue)" }) == [
                    "app/notool teardown succeeded", "app/broken teardown succeeded",
                ])
            #expect(removed.outcomes.allSatisfy { $0.runID == nil }, "nothing to destroy, so no terraform")
            #expect(try await harness.store.partitions(ofEnclave: "app").map(\.partitionID) == ["ok"])

            try tree.remove("app")
            let gone = try await harness.apply()
            #expect(gone.errors.isEmpty, "\(gone.errors)")
            #expect(try await harness.store.enclave("app") == nil)
        }
    }

    @Test("a teardown that cannot run blocks removal with advice; forget drops it and keeps its state")
    func forget() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            let tree = harness.builder
            try tree.enclave("app")
            try tree.partition("app", "keep", main: Self.good)
            try tree.partition("app", "lost", main: Self.good)
            #expect(try await harness.apply().errors.isEmpty)
            try FileManager.default.removeItem(at: harness.server.home.appendingPathComponent("workspaces/app/lost"))
            try tree.remove("app/lost")
            let blocked = try await harness.apply()
            let outcome = try #require(blocked.outcomes.first)
            #expect(outcome.result == .failed)
            #expect(outcome.reason?.contains("nclav state forget app lost") == true, "\(outcome.reason ?? "")")

            let forgotten = try await harness.reconciler.forget(enclave: "app", partition: "lost")
            #expect(forgotten.resources == ["terraform_data.thing"])
            #expect(try await harness.partition("app", "lost") == nil)
            #expect(try await harness.store.latestState(try StateKey(enclave: "app", partition: "lost")) != nil, "its state is kept")
            #expect(try await harness.store.events(enclave: "app", limit: 5).first?.kind == "partition.forgotten")
            let after = try await harness.apply()
            #expect(after.plan.isEmpty, "\(after.plan.lines)")
            await #expect(throws: ReconcileError.self) { _ = try await harness.reconciler.forget(enclave: "app", partition: "lost") }
        }
    }

    @Test("a declared output missing from the state fails the run, and its log says so last")
    func missingOutput() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            try harness.builder.enclave("app")
            // `url` has a block (validation checks that), but a null value: terraform stores no such output.
            try harness.builder.partition(
                "app", "api", "declared_outputs: [hostname, url]\n", main: Self.good + "\noutput \"url\" { value = null }\n")
            let report = try await harness.apply()
            let outcome = try #require(report.outcomes.first)
            #expect(outcome.result == .failed)
            #expect(outcome.reason?.contains("declared output `url` is missing") == true)
            let runID = try #require(outcome.runID)
            let log = try #require(try await harness.store.run(runID)?.log)
            let last = log.split(separator: "\n").last.map(String.init) ?? ""
            #expect(last.hasPrefix("== failed: declared output `url` is missing"), "\(last)")
            #expect(try await harness.store.run(runID)?.status == .failed)
            #expect(await harness.progress.lines.contains { $0.hasPrefix("  ! app/api provision failed") })
        }
    }

    @Test("terraform's errors in a local module name the module's path in the tree, not the vendored copy in the workspace")
    func modulePathsInLogs() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            let tree = harness.builder
            try tree.enclave("app")
            try tree.file("modules/bad/main.tf", "resource \"terraform_data\" \"x\" {\n  input = no_such_function()\n}\n")
            try tree.file("app/api/config.yml", "id: api\nname: API\nterraform:\n  source: ../../modules/bad\n")
            let report = try await harness.apply()
            let outcome = try #require(report.outcomes.first)
            #expect(outcome.result == .failed)
            let runID = try #require(outcome.runID)
            let log = try #require(try await harness.store.run(runID)?.log)
            #expect(log.contains("modules/bad/main.tf line 2"), "\(log)")
            #expect(!log.contains("nclav_module_source"), "\(log)")
        }
    }

    @Test("partitions never created are reported as provision, skipped ones included")
    func provisionWhenNeverCreated() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            let tree = harness.builder
            try tree.enclave(
                "app",
                "exports:\n  - name: up\n    target_partition: up\n    type: http\n    to: any_enclave\n"
                    + "imports:\n  - from: app\n    export_name: up\n    alias: up\n")
            try tree.partition(
                "app", "up", "produces: http\ndeclared_outputs: [hostname, port]\n",
                main: "output \"hostname\" { value = file(\"missing.txt\") }\noutput \"port\" { value = 1 }\n")
            try tree.partition(
                "app", "down", "inputs:\n  host: \"{{ up.hostname }}\"\n",
                main: "variable \"host\" { type = string }\n" + Self.good)
            let first = try await harness.apply()
            #expect(
                first.outcomes.map { "\($0.key) \($0.operation.rawValue) \($0.result.rawValue)" } == [
                    "app/up provision failed", "app/down provision skipped",
                ])
            // Failing again: still never created.
            let second = try await harness.apply()
            #expect(second.outcomes.map(\.operation) == [.provision, .provision])
            try tree.file("app/up/main.tf", "output \"hostname\" { value = \"up.internal\" }\noutput \"port\" { value = 1 }\n")
            let fixed = try await harness.apply()
            #expect(
                fixed.outcomes.map { "\($0.key) \($0.operation.rawValue) \($0.result.rawValue)" } == [
                    "app/up provision succeeded", "app/down provision succeeded",
                ])
            try tree.file("app/up/main.tf", "output \"hostname\" { value = \"up2.internal\" }\noutput \"port\" { value = 1 }\n")
            #expect(try await harness.apply().outcomes.map(\.operation) == [.update, .update])
        }
    }

    @Test("a run's backend credential stops working when the run ends; the run records its tool version")
    func credentialEndsWithRun() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            let kept = harness.scratch.appendingPathComponent("password.txt")
            try harness.builder.enclave("app")
            try harness.builder.partition(
                "app", "api",
                main: """
                    resource "terraform_data" "keep" {
                      provisioner "local-exec" {
                        command = "printf %s \\"$TF_HTTP_PASSWORD\\" > \(kept.path)"
                      }
                    }
                    """)
            let report = try await harness.apply()
            #expect(report.errors.isEmpty, "\(report.errors)")
            let password = try String(contentsOf: kept, encoding: .utf8)
            #expect(password.hasPrefix("nclavrun."))
            let state = "\(harness.server.baseURL)/terraform/state/app/api"
            let withRun = try TestSupport.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", "nclav-run:\(password)", state])
            #expect(withRun.stdout == "401", "the run is over, so its credential is too")
            let withAdmin = try TestSupport.run(
                "/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer \(harness.server.token)", state])
            #expect(withAdmin.stdout == "200")

            let runID = try #require(report.outcomes.first?.runID)
            let run = try #require(try await harness.store.run(runID))
            let version = try TestSupport.run(try TestSupport.which("terraform"), ["version", "-json"])
            let expected = try #require(
                (try JSONSerialization.jsonObject(with: Data(version.stdout.utf8)) as? [String: Any])?["terraform_version"] as? String)
            #expect(run.tool == "terraform")
            #expect(run.toolVersion == expected)
            // The module declares neither nclav_enclave nor nclav_partition: no warning about them.
            #expect(!run.log.contains("undeclared variable"), "\(run.log)")
        }
    }

    @Test("a record that cannot be stored fails that partition only; its siblings' terraform runs finish")
    func storeWriteFailure() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            try harness.builder.enclave("app")
            try harness.builder.partition("app", "fast", main: Self.good)
            try harness.builder.partition(
                "app", "slow",
                main: """
                    resource "terraform_data" "wait" {
                      provisioner "local-exec" { command = "sleep 2" }
                    }
                    """)
            var environment = harness.reconciler.environment
            environment.store = FaultyStore(base: harness.store, failingRecords: [try StateKey(enclave: "app", partition: "fast")])
            let report = try await Reconciler(environment: environment).reconcile(try harness.load(), options: ReconcileOptions(parallelism: 2))
            let byKey = Dictionary(uniqueKeysWithValues: report.outcomes.map { ($0.key.description, $0) })
            #expect(byKey["app/fast"]?.result == .failed)
            #expect(
                byKey["app/fast"]?.reason?.contains("its record could not be stored: disk I/O error (injected)") == true,
                "\(byKey["app/fast"]?.reason ?? "")")
            #expect(byKey["app/slow"]?.result == .succeeded, "\(byKey["app/slow"]?.reason ?? "")")
            let slowRunID = try #require(byKey["app/slow"]?.runID)
            let slowRun = try #require(try await harness.store.run(slowRunID))
            #expect(slowRun.status == .succeeded)
            // The next apply (the store healthy again) runs the failed one again and converges.
            let again = try await harness.apply()
            #expect(again.outcomes.map { "\($0.key) \($0.result.rawValue)" } == ["app/fast succeeded"])
            #expect(try await harness.reconciler.plan(try harness.load()).plan.isEmpty)
        }
    }

    @Test("a torn-down partition leaves no workspace and no state; run logs stay")
    func teardownCleansUp() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            try harness.builder.enclave("app")
            try harness.builder.enclave("base")
            try harness.builder.partition("base", "net", main: Self.good)
            try harness.builder.partition("app", "keep", main: Self.good)
            try harness.builder.partition("app", "gone", main: Self.good)
            let first = try await harness.apply()
            let gone = try StateKey(enclave: "app", partition: "gone")
            let workspace = harness.server.home.appendingPathComponent("workspaces/app/gone")
            #expect(FileManager.default.fileExists(atPath: workspace.path))
            try harness.builder.remove("app/gone")
            let report = try await harness.apply()
            #expect(report.outcomes.map { "\($0.key) \($0.operation.rawValue) \($0.result.rawValue)" } == ["app/gone teardown succeeded"])
            #expect(!FileManager.default.fileExists(atPath: workspace.path))
            #expect(try await harness.store.latestState(gone) == nil)
            #expect(try await harness.store.stateVersions(gone).isEmpty)
            let firstRun = try #require(first.outcomes.first { $0.key == gone }?.runID)
            #expect(try await harness.store.run(firstRun) != nil, "run records and logs are kept")

            try harness.builder.remove("app")
            #expect(try await harness.apply().errors.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: harness.server.home.appendingPathComponent("workspaces/app").path))
        }
    }
}
