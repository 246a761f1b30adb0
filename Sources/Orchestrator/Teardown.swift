import Foundation
import IacRunner
import NclavCore
import NclavDrivers
import NclavStore
import TFBackend

/// Tears down what the YAML no longer has (or what `destroy` names): a partition with
/// `terraform destroy` in its last workspace, then its cloud identity, its record, its state
/// and its workspace; an enclave once all its partitions are gone.
struct Teardown: Sendable {
    let environment: ReconcileEnvironment
    let reconcileID: UUID

    /// Removed partitions, dependents before the partitions they import from.
    static func order(_ removed: [PartitionState], enclaves: [EnclaveState]) -> [PartitionState] {
        StoredGraph.teardownOrder(removed, enclaves: enclaves)
    }

    /// - Parameter planFile: a saved `plan -destroy` to apply instead of `terraform destroy`.
    func partition(_ state: PartitionState, key: StateKey, enclaves: [EnclaveState], planFile: URL? = nil) async -> PartitionOutcome {
        let start = Date()
        func outcome(_ result: PartitionOutcome.Result, runID: UUID? = nil, reason: String? = nil) -> PartitionOutcome {
            PartitionOutcome(key: key, operation: .teardown, result: result, runID: runID, reason: reason, seconds: Date().timeIntervalSince(start))
        }
        let store = environment.store
        let enclaveState = enclaves.first { $0.id == state.enclaveID }
        let context = EnclaveContext(values: enclaveState?.context ?? [:])
        let cloud = enclaveState?.resolvedCloud ?? .local

        // Terraform has something to destroy only when its state holds managed resources.
        let resources: [String]
        do {
            resources = try await Self.resources(in: key, store: store).filter(Self.isManaged)
        } catch {
            return outcome(.failed, reason: "its Terraform state could not be read, so nothing was destroyed: \(error)")
        }
        var runID: UUID? = nil
        if !resources.isEmpty {
            let workspace = environment.renderer.directory(for: key)
            guard FileManager.default.fileExists(atPath: workspace.appendingPathComponent(WorkspaceRenderer.backendFile).path) else {
                return outcome(
                    .failed,
                    reason: "its workspace \(workspace.path) is gone, so terraform cannot destroy its \(resources.count) resource(s); "
                        + "destroy them by hand, then `nclav state forget \(key.enclave) \(key.partition)`")
            }
            let run = await RecordedRun(environment: environment, reconcileID: reconcileID).run(
                key, partition: state.desired, operation: .teardown, workspace: workspace, enclave: enclaveState?.desired,
                context: context, cloud: cloud, identity: state.identity ?? [:], planFile: planFile)
            runID = run.outcome.runID
            guard run.outcome.result == .succeeded else {
                var failed = run.outcome
                failed.seconds = Date().timeIntervalSince(start)
                if run.outcome.runID == nil {
                    failed.reason =
                        (failed.reason ?? "")
                        + "; if it can never be destroyed by nclav, `nclav state forget \(key.enclave) \(key.partition)` drops it from state"
                }
                return failed
            }
        }
        // Terraform has destroyed what it made; now the identity it acted as can go.
        if let identity = state.identity, !identity.isEmpty, let enclave = enclaveState?.desired {
            do {
                try await environment.registry.driver(for: cloud).teardownPartition(
                    enclave: enclave, context: context, partition: state.desired, identity: identity)
            } catch {
                return outcome(
                    .failed, runID: runID, reason: "terraform destroyed it, but its \(cloud.rawValue) identity could not be removed: \(error)")
            }
        }
        do {
            try await forgetRecord(key)
        } catch {
            return outcome(
                .failed, runID: runID, reason: "it was destroyed, but its record could not be removed: \(error); the next apply tries again")
        }
        _ = try? await store.appendEvent(
            AuditEvent(
                kind: "partition.destroyed", enclaveID: key.enclave, partitionID: key.partition,
                reconcileID: reconcileID,
                message: resources.isEmpty
                    ? "partition \(key) removed (its state held no resources)" : "partition \(key) destroyed"))
        return outcome(.succeeded, runID: runID, reason: resources.isEmpty ? "its state held no resources; nothing to destroy" : nil)
    }

