import Foundation
import IacRunner
import NclavConfig
import NclavCore
import NclavDrivers
import NclavStore

/// What one partition's work in a reconcile came to: its outcome and, when it succeeded, the
/// outputs its importers read.
public struct PartitionResult: Sendable {
    public var outcome: PartitionOutcome
    public var outputs: [String: String]

    public init(outcome: PartitionOutcome, outputs: [String: String] = [:]) {
        self.outcome = outcome
        self.outputs = outputs
    }
}

/// One partition's apply, from its loaded YAML to its stored record: render the workspace,
/// set up its cloud identity and import wiring, run terraform, read its declared outputs,
/// store the result. Everything it needs is resolved before it starts, so it never calls back
/// into the reconcile; every failure (a store write's included) becomes its outcome.
struct PartitionApply: Sendable {
    let environment: ReconcileEnvironment
    let reconcileID: UUID
    let key: StateKey
    let enclave: Enclave
    let partition: LoadedPartition
    /// The enclaves directory the tree was loaded from.
    let treeRoot: String
    let previous: PartitionState?
    let inputs: [String: String]
    let fingerprint: String
    let context: EnclaveContext
    let cloud: CloudTarget
    let wirings: [ImportWiring]
    /// The saved plan to apply instead of planning again (`apply --plan`).
    var planFile: URL? = nil
    /// A partition deferred in a saved plan: planned now into this file, then that plan
    /// applied, unless it destroys or replaces something and destruction was not approved:
    /// then nothing of it changes, and it fails naming what it would destroy (so the apply
    /// exits 1 and the next one plans it again).
    var replan: (file: URL, destructionApproved: Bool)? = nil

    var operation: IacRun.Operation { Self.operation(previous: previous) }

    /// `provision` until the partition has been created once, `update` afterwards.
    static func operation(previous: PartitionState?) -> IacRun.Operation {
        previous?.wasCreated == true ? .update : .provision
    }

    func run() async -> PartitionResult {
        let start = Date()
        func failed(_ reason: String, runID: UUID? = nil) -> PartitionOutcome {
            PartitionOutcome(key: key, operation: operation, result: .failed, runID: runID, reason: reason, seconds: Date().timeIntervalSince(start))
        }
        let rendered: RenderedWorkspace
        let rewrites: [String: String]
        do {
            (rendered, rewrites) = try renderWorkspace(partition, key: key, treeRoot: treeRoot, inputs: inputs, renderer: environment.renderer)
        } catch {
            return await store(failed("its workspace could not be rendered: \(error)"), outputs: [:], identity: nil)
        }
        // The identity terraform acts as exists before terraform runs (idempotent: found when it is there).
        var identity: PartitionIdentity
        do {
            let driver = try environment.registry.driver(for: cloud)
            identity = try await driver.provisionPartition(enclave: enclave, context: context, partition: partition.partition)
            // What earlier applies wired stays known, so that an import removed since is undone.
            let wiredBefore = (previous?.identity ?? [:]).filter { $0.key.hasPrefix(WiredResources.keyPrefix) }
            identity.merge(wiredBefore) { current, _ in current }
            if !wirings.isEmpty || !wiredBefore.isEmpty {
                identity = try await driver.wireImports(
                    enclave: enclave, context: context, partition: partition.partition, identity: identity, imports: wirings)
            }
        } catch {
            return await store(failed("its \(cloud.rawValue) identity or import wiring could not be set up: \(error)"), outputs: [:], identity: nil)
        }
        let actingAs = identity.isEmpty ? (previous?.identity ?? [:]) : identity
        var planFile = self.planFile
        if let replan {
            let planned = await RecordedRun(environment: environment, reconcileID: reconcileID).run(
                key, partition: partition.partition, operation: .plan, workspace: rendered.directory, enclave: enclave, context: context,
                cloud: cloud, identity: actingAs, planFile: replan.file, logPathRewrites: rewrites)
            guard planned.outcome.result == .succeeded, let document = planned.plan else {
                var outcome = planned.outcome
                outcome.operation = operation
                outcome.seconds = Date().timeIntervalSince(start)
                return await store(outcome, outputs: [:], identity: identity.isEmpty ? nil : identity)
            }
            if document.destroys && !replan.destructionApproved {
                let doomed = document.resourceChanges.filter { $0.action == .delete || $0.action == .replace }
                    .map { "\($0.address) \($0.action == .delete ? "destroyed" : "replaced")" }
                return PartitionResult(
                    outcome: PartitionOutcome(
                        key: key, operation: operation, result: .failed, runID: planned.outcome.runID,
                        reason: "not applied: planned after its upstreams, it destroys what was not approved (\(doomed.joined(separator: ", "))); "
                            + "nothing of it changed: review it with `nclav plan` and apply again (or pass --auto-approve)",
                        seconds: Date().timeIntervalSince(start)))
            }
            planFile = replan.file
        }
        let run = await RecordedRun(environment: environment, reconcileID: reconcileID).run(
            key, partition: partition.partition, operation: operation, workspace: rendered.directory, enclave: enclave, context: context,
            cloud: cloud, identity: actingAs, planFile: planFile, logPathRewrites: rewrites)
        var outcome = run.outcome
        outcome.seconds = Date().timeIntervalSince(start)
        return await store(outcome, outputs: run.outputs, identity: identity.isEmpty ? nil : identity)
    }

