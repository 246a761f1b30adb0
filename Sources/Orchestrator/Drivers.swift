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
    /// Credentials and settings terraform needs for this partition (GOOGLE_*, ARM_*, AWS_*).
    func terraformEnvironment(enclave: Enclave, context: EnclaveContext, partition: Partition) -> [String: String]
}

public enum DriverError: Error, Sendable, Equatable, CustomStringConvertible {
    case notConfigured(CloudTarget, available: [CloudTarget])

    public var description: String {
        switch self {
        case .notConfigured(let cloud, let available):
            return "the \(cloud.rawValue) driver is not enabled on this server (enabled: \(available.map(\.rawValue).joined(separator: ", "))); start the server with `--enable-cloud \(cloud.rawValue)` or set `cloud:` to an enabled one"
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
        ["nclav_enclave_id": enclave.id, "nclav_partition_id": partition.id,
         "nclav_project_id": context.values["project_id"] ?? enclave.id, "nclav_region": context.values["region"] ?? enclave.region ?? ""]
    }

    public func terraformEnvironment(enclave: Enclave, context: EnclaveContext, partition: Partition) -> [String: String] { [:] }
}
