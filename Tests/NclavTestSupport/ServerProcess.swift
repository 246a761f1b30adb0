import Foundation

extension TestSupport {
    /// Runs a program on its own thread and awaits it, so a long child (terraform) never
    /// blocks one of the few cooperative threads the test runner shares.
    public static func runDetached(
        _ executable: String, _ arguments: [String], in directory: URL? = nil,
        environment: [String: String]? = nil
    ) async throws -> ProcessResult {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do { continuation.resume(returning: try run(executable, arguments, in: directory, environment: environment)) } catch {
                    continuation.resume(throwing: error)
                }
            }
            thread.start()
        }
    }
}

extension ServerProcess {
    /// `count` replicas of a hosted deployment: one PostgreSQL database and one admin token,
    /// each with its own NCLAV_HOME. Returns them and how to remove their homes.
    public static func startReplicas(_ count: Int, database: String, arguments: [String] = []) async throws -> ([ServerProcess], () -> Void) {
        let token = String((0..<4).map { _ in UUID().uuidString.replacingOccurrences(of: "-", with: "") }.joined().prefix(64))
        var servers: [ServerProcess] = []
        var homes: [URL] = []
        for _ in 0..<count {
            let (server, home) = try await startReplica(database: database, token: token, arguments: arguments)
            servers.append(server)
            homes.append(home)
        }
        return (servers, { for home in homes { try? FileManager.default.removeItem(at: home) } })
    }

    /// One more replica of a deployment (`token` is its admin token, shared by all replicas);
    /// returns it and its home, for the caller to remove.
    public static func startReplica(database: String, token: String, arguments: [String] = []) async throws -> (ServerProcess, URL) {
        let home = try TestSupport.makeScratchDirectory("nclav-replica")
        try Data(token.utf8).write(to: home.appendingPathComponent("token"))
        chmod(home.appendingPathComponent("token").path, 0o600)
        return (try await start(home: home, arguments: arguments, environment: ["NCLAV_POSTGRES_URL": database]), home)
    }
}

/// A real `nclav serve` child process on a free loopback port, with its own NCLAV_HOME.
public final class ServerProcess: @unchecked Sendable {
    // Immutable after `start`, except `process`, which only the owning test touches.
    public let home: URL
    public let port: Int
    public let process: Process
    private let stdoutURL: URL
    private let stderrURL: URL

    public var baseURL: String { "http://127.0.0.1:\(port)" }

    public struct StartFailure: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    private init(home: URL, port: Int, process: Process, stdoutURL: URL, stderrURL: URL) {
        self.home = home
        self.port = port
        self.process = process
        self.stdoutURL = stdoutURL
        self.stderrURL = stderrURL
    }

    /// Starts `nclav serve --port 0 <arguments>` and waits until it says where it listens.
    public static func start(home: URL, arguments: [String] = [], environment extra: [String: String] = [:]) async throws -> ServerProcess {
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let logs = try TestSupport.makeScratchDirectory("nclav-serve-logs")
        let stdoutURL = logs.appendingPathComponent("stdout")
        let stderrURL = logs.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        let process = Process()
        process.executableURL = TestSupport.nclavBinary
        process.arguments = ["serve", "--port", "0"] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["NCLAV_HOME"] = home.path
        environment["NCLAV_TOKEN"] = nil
        for (name, value) in extra { environment[name] = value }
        process.environment = environment
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let output = (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? ""
            if let range = output.range(of: #"listening on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                let port = Int(output[range].split(separator: ":").last ?? "") ?? 0
                return ServerProcess(home: home, port: port, process: process, stdoutURL: stdoutURL, stderrURL: stderrURL)
            }
            if !process.isRunning {
                let errors = (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? ""
                throw StartFailure(description: "nclav serve exited with \(process.terminationStatus) before listening: \(errors)")
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        process.terminate()
        throw StartFailure(description: "nclav serve did not start listening within 60 s")
    }

    public var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

    /// The admin token the server uses (from its token file).
    public var token: String {
        ((try? String(contentsOf: home.appendingPathComponent("token"), encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Sends `signal` and waits for the process to exit; returns its exit status.
    @discardableResult
    public func stop(_ signal: Int32 = SIGTERM) async -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}
