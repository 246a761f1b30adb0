import ArgumentParser
import Foundation
import NclavConfig

public struct Validate: ParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
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

    @Option(name: [.short, .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    public func run() throws {
        let result: ValidationResult
        do {
            result = try ValidationResult.check(directory: directory)
        } catch {
            // The directory given cannot be read as a tree: a usage error (EX_USAGE).
            FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
            throw ExitCode(64)
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
