import ArgumentParser
import Foundation
import NclavAPI
import NclavClient
import NclavCore

public struct Orphans: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        abstract: "List cloud resources tagged nclav-managed whose partition is not in state.",
        discussion: """
            Each enclave's driver asks its cloud (AWS: Resource Groups Tagging API in the enclave's
            account and region). Local enclaves have nothing to scan. Exits 1 when any orphan is
            found (CI-friendly) and 2 when an enclave could not be scanned.

            Examples:
              nclav orphans
              nclav orphans --enclave product-a-dev
              nclav orphans --output json
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(help: "Scan only this enclave.")
    var enclave: String?

    @Option(name: [.short, .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    public func validate() throws {
        if let enclave, let problem = Identifier.problem(with: enclave) {
            throw ValidationError("--enclave `\(enclave)` is not a valid enclave id: \(problem)")
        }
    }

    public func run() async throws {
        let api = try client.client()
        var report: OrphanReport? = nil
        try await withClient {
            let fetched = try await api.orphans(enclave: enclave)
            let decoded = fetched.value
            report = decoded
            if output == .json { return printJSON(fetched.raw) }
            if decoded.orphans.isEmpty {
                print("No orphans in \(decoded.scanned.count) enclave(s).")
            } else {
                let rows = decoded.orphans.map { [$0.enclaveID, $0.partition ?? "-", $0.cloud, $0.resource] }
                table(["ENCLAVE", "PARTITION (not in state)", "CLOUD", "RESOURCE"], rows).forEach { print($0) }
                print("\(decoded.orphans.count) orphan(s) found.")
            }
            for failure in decoded.errors {
                FileHandle.standardError.write(Data("error: enclave \(failure.enclave) could not be scanned: \(failure.error)\n".utf8))
            }
        }
        guard let report else { return }
        if !report.errors.isEmpty { throw ExitCode(2) }
        if !report.orphans.isEmpty { throw ExitCode(1) }
    }
}
