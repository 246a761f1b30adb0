import Foundation
import IacRunner
import NclavConfig
import NclavCore
import NclavDrivers
import NclavStore

/// One apply of a loaded tree, under the reconcile lock: tear down what the YAML no longer
/// has (dependents first, then enclaves), provision new and changed enclaves, then run the
/// partitions along the dependency DAG with bounded parallelism.
///
/// A partition runs when its fingerprint, computed with its upstreams' outputs as they are
/// after those upstreams ran in this apply, differs from the one stored at its last success;
/// when it failed or drifted last time; or when it is new. An upstream that failed or was
/// skipped skips it.
struct TreeApply: Sendable {
    let environment: ReconcileEnvironment
    let tree: LoadedTree
    let graph: Digraph<TreeValidator.PartitionRef>
    let plan: Plan
    let stored: StoredState
    let reconcileID: UUID
    let parallelism: Int
    /// Applied exactly, partition by partition (`apply --plan`).
    var saved: SavedPlan? = nil
    var targets: Targets? = nil
    /// The targets and what they need upstream; nil for everything.
    var selection: Set<StateKey>? = nil
    /// Whether partitions deferred in the saved plan may destroy or replace resources when
    /// they are planned after their upstreams (`--auto-approve`).
    var destructionApproved = false

    /// The saved plan file for a partition, when there is one to apply.
    private func planFile(_ key: StateKey, teardown: Bool) -> URL? {
        guard let saved,
            let entry = saved.partitions.first(where: { $0.key == key && ($0.operation == .teardown) == teardown && $0.deferred == nil }),
            let file = entry.planFile
        else { return nil }
        return environment.plans.folder(saved.id).appendingPathComponent(file)
    }

    func run() async -> ReconcileReport {
        await event("reconcile.started", "\(plan.changes.count) change(s)")
        let teardown = Teardown(environment: environment, reconcileID: reconcileID)
        var outcomes: [PartitionOutcome] = []
        var enclaveOutcomes: [EnclaveOutcome] = []

        // 1. Teardown first: removed partitions of kept and removed enclaves, dependents first.
        let desired = Set(
            tree.enclaves.flatMap { enclave in
                enclave.partitions.compactMap { try? StateKey(enclave: enclave.enclave.id, partition: $0.partition.id) }
            })
        let removed = stored.partitions.filter { state in state.key.map { !desired.contains($0) && selection?.contains($0) != false } ?? false }
        for state in Teardown.order(removed, enclaves: stored.enclaves) {
            guard let key = state.key else { continue }
            let outcome = await teardown.partition(state, key: key, enclaves: stored.enclaves, planFile: planFile(key, teardown: true))
            await environment.progress(ProgressLine.finished(outcome))
            outcomes.append(outcome)
        }
        let desiredEnclaves = Set(tree.enclaves.map(\.enclave.id))
        for enclaveState in stored.enclaves where !desiredEnclaves.contains(enclaveState.id) && targets?.enclaves.contains(enclaveState.id) != false {
            enclaveOutcomes.append(await teardown.enclave(enclaveState))
        }

        // 2. Enclaves: provision new and changed ones.
        let (contexts, provisioned) = await provisionEnclaves()
        enclaveOutcomes += provisioned
        let failedEnclaves = Dictionary(
            provisioned.filter { $0.result == .failed }.map { ($0.enclave, $0.reason ?? "failed") },
            uniquingKeysWith: { a, _ in a })

        // 3. Partitions along the DAG.
        outcomes += await runPartitions(contexts: contexts, failedEnclaves: failedEnclaves)

        let errors =
            outcomes.filter { $0.result == .failed }.map { "\($0.key): \($0.reason ?? "failed")" }
            + enclaveOutcomes.filter { $0.result == .failed }.map { "enclave \($0.enclave): \($0.reason ?? "failed")" }
        await event("reconcile.finished", errors.isEmpty ? "succeeded" : "\(errors.count) error(s)")
        return ReconcileReport(reconcileID: reconcileID, plan: plan, outcomes: outcomes, enclaves: enclaveOutcomes, errors: errors)
    }

    private func event(_ kind: String, enclave: String? = nil, _ message: String) async {
        _ = try? await environment.store.appendEvent(AuditEvent(kind: kind, enclaveID: enclave, reconcileID: reconcileID, message: message))
    }

