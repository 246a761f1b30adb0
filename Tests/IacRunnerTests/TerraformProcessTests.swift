import Foundation
import IacRunner
import NclavTestSupport
import Testing

/// The runner's promises, checked against the real terraform binary.
@Suite("Process runner with real terraform", .serialized)
struct TerraformProcessTests {
    let runner = SubprocessRunner()

    func workspace(_ main: String) throws -> URL {
        let directory = try TestSupport.makeScratchDirectory("nclav-runner-tf")
        try main.write(to: directory.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        return directory
    }

    func terraform(_ arguments: [String], in directory: URL) throws -> ProcessSpec {
        var environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin",
            "HOME": NSTemporaryDirectory(), "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1",
        ]
        environment["TF_CLI_CONFIG_FILE"] = ProcessInfo.processInfo.environment["TF_CLI_CONFIG_FILE"]
        return ProcessSpec(
            executable: try TestSupport.which("terraform"), arguments: arguments, environment: environment,
            workingDirectory: directory.path)
    }

    @Test("cancelling a running apply interrupts terraform, which stops gracefully")
    func interruptApply() async throws {
        let directory = try workspace(
            """
            resource "terraform_data" "slow" {
              provisioner "local-exec" {
                command = "echo provisioning-started; sleep 60"
              }
            }
            """)
        defer { try? FileManager.default.removeItem(at: directory) }
        let initResult = try await runner.run(try terraform(["init", "-input=false", "-no-color"], in: directory), policy: StopPolicy()) { _ in }
        #expect(initResult.succeeded)

        let log = LineLog()
        let apply = try terraform(["apply", "-auto-approve", "-input=false", "-no-color"], in: directory)
        let task = Task {
            try await runner.run(apply, policy: StopPolicy(timeout: .seconds(120), gracePeriod: .seconds(30))) { await log.append($0) }
        }
        while !(await log.texts.contains { $0.contains("provisioning-started") }) { try await Task.sleep(for: .milliseconds(50)) }
        let start = ContinuousClock.now
        task.cancel()
        let result = try await task.value
        #expect(ContinuousClock.now - start < .seconds(20), "terraform stopped on SIGINT, before the SIGKILL")
        #expect(result.cancelled)
        #expect(result.exitCode != nil && result.exitCode != 0)
        let texts = await log.texts.joined(separator: "\n")
        #expect(texts.contains("Interrupt received"), "terraform saw the SIGINT:\n\(texts)")
    }

    @Test("a local-exec that leaves a background process does not hang the run")
    func backgroundProvisioner() async throws {
        let directory = try workspace(
            """
            resource "terraform_data" "daemon" {
              provisioner "local-exec" {
                command = "sleep 300 > /dev/null 2>&1 & echo $! > background.pid; echo daemon-started"
              }
            }
            output "done" { value = "yes" }
            """)
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try await runner.run(try terraform(["init", "-input=false", "-no-color"], in: directory), policy: StopPolicy()) { _ in }
        let log = LineLog()
        let start = ContinuousClock.now
        let result = try await runner.run(
            try terraform(["apply", "-auto-approve", "-input=false", "-no-color"], in: directory),
            policy: StopPolicy()
        ) { await log.append($0) }
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(result.succeeded)
        #expect(await log.texts.contains { $0.contains("Apply complete!") })
        let pid =
            Int32(
                (try String(contentsOf: directory.appendingPathComponent("background.pid"), encoding: .utf8))
                    .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        try await Task.sleep(for: .milliseconds(100))
        #expect(pid > 0 && !isAlive(pid), "the provisioner's leftover process was stopped with the run's process group")
    }
}
