import Foundation
import NclavConfig
import NclavCore
import NclavDrivers
import NclavStore

/// The engine's entry points: plan, apply, destroy, forget and drift. Each that changes
/// anything holds the store-wide reconcile lock for its whole duration (`ReconcileLockScope`);
/// the work itself lives in `TreeApply`, `Teardown` and `DriftCheck`.
public struct Reconciler: Sendable {
    public let environment: ReconcileEnvironment

    public init(environment: ReconcileEnvironment) { self.environment = environment }

    public func reconcile(_ tree: LoadedTree, options: ReconcileOptions = ReconcileOptions()) async throws -> ReconcileReport {
        if options.dryRun { return try await plan(tree) }
        return try await reconcile(tree, options: options, holding: try await acquire())
    }

    /// The plan alone: reads the store, writes nothing, starts nothing. With targets, only
    /// their changes and those of what they read upstream.
    public func plan(
        _ tree: LoadedTree, graph: Digraph<TreeValidator.PartitionRef>? = nil, targets: Targets? = nil
    ) async throws -> ReconcileReport {
        let stored = try await storedState()
        let graph = graph ?? TreeValidator.dependencyGraph(of: tree)
        var plan = Planner.plan(tree, stored: stored, tokens: tokenProvider(stored), graph: graph)
        if let targets {
            let selection = try targets.selection(tree, graph: graph, stored: stored)
            plan.changes = plan.changes.filter { change in
                switch change {
                case .createEnclave(let id), .updateEnclave(let id): return selection.contains { $0.enclave == id } || targets.enclaves.contains(id)
                case .deleteEnclave(let id): return targets.enclaves.contains(id)
                case .wireExport(let enclave, _), .wireImport(let enclave, _, _): return selection.contains { $0.enclave == enclave }
                default: return change.partitionKey.map(selection.contains) ?? true
                }
            }
            plan.deletesEverything = false
        }
        return ReconcileReport(reconcileID: UUID(), plan: plan, outcomes: [], errors: [])
    }

    /// Takes the store-wide reconcile lock (so a caller can refuse a second reconcile before
    /// it starts answering); pass the result to `reconcile(_:options:holding:)`.
    public func acquire() async throws -> ReconcileLock {
        let lock = ReconcileLock(holder: environment.holder)
        if let current = try await environment.store.acquireReconcileLock(lock) { throw ReconcileError.busy(current) }
        return lock
    }

    /// Applies `tree` under a lock from `acquire()`, and releases it.
    public func reconcile(
        _ tree: LoadedTree, options: ReconcileOptions, holding lock: ReconcileLock,
        graph: Digraph<TreeValidator.PartitionRef>? = nil
    ) async throws -> ReconcileReport {
        let started = Date()
        defer { environment.observer.reconcileFinished(seconds: Date().timeIntervalSince(started)) }
        return try await ReconcileLockScope(store: environment.store, lock: lock).run {
            let stored = try await storedState()
            let graph = graph ?? TreeValidator.dependencyGraph(of: tree)
            let tokens = tokenProvider(stored)
            let plan = Planner.plan(tree, stored: stored, tokens: tokens, graph: graph)
            var targets = options.targets
            var saved: SavedPlan? = nil
            if let id = options.savedPlan {
                let plan = try await checkSaved(id, tree: tree, plan: plan, stored: stored, tokens: tokens)
                saved = plan
                targets = plan.targets
            }
            let selection = try targets.map { try $0.selection(tree, graph: graph, stored: stored) }
            if plan.deletesEverything && !options.allowDeleteEverything && targets == nil {
                throw ReconcileError.wouldDeleteEverything(enclaves: stored.enclaves.map(\.id).sorted())
            }
            // A saved plan is applied once: whatever happens, the state it was made against is gone.
            defer { if let saved { environment.plans.remove(saved.id) } }
            guard !plan.isEmpty else { return ReconcileReport(reconcileID: lock.id, plan: plan, outcomes: [], errors: []) }
            return await TreeApply(
                environment: environment, tree: tree, graph: graph, plan: plan, stored: stored, reconcileID: lock.id,
                parallelism: options.parallelism, saved: saved, targets: targets, selection: selection,
                destructionApproved: options.autoApprove
            ).run()
        }
    }

    /// `nclav plan`: terraform's plan of every partition the apply would run, saved (see
    /// `TreePlan`). Holds the reconcile lock while it plans, as the workspaces are the apply's.
    public func makePlan(
        _ tree: LoadedTree, options: ReconcileOptions = ReconcileOptions(), holding lock: ReconcileLock,
        graph: Digraph<TreeValidator.PartitionRef>? = nil
    ) async throws -> SavedPlan {
        try await ReconcileLockScope(store: environment.store, lock: lock).run {
            environment.plans.sweep()
            let stored = try await storedState()
            let graph = graph ?? TreeValidator.dependencyGraph(of: tree)
            let tokens = tokenProvider(stored)
            let plan = Planner.plan(tree, stored: stored, tokens: tokens, graph: graph)
            let selection = try options.targets.map { try $0.selection(tree, graph: graph, stored: stored) }
            return try await TreePlan(
                environment: environment, tree: tree, graph: graph, plan: plan, stored: stored, id: lock.id,
                digest: PlanDigest.of(tree, plan: plan, stored: stored, tokens: tokens, targets: options.targets), targets: options.targets,
                selection: selection, parallelism: options.parallelism
            ).run()
        }
    }

