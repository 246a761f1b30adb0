import ArgumentParser
import Foundation
import NclavAPI

/// What `apply`, `destroy` and `drift` did, partition by partition: printed as a table at the
/// end, and written as JSON with `--report-file` for pipelines.
struct RunReport: Codable {

    struct Summary: Codable {
        var succeeded = 0, failed = 0, skipped = 0, unchanged = 0, other = 0
    }

    let command: String
    let started_at: String
    var finished_at: String
    var seconds: Double
    var reconcile_ids: [String] = []
    var outcomes: [OutcomeLine] = []
    var enclaves: [EnclaveOutcomeLine] = []
    var errors: [String] = []
    var summary = Summary()

    init(command: String, started: Date) {
        self.command = command
        started_at = Self.timestamp(started)
        finished_at = started_at
        seconds = 0
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    mutating func finish(at date: Date, started: Date) {
        finished_at = Self.timestamp(date)
        seconds = (date.timeIntervalSince(started) * 1000).rounded() / 1000
        summary = Summary()
        for outcome in outcomes {
            switch outcome.result {
            case "succeeded", "in-sync": summary.succeeded += 1
            case "failed", "error": summary.failed += 1
            case "skipped": summary.skipped += 1
            case "unchanged": summary.unchanged += 1
            default: summary.other += 1
            }
        }
    }

    /// PARTITION OPERATION RESULT DURATION RUN / REASON, one row per partition (enclave
    /// boundaries first, as `enclave <id>`, unless `enclaves` is false).
    func table(enclaves includeEnclaves: Bool = true) -> [String] {
        let enclaveRows = includeEnclaves ? enclaves.map { ["enclave \($0.enclave)", $0.operation, $0.result, "-", $0.reason ?? "-"] } : []
        let rows =
            enclaveRows
            + outcomes.map { outcome in
                [
                    outcome.partition, outcome.operation, outcome.result,
                    outcome.seconds.map { String(format: "%.1fs", $0) } ?? "-",
                    outcome.reason ?? outcome.runID ?? "-",
                ]
            }
        return NclavCLI.table(["PARTITION", "OPERATION", "RESULT", "DURATION", "RUN / REASON"], rows)
    }

    /// The report as the last NDJSON line of `--output json`: `{"type": "run_report", "report": …}`.
    struct Line: Encodable {
        let type = "run_report"
        let report: RunReport
    }

    /// Writes the JSON report; a path that cannot be written is an error naming it.
    func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            try encoder.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw CommandFailure("cannot write the report to \(path): \(error.localizedDescription)")
        }
    }
}

/// `--report-file`, shared by the commands that run terraform.
struct ReportOption: ParsableArguments {
    @Option(
        name: .customLong("report-file"),
        help: "Also write the run report (every partition's operation, result, duration, run id and reason) as JSON to this path.")
    var reportFile: String?
}
