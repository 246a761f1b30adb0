import Foundation
import NclavConfig
import NclavCore
import NclavTestSupport
import Orchestrator
import Testing

/// The stored state a successful apply of `plan` would leave, with the given outputs.
func appliedState(_ tree: LoadedTree, _ plan: Plan, outputs: [String: [String: String]] = [:]) -> StoredState {
    var state = StoredState()
    for loaded in tree.enclaves {
        state.enclaves.append(
            EnclaveState(
                id: loaded.enclave.id, desired: loaded.enclave, resolvedCloud: loaded.enclave.cloud ?? .local,
                status: .active, fingerprint: plan.enclaveFingerprints[loaded.enclave.id]))
        for partition in loaded.partitions {
            let key = try! StateKey(enclave: loaded.enclave.id, partition: partition.partition.id)
            state.partitions.append(
                PartitionState(
                    enclaveID: key.enclave, partitionID: key.partition, desired: partition.partition,
                    status: .active, outputs: outputs[key.description] ?? [:],
                    fingerprint: plan.partitionFingerprints[key]))
        }
    }
    return state
}

/// The outputs the landing-zone fixture's partitions produce.
let landingZoneOutputs: [String: [String: String]] = [
    "data/db": ["hostname": "db.internal", "port": "5432"], "data/queue": ["queue_url": "queue://data/events"],
    "shared-network/gateway": ["hostname": "gw.local-1.internal", "port": "443"],
    "product-a-dev/api": ["hostname": "api.gw.local-1.internal", "port": "8443"],
]

@Suite("Planner: diff against stored state", .serialized)
struct PlannerTests {
    func load(_ directory: URL) throws -> LoadedTree {
        let result = try ValidationResult.check(directory: directory.path)
        #expect(result.isValid, "\(result.diagnosticLines())")
        return result.tree
    }

    func withCopy(_ body: (URL) throws -> Void) throws {
        let scratch = try TestSupport.makeScratchDirectory("nclav-plan")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try body(try TestSupport.copyFixture("valid/landing-zone", into: scratch))
    }

    /// Applies the fixture once (in state), then returns what the next plan says.
    func planAfterApply(edit: (URL) throws -> Void) throws -> [String] {
        var lines: [String] = []
        try withCopy { tree in
            let first = try load(tree)
            let stored = appliedState(first, Planner.plan(first, stored: StoredState()), outputs: landingZoneOutputs)
            // Fingerprints that include resolved inputs are taken with the outputs in place.
            let settled = appliedState(first, Planner.plan(first, stored: stored), outputs: landingZoneOutputs)
            try edit(tree)
            lines = Planner.plan(try load(tree), stored: settled).lines
        }
        return lines
    }

