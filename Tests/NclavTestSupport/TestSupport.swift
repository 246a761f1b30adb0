import Foundation

/// Paths and helpers shared by the test targets: where the fixtures are, scratch
/// directories, and running real processes (the built `nclav`, `terraform`).
public enum TestSupport {
    /// The repository root, found from this file's location.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    public static let fixtures = packageRoot.appendingPathComponent("Tests/Fixtures")

    public static func fixture(_ relative: String) -> URL { fixtures.appendingPathComponent(relative) }

    /// The directory holding the test binary, where SwiftPM also puts the `nclav` executable.
    public static var productsDirectory: URL {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var directory = executable.deletingLastPathComponent()
        // On Linux the test bundle is a plain executable inside `<config>/`; on macOS it
        // sits inside `<name>.xctest/Contents/MacOS`.
        while directory.path.contains(".xctest") { directory = directory.deletingLastPathComponent() }
        return directory
    }

    public static var nclavBinary: URL { productsDirectory.appendingPathComponent("nclav") }

    /// A fresh directory under the system temp directory; the caller removes it.
    public static func makeScratchDirectory(_ label: String = "nclav-test") throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Copies a fixture tree somewhere writable (tests that run terraform write into it).
    public static func copyFixture(_ relative: String, into directory: URL) throws -> URL {
        let target = directory.appendingPathComponent(URL(fileURLWithPath: relative).lastPathComponent)
        try FileManager.default.copyItem(at: fixture(relative), to: target)
        return target
    }

    public struct ProcessResult: Sendable {
        public let exitCode: Int32
        public let stdout: String
        public let stderr: String
        public var stdoutLines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty } }
    }

    /// Runs a program to completion. Output goes through files, not pipes, so a chatty
    /// child can never block on a full pipe buffer.
    public static func run(
        _ executable: String, _ arguments: [String], in directory: URL? = nil,
        environment: [String: String]? = nil
    ) throws -> ProcessResult {
        let scratch = try makeScratchDirectory("nclav-run")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let outURL = scratch.appendingPathComponent("stdout")
        let errURL = scratch.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable.contains("/") ? executable : try which(executable))
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        if let environment { process.environment = environment }
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return ProcessResult(
            exitCode: process.terminationStatus,
            stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }

    public struct MissingProgram: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "`\(name)` is not on PATH; run `make setup` (scripts/setup.sh) first" }
    }

    /// The absolute path of `name` on PATH.
    public static func which(_ name: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw MissingProgram(name: name)
    }
}
