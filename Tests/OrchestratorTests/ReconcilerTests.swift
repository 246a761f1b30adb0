import Foundation
import IacRunner
import NclavAuth
import NclavConfig
import NclavCore
import NclavStore
import NclavTestSupport
import Orchestrator
import Testing

@Suite("Reconcile with real terraform", .serialized)
struct ReconcilerTests {
    @Test("first apply: importers see their exporters' real outputs; re-apply starts nothing")
    func firstApplyAndNoop() async throws {
        try await ReconcileHarness.with { harness in
            let report = try await harness.apply()
            #expect(report.errors.isEmpty, "\(report.errors)")
            #expect(report.outcomes.map(\.result) == Array(repeating: .succeeded, count: 5))
            // api's hostname is built from the gateway's output, resolved before api ran.
            #expect(try await harness.outputs("product-a-dev", "api") == ["hostname": "api.gw.local-1.internal", "port": "8443"])
            #expect(try await harness.outputs("data", "db") == ["hostname": "db.internal", "port": "5432"])
            let runs = try await harness.runCount()
            #expect(runs == 5)

            let again = try await harness.apply()
            #expect(again.plan.lines == ["No changes."])
            #expect(again.runCount == 0)
            #expect(try await harness.runCount() == runs)

            // The admin token is in no run log and no workspace file.
            for enclave in try await harness.store.enclaves() {
                for partition in try await harness.store.partitions(ofEnclave: enclave.id) {
                    for run in try await harness.store.runs(enclave: enclave.id, partition: partition.partitionID, limit: 10) {
                        let log = try await harness.store.run(run.id)?.log ?? ""
                        #expect(!log.contains(harness.server.token))
                        #expect(log.contains("== terraform init"))
                    }
                }
            }
            let workspaces = harness.server.home.appendingPathComponent("workspaces")
            for file in FileManager.default.enumerator(atPath: workspaces.path)?.compactMap({ $0 as? String }) ?? [] {
                let content = (try? String(contentsOf: workspaces.appendingPathComponent(file), encoding: .utf8)) ?? ""
                #expect(!content.contains(harness.server.token), "workspaces/\(file)")
            }
        }
    }

    @Test("changing one input reruns it and what depends on its outputs; an edited .tf reruns that partition")
    func incremental() async throws {
        try await ReconcileHarness.with { harness in
            _ = try await harness.apply()
            try harness.edit("shared/network/gateway/config.yml") {
                $0.replacingOccurrences(of: "region: \"{{ nclav_region }}\"", with: "region: eu-west-1")
            }
            let changed = try await harness.apply()
            #expect(changed.errors.isEmpty)
            #expect(
                Set(changed.outcomes.filter { $0.result == .succeeded }.map(\.key.description)) == [
                    "shared-network/gateway", "product-a-dev/api", "product-a-dev/worker",
                ])
            #expect(try await harness.outputs("product-a-dev", "api")["hostname"] == "api.gw.eu-west-1.internal")

            try harness.edit("data/queue/main.tf") { $0 + "\n# edited\n" }
            let edited = try await harness.apply()
            // The queue's outputs did not change, so its importer (db) has nothing new to apply.
            #expect(edited.outcomes.filter { $0.result == .succeeded }.map(\.key.description) == ["data/queue"])
        }
    }

    @Test("removing a partition destroys it; removing an enclave tears it down after its partitions")
    func removal() async throws {
        try await ReconcileHarness.with { harness in
            _ = try await harness.apply()
            try FileManager.default.removeItem(at: harness.tree.appendingPathComponent("product-a/dev/worker"))
            let removedPartition = try await harness.apply()
            #expect(removedPartition.errors.isEmpty, "\(removedPartition.errors)")
            #expect(
                removedPartition.outcomes.map { "\($0.key) \($0.operation.rawValue) \($0.result.rawValue)" } == [
                    "product-a-dev/worker teardown succeeded"
                ])
            #expect(try await harness.store.partitions(ofEnclave: "product-a-dev").map(\.partitionID) == ["api"])

            try FileManager.default.removeItem(at: harness.tree.appendingPathComponent("product-a"))
            let removedEnclave = try await harness.apply()
            #expect(removedEnclave.errors.isEmpty, "\(removedEnclave.errors)")
            #expect(try await harness.store.enclave("product-a-dev") == nil)
            #expect(try await harness.store.enclaves().map(\.id) == ["data", "shared-network"])
            let events = try await harness.store.events(enclave: "product-a-dev", limit: 50).map(\.kind)
            #expect(events.first == "enclave.destroyed")
        }
    }

    @Test("a failing partition skips only its dependents; the error and terraform's text are reported")
    func failureIsolation() async throws {
        try await ReconcileHarness.with { harness in
            try harness.edit("shared/network/gateway/main.tf") {
                $0.replacingOccurrences(of: "input = \"gw.", with: "input = undefined_function(\"gw.").replacingOccurrences(
                    of: ".internal\"\n}", with: ".internal\")\n}")
            }
            let report = try await harness.apply()
            let byKey = Dictionary(uniqueKeysWithValues: report.outcomes.map { ($0.key.description, $0) })
            #expect(byKey["shared-network/gateway"]?.result == .failed)
            #expect(byKey["product-a-dev/api"]?.result == .skipped)
            #expect(byKey["product-a-dev/api"]?.reason == "upstream shared-network/gateway failed")
            #expect(byKey["product-a-dev/worker"]?.result == .skipped)
            #expect(byKey["data/queue"]?.result == .succeeded)
            #expect(byKey["data/db"]?.result == .succeeded)
            #expect(report.errors.count == 1)
            #expect(report.errors.first?.hasPrefix("shared-network/gateway: terraform") == true)
            let runID = try #require(byKey["shared-network/gateway"]?.runID)
            let run = try #require(try await harness.store.run(runID))
            #expect(run.status == .failed)
            #expect(run.log.contains("Call to unknown function"), "\(run.log)")
            #expect(try await harness.store.lock(try StateKey(enclave: "shared-network", partition: "gateway")) == nil)
        }
    }

    @Test("a second reconcile while one runs is refused, naming the holder; a dry run starts nothing")
    func oneAtATime() async throws {
        try await ReconcileHarness.with { harness in
            let dry = try await harness.apply(ReconcileOptions(dryRun: true))
            #expect(dry.plan.changes.count == 16)
            #expect(dry.runCount == 0)
            #expect(try await harness.store.enclaves().isEmpty)
            #expect(try await harness.runCount() == 0)

            async let first = harness.apply()
            try await Task.sleep(for: .milliseconds(100))
            await #expect(throws: ReconcileError.self) { _ = try await harness.apply() }
            #expect(try await first.errors.isEmpty)
        }
    }
}
