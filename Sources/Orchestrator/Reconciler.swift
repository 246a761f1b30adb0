import Foundation
import IacRunner
import NclavAuth
import NclavConfig
import NclavCore
import NclavStore
import TFBackend

/// What a reconcile needs from the world, injected so each side can be tested.
/// Hears what the reconciler did, for metrics; the reconciler does not care who listens.
public protocol ReconcileObserver: Sendable {
    func runFinished(operation: IacRun.Operation, status: IacRun.Status, seconds: Double)
    func reconcileFinished(seconds: Double)
}

/// The observer when nobody listens.
public struct NoObserver: ReconcileObserver {
    public init() {}
    public func runFinished(operation: IacRun.Operation, status: IacRun.Status, seconds: Double) {}
    public func reconcileFinished(seconds: Double) {}
}

public struct ReconcileEnvironment: Sendable {
    public var store: any StateStore
    public var registry: DriverRegistry
    public var renderer: WorkspaceRenderer
    public var invoker: TerraformInvoker
    /// Mints the per-run credentials terraform uses for the state backend.
    public var signer: RunCredentialSigner
    /// Where terraform reaches the server's state backend.
    public var backendBaseURL: String
    /// Values never to be written to a run log (the admin token, cloud secrets).
    public var secrets: [String]
    public var pluginCache: URL?
    /// "host pid", shown to a second reconcile that has to wait.
    public var holder: String
    public var stopPolicy: StopPolicy
    /// A line per partition as it starts and ends.
    public var progress: @Sendable (String) async -> Void
    public var observer: any ReconcileObserver = NoObserver()

    public init(store: any StateStore, registry: DriverRegistry, renderer: WorkspaceRenderer, invoker: TerraformInvoker = TerraformInvoker(),
                signer: RunCredentialSigner, backendBaseURL: String, secrets: [String] = [], pluginCache: URL? = nil,
                holder: String = "\(ProcessInfo.processInfo.hostName) pid \(getpid())", stopPolicy: StopPolicy = StopPolicy(),
                progress: @escaping @Sendable (String) async -> Void = { _ in }) {
        self.store = store
        self.registry = registry
        self.renderer = renderer
        self.invoker = invoker
        self.signer = signer
        self.backendBaseURL = backendBaseURL
        self.secrets = secrets
        self.pluginCache = pluginCache
        self.holder = holder
        self.stopPolicy = stopPolicy
        self.progress = progress
    }
}

public struct ReconcileOptions: Sendable {
    public var dryRun: Bool
    public var parallelism: Int
    /// Allow a reconcile that deletes every stored enclave.
    public var allowDeleteEverything: Bool

    public init(dryRun: Bool = false, parallelism: Int = ProcessInfo.processInfo.activeProcessorCount, allowDeleteEverything: Bool = false) {
        self.dryRun = dryRun
        self.parallelism = max(1, parallelism)
        self.allowDeleteEverything = allowDeleteEverything
    }
}

/// What happened to one partition.
public struct PartitionOutcome: Sendable, Equatable, Codable {
    public enum Result: String, Sendable, Codable { case succeeded, failed, skipped, unchanged }
    public var key: StateKey
    public var operation: IacRun.Operation
    public var result: Result
    public var runID: UUID?
    /// Why it failed or was skipped.
    public var reason: String?
    /// Wall time of its terraform run; nil when no run started.
    public var seconds: Double? = nil
}

public struct ReconcileReport: Sendable {
    public var reconcileID: UUID
    public var plan: Plan
    public var outcomes: [PartitionOutcome]
    public var errors: [String]
    /// Runs started by this reconcile.
    public var runCount: Int { outcomes.filter { $0.runID != nil }.count }
}

/// What a drift check found, partition by partition.
public struct DriftReport: Sendable {
    public struct Entry: Sendable {
        public var key: StateKey
        /// nil when the partition was skipped.
        public var result: DriftResult?
        public var skipped: String?
        public var seconds: Double?
    }

    public var reconcileID: UUID
    public var results: [Entry] = []

    public func count(_ status: DriftResult.Status) -> Int { results.filter { $0.result?.status == status }.count }
}

public enum ReconcileError: Error, Sendable, Equatable, CustomStringConvertible {
    case busy(ReconcileLock)
    case wouldDeleteEverything(enclaves: [String])
    case notInState(String)
    case hasDependents(target: String, importers: [String])

    public var description: String {
        switch self {
        case .busy(let lock):
            return "another reconcile is in progress (started by \(lock.holder) at \(ISO8601DateFormatter().string(from: lock.startedAt))); wait for it to finish"
        case .notInState(let what):
            return "\(what) is not in state; `nclav status` and `nclav graph` show what is"
        case .hasDependents(let target, let importers):
            return "\(target) is still imported by \(importers.joined(separator: ", ")); destroy those too, or remove their imports first"
        case .wouldDeleteEverything(let enclaves):
            return "this directory declares none of the \(enclaves.count) enclaves in state (\(enclaves.joined(separator: ", "))); applying it would destroy them all. Check the path, or pass the explicit flag to really delete everything"
        }
    }
}

