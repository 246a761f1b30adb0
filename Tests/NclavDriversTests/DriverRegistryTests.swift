import NclavCore
import NclavDrivers
import Testing

/// A stand-in cloud driver for registry tests (no cloud API is involved).
struct RecordingDriver: Driver {
    let cloud: CloudTarget
    func provisionEnclave(_ enclave: Enclave, previous: EnclaveContext?) async throws -> EnclaveContext {
        EnclaveContext(values: ["project_id": "p-\(enclave.id)"])
    }
    func teardownEnclave(_ enclave: Enclave, context: EnclaveContext) async throws {}
    func contextTokens(enclave: Enclave, context: EnclaveContext, partition: Partition) -> [String: String] { [:] }
}

@Suite("Driver registry")
struct DriverRegistryTests {
    @Test("an enclave's cloud picks its driver; without one it gets the server default; local is always there")
    func resolution() throws {
        let registry = DriverRegistry(defaultCloud: .aws, drivers: [RecordingDriver(cloud: .aws)])
        #expect(registry.activeClouds == [.aws, .local])
        #expect(registry.resolvedCloud(for: Enclave(id: "a", name: "A")) == .aws)
        #expect(registry.resolvedCloud(for: Enclave(id: "b", name: "B", cloud: .local)) == .local)
        #expect(try registry.driver(for: .aws).cloud == .aws)
        #expect(try registry.driver(for: .local).cloud == .local)
    }

    @Test("a cloud that is not enabled is an error for that enclave, saying how to enable it")
    func notConfigured() {
        let registry = DriverRegistry(defaultCloud: .local, drivers: [])
        #expect(throws: DriverError.notConfigured(.gcp, available: [.local])) { try registry.driver(for: .gcp) }
        #expect(DriverError.notConfigured(.gcp, available: [.local]).description.contains("--enable-cloud gcp"))
    }

    @Test("the local driver: project id is the enclave id, region is the enclave's")
    func local() async throws {
        let driver = LocalDriver()
        let enclave = Enclave(id: "shop", name: "Shop", region: "local-1")
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        #expect(
            driver.contextTokens(enclave: enclave, context: context, partition: Partition(id: "api", name: "API")) == [
                "nclav_enclave_id": "shop", "nclav_partition_id": "api", "nclav_project_id": "shop", "nclav_region": "local-1",
            ])
        #expect(
            try await driver.terraformEnvironment(enclave: enclave, context: context, partition: Partition(id: "api", name: "API"), identity: [:])
                == TerraformEnvironment())
        #expect(try await driver.provisionPartition(enclave: enclave, context: context, partition: Partition(id: "api", name: "API")).isEmpty)
    }
}
