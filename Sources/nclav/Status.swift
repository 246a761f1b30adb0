import ArgumentParser
import Foundation
import NclavClient

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the server's summary: enclave count, default cloud, active drivers.",
        discussion: """
        Examples:
          nclav status
          nclav status --output json
          NCLAV_URL=https://nclav.example.com nclav status
        """
    )

    @OptionGroup var client: ClientOptions

    @Option(help: "Output format: text or json.")
    var output: OutputFormat = .text

    struct Summary: Decodable {
        struct Lock: Decodable { let holder: String; let started_at: String }
        let version: String
        let enclave_count: Int
        let default_cloud: String
        let active_drivers: [String]
        let store: String
        let reconcile_in_progress: Lock?
    }

    func run() async throws {
        let api = try client.client()
        try await withClient {
            let answer = try await api.send(.GET, "/status")
            try NclavAPIClient.requireSuccess(answer)
            if output == .json { return printJSON(answer.body) }
            guard let summary = try? JSONDecoder().decode(Summary.self, from: answer.body) else {
                throw ClientError.invalidResponse("/status did not return the expected fields")
            }
            print("server:         \(api.endpoint.baseURL) (nclav \(summary.version))")
            print("store:          \(summary.store)")
            print("enclaves:       \(summary.enclave_count)")
            print("default cloud:  \(summary.default_cloud)")
            print("active drivers: \(summary.active_drivers.joined(separator: ", "))")
            if let lock = summary.reconcile_in_progress {
                print("reconcile:      in progress (\(lock.holder), since \(lock.started_at))")
            } else {
                print("reconcile:      idle")
            }
        }
    }
}
