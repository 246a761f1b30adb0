import Foundation
import IacRunner
import NclavTestSupport
import Testing

/// Collects lines with the time each arrived.
actor LineLog {
    private(set) var lines: [(text: String, at: ContinuousClock.Instant)] = []
    func append(_ line: String) { lines.append((line, .now)) }
    var texts: [String] { lines.map(\.text) }
}

func shell(_ script: String) -> ProcessSpec {
    ProcessSpec(executable: "/bin/sh", arguments: ["-c", script], environment: ["PATH": "/usr/bin:/bin"], workingDirectory: "/tmp")
}

/// True while a process with this id exists (and is not a zombie we could ignore).
func isAlive(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 else { return false }
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    return !status.contains("State:\tZ")
}

@Suite("Process runner (swift-subprocess)")
struct ProcessRunnerTests {
    let runner = SubprocessRunner()

    @Test("stdout and stderr arrive merged, line by line, while the process runs")
    func streamsLines() async throws {
        // The script only continues once the test has *received* its first line, so it can
        // finish only if output streams while it runs; otherwise the 10 s timeout stops it.
        let flag = try TestSupport.makeScratchDirectory("nclav-stream").appendingPathComponent("received-first-line")
        let log = LineLog()
        let script = "echo one; while [ ! -f \(flag.path) ]; do sleep 0.02; done; echo two >&2; echo three"
        let result = try await runner.run(shell(script), policy: StopPolicy(timeout: .seconds(10), gracePeriod: .seconds(1))) { line in
            await log.append(line)
            if line == "one" { _ = FileManager.default.createFile(atPath: flag.path, contents: nil) }
        }
        #expect(!result.timedOut, "the first line did not arrive while the process was running")
        #expect(result.termination == .exited(0))
        #expect(await log.texts == ["one", "two", "three"], "stderr and stdout merged in arrival order")
    }

    @Test("a background process left behind does not hold the run open, and is stopped")
    func backgroundChild() async throws {
        let log = LineLog()
        let marker = try TestSupport.makeScratchDirectory("nclav-bg").appendingPathComponent("pid")
        let start = ContinuousClock.now
        let result = try await runner.run(shell("sleep 300 & echo $! > \(marker.path); echo started"), policy: StopPolicy()) { await log.append($0) }
        // A hang check, not a timing: held open, the run would last the sleep's 300 s.
        #expect(ContinuousClock.now - start < .seconds(60))
        #expect(result.termination == .exited(0))
        #expect(await log.texts == ["started"])
        let pid = Int32((try String(contentsOf: marker, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        try await Task.sleep(for: .milliseconds(100))
        #expect(pid > 0 && !isAlive(pid), "the leftover sleep was stopped with its group")
    }

    @Test("cancelling sends SIGINT to the process, which can shut down gracefully and be heard")
    func cancelSendsInterrupt() async throws {
        let log = LineLog()
        let task = Task {
            try await runner.run(
                shell("trap 'echo interrupted; exit 130' INT; echo ready; while true; do sleep 0.05; done"),
                policy: StopPolicy(timeout: .seconds(120), gracePeriod: .seconds(60))
            ) { await log.append($0) }
        }
        while await log.texts.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        let start = ContinuousClock.now
        task.cancel()
        let result = try await task.value
        // Bounds that survive a loaded CI machine: the SIGKILL would come only after 60 s.
        #expect(ContinuousClock.now - start < .seconds(30), "stopped by SIGINT, not by the SIGKILL after the grace period")
        #expect(result.cancelled)
        #expect(result.termination == .exited(130))
        #expect(await log.texts == ["ready", "interrupted"])
    }

    @Test("a timeout stops the whole process group, with SIGKILL for what ignores SIGINT")
    func timeoutKillsGroup() async throws {
        let marker = try TestSupport.makeScratchDirectory("nclav-timeout").appendingPathComponent("pid")
        let start = ContinuousClock.now
        let result = try await runner.run(
            shell("trap '' INT; sleep 300 & echo $! > \(marker.path); wait"),
            policy: StopPolicy(timeout: .milliseconds(500), gracePeriod: .milliseconds(500))
        ) { _ in }
        let elapsed = ContinuousClock.now - start
        #expect(result.timedOut)
        #expect(result.termination == .signalled(SIGKILL))
        // At least timeout + grace; far less than the 300 s sleep it stopped (a hang check, not a timing).
        #expect(elapsed >= .milliseconds(900) && elapsed < .seconds(60))
        let pid = Int32((try String(contentsOf: marker, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        try await Task.sleep(for: .milliseconds(100))
        #expect(pid > 0 && !isAlive(pid), "the child in the group was killed too")
    }

    @Test("exit codes are reported, and a missing program is a clear error")
    func exitCodesAndMissing() async throws {
        #expect(try await runner.run(shell("exit 3"), policy: StopPolicy()) { _ in }.termination == .exited(3))
        var missing = shell("")
        missing.executable = "/nonexistent/terraform"
        await #expect(throws: ProcessRunnerError.self) { try await runner.run(missing, policy: StopPolicy()) { _ in } }
    }

    @Test("a very long line and many lines arrive intact")
    func volume() async throws {
        let log = LineLog()
        let result = try await runner.run(shell("head -c 300000 /dev/zero | tr '\\\\0' x; echo; seq 1 20000"), policy: StopPolicy()) {
            await log.append($0)
        }
        #expect(result.succeeded)
        let texts = await log.texts
        #expect(texts.count == 20001)
        #expect(texts.first?.count == 300_000)
        #expect(texts.last == "20000")
    }
}
