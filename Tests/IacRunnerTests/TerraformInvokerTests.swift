import Foundation
import IacRunner
import NclavAuth
import NclavCore
import NclavTestSupport
import Testing

@Suite("Tool resolution")
struct ToolResolverTests {
    @Test("terraform.tool wins, then the backend's default, then the other tool on PATH")
    func resolution() throws {
        let terraform = try TestSupport.which("terraform")
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        #expect(try ToolResolver.resolve(explicit: nil, backend: .terraform, path: path) == terraform)
        #expect(try ToolResolver.resolve(explicit: terraform, backend: .opentofu, path: "") == terraform)
        #expect(try ToolResolver.resolve(explicit: "terraform", backend: .opentofu, path: path) == terraform)
        // opentofu partitions fall back to terraform when tofu is not installed.
        if (try? TestSupport.which("tofu")) == nil {
            #expect(try ToolResolver.resolve(explicit: nil, backend: .opentofu, path: path) == terraform)
        }
    }

    @Test("a missing tool names everything that was tried")
    func missing() {
        #expect(throws: ToolResolver.NotFound(tried: ["terraform", "tofu"], path: "/nowhere")) {
            try ToolResolver.resolve(explicit: nil, backend: .terraform, path: "/nowhere")
        }
        #expect(throws: ToolResolver.NotFound(tried: ["/opt/terraform-9"], path: "/usr/bin")) {
            try ToolResolver.resolve(explicit: "/opt/terraform-9", backend: .terraform, path: "/usr/bin")
        }
    }
}

@Suite("Terraform invocation against a real nclav serve", .serialized)
struct TerraformInvokerTests {
    let key = try! StateKey(enclave: "app", partition: "web")

    actor Log {
        var lines: [String] = []
        func append(_ line: String) { lines.append(line) }
        var text: String { lines.joined(separator: "\n") }
    }

    func prepare(_ server: ServerProcess, main: String) async throws -> (TerraformInvocation, URL) {
        let base = try TestSupport.makeScratchDirectory("nclav-invoke")
        let source = base.appendingPathComponent("web")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        try main.write(to: source.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        let rendered = try WorkspaceRenderer(root: base.appendingPathComponent("workspaces")).render(
            WorkspaceSpec(key: key, sourceDirectory: source, inputs: ["greeting": "hello from nclav"]))
        let (credential, _) = try await server.runCredential(for: key)
        let invocation = TerraformInvocation(
            key: key, operation: .apply, workspace: rendered.directory, tool: try TestSupport.which("terraform"),
            backendBaseURL: server.baseURL, credential: credential, secrets: [server.token],
            pluginCacheDirectory: base.appendingPathComponent("plugin-cache"))
        return (invocation, base)
    }

    static let module = """
        variable "nclav_enclave" { type = string }
        variable "nclav_partition" { type = string }
        variable "greeting" { type = string }
        resource "terraform_data" "site" {
          input = "${var.greeting} (${var.nclav_enclave}/${var.nclav_partition})"
          provisioner "local-exec" {
            command = "echo provisioning with $TF_HTTP_PASSWORD and $NCLAV_TOKEN"
          }
        }
        output "message" { value = terraform_data.site.output }
        """

    @Test("apply then destroy through the HTTP backend with a run credential; the log is complete and redacted")
    func applyAndDestroy() async throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let server = try await ServerProcess.start(home: home)
        let (invocation, base) = try await prepare(server, main: Self.module)
        defer { try? FileManager.default.removeItem(at: base) }
        let log = Log()
        // The server's own secret is in the environment nclav runs with; terraform must not get it.
        let environment = ProcessInfo.processInfo.environment.merging(["NCLAV_TOKEN": server.token]) { $1 }
        let applied = try await TerraformInvoker().run(invocation, base: environment) { await log.append($0) }
        let text = await log.text
        #expect(applied.succeeded, "\(text)")
        #expect(applied.lastCommand == "apply")
        #expect(applied.toolVersion?.hasPrefix("1.") == true)
        // terraform_data and local-exec only: init would just record the backend, so it is shared.
        #expect(text.contains("== terraform init skipped  [app/web]: only the built-in provider and no module blocks"))
        #expect(!text.contains("== terraform init -input=false"))
        #expect(text.contains("== terraform apply -auto-approve -input=false -no-color  [app/web]"))
        #expect(text.contains("Apply complete! Resources: 1 added"))
        #expect(text.contains("provisioning with [redacted] and \n") || text.contains("provisioning with [redacted] and"))
        #expect(!text.contains(server.token))
        #expect(!text.contains(invocation.credential))

        let state = try TestSupport.run(
            "/usr/bin/curl", ["-sf", "-H", "Authorization: Bearer \(server.token)", "\(server.baseURL)/terraform/state/app/web"])
        let document = try JSONSerialization.jsonObject(with: Data(state.stdout.utf8)) as? [String: Any]
        let outputs = document?["outputs"] as? [String: [String: Any]]
        #expect(outputs?["message"]?["value"] as? String == "hello from nclav (app/web)")

        // Nothing under .terraform/ holds a secret: the backend came from the environment.
        let dotTerraform = invocation.workspace.appendingPathComponent(".terraform")
        for file in FileManager.default.enumerator(atPath: dotTerraform.path)?.compactMap({ $0 as? String }) ?? [] {
            let content = (try? String(contentsOf: dotTerraform.appendingPathComponent(file), encoding: .utf8)) ?? ""
            #expect(!content.contains(invocation.credential) && !content.contains(server.token), ".terraform/\(file)")
        }

        var destroy = invocation
        destroy.operation = .destroy
        let destroyed = try await TerraformInvoker().run(destroy) { await log.append($0) }
        #expect(destroyed.succeeded)
        #expect(await log.text.contains("Destroy complete! Resources: 1 destroyed"))
        let after = try TestSupport.run(
            "/usr/bin/curl", ["-sf", "-H", "Authorization: Bearer \(server.token)", "\(server.baseURL)/terraform/state/app/web"])
        let resources = (try JSONSerialization.jsonObject(with: Data(after.stdout.utf8)) as? [String: Any])?["resources"] as? [Any]
        #expect(resources?.isEmpty == true)
        await server.stop()
    }

