import ArgumentParser
import Foundation
import NclavAPI
import NclavClient
import NclavCore
import NclavFiles

/// Reads a local enclaves directory into the upload format, under the same rules the server
/// reads a directory by (`TreeFiles`): a link inside the tree is sent as the file it points to,
/// hidden names and local state files stay behind, and anything that cannot be read — a link
/// leaving the tree, a dangling link, a file without read permission — stops the upload with
/// its path, so the server never sees a tree with a file missing.
enum TreeBundle {
    static func files(_ directory: String) throws -> [(path: String, contents: Data)] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("`\(directory)` is not a directory; pass the directory that holds your enclave directories")
        }
        let tree = TreeFiles(root: directory)
        let listing = tree.files(below: "")
        guard listing.problems.isEmpty else {
            throw CommandFailure(
                (["the enclaves directory cannot be uploaded as it is:"]
                    + listing.problems.map { "\(tree.absolute($0.path)): error: \($0.message)" }).joined(separator: "\n"))
        }
        return try listing.files.map { file in
            guard let contents = FileManager.default.contents(atPath: file.source) else {
                throw CommandFailure("\(tree.absolute(file.path)): error: could not be read (check its permissions)")
            }
            return (file.path, contents)
        }
    }

    /// The request body. The bundle part is written by hand: JSONSerialization of thousands of
    /// small dictionaries took longer than reading the files.
    static func body(directory: String, serverPath: Bool, extra: [String: Any] = [:]) throws -> Data {
        var object = extra
        if serverPath {
            object["enclaves_dir"] = directory
            return try JSONSerialization.data(withJSONObject: object)
        }
        var body = Data("{\"bundle\":[".utf8)
        for (index, file) in try files(directory).enumerated() {
            if index > 0 { body.append(UInt8(ascii: ",")) }
            body.append(contentsOf: Array(#"{"path":"#.utf8))
            body.append(contentsOf: jsonString(file.path))
            body.append(contentsOf: Array(#","content":""#.utf8))
            body.append(file.contents.base64EncodedData())
            body.append(contentsOf: Array("\"}".utf8))
        }
        body.append(UInt8(ascii: "]"))
        if !object.isEmpty {
            // `{"a":1}` → `,"a":1`, appended inside the outer object.
            let rest = try JSONSerialization.data(withJSONObject: object)
            body.append(UInt8(ascii: ","))
            body.append(rest.dropFirst().dropLast())
        }
        body.append(UInt8(ascii: "}"))
        return body
    }

    /// A JSON string literal (quotes included) for any Swift string.
    static func jsonString(_ text: String) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += Array(#"\""#.utf8)
            case UInt8(ascii: "\\"): out += Array(#"\\"#.utf8)
            case 0..<0x20: out += Array(String(format: "\\u%04x", byte).utf8)
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
        return out
    }
}

/// Prints a 422's diagnostics with the local directory in front, so paths open from here.
func invalidTree(_ error: ClientError, directory: String, serverPath: Bool) -> CommandFailure {
    guard case .server(422, let message, let details) = error else { return CommandFailure(error.description) }
    let prefix = serverPath ? "" : (directory.hasSuffix("/") ? directory : directory + "/")
    return CommandFailure(([message] + details.map { prefix + $0 }).joined(separator: "\n"))
}

public struct Diff: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        abstract: "Show what `apply` would change, without changing anything.",
        discussion: """
            Uploads the enclaves directory to the server (or, with --server-path, names a
            directory on the server) and prints the plan: + create, ~ update, - delete,
            > export wired, < import wired. Exit status: 0, or with --detailed-exitcode 0 when
            there are no changes and 2 when there are; 1 on errors.

            Examples:
              nclav diff ./enclaves
              nclav diff ./enclaves --detailed-exitcode
            """
    )
    @Argument(help: "The enclaves directory.") var directory: String
    @OptionGroup var client: ClientOptions
    @Flag(name: .customLong("server-path"), help: "Send the path for the server to read instead of uploading the tree.") var serverPath = false
    @Flag(name: .customLong("detailed-exitcode"), help: "Exit 2 when there are changes.") var detailedExitcode = false
    @Option(name: [.short, .long], help: "Output format: text or json.") var output: OutputFormat = .text
    @OptionGroup var targets: TargetOptions

    public func run() async throws {
        let api = try client.client()
        let body = try TreeBundle.body(directory: directory, serverPath: serverPath, extra: targets.body)
        let plan: Fetched<DryRunAnswer>
        do { plan = try await api.dryRun(body) } catch let error as ClientError {
            throw invalidTree(error, directory: directory, serverPath: serverPath)
        }
        if output == .json { printJSON(plan.raw) } else { plan.value.changes.forEach { print(Style.line($0)) } }
        if detailedExitcode && plan.value.changeCount > 0 { throw ExitCode(2) }
    }
}

public struct Apply: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        abstract: "Reconcile: provision and tear down until the server's state matches the directory.",
        discussion: """
            First terraform plans every partition that would run (as `nclav plan` does) and the
            plan is shown. On a terminal nclav asks for `yes` before it changes anything; off a
            terminal (CI) it goes on, unless the plan destroys resources or tears down a
            partition or enclave: then it refuses and names them. --auto-approve skips the plan
            and the question; --plan <id> applies exactly a plan made before with `nclav plan`.
            Then it prints a line as each partition starts and ends, and a summary. Exit status
            0 when everything succeeded, 1 when anything failed (the rest still ran) or the
            apply was declined.

            Examples:
              nclav apply ./enclaves
              nclav apply ./enclaves --auto-approve --parallelism 4
              nclav apply ./enclaves --plan 6f1c2a0e-8d4b-4c5e-9a7f-0b1d2e3f4a5b
              nclav apply ./enclaves --partition shop/web
            """
    )
    @Argument(help: "The enclaves directory.") var directory: String
    @OptionGroup var client: ClientOptions
    @Flag(name: .customLong("server-path"), help: "Send the path for the server to read instead of uploading the tree.") var serverPath = false
    @Option(help: "Partitions run at the same time (default: the server's cores).") var parallelism: Int?
    @Flag(name: .customLong("allow-delete-all"), help: "Allow an apply that deletes every enclave in state.") var allowDeleteAll = false
    @OptionGroup var report: ReportOption
    @Flag(
        help:
            "Also print every running partition's terraform lines as they are written, prefixed `enclave/partition | ` (on a terminal with a live status line)."
    )
    var follow = false
    @Option(name: .customLong("plan"), help: "Apply exactly this saved plan (its id from `nclav plan`).") var planID: String?
    @Flag(
        name: .customLong("auto-approve"),
        help: "Apply without planning first and asking; with --plan, let partitions it deferred destroy or replace resources.")
    var autoApprove = false
    @OptionGroup var targets: TargetOptions
    @Option(name: [.short, .long], help: "Output format: text, or json (NDJSON: the plan's and the apply's events, then the run report).")
    var output: OutputFormat = .text
    @Option(
        name: .customLong("wait"),
        help: "When another reconcile holds the server, wait up to this long for it (90s, 10m, 1h) instead of failing.")
    var wait: String?

    public func validate() throws {
        if let parallelism, parallelism < 1 { throw ValidationError("--parallelism must be at least 1") }
        if let wait, DurationText.parse(wait) == nil {
            throw ValidationError("--wait `\(wait)` is not a duration; use e.g. 90s, 10m, 1h or 1h30m")
        }
        if let planID, UUID(uuidString: planID) == nil { throw ValidationError("--plan `\(planID)` is not a plan id (a UUID from `nclav plan`)") }
        if planID != nil && !(targets.enclaves.isEmpty && targets.partitions.isEmpty) {
            throw ValidationError("--plan applies the targets the plan was made with; drop --enclave/--partition")
        }
    }

    /// What to apply after the plan was shown and approved.
    enum Approval { case nothingToDo, plan(String), withoutPlan }

    /// Plans, shows the plan and has it approved. On a terminal the user says `yes`; off a
    /// terminal it goes on unless the plan destroys something. A plan that failed for some
    /// partitions cannot be applied as a plan: on a terminal that stops here; off a terminal
    /// the apply runs without it, so the other partitions still apply and the failing ones
    /// fail again with terraform's own error.
    func approval(_ api: NclavAPIClient, extra: [String: Any]) async throws -> Approval {
        let body = try TreeBundle.body(directory: directory, serverPath: serverPath, extra: extra)
        let plan: PlanBody
        var planned = false
        do {
            plan = try await makePlan(api, body: body) { line in
                planned = true
                if json { emit(PlanEvent.progress(line)) } else { print(Style.line(line)) }
            }
        } catch let error as ClientError {
            throw invalidTree(error, directory: directory, serverPath: serverPath)
        }
        if planned { say("") }
        if json { emit(PlanEvent.plan(plan)) } else { plan.textLines.forEach { print(Style.line($0)) } }
        for error in plan.errors { FileHandle.standardError.write(Data("error: \(error)\n".utf8)) }
        let destroys = plan.destructions.map { "  - \($0)" }.joined(separator: "\n")
        if isatty(STDIN_FILENO) != 0 {
            guard plan.errors.isEmpty else {
                throw CommandFailure("nothing was applied: the plan failed for some partitions; fix them, or apply the rest with --auto-approve")
            }
            guard plan.hasChanges else { return .nothingToDo }
            if !destroys.isEmpty { say("\nThis destroys:\n\(destroys)") }
            say("\nApply plan \(plan.id)? Only `yes` is accepted: ", terminator: "")
            guard readLine()?.trimmingCharacters(in: .whitespaces) == "yes" else {
                throw CommandFailure("apply declined; nothing changed. The plan is kept for 24 hours: nclav apply \(directory) --plan \(plan.id)")
            }
            say("")
            return .plan(plan.id)
        }
        if !destroys.isEmpty {
            throw CommandFailure(
                "refusing to apply off a terminal without --auto-approve, because the plan destroys:\n\(destroys)\n"
                    + "Review it, then apply exactly it with `nclav apply \(directory) --plan \(plan.id)`, or pass --auto-approve; nothing changed")
        }
        guard plan.errors.isEmpty else {
            say("\nThe plan failed for some partitions; applying without it, so the others still apply.\n")
            return .withoutPlan
        }
        guard plan.hasChanges else { return .nothingToDo }
        say("")
        return .plan(plan.id)
    }

    var json: Bool { output == .json }

    /// A line for people: stdout, or stderr when stdout carries JSON.
    func say(_ text: String, terminator: String = "\n") {
        if json { FileHandle.standardError.write(Data((text + terminator).utf8)) } else { print(text, terminator: terminator) }
    }

    /// One NDJSON line on stdout (`--output json`).
    func emit<Event: Encodable>(_ event: Event) { print(Wire.line(event), terminator: "") }

    /// Partitions that the apply did not apply because, planned after their upstreams, they
    /// would destroy something the approved plan did not show.
    static let heldBackPrefix = "not applied: planned after its upstreams"

    public func run() async throws {
        let api = try client.client()
        // On a terminal, what a deferred partition's new plan would destroy is shown and asked
        // about right away, round after round, instead of leaving the user to apply again.
        for round in 1...5 {
            let (failed, heldBack) = try await waitingForOthers { try await applyOnce(api) }
            guard heldBack > 0, planID == nil, !autoApprove, isatty(STDIN_FILENO) != 0, round < 5 else {
                if failed { throw ExitCode(1) }
                return
            }
            say("\n\(heldBack) partition(s) planned after their upstreams would destroy something not shown before; their plan:\n")
        }
    }

    /// Runs `body`, and with --wait runs it again while another reconcile holds the server
    /// (409), until the wait is over.
    func waitingForOthers<T>(_ body: () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + (wait.flatMap(DurationText.parse) ?? .zero)
        var said = false
        while true {
            do { return try await body() } catch let error as ClientError {
                guard case .server(409, let message, _) = error, message.contains("another reconcile"), ContinuousClock.now < deadline else {
                    throw error
                }
                if !said {
                    say("waiting: \(message)")
                    said = true
                }
                try await Task.sleep(for: .seconds(2))
            } catch let failure as CommandFailure where failure.description.contains("another reconcile is in progress") {
                guard ContinuousClock.now < deadline else { throw failure }
                if !said {
                    say("waiting: \(failure.description)")
                    said = true
                }
                try await Task.sleep(for: .seconds(2))
            }
        }
    }

    /// One plan (unless --plan or --auto-approve), approval and apply. Returns whether anything
    /// failed, and how many partitions were held back for destroying what was not approved.
    func applyOnce(_ api: NclavAPIClient) async throws -> (failed: Bool, heldBack: Int) {
        var extra: [String: Any] = ["allow_delete_all": allowDeleteAll].merging(targets.body) { $1 }
        if let parallelism { extra["parallelism"] = parallelism }
        if let planID {
            extra["plan_id"] = planID
            extra["auto_approve"] = autoApprove
        } else if !autoApprove {
            switch try await approval(api, extra: extra) {
            case .nothingToDo:
                if let path = report.reportFile {
                    var empty = RunReport(command: "apply", started: Date())
                    empty.finish(at: Date(), started: Date())
                    try empty.write(to: path)
                }
                return (false, 0)
            case .plan(let id):
                extra["plan_id"] = id
                extra["targets"] = nil  // the plan carries them
            case .withoutPlan: break
            }
        }
        let body = try TreeBundle.body(directory: directory, serverPath: serverPath, extra: extra)
        var failed = false
        let start = Date()
        var runReport = RunReport(command: "apply", started: start)
        var reported = false
        let printer = follow ? FollowPrinter() : nil
        do {
            for try await event in api.apply(body) {
                switch event {
                case .progress(let line):
                    let stamp = String(format: "%6.1fs", Date().timeIntervalSince(start))
                    if json {
                        emit(event)
                    } else if let printer {
                        await printer.progress(line, stamp: "[\(stamp)]", api: api)
                    } else {
                        print(Style.line("[\(stamp)] \(line)"))
                    }
                case .report(let report):
                    if json { emit(event) }
                    runReport.reconcile_ids = [report.reconcileID]
                    runReport.outcomes = report.outcomes
                    runReport.enclaves = report.enclaves
                    runReport.errors = report.errors
                    runReport.finish(at: Date(), started: start)
                    reported = true
                case .error(let message):
                    if json { emit(event) }
                    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
                    runReport.errors.append(message)
                    failed = true
                }
            }
        } catch let error as ClientError {
            throw invalidTree(error, directory: directory, serverPath: serverPath)
        }
        // Every followed run's last lines come before the summary.
        await printer?.drain()
        if reported {
            // "No changes." only when nothing ran, nothing was created or torn down, nothing failed.
            if runReport.outcomes.isEmpty && runReport.enclaves.isEmpty && runReport.errors.isEmpty {
                say("No changes.")
            } else {
                say("")
                runReport.table().forEach { say($0) }
                for error in runReport.errors { FileHandle.standardError.write(Data("error: \(error)\n".utf8)) }
                let summary = runReport.summary
                let unchanged = summary.unchanged > 0 ? ", \(summary.unchanged) unchanged" : ""
                // The table lists enclave boundaries too; the partition counts below do not include them.
                if !runReport.enclaves.isEmpty {
                    let done = Dictionary(grouping: runReport.enclaves.filter { $0.result == "succeeded" }, by: \.operation)
                        .sorted { $0.key < $1.key }.map {
                            "\($0.value.count) \($0.key == "teardown" ? "torn down" : $0.key == "provision" ? "provisioned" : "updated")"
                        }
                    let failedEnclaves = runReport.enclaves.filter { $0.result == "failed" }.count
                    say("Enclaves: \((done + (failedEnclaves > 0 ? ["\(failedEnclaves) failed"] : [])).joined(separator: ", ")).")
                }
                say(
                    Style.line(
                        "Apply \(runReport.errors.isEmpty ? "complete" : "finished with errors"): \(summary.succeeded) succeeded, \(summary.failed) failed, \(summary.skipped) skipped\(unchanged) (partitions)."
                    ))
                failed = failed || !runReport.errors.isEmpty
            }
        }
        if let path = report.reportFile {
            runReport.finish(at: Date(), started: start)
            try runReport.write(to: path)
        }
        if json {
            runReport.finish(at: Date(), started: start)
            emit(RunReport.Line(report: runReport))
        }
        let heldBack = runReport.outcomes.filter { $0.result == "failed" && $0.reason?.hasPrefix(Self.heldBackPrefix) == true }.count
        return (failed, heldBack)
    }
}

