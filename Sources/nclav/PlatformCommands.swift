import ArgumentParser
import Foundation
import IacRunner
import NclavAzure
import NclavCLI
import NclavCore
import NclavServer
import PlatformTemplates

extension PlatformCloud: ExpressibleByArgument {}

struct Platform: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The hosted-platform Terraform modules embedded in this binary.",
        subcommands: [Render.self, AzureOIDCDocuments.self])

    struct AzureOIDCDocuments: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "azure-oidc-documents",
            abstract: "Write the OpenID documents Entra reads to trust nclav's partition tokens (Azure workload identity federation).",
            discussion: """
                Uses the same signing key as `nclav serve --azure-oidc-issuer`: NCLAV_AZURE_OIDC_KEY_PEM, else
                $NCLAV_HOME/azure-oidc-key.pem (created 0600 when missing). Publish the directory at the issuer
                URL, e.g. a blob container with public read access:
                  nclav platform azure-oidc-documents --issuer https://acmeoidc.blob.core.windows.net/oidc --out oidc
                  az storage blob upload-batch --account-name acmeoidc -d oidc -s oidc
                """)

        @Option(help: "The issuer URL (https, no trailing slash) the documents will be served from.")
        var issuer: String

        @Option(help: "Directory to write .well-known/openid-configuration and openid/v1/jwks into.")
        var out: String

        func run() throws {
            let environment = ProcessInfo.processInfo.environment
            let home = ServerConfiguration.home(environment: environment)
            let issuer: WorkloadIdentityIssuer
            do {
                issuer = try WorkloadIdentityIssuer.load(
                    issuer: self.issuer, environment: environment, file: home.appendingPathComponent("azure-oidc-key.pem"))
            } catch {
                throw CommandFailure(error.description)
            }
            let directory = URL(fileURLWithPath: out)
            try issuer.writeDocuments(to: directory)
            print("wrote \(directory.appendingPathComponent(".well-known/openid-configuration").path)")
            print("wrote \(directory.appendingPathComponent("openid/v1/jwks").path)")
            print("publish them at \(self.issuer), then start the server with --azure-oidc-issuer \(self.issuer)")
        }
    }

    struct Render: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a cloud's bootstrap module (byte-identical to the repository's bootstrap/<cloud>).",
            discussion: """
                Files of the same name in --out are replaced; anything else there (terraform.tfvars,
                .terraform/, state) is left alone.

                Examples:
                  nclav platform render --cloud gcp --out ./nclav-gcp
                  nclav platform render --cloud aws --out ./platform && cd platform && terraform init
                """)

        @Option(help: "gcp, azure or aws.") var cloud: PlatformCloud
        @Option(help: "Directory to write the module into (created if missing).") var out: String

        func run() throws {
            let directory = URL(fileURLWithPath: out)
            do {
                let written = try PlatformTemplates.render(cloud, to: directory)
                print("wrote the \(cloud.rawValue) bootstrap module (\(written.count) files) to \(directory.path)")
                written.forEach { print("  \($0)") }
            } catch let error as PlatformTemplates.RenderError {
                throw CommandFailure(error.description)
            }
        }
    }
}