/// Drives a loaded tree to the store's desired state: tears down what was removed (dependents
/// first), provisions enclaves, then runs changed partitions along the dependency DAG with
/// bounded parallelism. An importer runs after the partition behind each export it imports
/// and its inputs are resolved from that partition's fresh outputs. A failure skips only what
/// depends on it.
public struct Reconciler: Sendable {
    public let environment: ReconcileEnvironment

    public init(environment: ReconcileEnvironment) { self.environment = environment }

    public func reconcile(_ tree: LoadedTree, options: ReconcileOptions = ReconcileOptions()) async throws -> ReconcileReport {
        if options.dryRun { return try await plan(tree) }
        let lock = try await acquire()
        return try await reconcile(tree, options: options, holding: lock)
    }

    /// The plan alone: reads the store, writes nothing, starts nothing.
    public func plan(_ tree: LoadedTree, graph: Digraph<TreeValidator.PartitionRef>? = nil) async throws -> ReconcileReport {
        let stored = StoredState(enclaves: try await environment.store.enclaves(), partitions: try await allPartitions())
        return ReconcileReport(reconcileID: UUID(), plan: Planner.plan(tree, stored: stored, tokens: tokenProvider(stored), graph: graph),
                               outcomes: [], errors: [])
    }

    /// Takes the store-wide reconcile lock (so a caller can refuse a second reconcile before
    /// it starts answering); pass the result to `reconcile(_:options:holding:)`.
    public func acquire() async throws -> ReconcileLock {
        let lock = ReconcileLock(holder: environment.holder)
        if let current = try await environment.store.acquireReconcileLock(lock) { throw ReconcileError.busy(current) }
        return lock
    }

    /// Applies `tree` under a lock from `acquire()`, and releases it.
    public func reconcile(_ tree: LoadedTree, options: ReconcileOptions, holding lock: ReconcileLock) async throws -> ReconcileReport {
        let store = environment.store
        let started = Date()
        defer { environment.observer.reconcileFinished(seconds: Date().timeIntervalSince(started)) }
        do {
            let stored = StoredState(enclaves: try await store.enclaves(), partitions: try await allPartitions())
            let plan = Planner.plan(tree, stored: stored, tokens: tokenProvider(stored))
            var report = ReconcileReport(reconcileID: lock.id, plan: plan, outcomes: [], errors: [])
            if plan.deletesEverything && !options.allowDeleteEverything {
                throw ReconcileError.wouldDeleteEverything(enclaves: stored.enclaves.map(\.id).sorted())
            }
            if !plan.isEmpty { report = try await run(tree, plan: plan, stored: stored, reconcileID: lock.id, options: options) }
            try await store.releaseReconcileLock(lock.id)
            return report
        } catch {
            try? await store.releaseReconcileLock(lock.id)
            throw error
        }
    }