    /// The saved plan, if it may still be applied: not expired, every partition planned, the
    /// tree and stored outputs as they were, and no planned partition's state written since.
    private func checkSaved(
        _ id: UUID, tree: LoadedTree, plan: Plan, stored: StoredState, tokens: @escaping ContextTokensProvider
    ) async throws -> SavedPlan {
        let saved = try environment.plans.load(id)
        guard saved.errors.isEmpty else { throw SavedPlanError.failedPlan(id, errors: saved.errors) }
        guard PlanDigest.of(tree, plan: plan, stored: stored, tokens: tokens, targets: saved.targets) == saved.digest else {
            throw SavedPlanError.treeChanged(id)
        }
        for entry in saved.partitions where entry.planFile != nil {
            let now = try await environment.store.latestState(entry.key)?.info
            if now?.version != entry.stateVersion {
                throw SavedPlanError.stateChanged(id, partition: entry.key, planned: entry.stateSerial, now: now?.serial)
            }
        }
        return saved
    }

    /// The imperative escape hatch: tears down whole enclaves, or one partition of one enclave,
    /// the same way removing them from the YAML would. Refuses while anything outside what is
    /// destroyed still imports from it.
    public func destroy(enclaves ids: [String], partition: String? = nil) async throws -> ReconcileReport {
        try await destroy(enclaves: ids, partition: partition, holding: try await acquire())
    }

    /// Refuses a destroy that names something not in state, or that would leave an importer
    /// behind; changes nothing.
    public func checkDestroy(enclaves ids: [String], partition: String?) async throws {
        let stored = try await storedState()
        _ = try Self.destroyTargets(stored, enclaves: ids, partition: partition)
    }

    /// `destroy` under a lock from `acquire()`, released at the end. Partitions go in teardown
    /// order across every enclave named (importers first), then the enclaves, importers first.
    public func destroy(enclaves ids: [String], partition: String?, holding lock: ReconcileLock) async throws -> ReconcileReport {
        try await ReconcileLockScope(store: environment.store, lock: lock).run {
            let stored = try await storedState()
            let targets = try Self.destroyTargets(stored, enclaves: ids, partition: partition)
            let teardown = Teardown(environment: environment, reconcileID: lock.id)
            _ = try? await environment.store.appendEvent(
                AuditEvent(
                    kind: "destroy.started", reconcileID: lock.id,
                    message: partition.map { "partition \(ids[0])/\($0)" } ?? "enclaves \(ids.joined(separator: ", "))"))
            var outcomes: [PartitionOutcome] = []
            for state in Teardown.order(targets, enclaves: stored.enclaves) {
                guard let key = state.key else { continue }
                let outcome = await teardown.partition(state, key: key, enclaves: stored.enclaves)
                await environment.progress(ProgressLine.finished(outcome))
                outcomes.append(outcome)
            }
            var enclaveOutcomes: [EnclaveOutcome] = []
            if partition == nil {
                let graph = StateGraph(enclaves: stored.enclaves, partitions: stored.partitions)
                for id in Self.importersFirst(ids, graph: graph) {
                    guard let enclaveState = stored.enclaves.first(where: { $0.id == id }) else { continue }
                    enclaveOutcomes.append(await teardown.enclave(enclaveState))
                }
            }
            let errors =
                outcomes.filter { $0.result == .failed }.map { "\($0.key): \($0.reason ?? "teardown failed")" }
                + enclaveOutcomes.filter { $0.result == .failed }.map { "enclave \($0.enclave): \($0.reason ?? "teardown failed")" }
            return ReconcileReport(reconcileID: lock.id, plan: Plan(changes: []), outcomes: outcomes, enclaves: enclaveOutcomes, errors: errors)
        }
    }

    /// The partitions a destroy tears down, after checking every id is in state and nothing
    /// outside them still imports from them.
    private static func destroyTargets(_ stored: StoredState, enclaves ids: [String], partition: String?) throws -> [PartitionState] {
        let targets = try Self.targets(stored, enclaves: ids, partition: partition)
        let doomed = Set(targets.map { "\($0.enclaveID)/\($0.partitionID)" })
        let graph = StateGraph(enclaves: stored.enclaves, partitions: stored.partitions)
        for target in doomed.sorted() {
            let importers = graph.edges.filter { $0.to == target && !doomed.contains($0.from) }.map(\.from)
            if !importers.isEmpty { throw ReconcileError.hasDependents(target: target, importers: Array(Set(importers)).sorted()) }
        }
        return targets
    }