    /// Every desired enclave's context: stored when its configuration is unchanged, else from
    /// its driver (and stored). Returns the provisioning outcomes too.
    private func provisionEnclaves() async -> ([String: EnclaveContext], [EnclaveOutcome]) {
        var contexts: [String: EnclaveContext] = [:]
        var outcomes: [EnclaveOutcome] = []
        let storedByID = Dictionary(stored.enclaves.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for loaded in tree.enclaves {
            let enclave = loaded.enclave
            let cloud = environment.registry.resolvedCloud(for: enclave)
            let previous = storedByID[enclave.id]
            let targeted = selection.map { selected in
                selected.contains { $0.enclave == enclave.id } || targets?.enclaves.contains(enclave.id) == true
            }
            if targeted == false {
                if let previous { contexts[enclave.id] = EnclaveContext(values: previous.context) }
                continue
            }
            if let previous, previous.fingerprint == plan.enclaveFingerprints[enclave.id], previous.status == .active {
                contexts[enclave.id] = EnclaveContext(values: previous.context)
                continue
            }
            let operation: EnclaveOutcome.Operation = previous == nil ? .provision : .update
            do {
                let driver = try environment.registry.driver(for: cloud)
                let context = try await driver.provisionEnclave(enclave, previous: previous.map { EnclaveContext(values: $0.context) })
                var state = previous ?? EnclaveState(id: enclave.id, desired: enclave, resolvedCloud: cloud)
                state.desired = enclave
                state.resolvedCloud = cloud
                state.context = context.values
                state.status = .active
                state.fingerprint = plan.enclaveFingerprints[enclave.id]
                state.lastError = nil
                state.updatedAt = Date()
                try await environment.store.putEnclave(state)
                await event(
                    previous == nil ? "enclave.created" : "enclave.updated", enclave: enclave.id,
                    "\(cloud.rawValue) enclave \(enclave.id) provisioned")
                contexts[enclave.id] = context
                outcomes.append(EnclaveOutcome(enclave: enclave.id, operation: operation, result: .succeeded))
            } catch {
                outcomes.append(EnclaveOutcome(enclave: enclave.id, operation: operation, result: .failed, reason: "\(error)"))
                await environment.progress("! enclave \(enclave.id) \(operation.rawValue) failed: \(error)")
            }
        }
        return (contexts, outcomes)
    }

    private func runPartitions(contexts: [String: EnclaveContext], failedEnclaves: [String: String]) async -> [PartitionOutcome] {
        let store = environment.store
        let registry = environment.registry
        var loaded: [StateKey: (LoadedEnclave, LoadedPartition)] = [:]
        for enclave in tree.enclaves {
            for partition in enclave.partitions {
                if let key = try? StateKey(enclave: enclave.enclave.id, partition: partition.partition.id) { loaded[key] = (enclave, partition) }
            }
        }
        var storedStates: [StateKey: PartitionState] = [:]
        for state in stored.partitions { if let key = state.key { storedStates[key] = state } }
        // Outputs as they are now: stored ones, replaced by fresh ones as partitions succeed.
        var fresh = storedStates
        let exporterByImport = Self.exporters(tree)
        let planned = Set(plan.changes.compactMap(\.partitionKey))
        var outcomes: [PartitionOutcome] = []

        let executor = DAGExecutor<StateKey, PartitionResult>(nodes: loaded.keys, parallelism: parallelism) { key in
            graph.dependencies(of: .init(key.enclave, key.partition)).compactMap { try? StateKey(enclave: $0.enclave, partition: $0.partition) }
        }
        let result = await executor.run(
            decide: { key, upstream in
                let (enclave, partition) = loaded[key]!
                let previous = storedStates[key]
                let operation = PartitionApply.operation(previous: previous)
                func resolved(_ result: PartitionOutcome.Result, _ reason: String) -> DAGExecutor<StateKey, PartitionResult>.Decision {
                    .resolved(PartitionResult(outcome: PartitionOutcome(key: key, operation: operation, result: result, reason: reason)))
                }
                if selection?.contains(key) == false {
                    let context = contexts[enclave.enclave.id] ?? EnclaveContext()
                    let tokens: ContextTokensProvider = { e, p in registry.contextTokens(enclave: e, context: context, partition: p) }
                    let fingerprint = Planner.fingerprint(partition, in: enclave, tree: tree, stored: fresh, tokens: tokens)
                    let current = previous.map { $0.fingerprint == fingerprint && $0.status == .active && $0.drift?.status != .drifted } ?? false
                    return current
                        ? resolved(.unchanged, "not targeted")
                        : resolved(.skipped, "not targeted, and out of date: an apply without targets runs it")
                }
                // Anything upstream that did not succeed means this partition cannot run.
                if let (blocker, outcome) = upstream.sorted(by: { $0.key < $1.key }).first(where: {
                    [.failed, .skipped].contains($0.value.outcome.result)
                }) {
                    return resolved(.skipped, "upstream \(blocker) \(outcome.outcome.result == .failed ? "failed" : "was skipped")")
                }
                if let reason = failedEnclaves[enclave.enclave.id] { return resolved(.skipped, "enclave failed: \(reason)") }
                let context = contexts[enclave.enclave.id] ?? EnclaveContext()
                let tokens: ContextTokensProvider = { e, p in registry.contextTokens(enclave: e, context: context, partition: p) }
                let fingerprint = Planner.fingerprint(partition, in: enclave, tree: tree, stored: fresh, tokens: tokens)

                if let previous, previous.fingerprint == fingerprint, previous.status == .active, previous.drift?.status != .drifted {
                    let ran = upstream.filter { $0.value.outcome.runID != nil }.keys.sorted().map(\.description)
                    return resolved(
                        .unchanged, ran.isEmpty ? "nothing it reads changed" : "its inputs are the same after \(ran.joined(separator: ", ")) applied")
                }
                let inputs = Planner.resolveInputs(partition.partition, in: enclave, tree: tree, stored: fresh, tokens: tokens)
                // The imports this partition uses (its own and its enclave's), with the exporter's freshest outputs.
                let wirings: [ImportWiring] = (partition.partition.imports + enclave.enclave.imports).compactMap { entry in
                    guard let (exporter, export) = exporterByImport["\(entry.from)/\(entry.exportName)"],
                        let exporterKey = try? StateKey(enclave: exporter.id, partition: export.targetPartition)
                    else { return nil }
                    return ImportWiring(
                        alias: entry.alias, export: export, exporterEnclave: exporter.id, exporterCloud: registry.resolvedCloud(for: exporter),
                        exporterContext: contexts[exporter.id]?.values ?? [:], exporterOutputs: fresh[exporterKey]?.outputs ?? [:])
                }
                // Deferred in the saved plan: planned now that its upstreams have applied, and said so.
                let deferred = saved?.partitions.first { $0.key == key && $0.operation != .teardown }?.deferred
                let work = PartitionApply(
                    environment: environment, reconcileID: reconcileID, key: key, enclave: enclave.enclave, partition: partition,
                    treeRoot: tree.root, previous: previous, inputs: inputs, fingerprint: fingerprint, context: context,
                    cloud: registry.resolvedCloud(for: enclave.enclave), wirings: wirings, planFile: planFile(key, teardown: false),
                    replan: saved.flatMap { saved in
                        deferred == nil
                            ? nil
                            : (
                                environment.plans.folder(saved.id).appendingPathComponent("\(key.enclave).\(key.partition).deferred.tfplan"),
                                destructionApproved
                            )
                    })
                return .run {
                    var result = await work.run()
                    if let deferred, result.outcome.result == .succeeded {
                        result.outcome.reason = "deferred in the plan (\(deferred)); planned and applied now"
                    }
                    return result
                }
            },
            finished: { key, result in
                let outcome = result.outcome
                if outcome.result == .succeeded {
                    fresh[key, default: PartitionState(enclaveID: key.enclave, partitionID: key.partition, desired: loaded[key]!.1.partition)]
                        .outputs = result.outputs
                }
                // Unchanged partitions the plan did not list are not news.
                guard outcome.result != .unchanged || planned.contains(key) else { return }
                outcomes.append(outcome)
                await environment.progress(ProgressLine.finished(outcome))
                let kind =
                    switch outcome.result {
                    case .succeeded: "partition.applied"
                    case .skipped: "partition.skipped"
                    case .unchanged: "partition.unchanged"
                    case .failed: "partition.failed"
                    }
                _ = try? await store.appendEvent(
                    AuditEvent(
                        kind: kind,
                        enclaveID: key.enclave, partitionID: key.partition, reconcileID: reconcileID,
                        message: outcome.reason ?? "\(outcome.operation.rawValue) succeeded"))
            })
        for key in result.unreached {
            let outcome = PartitionOutcome(
                key: key, operation: PartitionApply.operation(previous: storedStates[key]), result: .skipped,
                reason: Task.isCancelled ? "the reconcile was cancelled before it started" : "not reached: it depends on a cycle")
            outcomes.append(outcome)
            await environment.progress(ProgressLine.finished(outcome))
        }
        return outcomes
    }

    /// `enclave/export-name` → the exporting enclave and its export.
    static func exporters(_ tree: LoadedTree) -> [String: (Enclave, Export)] {
        var result: [String: (Enclave, Export)] = [:]
        for loaded in tree.enclaves {
            for export in loaded.enclave.exports where result["\(loaded.enclave.id)/\(export.name)"] == nil {
                result["\(loaded.enclave.id)/\(export.name)"] = (loaded.enclave, export)
            }
        }
        return result
    }
}
