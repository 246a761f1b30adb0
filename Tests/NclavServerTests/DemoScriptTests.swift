import Foundation
import NclavTestSupport
import Testing

/// `scripts/demo.sh`, the last step of `make setup`: it applies examples/local through a real
/// server and ends with hints a new user copies, from whatever directory they are in.
@Suite("make setup's demo (real terraform)", .serialized)
struct DemoScriptTests {
    @Test("the demo applies examples/local, and the commands it prints work from another directory")
    func hintsWorkFromAnywhere() async throws {
        let scratch = try TestSupport.makeScratchDirectory("nclav-demo")
        let home = scratch.appendingPathComponent("home")
        defer {
            // Whatever happened, the demo's server does not outlive the test.
            if let pid = try? String(contentsOf: home.appendingPathComponent("serve.pid"), encoding: .utf8),
                let number = Int32(pid.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                kill(number, SIGTERM)
            }
            try? FileManager.default.removeItem(at: scratch)
        }
        var environment = ProcessInfo.processInfo.environment
        environment["NCLAV_HOME"] = home.path
        environment["NCLAV_DEMO_PORT"] = String(try TestSupport.freePort())
        environment["NCLAV_URL"] = nil
        environment["NCLAV_TOKEN"] = nil
        let demo = try await TestSupport.runDetached(
            "/bin/bash", [TestSupport.packageRoot.appendingPathComponent("scripts/demo.sh").path], in: scratch, environment: environment)
        #expect(demo.exitCode == 0, "\(demo.stdout)\(demo.stderr)")
        #expect(demo.stdout.contains("Apply complete: 5 succeeded, 0 failed, 0 skipped (partitions)."), "\(demo.stdout)")

        let lines = demo.stdoutLines.map { $0.trimmingCharacters(in: .whitespaces) }
        let export = try #require(lines.first { $0.hasPrefix("export NCLAV_HOME=") }, "\(demo.stdout)")
        let status = try #require(lines.first { $0.hasSuffix(" status") && $0.hasPrefix("/") }, "the nclav path is absolute: \(demo.stdout)")
        let stop = try #require(lines.first { $0.hasPrefix("kill $(cat /") }, "\(demo.stdout)")

        // Pasted into a shell somewhere else, with none of the demo's environment.
        var clean = ProcessInfo.processInfo.environment
        for name in ["NCLAV_HOME", "NCLAV_URL", "NCLAV_TOKEN"] { clean[name] = nil }
        let elsewhere = try TestSupport.makeScratchDirectory("nclav-demo-elsewhere")
        defer { try? FileManager.default.removeItem(at: elsewhere) }
        let pasted = try await TestSupport.runDetached("/bin/sh", ["-c", "\(export)\n\(status)"], in: elsewhere, environment: clean)
        #expect(pasted.exitCode == 0, "\(pasted.stdout)\(pasted.stderr)")
        #expect(pasted.stdout.contains("enclaves:       3"), "the demo server, with the demo's three enclaves: \(pasted.stdout)")
        let stopped = try await TestSupport.runDetached("/bin/sh", ["-c", stop], in: elsewhere, environment: clean)
        #expect(stopped.exitCode == 0, "\(stopped.stderr)")
    }
}
