import ArgumentParser
import Foundation
import NclavClient

struct Drift: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
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

    struct Line: Decodable {
        struct Entry: Decodable { let partition: String; let status: String; let summary: String; let run_id: String?; let seconds: Double? }
        let type: String
        let line: String?
        let reconcile_id: String?
        let results: [Entry]?
        let error: String?
    }

    func run() async throws {
        let api = try client.client()
        let body = try JSONSerialization.data(withJSONObject: enclave.map { ["enclave": $0] } ?? [:])
        let start = Date()
        var runReport = RunReport(command: "drift", started: start)
        var failed = false
        try await withClient {
            try await api.streamLines(.POST, "/drift", body: body) { text in
                guard let line = try? JSONDecoder().decode(Line.self, from: Data(text.utf8)) else { return }
                switch line.type {
                case "progress":
                    print("[\(String(format: "%6.1fs", Date().timeIntervalSince(start)))] \(line.line ?? "")")
                case "drift":
                    runReport.reconcile_ids = line.reconcile_id.map { [$0] } ?? []
                    runReport.outcomes = (line.results ?? []).map {
                        RunReport.Outcome(partition: $0.partition, operation: "plan", result: $0.status, seconds: $0.seconds, run_id: $0.run_id, reason: $0.summary)
                    }
                case "error":
                    FileHandle.standardError.write(Data("error: \(line.error ?? "drift check failed")\n".utf8))
                    runReport.errors.append(line.error ?? "drift check failed")
                    failed = true
                default:
                    break
                }
            }
        }
        runReport.finish(at: Date(), started: start)
        if runReport.outcomes.isEmpty && !failed {
            print("nothing to check: no applied partitions\(enclave.map { " in \($0)" } ?? "")")
        } else if !runReport.outcomes.isEmpty {
            print("")
            runReport.table.forEach { print($0) }
        }
        let count = { (status: String) in runReport.outcomes.filter { $0.result == status }.count }
        if !runReport.outcomes.isEmpty {
            print("Drift: \(count("in-sync")) in sync, \(count("drifted")) drifted, \(count("error")) error(s), \(count("skipped")) skipped.")
        }
        if let path = report.reportFile { try runReport.write(to: path) }
        if failed || count("error") > 0 { throw ExitCode(1) }
        if count("drifted") > 0 { throw ExitCode(2) }
    }
}
