import ArgumentParser
import Foundation
import NclavClient
import NclavCore

struct Orphans: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
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

    @Option(help: "Output format: text or json.")
    var output: OutputFormat = .text

    struct Report: Decodable {
        struct Failure: Decodable { let enclave: String; let error: String }
        let orphans: [Orphan]
        let errors: [Failure]
        let scanned: [String]
    }

    struct Orphan: Decodable {
        let enclaveID: String
        let cloud: String
        let resource: String
        let partition: String?
        enum CodingKeys: String, CodingKey { case enclaveID = "enclave_id", cloud, resource, partition }
    }

    func validate() throws {
        if let enclave, let problem = Identifier.problem(with: enclave) {
            throw ValidationError("--enclave `\(enclave)` is not a valid enclave id: \(problem)")
        }
    }

    func run() async throws {
        let api = try client.client()
        var report: Report? = nil
        try await withClient {
            let path = "/orphans" + (enclave.map { "?enclave=\($0)" } ?? "")
            let answer = try await api.send(.GET, path)
            try NclavAPIClient.requireSuccess(answer)
            guard let decoded = try? NclavAPIClient.decoder.decode(Report.self, from: answer.body) else {
                throw ClientError.invalidResponse("/orphans did not return the expected fields")
            }
            report = decoded
            if output == .json { return printJSON(answer.body) }
            if decoded.orphans.isEmpty {
                print("No orphans in \(decoded.scanned.count) enclave(s).")
            } else {
                let rows = decoded.orphans.map { [$0.enclaveID, $0.partition ?? "-", $0.cloud, $0.resource] }
                let headers = ["ENCLAVE", "PARTITION (not in state)", "CLOUD", "RESOURCE"]
                let widths = headers.indices.map { column in ([headers[column]] + rows.map { $0[column] }).map(\.count).max() ?? 0 }
                func line(_ cells: [String]) -> String {
                    cells.enumerated().map { $0.offset == cells.count - 1 ? $0.element : $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
                        .joined(separator: "  ")
                }
                print(line(headers))
                for row in rows { print(line(row)) }
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
