import Foundation
import NclavCore

/// What a driver reports about a provisioned enclave; stored with the enclave so teardown and
/// later applies do not need the cloud to answer again.
public struct EnclaveContext: Codable, Sendable, Hashable {
    public var values: [String: String]
    public init(values: [String: String] = [:]) { self.values = values }
}

/// One cloud's way of creating enclave boundaries and giving partitions their identity.
public protocol Driver: Sendable {
    var cloud: CloudTarget { get }
    /// Creates or updates the enclave's boundary (project, subscription, account). Must be
    /// idempotent: an apply that stopped half-way continues from where it was.
    func provisionEnclave(_ enclave: Enclave, previous: EnclaveContext?) async throws -> EnclaveContext
    /// Removes what `provisionEnclave` created.
    func teardownEnclave(_ enclave: Enclave, context: EnclaveContext) async throws
    /// The `{{ nclav_* }}` values for one partition.
    func contextTokens(enclave: Enclave, context: EnclaveContext, partition: Partition) -> [String: String]
    /// Creates (or finds) the partition's own cloud identity — a service account, managed
    /// identity or IAM role — that terraform acts as. Kept in the partition's state, apart from
    /// terraform's own state, so teardown can remove it after terraform has destroyed the rest.
    func provisionPartition(enclave: Enclave, context: EnclaveContext, partition: Partition) async throws -> PartitionIdentity
    /// Removes what `provisionPartition` created; called after terraform's destroy succeeded.
    func teardownPartition(enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity) async throws
    /// Credentials and settings terraform needs for this partition (GOOGLE_*, ARM_*, AWS_*).
    /// Short-lived credentials are minted here, for one run.
    func terraformEnvironment(
        enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity
    ) async throws -> TerraformEnvironment
    /// Resources the cloud says nclav made in this enclave whose partition is not in `known`.
    func orphans(enclave: EnclaveState, knownPartitions: Set<String>) async throws -> [Orphan]
    /// Connects a partition to the exports it imports, as far as the cloud can (access grants,
    /// private endpoints, subscriptions). Returns entries to keep in the partition's identity so
    /// `teardownPartition` can undo them. Called after `provisionPartition`, before terraform.
    func wireImports(
        enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity,
        imports: [ImportWiring]
    ) async throws -> PartitionIdentity
}

/// One import a partition uses, resolved against the exporter's applied state.
public struct ImportWiring: Sendable, Hashable {
    public var alias: String
    public var export: Export
    public var exporterEnclave: String
    public var exporterCloud: CloudTarget
    public var exporterContext: [String: String]
    /// Declared outputs of the export's target partition (fresh from this reconcile).
    public var exporterOutputs: [String: String]

    public init(
        alias: String, export: Export, exporterEnclave: String, exporterCloud: CloudTarget, exporterContext: [String: String],
        exporterOutputs: [String: String]
    ) {
        self.alias = alias
        self.export = export
        self.exporterEnclave = exporterEnclave
        self.exporterCloud = exporterCloud
        self.exporterContext = exporterContext
        self.exporterOutputs = exporterOutputs
    }
}

/// A partition's cloud identity, as its driver describes it (e.g. `role_arn`, `role_name`).
public typealias PartitionIdentity = [String: String]

/// Environment for one terraform run; `secretNames` are redacted from its log; variables of
/// the server's environment starting with a `clearedPrefixes` entry are not passed on (the
/// server's own cloud identity must not reach a partition).
public struct TerraformEnvironment: Sendable, Equatable {
    public var variables: [String: String]
    public var secretNames: Set<String>
    public var clearedPrefixes: [String]
    /// When the cloud credentials in `variables` stop working, if terraform cannot refresh
    /// them itself (a minted access token, STS session or OIDC assertion); nil when it can.
    public var credentialsExpire: Date?
    public init(
        variables: [String: String] = [:], secretNames: Set<String> = [], clearedPrefixes: [String] = [], credentialsExpire: Date? = nil
    ) {
        self.variables = variables
        self.secretNames = secretNames
        self.clearedPrefixes = clearedPrefixes
        self.credentialsExpire = credentialsExpire
    }
    public var secretValues: [String] { secretNames.compactMap { variables[$0] }.filter { !$0.isEmpty } }
}

