import Foundation
import Subprocess
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `ProcessRunner` on swift-subprocess.
///
/// Why not `Foundation.Process` (the original design): on Linux it (1) lets a child inherit
/// the spawning thread's blocked signal mask, so the SIGINT that asks terraform to stop can be
/// ignored, and (2) detects exit through a descriptor the child's children inherit, so a
/// `local-exec` that leaves `sleep 300 &` behind delays "terraform exited" by 300 s. Both
/// reproduced here on Swift 6.3.1 (`docs/architecture.md`, "Running terraform"). swift-subprocess spawns
/// with a clean signal mask, watches exit through a pidfd, merges stderr into stdout with a
/// real `2>&1`, and can start the child in a new session so the whole process tree is one
/// group that signals reach.
public struct SubprocessRunner: ProcessRunner {
    public init() {}

    public func run(_ spec: ProcessSpec, policy: StopPolicy, onLine: @escaping @Sendable (String) async -> Void) async throws -> ProcessRunResult {
        var options = PlatformOptions()
        // A new session: the child leads its own process group, so one kill(-pgid) reaches
        // terraform, its provider plugins and anything a provisioner started.
        options.createSession = true
        // If the body ever throws, swift-subprocess tears down the same way we do.
        options.teardownSequence = [.send(signal: .interrupt, toProcessGroup: true, allowedDurationToNextStep: policy.gracePeriod)]

        let flags = StopFlags()
        let outcome: ExecutionResult<Void, SequenceOutput, CombinedErrorOutput>
        do {
            outcome = try await Subprocess.run(
                .path(FilePath(spec.executable)),
                arguments: Arguments(spec.arguments),
                environment: .custom(Dictionary(uniqueKeysWithValues: spec.environment.map { (Environment.Key(rawValue: $0.key)!, $0.value) })),
                workingDirectory: FilePath(spec.workingDirectory),
                platformOptions: options,
                input: .none,
                output: .sequence,
                error: .combinedWithOutput
            ) { execution in
                let group = ProcessGroup(leader: execution.processIdentifier.value)
                // The output loop runs in its own task so cancelling the caller never cuts the
                // log short: what terraform prints while shutting down still arrives.
                let reader = Task {
                    for try await line in execution.standardOutput.strings(bufferingPolicy: .unbounded) {
                        await onLine(line)
                    }
                }
                let watchdog = Task {
                    try await Task.sleep(for: policy.timeout)
                    await flags.markTimedOut()
                    await group.stop(gracePeriod: policy.gracePeriod)
                }
                await withTaskCancellationHandler {
                    _ = await reader.result
                } onCancel: {
                    Task {
                        await flags.markCancelled()
                        await group.stop(gracePeriod: policy.gracePeriod)
                    }
                }
                watchdog.cancel()
                // Anything a provisioner left running in the background would outlive the run:
                // once terraform itself has exited, stop what remains of its group.
                group.stopLeftoversIfLeaderExited()
                group.finish()
            }
        } catch let error as SubprocessError {
            throw ProcessRunnerError.cannotStart(executable: spec.executable, reason: "\(error)")
        }
        let termination: ProcessRunResult.Termination
        switch outcome.terminationStatus {
        case .exited(let code): termination = .exited(code)
        case .signaled(let signal): termination = .signalled(signal)
        }
        return ProcessRunResult(termination: termination, timedOut: await flags.timedOut, cancelled: await flags.cancelled)
    }
}

/// Why the runner stopped a process, if it did.
private actor StopFlags {
    var timedOut = false
    var cancelled = false
    func markTimedOut() { timedOut = true }
    func markCancelled() { cancelled = true }
}

/// The child's process group while it is known to be ours. After the leader has been reaped
/// its id may be reused, so signals are sent only until `finish()`.
private final class ProcessGroup: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = NSLock()
    private var active = true
    private var stopping = false
    let leader: pid_t

    init(leader: pid_t) { self.leader = leader }

    func finish() { lock.withLock { active = false } }

    private func signal(_ number: Int32) {
        lock.withLock {
            if active { _ = kill(-leader, number) }
        }
    }

    /// The leader is not reaped until the runner's body returns, so while it is a zombie its
    /// process group id cannot have been reused.
    func stopLeftoversIfLeaderExited() {
        let status = (try? String(contentsOfFile: "/proc/\(leader)/stat", encoding: .utf8)) ?? ""
        // Field 3 of /proc/<pid>/stat is the state; `Z` is a zombie (exited, not yet reaped).
        guard let close = status.lastIndex(of: ")"), status[status.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z") else {
            return
        }
        signal(SIGKILL)
    }

    /// One SIGINT to the group, then SIGKILL after the grace period if anything is left.
    func stop(gracePeriod: Duration) async {
        let first = lock.withLock { () -> Bool in
            defer { stopping = true }
            return !stopping
        }
        guard first else { return }
        signal(SIGINT)
        try? await Task.sleep(for: gracePeriod)
        signal(SIGKILL)
    }
}
