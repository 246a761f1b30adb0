import Foundation
import NclavTestSupport
import Testing

/// The hosted-platform modules: embedded copies, terraform formatting, the Makefile targets,
/// and `nclav bootstrap` up to where a real cloud would be needed.
@Suite("Hosted platform: bootstrap modules, Makefile, nclav platform/bootstrap")
struct PlatformTests {
    static let clouds = ["gcp", "azure", "aws"]

    func nclav(_ arguments: [String], in directory: URL? = nil, environment: [String: String]? = nil) throws -> TestSupport.ProcessResult {
        try TestSupport.run(TestSupport.nclavBinary.path, arguments, in: directory, environment: environment)
    }

    /// The module's files as the repository has them (tracked or new, never ignored files).
    func repositoryFiles(_ cloud: String) throws -> [String] {
        let git = try TestSupport.which("git")
        let listed = try TestSupport.run(
            git, ["ls-files", "--cached", "--others", "--exclude-standard", "bootstrap/\(cloud)"], in: TestSupport.packageRoot)
        return listed.stdoutLines.map { String($0.dropFirst("bootstrap/\(cloud)/".count)) }.sorted()
    }

    @Test("the binary's embedded modules are byte-identical to bootstrap/<cloud>", arguments: clouds)
    func renderedEqualsRepository(_ cloud: String) throws {
        let out = try TestSupport.makeScratchDirectory("nclav-render")
        defer { try? FileManager.default.removeItem(at: out) }
        let result = try nclav(["platform", "render", "--cloud", cloud, "--out", out.path])
        #expect(result.exitCode == 0, "\(result.stderr)")
        let expected = try repositoryFiles(cloud)
        #expect(expected.contains("main.tf") && expected.contains("terraform.tfvars.example") && expected.contains("README.md"))
        let rendered = (FileManager.default.enumerator(atPath: out.path)?.allObjects as? [String] ?? [])
            .filter { !$0.hasSuffix("/") && FileManager.default.fileExists(atPath: out.appendingPathComponent($0).path) }
            .filter {
                var isDirectory: ObjCBool = false
                return FileManager.default.fileExists(atPath: out.appendingPathComponent($0).path, isDirectory: &isDirectory)
                    && !isDirectory.boolValue
            }
            .sorted()
        #expect(rendered == expected)
        for file in expected {
            let original = try Data(contentsOf: TestSupport.packageRoot.appendingPathComponent("bootstrap/\(cloud)/\(file)"))
            #expect(try Data(contentsOf: out.appendingPathComponent(file)) == original, "\(cloud)/\(file)")
        }
    }

    @Test("every module passes terraform fmt -check and declares the outputs and health probes the platform needs", arguments: clouds)
    func formattedAndComplete(_ cloud: String) throws {
        let module = TestSupport.packageRoot.appendingPathComponent("bootstrap/\(cloud)")
        let fmt = try TestSupport.run(try TestSupport.which("terraform"), ["fmt", "-check", "-recursive", "-diff", "."], in: module)
        #expect(fmt.exitCode == 0, "terraform fmt -check:\n\(fmt.stdout)")
        let outputs = try String(contentsOf: module.appendingPathComponent("outputs.tf"), encoding: .utf8)
        for name in ["api_url", "iam_setup_commands", "connect_commands", "image", "registry"] {
            #expect(outputs.contains("output \"\(name)\""), "\(cloud) lacks output \(name)")
        }
        let main = try String(contentsOf: module.appendingPathComponent("main.tf"), encoding: .utf8)
        #expect(main.contains("\"/ready\""), "\(cloud) probes readiness on /ready")
        #expect(main.contains("/health"), "\(cloud) probes liveness on /health")
        #expect(main.contains("NCLAV_POSTGRES_URL") && main.contains("NCLAV_TOKEN"))
        // Secrets reach the server only through the cloud's secret store.
        #expect(!main.contains("value = random_bytes.api_token") && !main.contains("value = local.db_url"))
    }