    /// Enclaves ordered so that every importer comes before what it imports from; ties (and
    /// cycles between enclaves) in sorted order.
    static func importersFirst(_ enclaves: [String], graph: StateGraph) -> [String] {
        func enclave(_ node: String) -> String { String(node.split(separator: "/").first ?? "") }
        var remaining = enclaves.sorted()
        var order: [String] = []
        while !remaining.isEmpty {
            let free =
                remaining.first { candidate in
                    !graph.edges.contains { enclave($0.to) == candidate && enclave($0.from) != candidate && remaining.contains(enclave($0.from)) }
                } ?? remaining[0]
            order.append(free)
            remaining.removeAll { $0 == free }
        }
        return order
    }

    /// What `forget` dropped, and what it may have left behind in the cloud.
    public struct Forgotten: Sendable, Equatable {
        public var key: StateKey
        /// Resource addresses in the partition's newest Terraform state (kept, not destroyed).
        public var resources: [String]
        /// The partition's cloud identity as its driver recorded it (not removed).
        public var identity: [String: String]
        /// The workspace left on this server, from which it can still be destroyed by hand.
        public var workspace: String
    }

    /// Drops a partition from nclav's records without running anything: for a partition whose
    /// teardown can never succeed (its tool or code is gone). Its Terraform state (every
    /// version) and workspace are kept, so what it created can still be found and destroyed
    /// by hand; nothing in the cloud is touched.
    public func forget(enclave: String, partition: String) async throws -> Forgotten {
        let lock = try await acquire()
        return try await ReconcileLockScope(store: environment.store, lock: lock).run {
            let stored = try await storedState()
            guard let state = try Self.targets(stored, enclaves: [enclave], partition: partition).first, let key = state.key else {
                throw ReconcileError.notInState("partition `\(enclave)/\(partition)`")
            }
            let graph = StateGraph(enclaves: stored.enclaves, partitions: stored.partitions)
            let importers = graph.edges.filter { $0.to == key.description && $0.from != key.description }.map(\.from)
            if !importers.isEmpty { throw ReconcileError.hasDependents(target: key.description, importers: Array(Set(importers)).sorted()) }
            let resources = (try? await Teardown.resources(in: key, store: environment.store)) ?? []
            _ = try await environment.store.releaseLock(key, id: nil)
            try await environment.store.deletePartition(enclave: key.enclave, partition: key.partition)
            let forgotten = Forgotten(
                key: key, resources: resources, identity: state.identity ?? [:],
                workspace: environment.renderer.directory(for: key).path)
            _ = try? await environment.store.appendEvent(
                AuditEvent(
                    kind: "partition.forgotten", enclaveID: key.enclave, partitionID: key.partition, reconcileID: lock.id,
                    message: "partition \(key) dropped from state without a teardown; left in place: "
                        + (resources.isEmpty ? "no resources in its state" : resources.joined(separator: ", "))
                        + (forgotten.identity.isEmpty ? "" : "; its cloud identity")))
            return forgotten
        }
    }

    /// Drift detection under a lock from `acquire()`, released at the end. Holding the lock
    /// means an apply never rewrites a partition's record while drift writes it.
    public func drift(enclave: String? = nil, holding lock: ReconcileLock) async throws -> DriftReport {
        try await ReconcileLockScope(store: environment.store, lock: lock).run {
            try await DriftCheck(environment: environment, reconcileID: lock.id).run(enclave: enclave)
        }
    }

    // MARK: Helpers

    private static func targets(_ stored: StoredState, enclaves ids: [String], partition: String?) throws -> [PartitionState] {
        for id in ids where !stored.enclaves.contains(where: { $0.id == id }) { throw ReconcileError.notInState("enclave `\(id)`") }
        if let partition, let id = ids.first {
            guard let state = stored.partitions.first(where: { $0.enclaveID == id && $0.partitionID == partition }) else {
                throw ReconcileError.notInState("partition `\(id)/\(partition)`")
            }
            return [state]
        }
        return stored.partitions.filter { ids.contains($0.enclaveID) }
    }

    private func storedState() async throws -> StoredState {
        let store = environment.store
        let enclaves = try await store.enclaves()
        var partitions: [PartitionState] = []
        for enclave in enclaves { partitions += try await store.partitions(ofEnclave: enclave.id) }
        return StoredState(enclaves: enclaves, partitions: partitions)
    }

    /// Tokens from each enclave's driver and stored context.
    private func tokenProvider(_ stored: StoredState) -> ContextTokensProvider {
        let registry = environment.registry
        let contexts = Dictionary(stored.enclaves.map { ($0.id, EnclaveContext(values: $0.context)) }, uniquingKeysWith: { a, _ in a })
        return { enclave, partition in
            let context = contexts[enclave.id] ?? EnclaveContext(values: ["project_id": enclave.id, "region": enclave.region ?? ""])
            return registry.contextTokens(enclave: enclave, context: context, partition: partition)
        }
    }
}

/// Holds the reconcile lock around one piece of work and releases it when the work ends,
/// however it ends: awaited before returning, never left to a detached task.
struct ReconcileLockScope: Sendable {
    let store: any StateStore
    let lock: ReconcileLock

    func run<T: Sendable>(_ work: () async throws -> T) async throws -> T {
        let result: T
        do {
            result = try await work()
        } catch {
            try? await store.releaseReconcileLock(lock.id)
            throw error
        }
        try await store.releaseReconcileLock(lock.id)
        return result
    }
}
