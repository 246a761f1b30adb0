import Foundation
import IacRunner
import NclavAuth
import NclavCore
import NclavDrivers
import NclavStore

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

/// What a reconcile needs from the world, injected so each side can be tested.
public struct ReconcileEnvironment: Sendable {
    public var store: any StateStore
    public var registry: DriverRegistry
    public var renderer: WorkspaceRenderer
    /// Runs terraform or tofu (`TerraformInvoker`; tests put a recording tool here).
    public var invoker: any IacTool
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
    /// The PATH tools are looked up on.
    public var searchPath: String = ProcessInfo.processInfo.environment["PATH"] ?? ""
    /// Where saved plans live: beside the workspaces unless set.
    public var plans: PlanStore

    public init(
        store: any StateStore, registry: DriverRegistry, renderer: WorkspaceRenderer, invoker: any IacTool = TerraformInvoker(),
        signer: RunCredentialSigner, backendBaseURL: String, secrets: [String] = [], pluginCache: URL? = nil,
        holder: String = "\(ProcessInfo.processInfo.hostName) pid \(getpid())", stopPolicy: StopPolicy = StopPolicy(),
        progress: @escaping @Sendable (String) async -> Void = { _ in }
    ) {
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
        self.plans = PlanStore(directory: renderer.root.deletingLastPathComponent().appendingPathComponent("plans", isDirectory: true))
    }

    /// How long a run's backend credential could be needed: the run's timeout, its grace period
    /// and a margin. The server also refuses it as soon as the run has ended.
    var runCredentialLifetime: TimeInterval {
        Double((stopPolicy.timeout + stopPolicy.gracePeriod).components.seconds) + 300
    }
}

public struct ReconcileOptions: Sendable {
    public var dryRun: Bool
    public var parallelism: Int
    /// Allow a reconcile that deletes every stored enclave.
    public var allowDeleteEverything: Bool
    /// Only these (and what they need upstream); nil for everything.
    public var targets: Targets?
    /// Apply exactly this saved plan (`apply --plan`).
    public var savedPlan: UUID?
    /// With a saved plan: partitions it deferred may destroy or replace resources when they
    /// are planned after their upstreams; without it such a partition is skipped and named.
    public var autoApprove: Bool = false

    public init(
        dryRun: Bool = false, parallelism: Int = ProcessInfo.processInfo.activeProcessorCount, allowDeleteEverything: Bool = false,
        targets: Targets? = nil, savedPlan: UUID? = nil, autoApprove: Bool = false
    ) {
        self.autoApprove = autoApprove
        self.dryRun = dryRun
        self.parallelism = max(1, parallelism)
        self.allowDeleteEverything = allowDeleteEverything
        self.targets = targets.flatMap { $0.isEmpty ? nil : $0 }
        self.savedPlan = savedPlan
    }
}

/// What happened to one partition.
public struct PartitionOutcome: Sendable, Equatable, Codable {
    /// `unchanged`: the plan expected it might run (an upstream changed), but its resolved
    /// inputs came out the same, so nothing ran.
    public enum Result: String, Sendable, Codable { case succeeded, failed, skipped, unchanged }
    public var key: StateKey
    public var operation: IacRun.Operation
    public var result: Result
    public var runID: UUID?
    /// Why it failed, was skipped or stayed unchanged.
    public var reason: String?
    /// Wall time of its work; nil when nothing started.
    public var seconds: Double? = nil

    public init(key: StateKey, operation: IacRun.Operation, result: Result, runID: UUID? = nil, reason: String? = nil, seconds: Double? = nil) {
        self.key = key
        self.operation = operation
        self.result = result
        self.runID = runID
        self.reason = reason
        self.seconds = seconds
    }
}

/// What happened to one enclave's boundary (project, subscription, account).
public struct EnclaveOutcome: Sendable, Equatable, Codable {
    public enum Operation: String, Sendable, Codable { case provision, update, teardown }
    public var enclave: String
    public var operation: Operation
    /// `succeeded` or `failed`.
    public var result: PartitionOutcome.Result
    public var reason: String?

    public init(enclave: String, operation: Operation, result: PartitionOutcome.Result, reason: String? = nil) {
        self.enclave = enclave
        self.operation = operation
        self.result = result
        self.reason = reason
    }
}

public struct ReconcileReport: Sendable {
    public var reconcileID: UUID
    public var plan: Plan
    /// Every partition that ran, failed without running, was skipped, or was expected to run
    /// and turned out unchanged, in the order they finished.
    public var outcomes: [PartitionOutcome]
    public var enclaves: [EnclaveOutcome] = []
    public var errors: [String]

    public init(reconcileID: UUID, plan: Plan, outcomes: [PartitionOutcome], enclaves: [EnclaveOutcome] = [], errors: [String]) {
        self.reconcileID = reconcileID
        self.plan = plan
        self.outcomes = outcomes
        self.enclaves = enclaves
        self.errors = errors
    }

    /// Runs started by this reconcile.
    public var runCount: Int { outcomes.filter { $0.runID != nil }.count }
    /// True when the reconcile changed nothing and found nothing wrong.
    public var changedNothing: Bool { outcomes.isEmpty && enclaves.isEmpty && errors.isEmpty }
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
            return
                "another reconcile is in progress (started by \(lock.holder) at \(ISO8601DateFormatter().string(from: lock.startedAt))); wait for it to finish"
        case .notInState(let what):
            return "\(what) is not in state; `nclav status` and `nclav graph` show what is"
        case .hasDependents(let target, let importers):
            return "\(target) is still imported by \(importers.joined(separator: ", ")); destroy those too, or remove their imports first"
        case .wouldDeleteEverything(let enclaves):
            return
                "this directory declares none of the \(enclaves.count) enclaves in state (\(enclaves.joined(separator: ", "))); applying it would destroy them all. Check the path, or pass the explicit flag to really delete everything"
        }
    }
}