    @Test(
        "cloud credentials terraform cannot renew: the log warns before they expire and says when they have; a run that ends first says nothing"
    )
    func credentialExpiry() async throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let server = try await ServerProcess.start(home: home)
        let slow = Self.module.replacingOccurrences(of: "command = \"echo provisioning", with: "command = \"sleep 3; echo provisioning")
        var (invocation, base) = try await prepare(server, main: slow)
        defer { try? FileManager.default.removeItem(at: base) }
        // Credentials that expire 1.5 s into the run, with the warning 1 s before: both fall inside the 3 s apply.
        invocation.credentialsExpire = Date().addingTimeInterval(1.5)
        let log = Log()
        let applied = try await TerraformInvoker(credentialWarningLead: .seconds(1)).run(invocation) { await log.append($0) }
        let lines = await log.lines
        #expect(applied.succeeded, "\(lines)")
        let warning = try #require(lines.firstIndex { $0.hasPrefix("nclav: the cloud credentials this run received expire at") }, "\(lines)")
        let expired = try #require(lines.firstIndex { $0.hasPrefix("nclav: the cloud credentials this run received have expired") })
        let applyEnded = try #require(lines.firstIndex { $0 == "== apply succeeded" })
        // On a loaded machine terraform may start after the warning is due; it still comes first, while the run lasts.
        #expect(warning < expired && expired < applyEnded)
        #expect(lines[warning].contains("Long runs"))

