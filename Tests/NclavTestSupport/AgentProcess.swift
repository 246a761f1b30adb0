import Foundation

/// A real `nclav agent` child process.
public final class AgentProcess: @unchecked Sendable {
    // Immutable after `start`.
    public let process: Process
    public let workDirectory: URL
    private let stderrURL: URL

    private init(process: Process, workDirectory: URL, stderrURL: URL) {
        self.process = process
        self.workDirectory = workDirectory
        self.stderrURL = stderrURL
    }

    /// Starts `nclav agent --remote <url> --token <token> <arguments>` with its own work directory.
    public static func start(remote: String, token: String, arguments: [String] = []) throws -> AgentProcess {
        let work = try TestSupport.makeScratchDirectory("nclav-agent")
        let stderrURL = work.appendingPathComponent("agent.log")
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        let process = Process()
        process.executableURL = TestSupport.nclavBinary
        process.arguments = ["agent", "--remote", remote, "--token", token, "--work-dir", work.appendingPathComponent("work").path] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["NCLAV_TOKEN"] = nil
        environment["NCLAV_HOME"] = work.path
        process.environment = environment
        process.standardOutput = try FileHandle(forWritingTo: stderrURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return AgentProcess(process: process, workDirectory: work, stderrURL: stderrURL)
    }

    public var pid: Int32 { process.processIdentifier }
    public var log: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    /// The machine the agent runs on dies: SIGKILL to the agent and to every process it started
    /// (terraform runs in a session of its own, so a signal to the agent alone would leave it).
    public func killMachine() {
        for pid in Self.descendants(of: pid) + [pid] { kill(pid, SIGKILL) }
    }

    /// Sends `signal` and waits (up to 60 s) for the agent to exit; returns its status.
    @discardableResult
    public func stop(_ signal: Int32 = SIGTERM) async -> Int32 {
        if process.isRunning { kill(pid, signal) }
        let deadline = Date().addingTimeInterval(60)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { killMachine() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    static func descendants(of root: Int32) -> [Int32] {
        var parents: [Int32: [Int32]] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 2, let parent = Int32(fields[1]) { parents[parent, default: []].append(pid) }
        }
        var found: [Int32] = []
        var queue = [root]
        while let next = queue.popLast() {
            for child in parents[next] ?? [] {
                found.append(child)
                queue.append(child)
            }
        }
        return found
    }

    deinit {
        if process.isRunning { killMachine() }
        try? FileManager.default.removeItem(at: workDirectory)
    }
}
