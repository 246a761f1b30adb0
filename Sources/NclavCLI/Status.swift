import ArgumentParser
import Foundation
import NclavClient
import NclavCore

public struct Status: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        abstract: "Show the server's summary: enclave count, default cloud, active drivers.",
        discussion: """
            Examples:
              nclav status
              nclav status --output json
              NCLAV_URL=https://nclav.example.com nclav status
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(name: [.short, .long], help: "Output format: text or json.")
    var output: OutputFormat = .text

    public func run() async throws {
        let api = try client.client()
        try await withClient {
            let fetched = try await api.status()
            if output == .json { return printJSON(fetched.raw) }
            let summary = fetched.value
            print("server:         \(api.endpoint.baseURL) (nclav \(summary.version))")
            print("store:          \(summary.store)")
            print("enclaves:       \(summary.enclaveCount)")
            print("default cloud:  \(summary.defaultCloud)")
            print("active drivers: \(summary.activeDrivers.joined(separator: ", "))")
            if let lock = summary.reconcileInProgress {
                print("reconcile:      in progress (\(lock.holder), since \(ISO8601DateFormatter().string(from: lock.startedAt)))")
            } else {
                print("reconcile:      idle")
            }
            if let checked = summary.driftCheckedAt {
                let counts = ["in-sync", "drifted", "error"].map { "\(summary.drift[$0] ?? 0) \($0)" }.joined(separator: ", ")
                print("drift:          \(counts) (last check \(ISO8601DateFormatter().string(from: checked)))")
            } else {
                print("drift:          never checked (nclav drift)")
            }
            if let queued = summary.jobsQueued {
                let oldest = summary.oldestJobQueuedAt.map { ", the oldest for \(Int(Date().timeIntervalSince($0))) s" } ?? ""
                print("job queue:      \(queued == 0 ? "empty" : "\(queued) run(s) waiting for a worker\(oldest)")")
            }
        }
    }
}