        var quick = invocation
        quick.operation = .destroy
        quick.credentialsExpire = Date().addingTimeInterval(3600)
        let quiet = Log()
        #expect(try await TerraformInvoker().run(quick) { await quiet.append($0) }.succeeded)
        #expect(await !quiet.text.contains("nclav: the cloud credentials"))
        await server.stop()
    }

    @Test("a module with a syntax error fails with terraform's own error text in the log")
    func brokenModule() async throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let server = try await ServerProcess.start(home: home)
        let (invocation, base) = try await prepare(server, main: "resource \"terraform_data\" \"broken\" {\n  input = \n}\n")
        defer { try? FileManager.default.removeItem(at: base) }
        let log = Log()
        let result = try await TerraformInvoker().run(invocation) { await log.append($0) }
        #expect(!result.succeeded)
        #expect(result.result.exitCode == 1)
        let text = await log.text
        #expect(text.contains("Error: "), "\(text)")
        #expect(text.contains("== \(result.lastCommand) failed with exit code 1"))
        await server.stop()
    }

    @Test("a module with a module block runs a real init, which fails with terraform's error when the module is missing")
    func moduleBlockRunsInit() async throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let server = try await ServerProcess.start(home: home)
        let (invocation, base) = try await prepare(server, main: "module \"net\" {\n  source = \"./missing\"\n}\n")
        defer { try? FileManager.default.removeItem(at: base) }
        let log = Log()
        let result = try await TerraformInvoker().run(invocation) { await log.append($0) }
        let text = await log.text
        #expect(!result.succeeded)
        #expect(result.lastCommand == "init")
        #expect(text.contains("== terraform init -input=false -no-color  [app/web]"), "\(text)")
        #expect(text.contains("Error: "), "\(text)")
        #expect(text.contains("== init failed with exit code 1"))
        await server.stop()
    }

    @Test("one invoker shares one init among self-contained workspaces; each still writes its own state")
    func sharedInit() async throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let server = try await ServerProcess.start(home: home)
        let invoker = TerraformInvoker()
        var keys: [StateKey] = []
        for name in ["one", "two", "three"] {
            let key = try StateKey(enclave: "app", partition: name)
            keys.append(key)
            let (prepared, base) = try await prepare(server, main: Self.module)
            defer { try? FileManager.default.removeItem(at: base) }
            var invocation = prepared
            invocation.key = key
            invocation.credential = try await server.runCredential(for: key).credential
            let log = Log()
            let result = try await invoker.run(invocation) { await log.append($0) }
            let text = await log.text
            #expect(result.succeeded, "\(text)")
            #expect(text.contains("== terraform init skipped  [app/\(name)]"), "\(text)")
            let record = try String(contentsOf: invocation.workspace.appendingPathComponent(".terraform/terraform.tfstate"), encoding: .utf8)
            #expect(record.contains("\"type\": \"http\""))
        }
        for key in keys {
            let state = try TestSupport.run(
                "/usr/bin/curl",
                ["-sf", "-H", "Authorization: Bearer \(server.token)", "\(server.baseURL)/terraform/state/\(key.enclave)/\(key.partition)"])
            let document = try JSONSerialization.jsonObject(with: Data(state.stdout.utf8)) as? [String: Any]
            #expect((document?["resources"] as? [Any])?.count == 1, "\(key)")
        }
        await server.stop()
    }

    @Test("the environment drops nclav's secrets and stray backend settings and adds the backend")
    func environmentContract() throws {
        let invocation = TerraformInvocation(
            key: key, operation: .apply, workspace: URL(fileURLWithPath: "/tmp"), tool: "/usr/bin/terraform",
            backendBaseURL: "http://127.0.0.1:9", credential: "nclavrun.abc.def",
            driverEnvironment: ["AWS_REGION": "eu-west-1"])
        let environment = TerraformInvoker.environment(
            for: invocation,
            base: [
                "PATH": "/usr/bin", "NCLAV_TOKEN": "admin", "NCLAV_HOME": "/x", "TF_HTTP_PASSWORD": "stale", "TF_WORKSPACE": "other", "HOME": "/root",
            ])
        #expect(environment["NCLAV_TOKEN"] == nil && environment["NCLAV_HOME"] == nil && environment["TF_WORKSPACE"] == nil)
        #expect(environment["TF_HTTP_PASSWORD"] == "nclavrun.abc.def")
        #expect(environment["TF_HTTP_ADDRESS"] == "http://127.0.0.1:9/terraform/state/app/web")
        #expect(environment["TF_HTTP_LOCK_ADDRESS"] == "http://127.0.0.1:9/terraform/state/app/web/lock")
        #expect(environment["TF_HTTP_LOCK_METHOD"] == "POST" && environment["TF_HTTP_UNLOCK_METHOD"] == "DELETE")
        #expect(environment["TF_IN_AUTOMATION"] == "1" && environment["TF_INPUT"] == "0")
        #expect(environment["AWS_REGION"] == "eu-west-1")
        #expect(environment["PATH"] == "/usr/bin" && environment["HOME"] == "/root")
    }
}
