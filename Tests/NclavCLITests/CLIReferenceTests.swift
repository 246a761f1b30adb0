import Foundation
import NclavTestSupport
import Testing

/// docs/cli.md is generated from the parser's help (`make docs`); this fails when a command or
/// flag exists that the reference does not mention, so the reference cannot rot.
@Suite("CLI reference")
struct CLIReferenceTests {
    struct Help: Decodable {
        struct Command: Decodable {
            let commandName: String
            let subcommands: [Command]?
            let arguments: [Argument]?
        }
        struct Argument: Decodable {
            struct Name: Decodable {
                let kind: String
                let name: String
            }
            let kind: String
            let names: [Name]?
        }
        let command: Command
    }

    @Test("every command and every flag appears in docs/cli.md")
    func referenceIsComplete() throws {
        let dump = try TestSupport.run(TestSupport.nclavBinary.path, ["--experimental-dump-help"])
        let help = try JSONDecoder().decode(Help.self, from: Data(dump.stdout.utf8))
        let reference = try String(contentsOf: TestSupport.packageRoot.appendingPathComponent("docs/cli.md"), encoding: .utf8)
        var missing: [String] = []
        func walk(_ command: Help.Command, _ path: [String]) {
            for sub in command.subcommands ?? [] where sub.commandName != "help" {
                let name = path + [sub.commandName]
                if !reference.contains("## nclav \(name.joined(separator: " "))\n") {
                    missing.append("command `nclav \(name.joined(separator: " "))`")
                }
                for argument in sub.arguments ?? [] {
                    for flag in argument.names ?? [] where flag.kind == "long" && !reference.contains("--\(flag.name)") {
                        missing.append("`--\(flag.name)` of `nclav \(name.joined(separator: " "))`")
                    }
                }
                walk(sub, name)
            }
        }
        walk(help.command, [])
        #expect(missing.isEmpty, "docs/cli.md does not mention: \(missing.joined(separator: ", ")); run `make docs`")
    }
}
