import ArgumentParser
import Foundation
import NclavClient
import NclavCore

struct StateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Inspect and repair the Terraform state nclav keeps for a partition.",
        subcommands: [Versions.self, Pull.self, Rollback.self, Unlock.self]
    )

    /// `<enclave> <partition>`, validated before any request is made.
    struct Address: ParsableArguments {
        @Argument(help: "Enclave id.") var enclave: String
        @Argument(help: "Partition id.") var partition: String

        func key() throws -> StateKey {
            do { return try StateKey(enclave: enclave, partition: partition) } catch { throw ValidationError(error.description) }
        }
    }

    struct Versions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the stored state versions of a partition, newest first.",
            discussion: "Example:\n  nclav state versions product-a-dev db"
        )
        @OptionGroup var address: Address
        @OptionGroup var client: ClientOptions
        @Option(help: "Output format: text or json.") var output: OutputFormat = .text

        struct Listing: Decodable { let versions: [StateVersionInfo] }

        func run() async throws {
            let key = try address.key()
            let api = try client.client()
            try await withClient {
                let answer = try await api.send(.GET, "/terraform/state/\(key)/versions")
                try NclavAPIClient.requireSuccess(answer)
                if output == .json { return printJSON(answer.body) }
                let listing = try NclavAPIClient.decoder.decode(Listing.self, from: answer.body)
                if listing.versions.isEmpty { return print("no state stored for \(key)") }
                let formatter = ISO8601DateFormatter()
                let rows = listing.versions.map {
                    [String($0.version), String($0.serial), $0.lineage, ByteCountFormatter.string(fromByteCount: Int64($0.size), countStyle: .file),
                     formatter.string(from: $0.createdAt), $0.runID?.uuidString ?? "-"]
                }
                for line in table(["VERSION", "SERIAL", "LINEAGE", "SIZE", "CREATED", "RUN"], rows) { print(line) }
            }
        }
    }

    struct Pull: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a partition's Terraform state (the newest, or --version N).",
            discussion: "Examples:\n  nclav state pull product-a-dev db > db.tfstate\n  nclav state pull product-a-dev db --version 3"
        )
        @OptionGroup var address: Address
        @OptionGroup var client: ClientOptions
        @Option(help: "A stored version number (see `nclav state versions`).") var version: Int64?

        func run() async throws {
            let key = try address.key()
            let api = try client.client()
            try await withClient {
                let path = version.map { "/terraform/state/\(key)/versions/\($0)" } ?? "/terraform/state/\(key)"
                let answer = try await api.send(.GET, path)
                if answer.status == 204 { throw CommandFailure("no state stored for \(key)") }
                try NclavAPIClient.requireSuccess(answer)
                FileHandle.standardOutput.write(answer.body)
            }
        }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an earlier state version the newest again (admin token only).",
            discussion: """
            The chosen version is stored again as a new version, with its serial raised above the
            current one so terraform accepts it; nothing is deleted. Refused while the state is
            locked. Asks for confirmation unless --yes.

            Example:
              nclav state rollback product-a-dev db 3 --yes
            """
        )
        @OptionGroup var address: Address
        @Argument(help: "The version to restore (see `nclav state versions`).") var version: Int64
        @OptionGroup var client: ClientOptions
        @Flag(name: [.short, .customLong("yes")], help: "Do not ask for confirmation.") var yes = false

        func validate() throws {
            if version < 1 { throw ValidationError("the version must be a positive number") }
        }

        func run() async throws {
            let key = try address.key()
            let api = try client.client()
            try await withClient {
                if !yes {
                    guard isatty(STDIN_FILENO) != 0 else { throw CommandFailure("refusing to roll \(key) back without confirmation; pass --yes") }
                    print("Restore version \(version) of \(key) as its newest state? Type `yes` to confirm: ", terminator: "")
                    guard readLine()?.trimmingCharacters(in: .whitespaces) == "yes" else { throw CommandFailure("nothing restored") }
                }
                let answer = try await api.send(.POST, "/terraform/state/\(key)/versions/\(version)/restore")
                if answer.status == 423 { throw CommandFailure("\(key) is locked by \(String(decoding: answer.body, as: UTF8.self)); unlock it first") }
                try NclavAPIClient.requireSuccess(answer)
                let result = (try? JSONDecoder().decode([String: String].self, from: answer.body)) ?? [:]
                print("restored version \(version) of \(key) as version \(result["new_version"] ?? "?") (serial \(result["serial"] ?? "?"))")
            }
        }
    }

    struct Unlock: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Force-unlock a partition's state (admin token only).",
            discussion: """
            Shows who holds the lock and asks for confirmation unless --yes is given. Only
            force-unlock a lock whose holder is really gone: two writers corrupt state.

            Example:
              nclav state unlock product-a-dev db --yes
            """
        )
        @OptionGroup var address: Address
        @OptionGroup var client: ClientOptions
        @Flag(name: [.short, .customLong("yes")], help: "Do not ask for confirmation.") var yes = false

        func run() async throws {
            let key = try address.key()
            let api = try client.client()
            try await withClient {
                let current = try await api.send(.GET, "/terraform/state/\(key)/lock")
                if current.status == 204 { return print("\(key) is not locked") }
                try NclavAPIClient.requireSuccess(current)
                print("\(key) is locked by: \(String(decoding: current.body, as: UTF8.self))")
                if !yes {
                    guard isatty(STDIN_FILENO) != 0 else {
                        throw CommandFailure("refusing to force-unlock without confirmation; pass --yes")
                    }
                    print("Force-unlock \(key)? Type `yes` to confirm: ", terminator: "")
                    guard readLine()?.trimmingCharacters(in: .whitespaces) == "yes" else { throw CommandFailure("not unlocked") }
                }
                let answer = try await api.send(.DELETE, "/terraform/state/\(key)/lock")
                try NclavAPIClient.requireSuccess(answer)
                print("unlocked \(key)")
            }
        }
    }
}
