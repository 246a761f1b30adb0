import AsyncHTTPClient
import Foundation
import NIOCore
import NclavTestSupport
import Testing

/// Reads Server-Sent Events from a live response until `stop` says so.
func readEvents(
    _ url: String, token: String, lastEventID: String?, stop: ([(id: String?, event: String, data: String)]) async throws -> Bool
)
    async throws -> [(id: String?, event: String, data: String)]
{
    var request = HTTPClientRequest(url: url)
    request.headers.add(name: "Authorization", value: "Bearer \(token)")
    if let lastEventID { request.headers.add(name: "Last-Event-ID", value: lastEventID) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
    #expect(response.headers.first(name: "Content-Type") == "text/event-stream")
    var events: [(id: String?, event: String, data: String)] = []
    var buffer = ""
    for try await chunk in response.body {
        buffer += String(buffer: chunk)
        while let range = buffer.range(of: "\n\n") {
            let block = buffer[..<range.lowerBound]
            buffer.removeSubrange(..<range.upperBound)
            var id: String?, event = "message", data = ""
            for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix("id: ") { id = String(line.dropFirst(4)) }
                if line.hasPrefix("event: ") { event = String(line.dropFirst(7)) }
                if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
            }
            events.append((id, event, data))
            if try await stop(events) { return events }
        }
    }
    return events
}

@Suite("Live run logs (real terraform)", .serialized)
struct LiveLogTests {
    func tickerTree() throws -> (URL, () -> Void) {
        let scratch = try TestSupport.makeScratchDirectory("nclav-ticker")
        let partition = scratch.appendingPathComponent("tree/app/ticker")
        try FileManager.default.createDirectory(at: partition, withIntermediateDirectories: true)
        try "id: app\nname: App\ncloud: local\n".write(to: scratch.appendingPathComponent("tree/app/config.yml"), atomically: true, encoding: .utf8)
        try "id: ticker\nname: Ticker\n".write(to: partition.appendingPathComponent("config.yml"), atomically: true, encoding: .utf8)
        try """
        resource "terraform_data" "ticker" {
          provisioner "local-exec" {
            command = "for i in 1 2 3 4; do echo tick-$i; sleep 2; done"
          }
        }
        """.write(to: partition.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        return (scratch.appendingPathComponent("tree"), { try? FileManager.default.removeItem(at: scratch) })
    }

    @Test("SSE: lines arrive while the run runs; a reconnect with Last-Event-ID continues without gap or repeat; then the end event")
    func sse() async throws {
        let (tree, cleanup) = try tickerTree()
        defer { cleanup() }
        try await withServer { server async throws in
            let auth = Auth.bearer(server.token)
            async let apply = nclavCLI(["apply", tree.path, "--auto-approve"], server: server)
            var runID = ""
            for _ in 0..<200 where runID.isEmpty {
                let latest = try await http(.GET, server.baseURL + "/enclaves/app/partitions/ticker/iac/runs/latest", auth: auth)
                if latest.status == 200, let id = (try latest.json())["id"] as? String { runID = id }
                try await Task.sleep(for: .milliseconds(50))
            }
            let url = server.baseURL + "/enclaves/app/partitions/ticker/iac/runs/\(runID)/stream"

            var statusAtFirstTick = ""
            let first = try await readEvents(url, token: server.token, lastEventID: nil) { events in
                guard events.contains(where: { $0.data.contains("(local-exec): tick-1") }) else { return false }
                statusAtFirstTick =
                    (try await http(.GET, server.baseURL + "/enclaves/app/partitions/ticker/iac/runs/\(runID)", auth: auth).json())["status"]
                    as? String ?? ""
                return true
            }
            #expect(statusAtFirstTick == "running", "the first line arrived before the run ended")
            let resumeFrom = try #require(first.last?.id)

            let second = try await readEvents(url, token: server.token, lastEventID: resumeFrom) { events in events.last?.event == "end" }
            #expect(second.last?.event == "end")
            #expect(second.last?.data == #"{"status":"succeeded","exit_code":0}"#)
            #expect(try await apply.exitCode == 0)

            let log =
                (try await http(.GET, server.baseURL + "/enclaves/app/partitions/ticker/iac/runs/\(runID)", auth: auth).json())["log"] as? String
                ?? ""
            let streamed = (first + second).filter { $0.event == "line" }.map(\.data)
            let expected = log.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).dropLast()
            #expect(streamed == Array(expected), "no gap and no repeat across the reconnect")
            #expect(streamed.filter { $0.contains("(local-exec): tick-") }.count == 4)

            // Polling clients rebuild the same log from offsets.
            var offset = 0, rebuilt = "", complete = false
            while !complete {
                let chunk = try await http(
                    .GET, server.baseURL + "/enclaves/app/partitions/ticker/iac/runs/\(runID)/log?offset=\(offset)", auth: auth
                ).json()
                rebuilt += chunk["text"] as? String ?? ""
                offset = chunk["next_offset"] as? Int ?? offset
                complete = chunk["complete"] as? Bool ?? true
            }
            #expect(rebuilt == log)
            let followed = try await nclavCLI(["iac", "logs", "app", "ticker", "--follow"], server: server)
            #expect(followed.stdout == log + "== run succeeded\n")
        }
    }

