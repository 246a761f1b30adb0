import Foundation
import NclavTestSupport
import Testing

/// Drives the built `nclav` binary as a user would.
@Suite("nclav validate")
struct ValidateCommandTests {
    func nclav(_ arguments: String..., in directory: URL? = nil) throws -> TestSupport.ProcessResult {
        try TestSupport.run(TestSupport.nclavBinary.path, arguments, in: directory)
    }

    @Test("a valid tree exits 0 with an overview and a summary")
    func validTree() throws {
        let result = try nclav("validate", "valid/landing-zone", in: TestSupport.fixtures)
        #expect(result.exitCode == 0, "\(result.stdout)\(result.stderr)")
        #expect(
            result.stdoutLines == [
                "  data [cloud: local] partitions: db, queue; exports: postgres, events; imports: none",
                "  product-a-dev [cloud: local] partitions: api, worker; exports: api-http; imports: database <- data/postgres, ingress <- shared-network/ingress",
                "  shared-network [cloud: local] partitions: gateway; exports: ingress; imports: none",
                "valid: 3 enclaves, 5 partitions, 4 exports, 4 imports (2 enclave-level, 2 partition-level)",
            ])
    }

    @Test("an invalid tree exits 1 and prints path:line:col for each error, then a summary")
    func invalidTree() throws {
        let result = try nclav("validate", "invalid/two-independent-mistakes/tree", in: TestSupport.fixtures)
        #expect(result.exitCode == 1)
        #expect(
            result.stdoutLines == [
                "invalid/two-independent-mistakes/tree/app/api/config.yml:3:11: error: `produces` has unknown value `htp`; did you mean `http`? (accepted: http, tcp, queue)",
                "invalid/two-independent-mistakes/tree/data/db/config.yml:3:11: error: partition `db` produces tcp, so `declared_outputs` must include `port` (tcp needs: hostname, port)",
                "invalid: 2 errors in 5 files read",
            ])
    }

    @Test(
        "every malformed fixture exits 1 and names its file and line",
        arguments: ["yaml-syntax-error", "unknown-enclave-key", "cycle-across-enclaves", "access-enclave-restricted", "module-mode-with-tf-files"])
    func malformedFixtures(_ name: String) throws {
        let result = try nclav("validate", "invalid/\(name)/tree", in: TestSupport.fixtures)
        #expect(result.exitCode == 1)
        let first = try #require(result.stdoutLines.first)
        #expect(first.range(of: #"^invalid/[a-z-]+/tree/[a-z/]+config\.yml:\d+:\d+: error: "#, options: .regularExpression) != nil, "\(first)")
    }

    @Test("--output json carries the same diagnostics")
    func json() throws {
        let result = try nclav("validate", "invalid/duplicate-enclave-ids/tree", "--output", "json", in: TestSupport.fixtures)
        #expect(result.exitCode == 1)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["valid"] as? Bool == false)
        let diagnostics = try #require(object["diagnostics"] as? [[String: Any]])
        #expect(
            diagnostics.map { $0["path"] as? String } == [
                "invalid/duplicate-enclave-ids/tree/one/config.yml", "invalid/duplicate-enclave-ids/tree/two/config.yml",
            ])
        #expect(diagnostics.map { $0["line"] as? Int } == [1, 1])
        #expect(diagnostics.map { $0["column"] as? Int } == [5, 5])
        #expect(diagnostics.allSatisfy { ($0["message"] as? String)?.hasPrefix("enclave id `shared` is declared more than once") == true })
        let summary = try #require(object["summary"] as? [String: Int])
        #expect(summary["errors"] == 2)
        #expect(summary["enclaves"] == 2)
    }

    @Test(
        "usage errors exit 64 (2 means changes found)",
        arguments: [["validate"], ["validate", "valid/minimal", "--output", "yaml"], ["validate", "valid/minimal", "--bogus"], ["frobnicate"]])
    func usageErrors(_ arguments: [String]) throws {
        let result = try TestSupport.run(TestSupport.nclavBinary.path, arguments, in: TestSupport.fixtures)
        #expect(result.exitCode == 64, "\(arguments): \(result.stderr)")
        #expect(!result.stderr.isEmpty)
    }

    @Test("an unknown command names the nearest one; a subcommand's usage error shows that subcommand's usage")
    func unknownCommand() throws {
        let typo = try TestSupport.run(TestSupport.nclavBinary.path, ["aply", "examples/local"])
        #expect(typo.exitCode == 64)
        #expect(typo.stderr.hasPrefix("error: `aply` is not an nclav command; did you mean `apply`?\nCommands: validate, serve, diff, plan, apply"))
        let unrelated = try TestSupport.run(TestSupport.nclavBinary.path, ["frobnicate"])
        #expect(unrelated.stderr.hasPrefix("error: `frobnicate` is not an nclav command\n"), "\(unrelated.stderr)")
        let option = try TestSupport.run(TestSupport.nclavBinary.path, ["diff", "dir", "--detailed-exitcod"])
        #expect(option.exitCode == 64, "a typo must not read as changes present")
        #expect(option.stderr.contains("Usage: nclav diff <directory>"), "\(option.stderr)")
    }

    @Test("a missing directory is a usage error and says what to pass")
    func missingDirectory() throws {
        let result = try nclav("validate", "no/such/dir", in: TestSupport.fixtures)
        #expect(result.exitCode == 64)
        #expect(result.stderr == "error: `no/such/dir` does not exist; pass the directory that holds your enclave directories\n")
    }

    @Test("--help lists the command and exits 0")
    func help() throws {
        let result = try nclav("validate", "--help")
        #expect(result.exitCode == 0)
        #expect(result.stdout.contains("nclav validate ./enclaves"))
    }

    @Test("--terraform runs terraform's own validate on every partition and points at the partition's or its module's file")
    func terraformValidate() throws {
        let builder = try TreeBuilder.scratch("nclav-validate-terraform")
        let scratch = builder.root.deletingLastPathComponent()
        defer { try? FileManager.default.removeItem(at: scratch) }
        try builder.enclave("app")
        try builder.partition(
            "app", "good", "inputs:\n  name: x\n",
            main: "variable \"name\" { type = string }\nresource \"terraform_data\" \"a\" { input = var.name }\n")
        try builder.partition("app", "typo", main: "resource \"terraform_data\" \"a\" {\n  input = var.nmae\n}\n")
        try builder.file("modules/svc/main.tf", "variable \"name\" { type = string }\noutput \"host\" { value = terraform_data.missing.output }\n")
        try builder.file(
            "app/svc/config.yml", "id: svc\nname: svc\nterraform:\n  source: ../../modules/svc\ninputs:\n  name: x\ndeclared_outputs: [host]\n")
        let home = scratch.appendingPathComponent("home")
        var environment = ProcessInfo.processInfo.environment
        environment["NCLAV_HOME"] = home.path

        // What nclav checks alone finds nothing: these are mistakes only terraform sees.
        let offline = try TestSupport.run(TestSupport.nclavBinary.path, ["validate", "tree"], in: scratch, environment: environment)
        #expect(offline.exitCode == 0, "\(offline.stdout)")

        let checked = try TestSupport.run(TestSupport.nclavBinary.path, ["validate", "tree", "--terraform"], in: scratch, environment: environment)
        #expect(checked.exitCode == 1, "\(checked.stdout)\(checked.stderr)")
        #expect(
            checked.stdoutLines == [
                "tree/app/typo/main.tf:2:11: error: terraform validate: Reference to undeclared input variable: An input variable with the name \"nmae\" has not been declared. This variable can be declared with a variable \"nmae\" {} block.",
                "tree/modules/svc/main.tf:2:25: error: terraform validate: Reference to undeclared resource: A managed resource \"terraform_data\" \"missing\" has not been declared in module.partition.",
                "invalid: 2 errors in 4 files read",
            ], "\(checked.stdout)")
        #expect(FileManager.default.fileExists(atPath: home.appendingPathComponent("plugin-cache").path), "one plugin cache, shared by every check")

        let json = try TestSupport.run(
            TestSupport.nclavBinary.path, ["validate", "tree", "--terraform", "-o", "json"], in: scratch, environment: environment)
        let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect((report["diagnostics"] as? [[String: Any]])?.map { $0["file"] as? String } == ["app/typo/main.tf", "modules/svc/main.tf"])
    }
}