    @Test("make -n expands every hosted target, and stops with a clear message when a required variable is missing")
    func makeTargets() throws {
        let make = try TestSupport.which("make")
        let targets: [(target: String, variable: String?)] = [
            ("bootstrap-gcp", "GCP_PROJECT=p"), ("push-ar", "GCP_PROJECT=p"), ("connect", "GCP_PROJECT=p"),
            ("bootstrap-azure", "AZURE_ACR=acr"), ("push-acr", "AZURE_ACR=acr"), ("connect-azure", nil),
            ("bootstrap-aws", "AWS_ACCOUNT=123456789012"), ("push-ecr", "AWS_ACCOUNT=123456789012"), ("connect-aws", nil),
        ]
        for (target, variable) in targets {
            let expanded = try TestSupport.run(make, ["-n", target] + (variable.map { [$0] } ?? []), in: TestSupport.packageRoot)
            #expect(expanded.exitCode == 0, "make -n \(target): \(expanded.stderr)")
            guard let variable else { continue }
            let name = String(variable.split(separator: "=")[0])
            let missing = try TestSupport.run(make, ["-n", target], in: TestSupport.packageRoot)
            #expect(missing.exitCode != 0, "make -n \(target) without \(name)")
            #expect(missing.stderr.contains("\(name) is required: make") || missing.stderr.contains("\(name) is required: eval"), "\(missing.stderr)")
        }
        // Phase 1 of each bootstrap target is the registry apply nclav bootstrap uses too.
        let gcp = try TestSupport.run(make, ["-n", "bootstrap-gcp", "GCP_PROJECT=p"], in: TestSupport.packageRoot).stdout
        #expect(gcp.contains("-target=google_project_service.apis -target=google_artifact_registry_repository.nclav"))
        let phases = gcp.components(separatedBy: "apply").count - 1
        #expect(phases == 2, "registry apply, then the full apply")
        #expect(gcp.range(of: "docker push")!.lowerBound > gcp.range(of: "-target=")!.lowerBound, "the image is pushed between the phases")
        let azure = try TestSupport.run(make, ["-n", "bootstrap-azure", "AZURE_ACR=acr"], in: TestSupport.packageRoot).stdout
        #expect(azure.contains("-target=azurerm_resource_group.nclav -target=azurerm_container_registry.nclav"))
        let aws = try TestSupport.run(make, ["-n", "bootstrap-aws", "AWS_ACCOUNT=1"], in: TestSupport.packageRoot).stdout
        #expect(aws.contains("-target=aws_ecr_repository.nclav"))
    }

    @Test("nclav bootstrap --dry-run shows both phases and writes nothing")
    func bootstrapDryRun() throws {
        let scratch = try TestSupport.makeScratchDirectory("nclav-bootstrap")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let dir = scratch.appendingPathComponent("platform")
        let first = try nclav([
            "bootstrap", "--cloud", "azure", "--dir", dir.path, "--dry-run", "--var", "subscription_id=s", "--var", "acr_name=acr12",
            "--var", "key_vault_name=kv1", "--var", "management_group_id=mg", "--var", "billing_account_name=b",
            "--var", "billing_profile_name=p", "--var", "invoice_section_name=i",
        ])
        #expect(first.exitCode == 0, "\(first.stderr)")
        #expect(
            first.stdoutLines.contains {
                $0.hasSuffix("apply -input=false -target=azurerm_resource_group.nclav -target=azurerm_container_registry.nclav")
            })
        #expect(first.stdoutLines.last == "would stop: push the image, then run again with --image-ready")
        #expect(!FileManager.default.fileExists(atPath: dir.path))

