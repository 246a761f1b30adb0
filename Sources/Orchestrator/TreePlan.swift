import Foundation
import IacRunner
import NclavConfig
import NclavCore
import NclavDrivers
import NclavStore

/// `nclav plan`: for every partition an apply would run, terraform's own plan saved to a file
/// (`plan -out`, an IacRun `plan`), read back as JSON; teardowns planned with `-destroy`.
/// Nothing in the clouds or in the partitions' records changes; only the plan is kept.
///
/// A partition that reads outputs an upstream in the same plan changes (or an upstream that
/// is new, or deferred itself) is planned with the values known now and marked *deferred*:
/// the apply plans it again once that upstream has applied. So is a partition whose cloud
/// identity or enclave the apply has yet to create: terraform cannot act as it before then.
struct TreePlan: Sendable {
    let environment: ReconcileEnvironment
    let tree: LoadedTree
    let graph: Digraph<TreeValidator.PartitionRef>
    let plan: Plan
    let stored: StoredState
    let id: UUID
    let digest: String
    let targets: Targets?
    let selection: Set<StateKey>?
    let parallelism: Int

    func run() async throws -> SavedPlan {
        let plans = environment.plans
        try plans.prepare(id)
        let folder = plans.folder(id)
        var saved = SavedPlan(
            id: id, createdAt: Date(), expiresAt: Date().addingTimeInterval(plans.lifetime), digest: digest, targets: targets, partitions: [],
            enclaves: [], lines: plan.lines)

        // Enclave boundaries, as the partition-level plan has them.
        for change in plan.changes {
            switch change {
            case .createEnclave(let id) where isTargeted(enclave: id): saved.enclaves.append(.init(id: id, operation: .provision))
            case .updateEnclave(let id) where isTargeted(enclave: id): saved.enclaves.append(.init(id: id, operation: .update))
            case .deleteEnclave(let id) where isTargeted(enclave: id): saved.enclaves.append(.init(id: id, operation: .teardown))
            default: break
            }
        }

        // 1. Teardowns of removed partitions, dependents first.
        let desired = Set(
            tree.enclaves.flatMap { enclave in
                enclave.partitions.compactMap { try? StateKey(enclave: enclave.enclave.id, partition: $0.partition.id) }
            })
        let removed = stored.partitions.filter { state in state.key.map { !desired.contains($0) && selection?.contains($0) != false } ?? false }
        for state in Teardown.order(removed, enclaves: stored.enclaves) {
            guard let key = state.key else { continue }
            let entry = await planTeardown(state, key: key, folder: folder)
            await environment.progress(Self.line(entry))
            saved.partitions.append(entry)
        }

        // 2. Partitions along the DAG.
        let contexts = enclaveContexts()
        var loaded: [StateKey: (LoadedEnclave, LoadedPartition)] = [:]
        for enclave in tree.enclaves {
            for partition in enclave.partitions {
                if let key = try? StateKey(enclave: enclave.enclave.id, partition: partition.partition.id) { loaded[key] = (enclave, partition) }
            }
        }
        let storedStates = PlanDigest.storedByKey(stored)
        let executor = DAGExecutor<StateKey, SavedPlan.Entry?>(nodes: loaded.keys, parallelism: parallelism) { key in
            graph.dependencies(of: .init(key.enclave, key.partition)).compactMap { try? StateKey(enclave: $0.enclave, partition: $0.partition) }
        }
        let result = await executor.run(
            decide: { key, upstream in
                guard selection?.contains(key) != false else { return .resolved(nil) }
                let (enclave, partition) = loaded[key]!
                let previous = storedStates[key]
                var entry = SavedPlan.Entry(key: key, operation: PartitionApply.operation(previous: previous))
                let upstreamEntries = upstream.compactMapValues { $0 }.sorted { $0.key < $1.key }
                if let (blocker, _) = upstreamEntries.first(where: { $0.value.error != nil }) {
                    entry.error = "not planned: upstream \(blocker)'s plan failed"
                    return .resolved(entry)
                }
                let cloud = environment.registry.resolvedCloud(for: enclave.enclave)
                guard let context = contexts[enclave.enclave.id] else {
                    entry.deferred = "enclave \(enclave.enclave.id) is created by the apply; planned after it exists"
                    return .resolved(entry)
                }
                let tokens: ContextTokensProvider = { e, p in environment.registry.contextTokens(enclave: e, context: context, partition: p) }
                let fingerprint = Planner.fingerprint(partition, in: enclave, tree: tree, stored: storedStates, tokens: tokens)
                let changing = upstreamEntries.filter {
                    $0.value.deferred != nil || !$0.value.changedOutputs.isEmpty || $0.value.operation == .provision
                }
                if changing.isEmpty, let previous, previous.fingerprint == fingerprint, previous.status == .active, previous.drift?.status != .drifted
                {
                    return .resolved(nil)
                }
                if !changing.isEmpty {
                    entry.deferred =
                        "inputs from \(changing.map(\.key.description).joined(separator: ", ")) change; re-planned after \(changing.count == 1 ? "it applies" : "they apply")"
                }
                if cloud != .local, previous?.identity?.isEmpty ?? true {
                    entry.deferred = entry.deferred ?? "its \(cloud.rawValue) identity is created by the apply; planned then"
                    return .resolved(entry)
                }
                let inputs = Planner.resolveInputs(partition.partition, in: enclave, tree: tree, stored: storedStates, tokens: tokens)
                let work = PartitionPlan(
                    environment: environment, planID: id, key: key, enclave: enclave.enclave, partition: partition, treeRoot: tree.root,
                    previous: previous, inputs: inputs, context: context, cloud: cloud, folder: folder, entry: entry)
                return .run { await work.run() }
            },
            finished: { _, entry in
                if let entry { await environment.progress(Self.line(entry)) }
            })
        for key in result.order {
            guard let entry = result.outcomes[key] ?? nil else { continue }
            saved.partitions.append(entry)
        }
        try plans.save(saved)
        return saved
    }