public struct Iac: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        abstract: "IaC run history and logs of a partition.",
        subcommands: [Runs.self, Logs.self]
    )

    struct Runs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List a partition's IaC runs, newest first.",
            discussion: "Example:\n  nclav iac runs product-a-dev db")
        @OptionGroup var address: StateCommand.Address
        @OptionGroup var client: ClientOptions
        @Option(name: [.short, .long], help: "Output format: text or json.") var output: OutputFormat = .text

        func run() async throws {
            let key = try address.key()
            let api = try client.client()
            try await withClient {
                let fetched = try await api.runs(key)
                if output == .json { return printJSON(fetched.raw) }
                let runs = fetched.value.runs
                if runs.isEmpty { return print("no IaC runs for \(key)") }
                let formatter = ISO8601DateFormatter()
                table(
                    ["ID", "OPERATION", "STATUS", "STARTED", "DURATION", "EXIT"],
                    runs.map { run in
                        [
                            run.id.uuidString, run.operation.rawValue, run.status.rawValue, formatter.string(from: run.startedAt),
                            run.finishedAt.map { String(format: "%.1fs", $0.timeIntervalSince(run.startedAt)) } ?? "running",
                            run.exitCode.map(String.init) ?? "-",
                        ]
                    }
                ).forEach { print($0) }
            }
        }
    }

    struct Logs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the combined log of a run (without a run id, the last apply or teardown).",
            discussion: """
                Without a run id the log shown is the partition's last apply or teardown, not a
                drift check's or a plan's that ran after it (the newest run, when the partition
                has only those); which run is shown is said on stderr. On a terminal terraform's
                lines are coloured as terraform colours them.

                Examples:
                  nclav iac logs product-a-dev db
                  nclav iac logs product-a-dev db 3f6d9e1a-c4b2-4d91-a8f0-123456789abc
                """)
        @OptionGroup var address: StateCommand.Address
        @Argument(help: "A run id from `nclav iac runs`.") var runID: String?
        @Flag(help: "Keep printing lines as terraform writes them, until the run ends.") var follow = false
        @Option(name: [.short, .long], help: "Output format: text, or json (the run with its log; with --follow, NDJSON chunks).")
        var output: OutputFormat = .text
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let key = try address.key()
            if let runID, UUID(uuidString: runID) == nil { throw ValidationError("`\(runID)` is not a run id (a UUID)") }
            let api = try client.client()
            try await withClient {
                var shown = runID
                if shown == nil { shown = try await lastApplyOrTeardown(api, key) }
                let fetched = try await api.run(key, id: shown)
                let run = fetched.value
                if runID == nil {
                    let started = ISO8601DateFormatter().string(from: run.startedAt)
                    FileHandle.standardError.write(
                        Data(
                            "showing run \(run.id.uuidString) (\(run.operation.rawValue), \(run.status.rawValue), started \(started)); `nclav iac runs \(key.enclave) \(key.partition)` lists every run\n"
                                .utf8))
                }
                if output == .json && !follow { return printJSON(fetched.raw) }
                guard follow else { return printLog(run.log) }
                var offset = 0
                while true {
                    let chunk = try await api.logChunk(key, run: run.id.uuidString, offset: offset)
                    if output == .json {
                        print(Wire.line(chunk), terminator: "")
                        if chunk.complete { return }
                        offset = chunk.nextOffset
                        try await Task.sleep(for: .milliseconds(300))
                        continue
                    }
                    if !chunk.text.isEmpty { printLog(chunk.text) }
                    offset = chunk.nextOffset
                    if chunk.complete {
                        print("== run \(chunk.status)")
                        return
                    }
                    try await Task.sleep(for: .milliseconds(300))
                }
            }
        }

        /// The id of the newest provision, update or teardown; nil (the newest run) when there is none.
        func lastApplyOrTeardown(_ api: NclavAPIClient, _ key: StateKey) async throws -> String? {
            try await api.runs(key).value.runs.first { $0.operation != .plan }?.id.uuidString
        }

        func printLog(_ text: String) {
            guard Style.enabled else { return FileHandle.standardOutput.write(Data(text.utf8)) }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            let coloured = lines.enumerated().map { index, line in
                index == lines.count - 1 ? String(line) : Style.terraform(String(line))
            }
            FileHandle.standardOutput.write(Data(coloured.joined(separator: "\n").utf8))
        }
    }
}