    @Test("apply --follow prints each running partition's terraform lines, prefixed, in order, before the summary")
    func applyFollow() async throws {
        let (tree, cleanup) = try tickerTree()
        defer { cleanup() }
        try await withServer { server async throws in
            let result = try await nclavCLI(["apply", tree.path, "--auto-approve", "--follow"], server: server)
            #expect(result.exitCode == 0, "\(result.stderr)")
            let lines = result.stdoutLines
            let ticks = lines.filter { $0.hasPrefix("app/ticker | ") && $0.range(of: #"tick-\d"#, options: .regularExpression) != nil }
            #expect(ticks.count == 4, "\(result.stdout)")
            #expect(ticks.map { $0.components(separatedBy: "tick-").last!.prefix(1) } == ["1", "2", "3", "4"])
            #expect(lines.contains { $0.hasPrefix("app/ticker | == terraform init") && $0.contains("[app/ticker]") })
            #expect(lines.contains { $0.hasPrefix("app/ticker | Apply complete! Resources: 1 added") })
            let summary = try #require(lines.firstIndex { $0.hasPrefix("Apply complete:") })
            let lastTick = try #require(lines.lastIndex { $0.contains("tick-4") })
            #expect(lastTick < summary, "the run's lines come before the summary")
            #expect(!result.stdout.contains("\u{1B}["), "not a terminal: plain lines, no live status")
        }
    }

    @Test("apply --follow on a terminal keeps a live status line of what is running")
    func applyFollowTerminal() async throws {
        let (tree, cleanup) = try tickerTree()
        defer { cleanup() }
        let script = try TestSupport.which("script")
        try await withServer { server async throws in
            // util-linux `script` gives the CLI a real pseudo-terminal.
            let command = "'\(TestSupport.nclavBinary.path)' apply '\(tree.path)' --follow --auto-approve"
            var environment = ProcessInfo.processInfo.environment
            environment["NCLAV_HOME"] = server.home.path
            environment["NCLAV_URL"] = server.baseURL
            environment["NCLAV_TOKEN"] = nil
            let result = try await TestSupport.runDetached(script, ["-qec", command, "/dev/null"], environment: environment)
            #expect(result.exitCode == 0, "\(result.stdout)\(result.stderr)")
            #expect(result.stdout.contains("\u{1B}[K") && result.stdout.contains("running: app/ticker ("), "a status line is drawn and redrawn")
            #expect(result.stdout.contains("app/ticker | terraform_data.ticker (local-exec): tick-4"))
            #expect(result.stdout.contains("Apply complete: 1 succeeded, 0 failed, 0 skipped (partitions)."))
        }
    }

    /// `app/quick` prints three lines and succeeds; `app/broken` prints two and fails.
    func quickAndBrokenTree() throws -> (URL, () -> Void) {
        let scratch = try TestSupport.makeScratchDirectory("nclav-follow")
        let tree = scratch.appendingPathComponent("tree")
        try FileManager.default.createDirectory(at: tree.appendingPathComponent("app"), withIntermediateDirectories: true)
        try "id: app\nname: App\ncloud: local\n".write(to: tree.appendingPathComponent("app/config.yml"), atomically: true, encoding: .utf8)
        for (name, command) in [
            ("quick", "echo quick-1; echo quick-2; sleep 1; echo quick-3"), ("broken", "echo broken-1; sleep 1; echo broken-2; exit 3"),
        ] {
            let partition = tree.appendingPathComponent("app/\(name)")
            try FileManager.default.createDirectory(at: partition, withIntermediateDirectories: true)
            try "id: \(name)\nname: \(name)\n".write(to: partition.appendingPathComponent("config.yml"), atomically: true, encoding: .utf8)
            try """
            resource "terraform_data" "\(name)" {
              provisioner "local-exec" {
                command = "\(command)"
              }
            }
            """.write(to: partition.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        }
        return (tree, { try? FileManager.default.removeItem(at: scratch) })
    }

    @Test("apply --follow: a partition's end line comes after its last log line, and a failed partition leaves the status line")
    func followEndLines() async throws {
        let (tree, cleanup) = try quickAndBrokenTree()
        defer { cleanup() }
        try await withServer { server async throws in
            let result = try await nclavCLI(["apply", tree.path, "--auto-approve", "--follow", "--parallelism", "2"], server: server)
            #expect(result.exitCode == 1, "\(result.stdout)\(result.stderr)")
            let lines = result.stdoutLines
            for (partition, end) in [("app/quick", "✓ app/quick provision succeeded"), ("app/broken", "! app/broken provision failed")] {
                let endLine = try #require(lines.firstIndex { $0.contains(end) }, "\(result.stdout)")
                let lastLogLine = try #require(lines.lastIndex { $0.hasPrefix("\(partition) | ") })
                #expect(lastLogLine < endLine, "\(partition)'s log ends before its end line:\n\(result.stdout)")
                #expect(
                    lines[lastLogLine].hasPrefix("\(partition) | == apply failed")
                        || lines[lastLogLine].hasPrefix("\(partition) | == apply succeeded"))
            }

            // On a terminal the status line counts lines ("1 line", "2 lines") and drops a
            // partition once its end line is printed, failed or not.
            let script = try TestSupport.which("script")
            for name in ["quick", "broken"] {
                let file = tree.appendingPathComponent("app/\(name)/main.tf")
                try (String(contentsOf: file, encoding: .utf8) + "\n# edited\n").write(to: file, atomically: true, encoding: .utf8)
            }
            var environment = ProcessInfo.processInfo.environment
            environment["NCLAV_HOME"] = server.home.path
            environment["NCLAV_URL"] = server.baseURL
            environment["NCLAV_TOKEN"] = nil
            environment["NO_COLOR"] = nil
            let command = "'\(TestSupport.nclavBinary.path)' apply '\(tree.path)' --follow --auto-approve --parallelism 2"
            let terminal = try await TestSupport.runDetached(script, ["-qec", command, "/dev/null"], environment: environment)
            #expect(terminal.exitCode == 1, "\(terminal.stdout)")
            #expect(
                terminal.stdout.contains("app/broken (1 line)") && terminal.stdout.contains("app/broken (2 lines)"),
                "\(terminal.stdout.debugDescription)")
            #expect(terminal.stdout.range(of: #"\(1 lines\)"#, options: .regularExpression) == nil)
            let failedLine = try #require(terminal.stdout.range(of: "! app/broken provision failed"), "\(terminal.stdout.debugDescription)")
            #expect(!terminal.stdout[failedLine.upperBound...].contains("app/broken ("), "a failed partition is no longer shown as running")
            #expect(terminal.stdout.contains("\u{1B}[1m\u{1B}[32mApply complete! Resources"), "terraform's own colour for its lines")
        }
    }

    @Test("iac logs without a run id shows the last apply, not the drift check that ran after it, and says which run it shows")
    func logsDefaultToLastApply() async throws {
        let (tree, cleanup) = try quickAndBrokenTree()
        defer { cleanup() }
        try FileManager.default.removeItem(at: tree.appendingPathComponent("app/broken"))
        try await withServer { server async throws in
            #expect(try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server).exitCode == 0)
            let applyRun = try #require(
                try await http(.GET, server.baseURL + "/enclaves/app/partitions/quick/iac/runs/latest", auth: .bearer(server.token)).json()["id"]
                    as? String)
            #expect(try await nclavCLI(["drift"], server: server).exitCode == 0)
            let logs = try await nclavCLI(["iac", "logs", "app", "quick"], server: server)
            #expect(logs.exitCode == 0)
            #expect(logs.stdout.contains("Apply complete! Resources: 1 added") && logs.stdout.contains("quick-3"), "\(logs.stdout)")
            #expect(logs.stderr.hasPrefix("showing run \(applyRun) (provision, succeeded, started "), "\(logs.stderr)")
            let runs = try await nclavCLI(["iac", "runs", "app", "quick"], server: server)
            #expect(runs.stdoutLines.dropFirst().first?.contains(" plan ") == true, "the drift check is the newest run:\n\(runs.stdout)")
            // Durations are computed from the run's times, which keep their milliseconds.
            let json = try await nclavCLI(["iac", "runs", "app", "quick", "-o", "json"], server: server)
            #expect(
                json.stdout.range(of: #""started_at" : "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z""#, options: .regularExpression) != nil,
                "\(json.stdout)")
        }
    }
}