extension Driver {
    public func provisionPartition(enclave: Enclave, context: EnclaveContext, partition: Partition) async throws -> PartitionIdentity { [:] }
    public func teardownPartition(enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity) async throws {}
    public func terraformEnvironment(
        enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity
    ) async throws -> TerraformEnvironment {
        TerraformEnvironment()
    }
    public func orphans(enclave: EnclaveState, knownPartitions: Set<String>) async throws -> [Orphan] { [] }
    public func wireImports(
        enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity,
        imports: [ImportWiring]
    ) async throws -> PartitionIdentity { identity }
}

public enum DriverError: Error, Sendable, Equatable, CustomStringConvertible {
    case notConfigured(CloudTarget, available: [CloudTarget])

    public var description: String {
        switch self {
        case .notConfigured(let cloud, let available):
            return
                "the \(cloud.rawValue) driver is not enabled on this server (enabled: \(available.map(\.rawValue).joined(separator: ", "))); start the server with `--enable-cloud \(cloud.rawValue)` or set `cloud:` to an enabled one"
        }
    }
}

/// The drivers a server runs with. An enclave's `cloud:` picks its driver; without one it gets
/// the default. `local` is always available: it makes no cloud calls.
public struct DriverRegistry: Sendable {
    public let defaultCloud: CloudTarget
    private let drivers: [CloudTarget: any Driver]

    public init(defaultCloud: CloudTarget, drivers: [any Driver]) {
        var byCloud: [CloudTarget: any Driver] = [.local: LocalDriver()]
        for driver in drivers { byCloud[driver.cloud] = driver }
        self.defaultCloud = defaultCloud
        self.drivers = byCloud
    }

    public var activeClouds: [CloudTarget] { drivers.keys.sorted() }

    /// The `{{ nclav_* }}` values the enclave's driver gives a partition; an enclave whose cloud
    /// is not enabled gets the local driver's (its error surfaces when it is provisioned).
    public func contextTokens(enclave: Enclave, context: EnclaveContext, partition: Partition) -> [String: String] {
        let driver = (try? driver(for: resolvedCloud(for: enclave))) ?? LocalDriver()
        return driver.contextTokens(enclave: enclave, context: context, partition: partition)
    }

    public func resolvedCloud(for enclave: Enclave) -> CloudTarget { enclave.cloud ?? defaultCloud }

    /// The driver for a cloud (for teardown, use the cloud stored with the enclave's state).
    public func driver(for cloud: CloudTarget) throws(DriverError) -> any Driver {
        guard let driver = drivers[cloud] else { throw .notConfigured(cloud, available: activeClouds) }
        return driver
    }
}

/// Enclaves on this machine: no cloud calls; the project id is the enclave id.
public struct LocalDriver: Driver {
    public let cloud = CloudTarget.local
    public init() {}

    public func provisionEnclave(_ enclave: Enclave, previous: EnclaveContext?) async throws -> EnclaveContext {
        EnclaveContext(values: ["project_id": enclave.id, "region": enclave.region ?? ""])
    }

    public func teardownEnclave(_ enclave: Enclave, context: EnclaveContext) async throws {}

    public func contextTokens(enclave: Enclave, context: EnclaveContext, partition: Partition) -> [String: String] {
        [
            "nclav_enclave_id": enclave.id, "nclav_partition_id": partition.id,
            "nclav_project_id": context.values["project_id"] ?? enclave.id, "nclav_region": context.values["region"] ?? enclave.region ?? "",
        ]
    }
}