    private func allPartitions() async throws -> [PartitionState] {
        var result: [PartitionState] = []
        for enclave in try await environment.store.enclaves() { result += try await environment.store.partitions(ofEnclave: enclave.id) }
        return result
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

    private func event(_ kind: String, enclave: String? = nil, partition: String? = nil, reconcile: UUID, _ message: String) async {
        _ = try? await environment.store.appendEvent(AuditEvent(kind: kind, enclaveID: enclave, partitionID: partition, reconcileID: reconcile, message: message))
    }

    // MARK: The run

    private func run(_ tree: LoadedTree, plan: Plan, stored: StoredState, reconcileID: UUID, options: ReconcileOptions) async throws -> ReconcileReport {
        let store = environment.store
        await event("reconcile.started", reconcile: reconcileID, "\(plan.changes.count) change(s)")
        var outcomes: [PartitionOutcome] = []
        var errors: [String] = []

        // 1. Teardown first: removed partitions of kept enclaves, then removed enclaves, dependents first.
        let desiredKeys = Set(tree.enclaves.flatMap { enclave in enclave.partitions.compactMap { try? StateKey(enclave: enclave.enclave.id, partition: $0.partition.id) } })
        let removed = stored.partitions.filter { (try? StateKey(enclave: $0.enclaveID, partition: $0.partitionID)).map { !desiredKeys.contains($0) } ?? false }
        for state in StoredGraph.teardownOrder(removed, enclaves: stored.enclaves) {
            let outcome = await teardown(state, stored: stored, reconcileID: reconcileID)
            outcomes.append(outcome)
            if outcome.result == .failed { errors.append("\(outcome.key): \(outcome.reason ?? "teardown failed")") }
        }
        let desiredEnclaves = Set(tree.enclaves.map(\.enclave.id))
        for enclaveState in stored.enclaves where !desiredEnclaves.contains(enclaveState.id) {
            if let error = await removeEnclave(enclaveState, reconcileID: reconcileID) { errors.append(error) }
        }

        // 2. Enclaves: provision new and changed ones.
        var contexts: [String: EnclaveContext] = [:]
        var failedEnclaves: [String: String] = [:]
        let storedByID = Dictionary(stored.enclaves.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for loaded in tree.enclaves {
            let enclave = loaded.enclave
            let cloud = environment.registry.resolvedCloud(for: enclave)
            let previous = storedByID[enclave.id]
            do {
                let driver = try environment.registry.driver(for: cloud)
                let context: EnclaveContext
                if let previous, previous.fingerprint == plan.enclaveFingerprints[enclave.id] {
                    context = EnclaveContext(values: previous.context)
                } else {
                    context = try await driver.provisionEnclave(enclave, previous: previous.map { EnclaveContext(values: $0.context) })
                    var state = previous ?? EnclaveState(id: enclave.id, desired: enclave, resolvedCloud: cloud)
                    state.desired = enclave
                    state.resolvedCloud = cloud
                    state.context = context.values
                    state.status = .active
                    state.fingerprint = plan.enclaveFingerprints[enclave.id]
                    state.lastError = nil
                    state.updatedAt = Date()
                    try await store.putEnclave(state)
                    await event(previous == nil ? "enclave.created" : "enclave.updated", enclave: enclave.id, reconcile: reconcileID, "\(cloud.rawValue) enclave \(enclave.id) provisioned")
                }
                contexts[enclave.id] = context
            } catch {
                failedEnclaves[enclave.id] = "\(error)"
                errors.append("enclave \(enclave.id): \(error)")
            }
        }

        // 3. Partitions along the DAG.
        let executor = PartitionExecutor(reconciler: self, tree: tree, plan: plan, reconcileID: reconcileID, contexts: contexts,
                                         failedEnclaves: failedEnclaves)
        let partitionOutcomes = try await executor.run(parallelism: options.parallelism)
        outcomes += partitionOutcomes
        errors += partitionOutcomes.filter { $0.result == .failed }.map { "\($0.key): \($0.reason ?? "failed")" }
        await event("reconcile.finished", reconcile: reconcileID, errors.isEmpty ? "succeeded" : "\(errors.count) error(s)")
        return ReconcileReport(reconcileID: reconcileID, plan: plan, outcomes: outcomes, errors: errors)
    }

    /// Terraform writes `errored.tfstate` when it cannot save state to the backend (the server
    /// went away mid-run). That file is the only record of what it created: store it as a new
    /// version, note it in the run's log, and keep the file renamed beside it.
    func pushErroredState(key: StateKey, workspace: URL, runID: UUID) async {
        let file = workspace.appendingPathComponent("errored.tfstate")
        guard let body = try? Data(contentsOf: file) else { return }
        let store = environment.store
        let note: String
        if let document = try? StateDocument(parsing: body) {
            let write = StateWrite(body: body, serial: document.serial, lineage: document.lineage, sha256: Digest.sha256Hex(body),
                                   md5: Digest.md5Base64(body), lockID: nil, force: true, runID: runID)
            switch try? await store.writeState(key, write) {
            case .stored(let info)?: note = "pushed errored.tfstate (serial \(document.serial)) as state version \(info.version)"
            case .unchanged(let info)?: note = "errored.tfstate matches state version \(info.version); nothing to push"
            case .locked(let holder)?: note = "errored.tfstate NOT pushed: the state is locked by \(holder.id); it stays in the workspace"
            default: note = "errored.tfstate NOT pushed: the store refused it; it stays in the workspace"
            }
        } else {
            note = "errored.tfstate is not a readable state; left in the workspace for inspection"
        }
        try? await store.appendRunLog(runID, "== \(note)\n")
        if note.hasPrefix("pushed") || note.hasPrefix("errored.tfstate matches") {
            let kept = workspace.appendingPathComponent("errored.tfstate.pushed-\(Int(Date().timeIntervalSince1970))")
            try? FileManager.default.moveItem(at: file, to: kept)
        }
    }

    /// Tears an enclave down once its partitions are gone; returns an error message otherwise.
    private func removeEnclave(_ enclaveState: EnclaveState, reconcileID: UUID) async -> String? {
        let store = environment.store
        do {
            let leftovers = try await store.partitions(ofEnclave: enclaveState.id)
            if !leftovers.isEmpty {
                return "enclave \(enclaveState.id) keeps \(leftovers.count) partition(s) whose teardown failed; it stays in state"
            }
            try await environment.registry.driver(for: enclaveState.resolvedCloud).teardownEnclave(enclaveState.desired, context: EnclaveContext(values: enclaveState.context))
            try await store.deleteEnclave(enclaveState.id)
            await event("enclave.destroyed", enclave: enclaveState.id, reconcile: reconcileID, "enclave \(enclaveState.id) torn down")
            await environment.progress("- enclave \(enclaveState.id) destroyed")
            return nil
        } catch {
            return "enclave \(enclaveState.id): \(error)"
        }
    }

    /// The imperative escape hatch: tears down whole enclaves, or one partition of one enclave,
    /// the same way removing them from the YAML would. Refuses while anything outside what is
    /// destroyed still imports from it.
    public func destroy(enclaves ids: [String], partition: String? = nil) async throws -> ReconcileReport {
        let lock = try await acquire()
        defer { Task { try? await environment.store.releaseReconcileLock(lock.id) } }
        let stored = StoredState(enclaves: try await environment.store.enclaves(), partitions: try await allPartitions())
        for id in ids where !stored.enclaves.contains(where: { $0.id == id }) { throw ReconcileError.notInState("enclave `\(id)`") }
        let targets: [PartitionState]
        if let partition, let id = ids.first {
            guard let state = stored.partitions.first(where: { $0.enclaveID == id && $0.partitionID == partition }) else {
                throw ReconcileError.notInState("partition `\(id)/\(partition)`")
            }
            targets = [state]
        } else {
            targets = stored.partitions.filter { ids.contains($0.enclaveID) }
        }
        let doomed = Set(targets.map { "\($0.enclaveID)/\($0.partitionID)" })
        let graph = StateGraph(enclaves: stored.enclaves, partitions: stored.partitions)
        for target in doomed.sorted() {
            let importers = graph.edges.filter { $0.to == target && !doomed.contains($0.from) }.map(\.from)
            if !importers.isEmpty { throw ReconcileError.hasDependents(target: target, importers: Array(Set(importers)).sorted()) }
        }
        var outcomes: [PartitionOutcome] = []
        var errors: [String] = []
        await event("destroy.started", reconcile: lock.id, partition.map { "partition \(ids[0])/\($0)" } ?? "enclaves \(ids.joined(separator: ", "))")
        for state in StoredGraph.teardownOrder(targets, enclaves: stored.enclaves) {
            let outcome = await teardown(state, stored: stored, reconcileID: lock.id)
            outcomes.append(outcome)
            if outcome.result == .failed { errors.append("\(outcome.key): \(outcome.reason ?? "teardown failed")") }
        }
        if partition == nil {
            for enclaveState in stored.enclaves where ids.contains(enclaveState.id) {
                if let error = await removeEnclave(enclaveState, reconcileID: lock.id) { errors.append(error) }
            }
        }
        try await environment.store.releaseReconcileLock(lock.id)
        return ReconcileReport(reconcileID: lock.id, plan: Plan(changes: [], partitionFingerprints: [:], enclaveFingerprints: [:], deletesEverything: false),
                               outcomes: outcomes, errors: errors)
    }

    /// Drift detection: `terraform plan -detailed-exitcode -lock=false` on every applied
    /// partition (of one enclave, or all) in the workspace of its last apply, recorded as an
    /// IacRun (`plan`) and stored on the partition. Read-only for state. Holds the reconcile
    /// lock, so an apply never rewrites a partition's record while drift writes it.
    public func drift(enclave: String? = nil, holding lock: ReconcileLock) async throws -> DriftReport {
        let store = environment.store
        var report = DriftReport(reconcileID: lock.id)
        do {
            let enclaves = try await store.enclaves().filter { enclave == nil || $0.id == enclave }
            if let enclave, enclaves.isEmpty { throw ReconcileError.notInState(enclave) }
            for enclaveState in enclaves {
                for state in try await store.partitions(ofEnclave: enclaveState.id) where state.status == .active {
                    let key = try StateKey(enclave: state.enclaveID, partition: state.partitionID)
                    report.results.append(try await driftCheck(state, key: key, enclave: enclaveState, reconcileID: lock.id))
                }
            }
            try await store.releaseReconcileLock(lock.id)
        } catch {
            try? await store.releaseReconcileLock(lock.id)
            throw error
        }
        await event("drift.checked", enclave: enclave, partition: nil, reconcile: lock.id,
                    "drift check: \(report.count(.inSync)) in sync, \(report.count(.drifted)) drifted, \(report.count(.error)) error(s)")
        return report
    }

    private func driftCheck(_ state: PartitionState, key: StateKey, enclave: EnclaveState, reconcileID: UUID) async throws -> DriftReport.Entry {
        let store = environment.store
        if let latest = try await store.runs(enclave: key.enclave, partition: key.partition, limit: 1).first, latest.status == .running {
            return DriftReport.Entry(key: key, result: nil, skipped: "a run is in progress", seconds: nil)
        }
        let workspace = environment.renderer.directory(for: key)
        let start = Date()
        let result: DriftResult
        if !FileManager.default.fileExists(atPath: workspace.appendingPathComponent(WorkspaceRenderer.backendFile).path) {
            result = DriftResult(status: .error, summary: "no workspace on this server (\(workspace.path)); apply it once from this server")
        } else {
            await environment.progress("  ? \(key) drift check started")
            let (outcome, _) = await invoke(key: key, partition: state.desired, operation: .plan, workspace: workspace, enclave: enclave.desired,
                                            context: EnclaveContext(values: enclave.context), cloud: enclave.resolvedCloud, identity: state.identity ?? [:],
                                            reconcileID: reconcileID)
            var run: IacRun? = nil
            if let runID = outcome.runID { run = try await store.run(runID) }
            if outcome.result != .succeeded {
                result = DriftResult(status: .error, summary: outcome.reason ?? "terraform plan failed", runID: outcome.runID)
            } else if run?.exitCode == 2 {
                result = DriftResult(status: .drifted, summary: Self.planSummary(run?.log ?? "") ?? "terraform plan found changes", runID: outcome.runID)
            } else {
                result = DriftResult(status: .inSync, summary: "No changes.", runID: outcome.runID)
            }
        }
        // Re-read: only the drift field changes, whatever else happened meanwhile.
        if var current = try await store.partitions(ofEnclave: key.enclave).first(where: { $0.partitionID == key.partition }) {
            current.drift = result
            try await store.putPartition(current)
        }
        return DriftReport.Entry(key: key, result: result, skipped: nil, seconds: Date().timeIntervalSince(start))
    }

    /// "Plan: 1 to add, 2 to change, 0 to destroy." from terraform's plan output.
    static func planSummary(_ log: String) -> String? {
        log.split(separator: "\n").last { $0.hasPrefix("Plan: ") || $0.hasPrefix("Changes to Outputs") }
            .map { String($0).trimmingCharacters(in: .whitespaces) }
    }

    private func teardown(_ state: PartitionState, stored: StoredState, reconcileID: UUID) async -> PartitionOutcome {
        let key = try! StateKey(enclave: state.enclaveID, partition: state.partitionID)
        await environment.progress("- partition \(key) destroying")
        let workspace = environment.renderer.directory(for: key)
        guard FileManager.default.fileExists(atPath: workspace.path) else {
            return PartitionOutcome(key: key, operation: .teardown, result: .failed, runID: nil,
                                    reason: "its workspace \(workspace.path) is gone, so terraform cannot destroy it; destroy it by hand, then `nclav state` can remove it")
        }
        let enclaveState = stored.enclaves.first { $0.id == state.enclaveID }
        let context = EnclaveContext(values: enclaveState?.context ?? [:])
        let cloud = enclaveState?.resolvedCloud ?? .local
        var result = await invoke(key: key, partition: state.desired, operation: .teardown, workspace: workspace, enclave: enclaveState?.desired,
                                  context: context, cloud: cloud, identity: state.identity ?? [:], reconcileID: reconcileID)
        // Terraform has destroyed what it made; now the identity it acted as can go.
        if result.outcome.result == .succeeded, let identity = state.identity, !identity.isEmpty, let enclave = enclaveState?.desired {
            do {
                try await environment.registry.driver(for: cloud).teardownPartition(enclave: enclave, context: context, partition: state.desired, identity: identity)
            } catch {
                result.outcome = PartitionOutcome(key: key, operation: .teardown, result: .failed, runID: result.outcome.runID,
                                                  reason: "terraform destroyed it, but its \(cloud.rawValue) identity could not be removed: \(error)",
                                                  seconds: result.outcome.seconds)
            }
        }
        if result.outcome.result == .succeeded {
            try? await environment.store.deletePartition(enclave: key.enclave, partition: key.partition)
            await event("partition.destroyed", enclave: key.enclave, partition: key.partition, reconcile: reconcileID, "partition \(key) destroyed")
        }
        return result.outcome
    }

    /// Renders nothing: runs terraform in `workspace` and records the run.
    func invoke(key: StateKey, partition: Partition, operation: IacRun.Operation, workspace: URL, enclave: Enclave?, context: EnclaveContext,
                cloud: CloudTarget, identity: PartitionIdentity, reconcileID: UUID) async -> (outcome: PartitionOutcome, outputs: [String: String]) {
        let store = environment.store
        let runID = UUID()
        let start = Date()
        func fail(_ reason: String) -> (PartitionOutcome, [String: String]) {
            (PartitionOutcome(key: key, operation: operation, result: .failed, runID: runID, reason: reason,
                              seconds: Date().timeIntervalSince(start)), [:])
        }
        let tool: String
        do { tool = try ToolResolver.resolve(explicit: partition.terraform.tool, backend: partition.backend, path: ProcessInfo.processInfo.environment["PATH"] ?? "") } catch {
            return (PartitionOutcome(key: key, operation: operation, result: .failed, runID: nil, reason: error.description), [:])
        }
        do { try await store.createRun(IacRun(id: runID, enclaveID: key.enclave, partitionID: key.partition, operation: operation, startedAt: start,
                                              tool: URL(fileURLWithPath: tool).lastPathComponent, reconcileID: reconcileID)) } catch {
            return fail("the run could not be recorded: \(error)")
        }
        await environment.progress("  \(operation == .teardown ? "-" : "+") \(key) \(operation.rawValue) started (run \(runID))")
        var driverEnvironment = TerraformEnvironment()
        if let enclave {
            do {
                driverEnvironment = try await environment.registry.driver(for: cloud).terraformEnvironment(enclave: enclave, context: context, partition: partition, identity: identity)
            } catch {
                let reason = "the \(cloud.rawValue) driver could not give terraform its credentials: \(error)"
                try? await store.appendRunLog(runID, "== \(reason)\n")
                try? await store.finishRun(runID, status: .failed, exitCode: nil, finishedAt: Date())
                environment.observer.runFinished(operation: operation, status: .failed, seconds: Date().timeIntervalSince(start))
                return fail(reason)
            }
        }
        var invocation = TerraformInvocation(
            key: key, operation: operation == .teardown ? .destroy : operation == .plan ? .plan : .apply, workspace: workspace, tool: tool,
            backendBaseURL: environment.backendBaseURL,
            credential: environment.signer.mint(RunScope(key: key, runID: runID, expiresAt: Date().addingTimeInterval(6 * 3600))),
            driverEnvironment: driverEnvironment.variables, secrets: environment.secrets + driverEnvironment.secretValues,
            pluginCacheDirectory: environment.pluginCache, policy: environment.stopPolicy)
        invocation.clearedPrefixes = driverEnvironment.clearedPrefixes
        await pushErroredState(key: key, workspace: workspace, runID: runID)
        let result: InvocationResult
        let logBuffer = RunLogBuffer(store: store, runID: runID)
        do {
            result = try await environment.invoker.run(invocation) { line in await logBuffer.append(line) }
            await logBuffer.flush()
            await pushErroredState(key: key, workspace: workspace, runID: runID)
        } catch {
            await logBuffer.flush()
            try? await store.appendRunLog(runID, "== could not run \(tool): \(error)\n")
            try? await store.finishRun(runID, status: .failed, exitCode: nil, finishedAt: Date())
            environment.observer.runFinished(operation: operation, status: .failed, seconds: Date().timeIntervalSince(start))
            _ = try? await store.releaseLocks(heldBy: runID)
            return fail("\(error)")
        }
        let status: IacRun.Status = result.succeeded ? .succeeded : (result.result.cancelled || result.result.timedOut ? .cancelled : .failed)
        try? await store.finishRun(runID, status: status, exitCode: result.result.exitCode, finishedAt: Date())
        environment.observer.runFinished(operation: operation, status: status, seconds: Date().timeIntervalSince(start))
        // Terraform unlocks on its own; a killed terraform cannot, so locks die with the run.
        _ = try? await store.releaseLocks(heldBy: runID)
        let seconds = String(format: "%.1f", Date().timeIntervalSince(start))
        guard result.succeeded else {
            await environment.progress("  ! \(key) \(operation.rawValue) failed after \(seconds) s (run \(runID))")
            return fail("terraform \(result.lastCommand) \(TerraformInvoker.describe(result.result)); see `nclav iac logs \(key.enclave) \(key.partition) \(runID)`")
        }
        var outputs: [String: String] = [:]
        if operation != .teardown && operation != .plan {
            let document = try? await store.latestState(key).flatMap { try StateDocument(parsing: $0.body) }
            for name in partition.declaredOutputs {
                guard let value = document?.outputs[name] else {
                    try? await store.finishRun(runID, status: .failed, exitCode: result.result.exitCode, finishedAt: Date())
                    return fail("declared output `\(name)` is missing from the state terraform wrote; add `output \"\(name)\"` to the module")
                }
                outputs[name] = value.templateString
            }
        }
        await environment.progress("  \(operation == .teardown ? "-" : "✓") \(key) \(operation.rawValue) succeeded in \(seconds) s")
        return (PartitionOutcome(key: key, operation: operation, result: .succeeded, runID: runID, reason: nil,
                                 seconds: Date().timeIntervalSince(start)), outputs)
    }
}

/// Collects a run's log lines and appends them in small batches: at most every 100 ms or 64
/// lines, so the log stays readable while terraform runs without one store write per line.
actor RunLogBuffer {
    private let store: any StateStore
    private let runID: UUID
    private var pending: [String] = []
    private var flushScheduled = false

    init(store: any StateStore, runID: UUID) {
        self.store = store
        self.runID = runID
    }

    func append(_ line: String) async {
        pending.append(line)
        if pending.count >= 64 {
            await flush()
        } else if !flushScheduled {
            flushScheduled = true
            Task {
                try? await Task.sleep(for: .milliseconds(100))
                await self.flush()
            }
        }
    }

    func flush() async {
        flushScheduled = false
        guard !pending.isEmpty else { return }
        let text = pending.map { $0 + "\n" }.joined()
        pending.removeAll()
        try? await store.appendRunLog(runID, text)
    }
}

/// Runs the changed partitions of a plan along the dependency DAG.
struct PartitionExecutor {
    let reconciler: Reconciler
    let tree: LoadedTree
    let plan: Plan
    let reconcileID: UUID
    let contexts: [String: EnclaveContext]
    let failedEnclaves: [String: String]

    init(reconciler: Reconciler, tree: LoadedTree, plan: Plan, reconcileID: UUID, contexts: [String: EnclaveContext], failedEnclaves: [String: String]) {
        self.reconciler = reconciler
        self.tree = tree
        self.plan = plan
        self.reconcileID = reconcileID
        self.contexts = contexts
        self.failedEnclaves = failedEnclaves
    }

    func run(parallelism: Int) async throws -> [PartitionOutcome] {
        let store = reconciler.environment.store
        var outputs: [StateKey: [String: String]] = [:]
        var finished: [StateKey: PartitionOutcome.Result] = [:]
        let graph = TreeValidator.dependencyGraph(of: tree)
        var storedStates: [StateKey: PartitionState] = [:]
        for enclave in tree.enclaves {
            for state in try await store.partitions(ofEnclave: enclave.enclave.id) {
                if let key = try? StateKey(enclave: state.enclaveID, partition: state.partitionID) { storedStates[key] = state; outputs[key] = state.outputs }
            }
        }
        var loaded: [TreeValidator.PartitionRef: (LoadedEnclave, LoadedPartition)] = [:]
        for enclave in tree.enclaves { for partition in enclave.partitions { loaded[.init(enclave.enclave.id, partition.partition.id)] = (enclave, partition) } }
        func key(_ ref: TreeValidator.PartitionRef) -> StateKey { try! StateKey(enclave: ref.enclave, partition: ref.partition) }

        var pending = Set(loaded.keys)
        var results: [PartitionOutcome] = []
        try await withThrowingTaskGroup(of: (TreeValidator.PartitionRef, PartitionOutcome, [String: String], PartitionState?).self) { group in
            var running = 0
            func launchReady() {
                let ready = pending.filter { ref in graph.dependencies(of: ref).allSatisfy { finished[key($0)] != nil } }.sorted()
                for ref in ready where running < parallelism {
                    pending.remove(ref)
                    let (enclave, partition) = loaded[ref]!
                    let stateKey = key(ref)
                    // Anything upstream that did not succeed means this partition cannot run.
                    if let blocker = graph.dependencies(of: ref).first(where: { [.failed, .skipped].contains(finished[key($0)]) }) {
                        let outcome = PartitionOutcome(key: stateKey, operation: .update, result: .skipped, runID: nil, reason: "upstream \(blocker) failed")
                        finished[stateKey] = .skipped
                        results.append(outcome)
                        continue
                    }
                    if let reason = failedEnclaves[enclave.enclave.id] {
                        finished[stateKey] = .skipped
                        results.append(PartitionOutcome(key: stateKey, operation: .update, result: .skipped, runID: nil, reason: "enclave failed: \(reason)"))
                        continue
                    }
                    // Fingerprint with the fresh outputs upstream produced in this reconcile.
                    let fresh = outputs
                    var freshStates = storedStates
                    for (k, values) in fresh { freshStates[k, default: PartitionState(enclaveID: k.enclave, partitionID: k.partition, desired: Partition(id: k.partition, name: k.partition))].outputs = values }
                    let context = contexts[enclave.enclave.id] ?? EnclaveContext()
                    let registry = reconciler.environment.registry
                    let tokens: ContextTokensProvider = { e, p in registry.contextTokens(enclave: e, context: context, partition: p) }
                    let fingerprint = Planner.fingerprint(partition, in: enclave, tree: tree, stored: freshStates, tokens: tokens)
                    let previous = storedStates[stateKey]
                    if let previous, previous.fingerprint == fingerprint, previous.status == .active, previous.drift?.status != .drifted {
                        finished[stateKey] = .unchanged
                        continue
                    }
                    let inputs = Planner.resolveInputs(partition.partition, in: enclave, tree: tree, stored: freshStates, tokens: tokens)
                    // The imports this partition uses (its own and its enclave's), with the exporter's fresh state.
                    let wirings: [ImportWiring] = (partition.partition.imports + enclave.enclave.imports).compactMap { entry in
                        guard let exporter = self.tree.enclaves.first(where: { $0.enclave.id == entry.from })?.enclave,
                              let export = exporter.exports.first(where: { $0.name == entry.exportName }),
                              let exporterKey = try? StateKey(enclave: exporter.id, partition: export.targetPartition) else { return nil }
                        return ImportWiring(alias: entry.alias, export: export, exporterEnclave: exporter.id, exporterCloud: registry.resolvedCloud(for: exporter),
                                            exporterContext: contexts[exporter.id]?.values ?? [:], exporterOutputs: fresh[exporterKey] ?? [:])
                    }
                    running += 1
                    let reconciler = self.reconciler
                    let tree = self.tree
                    let reconcileID = self.reconcileID
                    let cloud = registry.resolvedCloud(for: enclave.enclave)
                    group.addTask {
                        let operation: IacRun.Operation = previous == nil ? .provision : .update
                        let source = URL(fileURLWithPath: tree.root).appendingPathComponent(partition.directory)
                        let moduleSource = partition.partition.terraform.source.map { source in
                            source.hasPrefix("./") || source.hasPrefix("../") ? source.standardizedPath(relativeTo: URL(fileURLWithPath: tree.root).appendingPathComponent(partition.directory)) : source
                        }
                        let rendered: RenderedWorkspace
                        do {
                            rendered = try reconciler.environment.renderer.render(WorkspaceSpec(
                                key: stateKey, sourceDirectory: source, moduleSource: moduleSource, inputs: inputs, declaredOutputs: partition.partition.declaredOutputs))
                        } catch {
                            return (ref, PartitionOutcome(key: stateKey, operation: operation, result: .failed, runID: nil, reason: "\(error)"), [:], nil)
                        }
                        var state = previous ?? PartitionState(enclaveID: stateKey.enclave, partitionID: stateKey.partition, desired: partition.partition)
                        // The identity terraform acts as exists before terraform runs (idempotent: found when it is there).
                        var identity: PartitionIdentity
                        do {
                            let driver = try reconciler.environment.registry.driver(for: cloud)
                            identity = try await driver.provisionPartition(enclave: enclave.enclave, context: context, partition: partition.partition)
                            if !wirings.isEmpty {
                                identity = try await driver.wireImports(enclave: enclave.enclave, context: context, partition: partition.partition,
                                                                        identity: identity, imports: wirings)
                            }
                        } catch {
                            state.desired = partition.partition
                            state.status = .failed
                            state.lastError = "its \(cloud.rawValue) identity or import wiring could not be set up: \(error)"
                            state.fingerprint = nil
                            state.updatedAt = Date()
                            return (ref, PartitionOutcome(key: stateKey, operation: operation, result: .failed, runID: nil, reason: state.lastError), [:], state)
                        }
                        if !identity.isEmpty { state.identity = identity }
                        let (outcome, produced) = await reconciler.invoke(key: stateKey, partition: partition.partition, operation: operation,
                                                                          workspace: rendered.directory, enclave: enclave.enclave, context: context,
                                                                          cloud: cloud, identity: state.identity ?? [:], reconcileID: reconcileID)
                        state.desired = partition.partition
                        state.lastRunID = outcome.runID
                        state.updatedAt = Date()
                        if outcome.result == .succeeded {
                            state.status = .active
                            state.outputs = produced
                            state.fingerprint = fingerprint
                            state.lastError = nil
                            state.drift = nil  // just applied: whatever drifted is put back
                        } else {
                            state.status = .failed
                            state.lastError = outcome.reason
                            state.fingerprint = nil
                        }
                        return (ref, outcome, produced, state)
                    }
                }
            }
            launchReady()
            while running > 0 {
                guard let (ref, outcome, produced, state) = try await group.next() else { break }
                running -= 1
                let stateKey = key(ref)
                finished[stateKey] = outcome.result
                results.append(outcome)
                if outcome.result == .succeeded { outputs[stateKey] = produced }
                if let state { try await store.putPartition(state) }
                _ = try? await store.appendEvent(AuditEvent(kind: outcome.result == .succeeded ? "partition.applied" : "partition.failed",
                                                            enclaveID: stateKey.enclave, partitionID: stateKey.partition, reconcileID: reconcileID,
                                                            message: outcome.reason ?? "\(outcome.operation.rawValue) succeeded"))
                launchReady()
                // Unchanged and skipped partitions finish without a task; keep unlocking.
                while running == 0 && !pending.isEmpty {
                    let before = pending.count
                    launchReady()
                    if pending.count == before { break }
                }
            }
            // Nodes never reached (on a cycle, or behind a node that never finished).
            while !pending.isEmpty {
                let before = pending.count
                launchReady()
                if pending.count == before { break }
            }
        }
        return results.sorted { $0.key < $1.key }
    }
}

extension String {
    /// A local module path made absolute against the partition directory.
    func standardizedPath(relativeTo base: URL) -> String {
        base.appendingPathComponent(self).standardized.path
    }
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