    /// The progress line for a planned partition.
    static func line(_ entry: SavedPlan.Entry) -> String {
        if let error = entry.error { return "  ! \(entry.key) plan failed: \(error)" }
        if let deferred = entry.deferred { return "  … \(entry.key) deferred: \(deferred)" }
        return "  ✓ \(entry.key) planned (\(entry.operation.rawValue)): \(entry.summary)"
    }

    private func isTargeted(enclave id: String) -> Bool {
        guard let targets else { return true }
        return targets.enclaves.contains(id) || selection?.contains { $0.enclave == id } == true
    }

    /// Contexts the partitions' terraform can be given now: stored ones, and a local enclave's
    /// (its driver computes it without side effects). A new cloud enclave has none yet.
    private func enclaveContexts() -> [String: EnclaveContext] {
        var contexts: [String: EnclaveContext] = [:]
        let storedByID = Dictionary(stored.enclaves.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for loaded in tree.enclaves {
            let enclave = loaded.enclave
            if environment.registry.resolvedCloud(for: enclave) == .local {
                contexts[enclave.id] = EnclaveContext(values: ["project_id": enclave.id, "region": enclave.region ?? ""])
            } else if let previous = storedByID[enclave.id] {
                contexts[enclave.id] = EnclaveContext(values: previous.context)
            }
        }
        return contexts
    }

    /// `plan -destroy` in the removed partition's last workspace, when its state holds
    /// resources.
    private func planTeardown(_ state: PartitionState, key: StateKey, folder: URL) async -> SavedPlan.Entry {
        var entry = SavedPlan.Entry(key: key, operation: .teardown)
        let resources: [String]
        do { resources = try await Teardown.resources(in: key, store: environment.store).filter(Teardown.isManaged) } catch {
            entry.error = "its Terraform state could not be read: \(error)"
            return entry
        }
        guard !resources.isEmpty else { return entry }
        let workspace = environment.renderer.directory(for: key)
        guard FileManager.default.fileExists(atPath: workspace.appendingPathComponent(WorkspaceRenderer.backendFile).path) else {
            entry.error = "its workspace \(workspace.path) is gone, so terraform cannot plan destroying its \(resources.count) resource(s)"
            return entry
        }
        let enclaveState = stored.enclaves.first { $0.id == state.enclaveID }
        let file = folder.appendingPathComponent(PartitionPlan.fileName(key))
        let latest: StateVersionInfo?
        do { latest = try await environment.store.latestState(key)?.info } catch {
            entry.error = "its Terraform state could not be read: \(error)"
            return entry
        }
        let run = await RecordedRun(environment: environment, reconcileID: id).run(
            key, partition: state.desired, operation: .plan, workspace: workspace, enclave: enclaveState?.desired,
            context: EnclaveContext(values: enclaveState?.context ?? [:]), cloud: enclaveState?.resolvedCloud ?? .local,
            identity: state.identity ?? [:], planFile: file, planDestroy: true)
        entry.runID = run.outcome.runID
        guard run.outcome.result == .succeeded, let document = run.plan else {
            entry.error = run.outcome.reason ?? "terraform plan -destroy failed"
            return entry
        }
        entry.planFile = file.lastPathComponent
        entry.stateVersion = latest?.version
        entry.stateSerial = latest?.serial
        entry.changes = document.resourceChanges
        return entry
    }
}

/// One partition's saved plan: its workspace rendered with the inputs known now, terraform's
/// plan written to the plan's folder, and what it will do.
struct PartitionPlan: Sendable {
    let environment: ReconcileEnvironment
    let planID: UUID
    let key: StateKey
    let enclave: Enclave
    let partition: LoadedPartition
    let treeRoot: String
    let previous: PartitionState?
    let inputs: [String: String]
    let context: EnclaveContext
    let cloud: CloudTarget
    let folder: URL
    let entry: SavedPlan.Entry

