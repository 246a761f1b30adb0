import Foundation
import IacRunner
import NclavAuth
import NclavCore
import NclavDrivers
import NclavStore
import NclavTestSupport
import Orchestrator
import Testing

/// Model-based tests of the reconcile engine (see `ConvergenceRun`): after every edit of a
/// generated tree, the apply runs exactly what the model says, in order, once each, and
/// leaves the store converged.
///
/// - `NCLAV_CONVERGENCE_SEED=<n>` replays one seed (printed by any failure).
/// - `NCLAV_CONVERGENCE_STEPS=<n>`: edits per seed at scheduler level (default 50 × 20 seeds; 250 gives 5,000 steps).
/// - `NCLAV_SOAK_STEPS=<n>`: edits per seed with real terraform (default 8 × 3 seeds).
@Suite("Convergence over generated trees and edit sequences", .serialized)
struct ConvergenceTests {
    static func environmentNumber(_ name: String) -> Int? { ProcessInfo.processInfo.environment[name].flatMap { Int($0) } }

    static var seeds: [UInt64] {
        if let seed = ProcessInfo.processInfo.environment["NCLAV_CONVERGENCE_SEED"].flatMap({ UInt64($0) }) { return [seed] }
        return (1...20).map { UInt64($0) * 7919 }
    }

    static func ramScratch() throws -> URL {
        let shm = URL(fileURLWithPath: "/dev/shm", isDirectory: true)
        guard FileManager.default.isWritableFile(atPath: shm.path) else { return try TestSupport.makeScratchDirectory("nclav-convergence") }
        let url = shm.appendingPathComponent("nclav-convergence-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test("scheduler level: a recording IaC tool behind the IaC protocol, thousands of steps")
    func schedulerLevel() async throws {
        let steps = Self.environmentNumber("NCLAV_CONVERGENCE_STEPS") ?? 50
        var total = 0
        for seed in Self.seeds {
            // RAM-backed when available: the run writes and reads thousands of small files.
            let scratch = try Self.ramScratch()
            defer { try? FileManager.default.removeItem(at: scratch) }
            let store = MemoryStore()
            let workspaces = scratch.appendingPathComponent("workspaces")
            let environment = ReconcileEnvironment(
                store: store, registry: DriverRegistry(defaultCloud: .local, drivers: []), renderer: WorkspaceRenderer(root: workspaces),
                invoker: RecordingIacTool(store: store), signer: RunCredentialSigner(adminToken: String(repeating: "t", count: 32)),
                backendBaseURL: "http://127.0.0.1:9")
            var run = ConvergenceRun(
                seed: seed,
                world: ConvergenceWorld(
                    store: store, reconciler: Reconciler(environment: environment),
                    workspaces: workspaces, tree: scratch.appendingPathComponent("tree")))
            do { try await run.run(steps: steps) } catch let failure as ConvergenceRun.Failure {
                Issue.record("\(failure)")
                return
            }
            total += run.stepsRun
            #expect(run.totals["runs", default: 0] > 0)
        }
        #expect(total == steps * Self.seeds.count)
    }

    @Test(
        "real terraform and a real nclav serve: fixed seeds (NCLAV_SOAK_STEPS for more); in-process runs on SQLite, and runs as jobs a replica's workers run on PostgreSQL",
        arguments: [false, true])
    func realTerraform(postgres: Bool) async throws {
        let steps = Self.environmentNumber("NCLAV_SOAK_STEPS") ?? 8
        let seeds: [UInt64] = ProcessInfo.processInfo.environment["NCLAV_CONVERGENCE_SEED"].flatMap { UInt64($0) }.map { [$0] } ?? [11, 23, 42]
        for seed in seeds {
            try await ReconcileHarness.with(postgres: postgres) { harness in
                let world = ConvergenceWorld(
                    store: harness.store, reconciler: harness.reconciler,
                    workspaces: harness.server.home.appendingPathComponent("workspaces"),
                    tree: harness.scratch.appendingPathComponent("model-tree"))
                var run = ConvergenceRun(seed: seed, world: world, maxEnclaves: 3, maxPartitions: 8)
                do { try await run.run(steps: steps) } catch let failure as ConvergenceRun.Failure {
                    Issue.record("\(failure)")
                }
                if let jobs = harness.store as? any JobStore {
                    var queued = 0
                    for enclave in try await harness.store.enclaves() {
                        for partition in try await harness.store.partitions(ofEnclave: enclave.id) {
                            queued += try await jobs.jobs(enclave: enclave.id, partition: partition.partitionID).count
                        }
                    }
                    #expect(queued > 0, "seed \(seed): the runs went through the job queue")
                }
            }
        }
    }
}