    @Test("a first plan creates everything, in a stable order")
    func firstPlan() throws {
        try withCopy { tree in
            let plan = Planner.plan(try load(tree), stored: StoredState())
            // Enclaves and their wiring first, then partitions in dependency order.
            #expect(
                plan.lines == [
                    "+ enclave data",
                    "  > export data/postgres",
                    "  > export data/events",
                    "  < import data/db/events",
                    "+ enclave product-a-dev",
                    "  > export product-a-dev/api-http",
                    "  < import product-a-dev/database",
                    "  < import product-a-dev/ingress",
                    "  < import product-a-dev/worker/api",
                    "+ enclave shared-network",
                    "  > export shared-network/ingress",
                    "+ partition data/queue",
                    "+ partition shared-network/gateway",
                    "+ partition data/db",
                    "+ partition product-a-dev/api",
                    "+ partition product-a-dev/worker",
                    "16 change(s) would be applied.",
                ])
            #expect(plan.certainCount == 16)
            #expect(!plan.deletesEverything)
        }
    }

    @Test("an unchanged tree plans no changes")
    func unchanged() throws {
        #expect(try planAfterApply { _ in } == ["No changes."])
    }

    @Test("changing one input changes that partition; its dependents run only if its outputs change")
    func changedInput() throws {
        let lines = try planAfterApply { tree in
            let file = tree.appendingPathComponent("shared/network/gateway/config.yml")
            let text = try String(contentsOf: file, encoding: .utf8).replacingOccurrences(
                of: "region: \"{{ nclav_region }}\"", with: "region: eu-west-1")
            try text.write(to: file, atomically: true, encoding: .utf8)
        }
        #expect(
            lines == [
                "~ partition shared-network/gateway (changed)",
                "~ partition product-a-dev/api (if shared-network/gateway's outputs change)",
                "~ partition product-a-dev/worker (if product-a-dev/api's outputs change)",
                "1 change(s) would be applied; 2 more partition(s) run only if what they read changes.",
            ])
    }

    @Test("editing a .tf file changes that partition")
    func editedFile() throws {
        let lines = try planAfterApply { tree in
            let file = tree.appendingPathComponent("data/queue/main.tf")
            try (try String(contentsOf: file, encoding: .utf8) + "\n# a comment is a change too\n").write(to: file, atomically: true, encoding: .utf8)
        }
        #expect(
            lines == [
                "~ partition data/queue (changed)",
                "~ partition data/db (if data/queue's outputs change)",
                "~ partition product-a-dev/api (if data/db's outputs change)",
                "~ partition product-a-dev/worker (if product-a-dev/api's outputs change)",
                "1 change(s) would be applied; 3 more partition(s) run only if what they read changes.",
            ])
    }

    @Test("removing a partition from the YAML deletes it")
    func removedPartition() throws {
        let lines = try planAfterApply { tree in
            try FileManager.default.removeItem(at: tree.appendingPathComponent("product-a/dev/worker"))
        }
        #expect(lines == ["- partition product-a-dev/worker", "1 change(s) would be applied."])
    }

    @Test("removing an enclave deletes its partitions, importers first, then the enclave")
    func removedEnclave() throws {
        let lines = try planAfterApply { tree in
            try FileManager.default.removeItem(at: tree.appendingPathComponent("product-a"))
        }
        #expect(
            lines == [
                "- partition product-a-dev/worker", "- partition product-a-dev/api", "- enclave product-a-dev",
                "3 change(s) would be applied.",
            ])
    }

    @Test("a tree that would remove every stored enclave is flagged")
    func deletesEverything() throws {
        try withCopy { tree in
            let loaded = try load(tree)
            let stored = appliedState(loaded, Planner.plan(loaded, stored: StoredState()))
            let empty = try TestSupport.makeScratchDirectory("nclav-empty")
            defer { try? FileManager.default.removeItem(at: empty) }
            let plan = Planner.plan(try TreeLoader.load(directory: empty.path), stored: stored)
            #expect(plan.deletesEverything)
            #expect(plan.changes.count == 8)
        }
    }

    @Test("fingerprints do not depend on where the tree is checked out")
    func pathIndependent() throws {
        let first = try TestSupport.makeScratchDirectory("nclav-plan-a")
        let second = try TestSupport.makeScratchDirectory("nclav-plan-b")
        defer {
            try? FileManager.default.removeItem(at: first)
            try? FileManager.default.removeItem(at: second)
        }
        let a = Planner.plan(try load(try TestSupport.copyFixture("valid/landing-zone", into: first)), stored: StoredState())
        let b = Planner.plan(try load(try TestSupport.copyFixture("valid/landing-zone", into: second)), stored: StoredState())
        #expect(a.partitionFingerprints == b.partitionFingerprints)
        #expect(a.enclaveFingerprints == b.enclaveFingerprints)
    }

    @Test("inputs resolve from context tokens and the stored outputs of the partition behind each import")
    func resolvedInputs() throws {
        try withCopy { tree in
            let loaded = try load(tree)
            let stored = appliedState(loaded, Planner.plan(loaded, stored: StoredState()), outputs: landingZoneOutputs)
            var byKey: [StateKey: PartitionState] = [:]
            for state in stored.partitions { byKey[try StateKey(enclave: state.enclaveID, partition: state.partitionID)] = state }
            let product = try #require(loaded.enclaves.first { $0.enclave.id == "product-a-dev" })
            let api = try #require(product.partitions.first { $0.partition.id == "api" })
            #expect(
                Planner.resolveInputs(api.partition, in: product, tree: loaded, stored: byKey, tokens: localContextTokens) == [
                    "db_url": "postgres://db.internal:5432/app", "public_host": "api.gw.local-1.internal",
                ])
            let network = try #require(loaded.enclaves.first { $0.enclave.id == "shared-network" })
            let gateway = try #require(network.partitions.first)
            #expect(
                Planner.resolveInputs(gateway.partition, in: network, tree: loaded, stored: [:], tokens: localContextTokens) == [
                    "region": "local-1", "banner": "{{ literal braces }} for shared-network/gateway",
                ])
            let pending = Planner.resolveInputs(api.partition, in: product, tree: loaded, stored: [:], tokens: localContextTokens)
            #expect(pending["db_url"] == "postgres://<pending database.hostname>:<pending database.port>/app")
        }
    }
}
