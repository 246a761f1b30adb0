import ArgumentParser
import Foundation
import NclavCLI
import NclavCore
import NclavServer

/// The `nclav` command line. Commands parse arguments and print; the work happens in the
/// libraries. Exit codes: 0 success, 1 the command ran and found problems (or the server
/// refused), 2 changes or drift found (`diff --detailed-exitcode`, `plan`, `drift`), 64 usage
/// errors (argument-parser's own, EX_USAGE), so a typo never reads as "changes present".
struct Nclav: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nclav",
        abstract: "Orchestrate Terraform/OpenTofu across isolated enclaves from a YAML tree.",
        discussion: """
            Global options --remote and --token may also be given before the command:
              nclav --remote http://nclav.internal:8080 status

            Examples:
              nclav validate ./enclaves
              nclav serve --cloud local
              nclav status
              nclav state versions product-a-dev db
            """,
        version: NclavVersion.current,
        subcommands: [
            Validate.self, Serve.self, Diff.self, PlanCommand.self, Apply.self, Destroy.self, Graph.self, Status.self, StateCommand.self, Iac.self,
            Drift.self, Orphans.self, Agent.self, AgentTokenCommand.self, Platform.self, Bootstrap.self, Completion.self,
        ]
    )
}

/// `nclav completion bash|zsh|fish`: the shell completion script, as `gh` and `kubectl` print
/// theirs (`make completions` installs all three for the current user).
struct Completion: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the shell completion script for bash, zsh or fish.",
        discussion: """
            Examples:
              source <(nclav completion bash)
              nclav completion zsh > ~/.zfunc/_nclav
              nclav completion fish > ~/.config/fish/completions/nclav.fish
            """)
    @Argument(help: "bash, zsh or fish.") var shell: CompletionShell

    func run() throws { print(Nclav.completionScript(for: shell)) }
}

extension CompletionShell: @retroactive ExpressibleByArgument {}

/// `nclav --remote X status` → `nclav status --remote X`: global client options may come
/// before the command, as the product README shows them.
func movingGlobalOptionsAfterCommand(_ arguments: [String]) -> [String] {
    var remaining = arguments
    var globals: [String] = []
    while let first = remaining.first {
        if first == "--remote" || first == "--token", remaining.count >= 2 {
            globals += remaining.prefix(2)
            remaining.removeFirst(2)
        } else if first.hasPrefix("--remote=") || first.hasPrefix("--token=") {
            globals.append(remaining.removeFirst())
        } else {
            break
        }
    }
    if let terminator = remaining.firstIndex(of: "--") {
        remaining.insert(contentsOf: globals, at: terminator)
        return remaining
    }
    return remaining + globals
}

/// Runs the parsed command. In an async function (not top-level code) the compiler picks
/// `AsyncParsableCommand.run() async` instead of the synchronous default that prints help.
func execute(_ command: ParsableCommand) async throws {
    if var asyncCommand = command as? AsyncParsableCommand {
        try await asyncCommand.run()
    } else {
        var syncCommand = command
        try syncCommand.run()
    }
}

do {
    try await execute(try await Nclav.asyncParseAsRoot(movingGlobalOptionsAfterCommand(Array(CommandLine.arguments.dropFirst()))))
} catch let exit as ExitCode {
    Foundation.exit(exit.rawValue)
} catch let failure as ServerStartError {
    FileHandle.standardError.write(Data("error: \(failure.description)\n".utf8))
    Foundation.exit(1)
} catch let failure as CommandFailure {
    FileHandle.standardError.write(Data("error: \(failure.description)\n".utf8))
    Foundation.exit(1)
} catch {
    let code = Nclav.exitCode(for: error)
    var message = Nclav.fullMessage(for: error)
    if let suggestion = CommandSuggestion.forUnknown(Array(CommandLine.arguments.dropFirst()), commands: Nclav.configuration.subcommands) {
        message = suggestion
    }
    if code == .success {
        print(message)
        Foundation.exit(0)
    }
    FileHandle.standardError.write(Data((message + "\n").utf8))
    Foundation.exit(code.rawValue)
}
