import ArgumentParser
import Foundation
import NclavClient
import NclavCore

struct StateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Inspect and repair the Terraform state nclav keeps for a partition.",
        subcommands: [Versions.self, Pull.self, Push.self, Rollback.self, Unlock.self, Forget.self]
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
                try Confirmation.require("roll \(key) back", question: "Restore version \(version) of \(key) as its newest state?",
                                         declined: "nothing restored", yes: yes)
                let answer = try await api.send(.POST, "/terraform/state/\(key)/versions/\(version)/restore")
                if answer.status == 423 { throw CommandFailure("\(key) is locked by \(String(decoding: answer.body, as: UTF8.self)); unlock it first") }
                try NclavAPIClient.requireSuccess(answer)
                let result = (try? JSONDecoder().decode([String: String].self, from: answer.body)) ?? [:]
                print("restored version \(version) of \(key) as version \(result["new_version"] ?? "?") (serial \(result["serial"] ?? "?"))")
            }
        }
    }

    struct Forget: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drop a partition from nclav's state without a teardown (admin token only).",
            discussion: """
            For a partition whose teardown can never succeed: its tool, its code or its workspace
            is gone. Runs nothing: whatever the partition created stays in the cloud, and the
            command lists it (from the partition's Terraform state, which is kept). An audit event
            records it. Refused while another partition imports from it. Asks unless --yes.

            Example:
              nclav state forget product-a-dev db --yes
            """
        )
        @OptionGroup var address: Address
        @OptionGroup var client: ClientOptions
        @Flag(name: [.short, .customLong("yes")], help: "Do not ask for confirmation.") var yes = false

        func run() async throws {
            try await ForgetCommand.forget(enclave: address.enclave, partition: address.partition, yes: yes, client: client)
        }
    }

    struct Push: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store a state file as a partition's newest state (admin token only).",
            discussion: """
            Without --force the state must continue the stored one: the same lineage and a higher
            serial (what `terraform state push` checks). With --force it is stored whatever its
            lineage and serial, as a new version (older versions are kept; `nclav state rollback`
            undoes it). Refused while the state is locked.

            Examples:
              nclav state push product-a-dev db fixed.tfstate
              nclav state push product-a-dev db other-workspace.tfstate --force
            """
        )
        @OptionGroup var address: Address
        @Argument(help: "The state file to store.") var file: String
        @Flag(help: "Store it even with another lineage or a serial that is not newer.") var force = false
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let key = try address.key()
            guard let body = FileManager.default.contents(atPath: file) else { throw CommandFailure("cannot read \(file)") }
            let api = try client.client()
            try await withClient {
                let answer = try await api.send(.POST, "/terraform/state/\(key)\(force ? "?force=true" : "")", body: body, contentType: "application/json")
                switch answer.status {
                case 409:
                    let message = (try? JSONDecoder().decode(ErrorAnswer.self, from: answer.body))?.error ?? "conflict"
                    throw CommandFailure("\(key): \(message); pass --force to store it anyway (`nclav state versions \(key.enclave) \(key.partition)` shows what is there)")
                case 423:
                    throw CommandFailure("\(key) is locked by \(String(decoding: answer.body, as: UTF8.self)); unlock it first")
                default:
                    try NclavAPIClient.requireSuccess(answer)
                }
                let latest = try await api.send(.GET, "/terraform/state/\(key)/versions")
                try NclavAPIClient.requireSuccess(latest)
                let version = try NclavAPIClient.decoder.decode(Versions.Listing.self, from: latest.body).versions.first
                print("stored \(file) as version \(version.map { String($0.version) } ?? "?") of \(key) (serial \(version.map { String($0.serial) } ?? "?"))")
            }
        }

        struct ErrorAnswer: Decodable { let error: String }
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
                try Confirmation.require("force-unlock", question: "Force-unlock \(key)?", declined: "not unlocked", yes: yes)
                let answer = try await api.send(.DELETE, "/terraform/state/\(key)/lock")
                try NclavAPIClient.requireSuccess(answer)
                print("unlocked \(key)")
            }
        }
    }
}

/// `nclav state forget` and `nclav destroy --partition p --forget`.
enum ForgetCommand {
    struct Answer: Decodable {
        let forgotten: String
        let resources: [String]
        let identity: [String: String]
        let workspace: String
    }

    static func forget(enclave: String, partition: String, yes: Bool, client: ClientOptions) async throws {
        let key: StateKey
        do { key = try StateKey(enclave: enclave, partition: partition) } catch { throw ValidationError(error.description) }
        let api = try client.client()
        try await withClient {
            try Confirmation.require("forget \(key)",
                                     question: "Forget \(key)? nclav drops it from state without running terraform: whatever it created stays in the cloud.",
                                     declined: "nothing forgotten", yes: yes)
            let answer = try await api.send(.DELETE, "/enclaves/\(key.enclave)/partitions/\(key.partition)?forget=true")
            try NclavAPIClient.requireSuccess(answer)
            let forgotten = try JSONDecoder().decode(Answer.self, from: answer.body)
            print("forgot \(forgotten.forgotten): it is no longer in nclav's state")
            if forgotten.resources.isEmpty {
                print("its Terraform state holds no resources")
            } else {
                print("left in the cloud (from its Terraform state, which is kept: `nclav state pull \(key.enclave) \(key.partition)`):")
                for resource in forgotten.resources { print("  \(resource)") }
            }
            if !forgotten.identity.isEmpty {
                print("its cloud identity is left too: " + forgotten.identity.keys.sorted().map { "\($0)=\(forgotten.identity[$0]!)" }.joined(separator: ", "))
            }
            print("its workspace is kept at \(forgotten.workspace) (terraform can destroy from there by hand)")
        }
    }
}