/// How long nclav waits for clouds: polls of a long operation double from `initial` up to
/// `cap` and give up at `deadline`; a call refused because something made moments ago has not
/// propagated yet (a new identity unknown to IAM, an API just enabled, a role not yet
/// effective) is retried for up to `propagation`; a throttled or failing call (429, 5xx) for
/// up to `transient`. Tests shrink all five; production keeps the clouds' own figures.
public struct CappedBackoff: Sendable {
    public let initial: Duration
    public let cap: Duration
    public let deadline: Duration
    /// IAM changes take up to 7 minutes on GCP (typically under 2); AWS's provider waits 2.
    public let propagation: Duration
    /// terraform-provider-google retries 429 and 5xx for 90 s by default.
    public let transient: Duration

    public init(
        initial: Duration = .seconds(1), cap: Duration = .seconds(15), deadline: Duration = .seconds(1800),
        propagation: Duration = .seconds(420), transient: Duration = .seconds(90)
    ) {
        self.initial = initial
        self.cap = cap
        self.deadline = deadline
        self.propagation = propagation
        self.transient = transient
    }

    /// Calls `attempt` until it returns a value; nil means "not yet". Throws `timedOut` with
    /// `what` when the deadline passes.
    public func poll<T>(_ what: String, _ attempt: () async throws -> T?) async throws -> T {
        let clock = ContinuousClock()
        let start = clock.now
        var delay = initial
        while true {
            if let value = try await attempt() { return value }
            if clock.now - start + delay > deadline { throw CloudOperationTimeout(operation: what, waited: clock.now - start) }
            try await Task.sleep(for: delay)
            delay = min(delay * 2, cap)
        }
    }

    /// Runs `body` again while it fails with an error `isPropagating` accepts, for up to
    /// `window` (default `propagation`); then the last error is thrown as it was, so its
    /// message and hint reach the user unchanged.
    @discardableResult
    public func untilPropagated<T>(
        _ isPropagating: (any Error) -> Bool, for window: Duration? = nil, _ body: () async throws -> T
    ) async throws -> T {
        let clock = ContinuousClock()
        let start = clock.now
        let window = window ?? propagation
        var delay = initial
        while true {
            do { return try await body() } catch {
                guard isPropagating(error), clock.now - start + delay <= window else { throw error }
                try await Task.sleep(for: delay)
                delay = min(delay * 2, cap)
            }
        }
    }

    /// Calls `check` until it answers true `times` times in a row (a cloud that has just
    /// created something may answer from a replica that has not seen it yet), for up to
    /// `propagation`.
    public func untilConsistent(_ what: String, times: Int = 3, _ check: () async throws -> Bool) async throws {
        let clock = ContinuousClock()
        let start = clock.now
        var delay = initial
        var streak = 0
        while true {
            streak = try await check() ? streak + 1 : 0
            if streak >= times { return }
            if clock.now - start + delay > propagation { throw CloudOperationTimeout(operation: what, waited: clock.now - start) }
            try await Task.sleep(for: streak > 0 ? initial : delay)
            if streak == 0 { delay = min(delay * 2, cap) }
        }
    }

    /// The wait before retry `attempt` (1-based) of a throttled or failing call: a server's
    /// `Retry-After` when it sent one (at most `cap` × 4), otherwise doubling from a fifth of
    /// `initial`, at most `cap`.
    public func transientDelay(attempt: Int, retryAfter: String?) -> Duration {
        if let retryAfter, let seconds = Double(retryAfter.trimmingCharacters(in: .whitespaces)), seconds >= 0 {
            return min(.milliseconds(Int64(seconds * 1000)), cap * 4)
        }
        var delay = initial / 5
        for _ in 1..<max(attempt, 1) { delay = min(delay * 2, cap) }
        return delay
    }
}

public struct CloudOperationTimeout: Error, Sendable, CustomStringConvertible {
    public let operation: String
    public let waited: Duration
    public var description: String {
        "\(operation) did not finish within \(waited.components.seconds) s; it may still complete in the cloud — the next apply picks it up from where it is"
    }
}
