import ArgumentParser
import Foundation
import NclavAPI
import NclavClient
import NclavCore

public struct StateCommand: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
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
        @Option(name: [.short, .long], help: "Output format: text or json.") var output: OutputFormat = .text

        func run() async throws {
            let key = try address.key()
            let api = try client.client()
            try await withClient {
                let fetched = try await api.stateVersions(key)
                if output == .json { return printJSON(fetched.raw) }
                let listing = fetched.value
                if listing.versions.isEmpty { return print("no state stored for \(key)") }
                let formatter = ISO8601DateFormatter()
                let rows = listing.versions.map {
                    [
                        String($0.version), String($0.serial), $0.lineage,
                        ByteCountFormatter.string(fromByteCount: Int64($0.size), countStyle: .file),
                        formatter.string(from: $0.createdAt), $0.runID?.uuidString ?? "-",
                    ]
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
                guard let body = try await api.state(key, version: version) else { throw CommandFailure("no state stored for \(key)") }
                FileHandle.standardOutput.write(body)
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
                try Confirmation.require(
                    "roll \(key) back", question: "Restore version \(version) of \(key) as its newest state?",
                    declined: "nothing restored", yes: yes)
                let answer = try await api.restoreState(key, version: version)
                if answer.status == 423 {
                    throw CommandFailure("\(key) is locked by \(String(decoding: answer.body, as: UTF8.self)); unlock it first")
                }
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
                let answer = try await api.pushState(key, body: body, force: force)
                switch answer.status {
                case 409:
                    let message = (try? JSONDecoder().decode(ErrorBody.self, from: answer.body))?.error ?? "conflict"
                    throw CommandFailure(
                        "\(key): \(message); pass --force to store it anyway (`nclav state versions \(key.enclave) \(key.partition)` shows what is there)"
                    )
                case 423:
                    throw CommandFailure("\(key) is locked by \(String(decoding: answer.body, as: UTF8.self)); unlock it first")
                default:
                    try NclavAPIClient.requireSuccess(answer)
                }
                let version = try await api.stateVersions(key).value.versions.first
                print(
                    "stored \(file) as version \(version.map { String($0.version) } ?? "?") of \(key) (serial \(version.map { String($0.serial) } ?? "?"))"
                )
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
                guard let holder = try await api.lockInfo(key) else { return print("\(key) is not locked") }
                print("\(key) is locked by: \(String(decoding: holder, as: UTF8.self))")
                try Confirmation.require("force-unlock", question: "Force-unlock \(key)?", declined: "not unlocked", yes: yes)
                try await api.forceUnlock(key)
                print("unlocked \(key)")
            }
        }
    }
}

/// `nclav state forget` and `nclav destroy --partition p --forget`.
enum ForgetCommand {
    static func forget(enclave: String, partition: String, yes: Bool, client: ClientOptions) async throws {
        let key: StateKey
        do { key = try StateKey(enclave: enclave, partition: partition) } catch { throw ValidationError(error.description) }
        let api = try client.client()
        try await withClient {
            try Confirmation.require(
                "forget \(key)",
                question: "Forget \(key)? nclav drops it from state without running terraform: whatever it created stays in the cloud.",
                declined: "nothing forgotten", yes: yes)
            let forgotten = try await api.forget(key)
            print("forgot \(forgotten.forgotten): it is no longer in nclav's state")
            if forgotten.resources.isEmpty {
                print("its Terraform state holds no resources")
            } else {
                print("left in the cloud (from its Terraform state, which is kept: `nclav state pull \(key.enclave) \(key.partition)`):")
                for resource in forgotten.resources { print("  \(resource)") }
            }
            if !forgotten.identity.isEmpty {
                print(
                    "its cloud identity is left too: "
                        + forgotten.identity.keys.sorted().map { "\($0)=\(forgotten.identity[$0]!)" }.joined(separator: ", "))
            }
            print("its workspace is kept at \(forgotten.workspace) (terraform can destroy from there by hand)")
        }
    }
}