    /// Removes what nclav keeps for a partition: its record, its Terraform state (every
    /// version) and its workspace. Run records and logs stay.
    private func forgetRecord(_ key: StateKey) async throws {
        let store = environment.store
        if case .locked(let lock) = try await store.deleteState(key) {
            throw TeardownProblem("its state is locked by \(lock.id)")
        }
        try await store.deletePartition(enclave: key.enclave, partition: key.partition)
        try? FileManager.default.removeItem(at: environment.renderer.directory(for: key))
    }

    /// The resource addresses in the partition's newest state; empty when it has none.
    static func resources(in key: StateKey, store: any StateStore) async throws -> [String] {
        guard let latest = try await store.latestState(key) else { return [] }
        guard let addresses = StateDocument.resourceAddresses(latest.body) else {
            throw TeardownProblem("state version \(latest.info.version) is not a readable Terraform state")
        }
        return addresses
    }

    /// Data sources are read, never destroyed (`module.m.data.x.y` in a module).
    static func isManaged(_ address: String) -> Bool { !address.hasPrefix("data.") && !address.contains(".data.") }

    /// Tears an enclave down once its partitions are gone.
    func enclave(_ enclaveState: EnclaveState) async -> EnclaveOutcome {
        let store = environment.store
        func failed(_ reason: String) -> EnclaveOutcome {
            EnclaveOutcome(enclave: enclaveState.id, operation: .teardown, result: .failed, reason: reason)
        }
        do {
            let leftovers = try await store.partitions(ofEnclave: enclaveState.id)
            if !leftovers.isEmpty {
                return failed(
                    "it keeps \(leftovers.count) partition(s) whose teardown failed (\(leftovers.map(\.partitionID).sorted().joined(separator: ", "))); it stays in state"
                )
            }
            try await environment.registry.driver(for: enclaveState.resolvedCloud).teardownEnclave(
                enclaveState.desired, context: EnclaveContext(values: enclaveState.context))
            try await store.deleteEnclave(enclaveState.id)
        } catch {
            return failed("\(error)")
        }
        try? FileManager.default.removeItem(at: environment.renderer.root.appendingPathComponent(enclaveState.id, isDirectory: true))
        _ = try? await store.appendEvent(
            AuditEvent(
                kind: "enclave.destroyed", enclaveID: enclaveState.id, reconcileID: reconcileID,
                message: "enclave \(enclaveState.id) torn down"))
        await environment.progress("- enclave \(enclaveState.id) destroyed")
        return EnclaveOutcome(enclave: enclaveState.id, operation: .teardown, result: .succeeded)
    }
}

struct TeardownProblem: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Dependency order of stored partitions (for teardown, when the YAML is gone).
enum StoredGraph {
    /// Removed partitions, dependents before the partitions they import from.
    /// Uses `StateGraph`'s edges, so teardown order and `nclav graph` follow one rule.
    static func teardownOrder(_ removed: [PartitionState], enclaves: [EnclaveState]) -> [PartitionState] {
        let byName = Dictionary(removed.map { ("\($0.enclaveID)/\($0.partitionID)", $0) }, uniquingKeysWith: { a, _ in a })
        var graph = Digraph<String>()
        for name in byName.keys { graph.addNode(name) }
        for edge in StateGraph(enclaves: enclaves, partitions: removed).edges where byName[edge.to] != nil && edge.from != edge.to {
            graph.addEdge(from: edge.from, to: edge.to)
        }
        let ordered = graph.waves().flatMap { $0 }.reversed().compactMap { byName[$0] }
        let placed = Set(ordered.map { "\($0.enclaveID)/\($0.partitionID)" })
        return ordered + removed.filter { !placed.contains("\($0.enclaveID)/\($0.partitionID)") }
    }
}
