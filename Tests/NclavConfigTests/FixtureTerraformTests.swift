import Foundation
import NclavConfig
import NclavTestSupport
import Testing

/// The valid fixtures are meant to be applied by later stages, so their Terraform must be
/// real: the real `terraform` binary initialises and validates every partition's code.
@Suite("Valid fixtures hold real Terraform", .serialized)
struct FixtureTerraformTests {
    static let trees = ["valid/landing-zone", "valid/minimal", "valid/cloud-tokens"]

    @Test("terraform validate accepts every partition's code", arguments: trees)
    func terraformValidates(_ tree: String) throws {
        let terraform = try TestSupport.which("terraform")
        let scratch = try TestSupport.makeScratchDirectory()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let root = try TestSupport.copyFixture(tree, into: scratch)
        let loaded = try TreeLoader.load(directory: root.path)
        for enclave in loaded.enclaves {
            for partition in enclave.partitions {
                var directory = root.appendingPathComponent(partition.directory)
                if let source = partition.partition.terraform.source { directory = directory.appendingPathComponent(source) }
                let environment = ProcessInfo.processInfo.environment.merging(["TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"]) { $1 }
                let initResult = try TestSupport.run(
                    terraform, ["init", "-backend=false", "-input=false", "-no-color"], in: directory, environment: environment)
                #expect(initResult.exitCode == 0, "init \(partition.directory): \(initResult.stdout)\(initResult.stderr)")
                let validate = try TestSupport.run(terraform, ["validate", "-no-color"], in: directory, environment: environment)
                #expect(validate.exitCode == 0, "validate \(partition.directory): \(validate.stdout)\(validate.stderr)")
            }
        }
    }
}