struct Bootstrap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Provision the hosted nclav platform on a cloud with the embedded bootstrap module.",
        discussion: """
            Renders the module into --dir, saves --var values to nclav.auto.tfvars.json there (mode
            0600; later runs reuse them), then runs terraform (or tofu): init, and an apply targeted
            at the registry. The server image must be in that registry before the rest can start:
            push it (make push-ar / push-acr / push-ecr, or docker push to the printed reference) and
            run again with --image-ready, which applies everything and prints the API URL and the
            commands that connect the CLI. Terraform asks before each apply unless --auto-approve.

            Examples:
              nclav bootstrap --cloud gcp --var project_id=myorg-nclav --var enclave_parent=folders/123 \\
                --var billing_account=billingAccounts/XXXXXX-YYYYYY-ZZZZZZ
              nclav bootstrap --cloud gcp --image-ready
              nclav bootstrap --cloud aws --var org_unit_id=ou-ab12-cdef3456 --var email_domain=aws.example.com --dry-run
            """)

    @Option(help: "gcp, azure or aws.") var cloud: PlatformCloud
    @Option(name: .customLong("var"), help: "A module variable as name=value (repeatable).") var variables: [String] = []
    @Option(help: "Working directory for the module and its state (default ./nclav-platform-<cloud>).") var dir: String?
    @Option(help: "terraform or tofu, or a path to either (default: terraform, else tofu, on PATH).") var tool: String?
    @Flag(name: .customLong("image-ready"), help: "The image is in the registry: apply everything.") var imageReady = false
    @Flag(name: .customLong("auto-approve"), help: "Pass -auto-approve to terraform apply.") var autoApprove = false
    @Flag(name: .customLong("dry-run"), help: "Print what would be written and run; change nothing.") var dryRun = false

    func run() async throws {
        let directory = URL(fileURLWithPath: dir ?? "nclav-platform-\(cloud.rawValue)")
        let given: [String: String]
        do { given = try BootstrapPlan.parseVariables(variables) } catch let error as BootstrapPlan.VariableError {
            throw ValidationError(error.description)
        }
        let missing = BootstrapPlan.missingVariables(cloud, given: given, directory: directory)
        if !missing.isEmpty { throw CommandFailure(BootstrapPlan.VariableError.missing(names: missing, cloud: cloud).description) }
        let executable: String
        do {
            executable = try ToolResolver.resolve(explicit: tool, backend: .terraform, path: ProcessInfo.processInfo.environment["PATH"] ?? "")
        } catch { throw CommandFailure(error.description) }
        let plan = BootstrapPlan(cloud: cloud, imageReady: imageReady, autoApprove: autoApprove)

        if dryRun {
            print("would write the \(cloud.rawValue) module to \(directory.path)")
            if !given.isEmpty {
                print(
                    "would save \(given.keys.sorted().joined(separator: ", ")) to \(directory.appendingPathComponent(BootstrapPlan.variablesFile).path)"
                )
            }
            for step in plan.steps {
                switch step {
                case .tool(_, let arguments): print("would run: \(executable) \(arguments.joined(separator: " "))")
                case .awaitImage: print("would stop: push the image, then run again with --image-ready")
                case .showOutputs(let names): print("would print outputs: \(names.joined(separator: ", "))")
                }
            }
            return
        }

        do {
            try PlatformTemplates.render(cloud, to: directory)
            try BootstrapPlan.saveVariables(given, in: directory)
        } catch let error as PlatformTemplates.RenderError {
            throw CommandFailure(error.description)
        }
        for step in plan.steps {
            switch step {
            case .tool(let name, let arguments):
                say("==> \(executable) \(arguments.joined(separator: " "))  (in \(directory.path))")
                let code = try await InteractiveCommand.run(executable, arguments, in: directory)
                guard code == 0 else {
                    throw CommandFailure(
                        "\(name) failed (terraform exit \(code)) in \(directory.path); terraform's message is above. Fix it and run the same command again: every step is safe to repeat."
                    )
                }
            case .awaitImage:
                let image = try await InteractiveCommand.capture(executable, ["output", "-raw", "image"], in: directory)
                say(
                    """

                    The registry is ready. Push the nclav server image to
                      \(image.exitCode == 0 ? image.output : "(terraform output image)")
                    (from a checkout: make push-\(cloud == .gcp ? "ar" : cloud == .azure ? "acr" : "ecr")), then run:
                      nclav bootstrap --cloud \(cloud.rawValue)\(dir.map { " --dir \($0)" } ?? "") --image-ready
                    """)
            case .showOutputs(let names):
                for name in names {
                    let output = try await InteractiveCommand.capture(executable, ["output", "-raw", name], in: directory)
                    guard output.exitCode == 0 else { continue }
                    say("\n\(name):\n\(output.output.trimmingCharacters(in: .newlines))")
                }
            }
        }
    }
}

/// Straight to stdout, unbuffered: these lines interleave with terraform's own output.
private func say(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
