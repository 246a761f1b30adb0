import ArgumentParser
import Foundation
import NclavAPI
import NclavClient

public struct Drift: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        abstract: "Check applied partitions for drift: does the real infrastructure still match what was applied?",
        discussion: """
            Runs `terraform plan -detailed-exitcode -lock=false` on every applied partition (or one
            enclave's), in the workspace of its last apply, on the server. Read-only: no state is
            written. Each check is an IacRun (operation `plan`); its result is kept, shown by
            `status` and `graph`, and the next `apply` re-runs every partition found drifted even
            when its YAML is unchanged. Exit status: 0 all in sync, 2 something drifted, 1 an error.
            The server can also check on a schedule: `nclav serve --drift-interval 6h`.

            Examples:
              nclav drift
              nclav drift --enclave product-a-dev --report-file drift.json
            """
    )
    @Option(help: "Check only this enclave.") var enclave: String?
    @OptionGroup var client: ClientOptions
    @OptionGroup var report: ReportOption
    @Option(name: [.short, .long], help: "Output format: text, or json (NDJSON: the drift events, then the run report).")
    var output: OutputFormat = .text

    public func run() async throws {
        let json = output == .json
        func say(_ text: String) { if json { FileHandle.standardError.write(Data((text + "\n").utf8)) } else { print(text) } }
        let api = try client.client()
        let start = Date()
        var runReport = RunReport(command: "drift", started: start)
        var failed = false
        try await withClient {
            for try await event in try api.drift(enclave: enclave) {
                if json { print(Wire.line(event), terminator: "") }
                switch event {
                case .progress(let line):
                    if !json { print(Style.line("[\(String(format: "%6.1fs", Date().timeIntervalSince(start)))] \(line)")) }
                case .drift(let reconcileID, let results):
                    runReport.reconcile_ids = [reconcileID]
                    runReport.outcomes = results.map {
                        OutcomeLine(
                            partition: $0.partition, operation: "plan", result: $0.status, runID: $0.runID, reason: $0.summary, seconds: $0.seconds)
                    }
                case .error(let message):
                    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
                    runReport.errors.append(message)
                    failed = true
                }
            }
        }
        runReport.finish(at: Date(), started: start)
        if runReport.outcomes.isEmpty && !failed {
            say("nothing to check: no applied partitions\(enclave.map { " in \($0)" } ?? "")")
        } else if !runReport.outcomes.isEmpty {
            say("")
            runReport.table().forEach { say($0) }
        }
        if json { print(Wire.line(RunReport.Line(report: runReport)), terminator: "") }
        let count = { (status: String) in runReport.outcomes.filter { $0.result == status }.count }
        if !runReport.outcomes.isEmpty {
            say("Drift: \(count("in-sync")) in sync, \(count("drifted")) drifted, \(count("error")) error(s), \(count("skipped")) skipped.")
        }
        if let path = report.reportFile { try runReport.write(to: path) }
        if failed || count("error") > 0 { throw ExitCode(1) }
        if count("drifted") > 0 { throw ExitCode(2) }
    }
}
