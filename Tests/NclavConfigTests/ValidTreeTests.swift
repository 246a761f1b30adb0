import Foundation
import NclavConfig
import NclavCore
import NclavTestSupport
import Testing

@Suite("Valid trees load into the domain model")
struct ValidTreeTests {
    let landingZone = TestSupport.fixture("valid/landing-zone").path

    @Test("the landing zone is valid and found in sorted order, nested grouping directories included")
    func discovery() throws {
        let result = try ValidationResult.check(directory: landingZone)
        #expect(result.diagnostics.isEmpty, "\(result.diagnosticLines())")
        #expect(result.tree.enclaves.map(\.enclave.id) == ["data", "product-a-dev", "shared-network"])
        #expect(result.tree.enclaves.map(\.directory) == ["data", "product-a/dev", "shared/network"])
        #expect(result.summaryLine == "valid: 3 enclaves, 5 partitions, 4 exports, 4 imports (2 enclave-level, 2 partition-level)")
    }

    @Test("hidden directories and directories without config.yml are not partitions")
    func partitionDiscovery() throws {
        let tree = try TreeLoader.load(directory: landingZone)
        let data = try #require(tree.enclaves.first { $0.enclave.id == "data" })
        #expect(data.partitions.map(\.partition.id) == ["db", "queue"])
        let network = try #require(tree.enclaves.first { $0.enclave.id == "shared-network" })
        #expect(network.partitions.map(\.directory) == ["shared/network/gateway"])
        let product = try #require(tree.enclaves.first { $0.enclave.id == "product-a-dev" })
        // `api/module` holds the local module: it belongs to `api`, it is not a partition.
        #expect(product.partitions.map(\.partition.id) == ["api", "worker"])
        #expect(product.partitions.first { $0.partition.id == "worker" }?.terraformFiles == ["main.tf.json"])
    }

    @Test("enclave fields decode with their types")
    func enclaveFields() throws {
        let tree = try TreeLoader.load(directory: landingZone)
        let network = try #require(tree.enclaves.first { $0.enclave.id == "shared-network" }?.enclave)
        #expect(network.name == "Shared network")
        #expect(network.cloud == .local)
        #expect(network.region == "local-1")
        #expect(network.identity == "network-admins")
        #expect(network.network == Network(vpcCIDR: "10.0.0.0/16", subnets: ["10.0.1.0/24", "10.0.2.0/24"]))
        #expect(network.dns == DNS(zone: "shared.internal"))
        #expect(network.exports == [Export(name: "ingress", targetPartition: "gateway", type: .http, to: .anyEnclave, auth: .none)])

        let data = try #require(tree.enclaves.first { $0.enclave.id == "data" }?.enclave)
        #expect(data.region == nil)
        #expect(
            data.exports == [
                Export(name: "postgres", targetPartition: "db", type: .tcp, to: .enclave("product-a-dev"), auth: .mtls),
                Export(name: "events", targetPartition: "queue", type: .queue, to: .partition("db"), auth: .native),
            ])
        let product = try #require(tree.enclaves.first { $0.enclave.id == "product-a-dev" }?.enclave)
        #expect(
            product.imports == [
                Import(from: "data", exportName: "postgres", alias: "database"),
                Import(from: "shared-network", exportName: "ingress", alias: "ingress"),
            ])
    }

    @Test("partition fields decode; scalar inputs keep their text")
    func partitionFields() throws {
        let tree = try TreeLoader.load(directory: landingZone)
        let data = try #require(tree.enclaves.first { $0.enclave.id == "data" })
        let db = try #require(data.partitions.first { $0.partition.id == "db" }?.partition)
        #expect(db.produces == .tcp)
        #expect(db.backend == .opentofu)
        #expect(db.terraform == TerraformSettings(source: nil, tool: "terraform"))
        #expect(db.inputs == ["events": "{{ events.queue_url }}", "port": "5432", "ha": "true"])
        #expect(db.declaredOutputs == ["hostname", "port"])
        #expect(db.imports == [Import(from: "data", exportName: "events", alias: "events")])

        let product = try #require(tree.enclaves.first { $0.enclave.id == "product-a-dev" })
        let api = try #require(product.partitions.first { $0.partition.id == "api" }?.partition)
        #expect(api.backend == .terraform)
        #expect(api.terraform.source == "./module")
        #expect(product.enclave.partitions.map(\.id) == product.partitions.map(\.partition.id))
    }

    @Test("the partition dependency graph follows imports and template references")
    func dependencyGraph() throws {
        let tree = try TreeLoader.load(directory: landingZone)
        let graph = TreeValidator.dependencyGraph(of: tree)
        typealias Ref = TreeValidator.PartitionRef
        #expect(graph.dependencies(of: Ref("product-a-dev", "api")) == [Ref("data", "db"), Ref("shared-network", "gateway")])
        #expect(graph.dependencies(of: Ref("product-a-dev", "worker")) == [Ref("product-a-dev", "api")])
        #expect(graph.dependencies(of: Ref("data", "db")) == [Ref("data", "queue")])
        #expect(
            graph.waves().map { $0.map(\.description) } == [
                ["data/queue", "shared-network/gateway"], ["data/db"], ["product-a-dev/api"], ["product-a-dev/worker"],
            ])
    }

    @Test("each cloud's own context tokens are accepted for that cloud")
    func cloudTokens() throws {
        let result = try ValidationResult.check(directory: TestSupport.fixture("valid/cloud-tokens").path)
        #expect(result.diagnostics.isEmpty, "\(result.diagnosticLines())")
        #expect(result.tree.enclaves.map(\.enclave.cloud) == [.aws, .azure, .gcp, .local])
    }

    @Test("an enclave without `cloud:` keeps it unset for the server to decide")
    func minimal() throws {
        let result = try ValidationResult.check(directory: TestSupport.fixture("valid/minimal").path)
        #expect(result.isValid)
        #expect(result.tree.enclaves.first?.enclave.cloud == nil)
        #expect(result.tree.enclaves.first?.partitions.first?.partition.backend == .terraform)
    }

    static let exampleNames = ["local", "gcp", "azure", "aws"]

    @Test("every shipped example is valid", arguments: exampleNames)
    func examples(_ name: String) throws {
        let result = try ValidationResult.check(directory: TestSupport.packageRoot.appendingPathComponent("examples/\(name)").path)
        #expect(result.diagnostics.isEmpty, "\(result.diagnosticLines())")
        #expect(result.tree.enclaves.count == 3)
        #expect(FileManager.default.fileExists(atPath: TestSupport.packageRoot.appendingPathComponent("examples/\(name)/README.md").path))
    }

    @Test("no example directory is left out of the test")
    func allExamplesCovered() throws {
        let found = try FileManager.default.contentsOfDirectory(atPath: TestSupport.packageRoot.appendingPathComponent("examples").path)
            .filter { !$0.hasPrefix(".") }.sorted()
        #expect(found == Self.exampleNames.sorted())
    }

    @Test("loading the same tree twice gives the same result")
    func deterministic() throws {
        let first = try ValidationResult.check(directory: landingZone)
        let second = try ValidationResult.check(directory: landingZone)
        #expect(first.tree.enclaves.map(\.enclave) == second.tree.enclaves.map(\.enclave))
        #expect(first.jsonReport() == second.jsonReport())
    }
}
