import ArgumentParser
import Foundation
import NclavAPI
import NclavConfig

public struct Validate: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        abstract: "Load and validate an enclaves directory offline (no server needed).",
        discussion: """
            Reports every problem as `path:line:col: error: message`, then a summary line.
            Exit status: 0 valid, 1 invalid, 64 usage error (bad flag, missing directory).

            With --terraform, a valid tree is also checked by terraform itself: every partition's
            workspace is rendered as an apply renders it (without a backend), and `terraform init
            -backend=false` and `terraform validate` run in it (tofu for OpenTofu partitions).
            Terraform's findings are reported against the partition's or its module's file.
            Providers are kept in $NCLAV_HOME/plugin-cache, shared by every check, so a provider
            is downloaded (or read from the mirrors of the terraform CLI configuration) once.

            Examples:
              nclav validate ./enclaves
              nclav validate ./enclaves --terraform
              nclav validate ./enclaves --output json | jq '.diagnostics[].message'
            """
    )

    @Argument(help: "The enclaves directory: it holds one directory per enclave.")
    var directory: String

    @Option(name: [.short, .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    @Flag(help: "Also run `terraform init -backend=false` and `terraform validate` on every partition of a valid tree.")
    var terraform = false

    @Option(help: "Partitions terraform checks at the same time (with --terraform).")
    var parallelism = 2

    public func run() async throws {
        var result: ValidationResult
        do {
            result = try ValidationResult.check(directory: directory)
        } catch {
            // The directory given cannot be read as a tree: a usage error (EX_USAGE).
            FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
            throw ExitCode(64)
        }
        if terraform && result.isValid {
            let check = TerraformValidation(
                result: result, parallelism: parallelism, pluginCache: NclavHome.directory().appendingPathComponent("plugin-cache"))
            result = result.adding(try await check.diagnostics())
        }
        switch output {
        case .json:
            print(result.jsonReport())
        case .text:
            for line in result.diagnosticLines() { print(line) }
            if result.isValid {
                for line in result.enclaveOverview() { print(line) }
            }
            print(result.summaryLine)
        }
        if !result.isValid { throw ExitCode(1) }
    }
}