    static func fileName(_ key: StateKey) -> String { "\(key.enclave).\(key.partition).tfplan" }

    func run() async -> SavedPlan.Entry {
        var entry = self.entry
        let rendered: RenderedWorkspace
        let rewrites: [String: String]
        do {
            (rendered, rewrites) = try renderWorkspace(partition, key: key, treeRoot: treeRoot, inputs: inputs, renderer: environment.renderer)
        } catch {
            entry.error = "its workspace could not be rendered: \(error)"
            return entry
        }
        let latest: StateVersionInfo?
        do { latest = try await environment.store.latestState(key)?.info } catch {
            entry.error = "its Terraform state could not be read: \(error)"
            return entry
        }
        let file = folder.appendingPathComponent(Self.fileName(key))
        let run = await RecordedRun(environment: environment, reconcileID: planID).run(
            key, partition: partition.partition, operation: .plan, workspace: rendered.directory, enclave: enclave, context: context,
            cloud: cloud, identity: previous?.identity ?? [:], planFile: file, logPathRewrites: rewrites)
        entry.runID = run.outcome.runID
        guard run.outcome.result == .succeeded, let document = run.plan else {
            let reason = run.outcome.reason ?? "terraform plan failed"
            // A deferred partition planned with values that are not final yet may fail; the
            // apply plans it again with the real ones.
            if let deferred = entry.deferred {
                entry.deferred = deferred + " (with today's values its plan failed: \(reason))"
            } else {
                entry.error = reason
            }
            return entry
        }
        entry.planFile = entry.deferred == nil ? file.lastPathComponent : nil
        entry.stateVersion = latest?.version
        entry.stateSerial = latest?.serial
        entry.changes = document.resourceChanges
        entry.changedOutputs = document.changedOutputs.intersection(partition.partition.declaredOutputs).sorted()
        return entry
    }
}