        // Variables kept by an earlier run count as given.
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(#"{"org_unit_id":"ou-ab12-cdef3456","email_domain":"x.example"}"#.utf8).write(
            to: dir.appendingPathComponent("nclav.auto.tfvars.json"))
        let second = try nclav(["bootstrap", "--cloud", "aws", "--dir", dir.path, "--dry-run", "--image-ready", "--auto-approve"])
        #expect(second.exitCode == 0, "\(second.stderr)")
        #expect(second.stdoutLines.contains { $0.hasSuffix("apply -input=false -auto-approve") })
        #expect(second.stdoutLines.last == "would print outputs: api_url, connect_commands, iam_setup_commands")
    }

    @Test("nclav bootstrap names missing variables and malformed --var values before running anything")
    func bootstrapInputErrors() throws {
        let scratch = try TestSupport.makeScratchDirectory("nclav-bootstrap")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let missing = try nclav(["bootstrap", "--cloud", "gcp", "--dir", scratch.path, "--var", "project_id=p"])
        #expect(missing.exitCode == 1)
        #expect(
            missing.stderr
                == "error: the gcp module needs enclave_parent, billing_account; pass --var enclave_parent=… --var billing_account=… (or put them in terraform.tfvars)\n"
        )
        let malformed = try nclav(["bootstrap", "--cloud", "gcp", "--var", "project id=p"])
        #expect(malformed.exitCode == 64)
        #expect(malformed.stderr.contains("--var project id=p is not name=value"))
        let cloud = try nclav(["platform", "render", "--cloud", "openstack", "--out", scratch.path])
        #expect(cloud.exitCode == 64)
        #expect(cloud.stderr.contains("openstack"))
    }

    @Test("nclav bootstrap drives the real terraform: when init cannot install providers it stops there, says so, and keeps the rendered module")
    func bootstrapInitFailure() throws {
        let scratch = try TestSupport.makeScratchDirectory("nclav-bootstrap")
        defer { try? FileManager.default.removeItem(at: scratch) }
        // Providers may only come from an empty mirror: init fails the same way with or without a network.
        let config = scratch.appendingPathComponent("terraformrc")
        try #"provider_installation { filesystem_mirror { path = "\#(scratch.path)/empty-mirror" } }"#.write(
            to: config, atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(at: scratch.appendingPathComponent("empty-mirror"), withIntermediateDirectories: true)
        var environment = ProcessInfo.processInfo.environment
        environment["TF_CLI_CONFIG_FILE"] = config.path
        let dir = scratch.appendingPathComponent("platform")
        let result = try nclav(
            ["bootstrap", "--cloud", "aws", "--dir", dir.path, "--var", "org_unit_id=ou-ab12-cdef3456", "--var", "email_domain=x.example"],
            environment: environment)
        #expect(result.exitCode == 1)
        #expect(result.stdout.contains("==> "), "\(result.stdout)")
        #expect(result.stdout.contains("init -input=false"))
        #expect(!result.stdout.contains("-target="), "nothing after the failed init ran")
        #expect(result.stderr.contains("error: init failed (terraform exit 1) in \(dir.path)"), "\(result.stderr)")
        #expect(result.stderr.contains("hashicorp/"), "terraform's own message reaches the user")
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("main.tf").path))
        let saved = dir.appendingPathComponent("nclav.auto.tfvars.json")
        #expect(try String(contentsOf: saved, encoding: .utf8).contains("\"email_domain\" : \"x.example\""))
        let mode = try FileManager.default.attributesOfItem(atPath: saved.path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test("the Dockerfile builds in stages and ships a non-root nclav with terraform and tofu at pinned, checksummed versions")
    func dockerfile() throws {
        // No Docker engine runs here; this keeps the file's promises from silently eroding.
        let text = try String(contentsOf: TestSupport.packageRoot.appendingPathComponent("Dockerfile"), encoding: .utf8)
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(lines.filter { $0.hasPrefix("FROM ") }.count >= 2, "multi-stage")
        #expect(lines.contains { $0.hasPrefix("ARG TERRAFORM_VERSION=") } && lines.contains { $0.hasPrefix("ARG TOFU_VERSION=") })
        #expect(text.contains("sha256sum -c"), "downloads are verified")
        #expect(text.contains("swift build -c release"))
        #expect(lines.contains("USER nclav:nclav"))
        #expect(lines.contains(#"ENTRYPOINT ["nclav"]"#))
        #expect(lines.contains("EXPOSE 8080"))
    }
}
