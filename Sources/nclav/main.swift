import ArgumentParser
import Foundation
import NclavConfig

/// The `nclav` command line. Commands parse arguments and print; the work happens in the
/// libraries. Exit codes: 0 success, 1 the command ran and found problems, 2 usage errors.
struct Nclav: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nclav",
        abstract: "Orchestrate Terraform/OpenTofu across isolated enclaves from a YAML tree.",
        discussion: """
        Examples:
          nclav validate ./enclaves
          nclav validate ./enclaves --output json
        """,
        version: NclavVersion.current,
        subcommands: [Validate.self]
    )
}

enum NclavVersion {
    static let current = "0.1.0"
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load and validate an enclaves directory offline (no server needed).",
        discussion: """
        Reports every problem as `path:line:col: error: message`, then a summary line.
        Exit status: 0 valid, 1 invalid, 2 usage error (bad flag, missing directory).

        Examples:
          nclav validate ./enclaves
          nclav validate ./enclaves --output json | jq '.diagnostics[].message'
        """
    )

    @Argument(help: "The enclaves directory: it holds one directory per enclave.")
    var directory: String

    @Option(name: .long, help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() throws {
        let result: ValidationResult
        do {
            result = try ValidationResult.check(directory: directory)
        } catch {
            FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
            throw ExitCode(2)
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

// Usage errors exit 2 (argument-parser's default is 64) so scripts can tell "invalid
// tree" (1) from "wrong invocation" (2).
do {
    var command = try Nclav.parseAsRoot()
    try command.run()
} catch let exit as ExitCode {
    Foundation.exit(exit.rawValue)
} catch {
    let code = Nclav.exitCode(for: error)
    let message = Nclav.fullMessage(for: error)
    if code == .success {
        print(message)
        Foundation.exit(0)
    }
    FileHandle.standardError.write(Data((message + "\n").utf8))
    Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
}