    /// Records the outcome on the partition's state. A record that cannot be written makes the
    /// partition fail (the next apply runs it again), and its outputs are not passed on.
    private func store(_ outcome: PartitionOutcome, outputs: [String: String], identity: PartitionIdentity?) async -> PartitionResult {
        var state = previous ?? PartitionState(enclaveID: key.enclave, partitionID: key.partition, desired: partition.partition)
        state.desired = partition.partition
        if let identity { state.identity = identity }
        if let runID = outcome.runID { state.lastRunID = runID }
        state.updatedAt = Date()
        if outcome.result == .succeeded {
            state.status = .active
            state.outputs = outputs
            state.fingerprint = fingerprint
            state.lastError = nil
            state.drift = nil  // just applied: whatever drifted is put back
            state.appliedAt = Date()
        } else {
            state.status = .failed
            state.lastError = outcome.reason
            state.fingerprint = nil
        }
        do {
            // Recorded even when the reconcile is being cancelled: what terraform did is done.
            let store = environment.store
            let record = state
            try await completing { try await store.putPartition(record) }
        } catch {
            var failed = outcome
            failed.result = .failed
            failed.reason =
                (outcome.result == .succeeded ? "terraform \(outcome.operation.rawValue) succeeded, but " : "\(outcome.reason ?? "it failed"), and ")
                + "its record could not be stored: \(error); the next apply runs it again"
            return PartitionResult(outcome: failed)
        }
        return PartitionResult(outcome: outcome, outputs: outcome.result == .succeeded ? outputs : [:])
    }
}

/// A partition's workspace rendered from its files and resolved inputs (its local module
/// vendored), with how terraform's messages will name that module (`moduleLogRewrites`).
func renderWorkspace(
    _ partition: LoadedPartition, key: StateKey, treeRoot: String, inputs: [String: String], renderer: WorkspaceRenderer
) throws -> (RenderedWorkspace, [String: String]) {
    let spec = WorkspaceSpec.partition(
        key, directory: partition.directory, treeRoot: treeRoot, source: partition.partition.terraform.source, inputs: inputs,
        declaredOutputs: partition.partition.declaredOutputs)
    return (try renderer.render(spec), moduleLogRewrites(moduleSource: spec.moduleSource, treeRoot: treeRoot))
}

/// What terraform's messages call the vendored local module (`nclav_module_source/…`), shown
/// as the module's path in the enclaves tree, the one the user edits.
func moduleLogRewrites(moduleSource: String?, treeRoot: String) -> [String: String] {
    let root = URL(fileURLWithPath: treeRoot).standardized.path
    guard let module = moduleSource, module.hasPrefix(root + "/") else { return [:] }
    let relative = String(module.dropFirst(root.count + 1))
    let vendored = WorkspaceRenderer.vendoredModuleDirectory
    // `on nclav_module_source/main.tf line 2`, and init's `- partition in nclav_module_source`.
    return [vendored + "/": relative + "/", "in " + vendored: "in " + relative]
}
