import Foundation

/// One program to run: an absolute executable path, its arguments, the complete environment
/// (nothing is inherited implicitly) and the directory to run in.
public struct ProcessSpec: Sendable, Equatable {
    public var executable: String
    public var arguments: [String]
    public var environment: [String: String]
    public var workingDirectory: String

    public init(executable: String, arguments: [String], environment: [String: String], workingDirectory: String) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
    }
}

/// How a run ended.
public struct ProcessRunResult: Sendable, Equatable {
    public enum Termination: Sendable, Equatable {
        case exited(Int32)
        case signalled(Int32)
        /// The runner stopped it (timeout or cancellation) and could not read its status.
        case stopped
    }

    public var termination: Termination
    /// The timeout elapsed and the runner stopped the process group.
    public var timedOut: Bool
    /// The caller's task was cancelled and the runner stopped the process group.
    public var cancelled: Bool

    public init(termination: Termination, timedOut: Bool = false, cancelled: Bool = false) {
        self.termination = termination
        self.timedOut = timedOut
        self.cancelled = cancelled
    }

    public var exitCode: Int32? {
        if case .exited(let code) = termination { return code }
        return nil
    }

    public var succeeded: Bool { termination == .exited(0) && !timedOut && !cancelled }
}

/// How long a process may run and how it is stopped.
///
/// Stopping follows terraform's own contract: one SIGINT to the whole process group (terraform
/// stops gracefully and writes its state; its provider plugins and `local-exec` children get
/// it too), then, after `gracePeriod`, SIGKILL to the group.
public struct StopPolicy: Sendable, Equatable {
    public var timeout: Duration
    public var gracePeriod: Duration

    public init(timeout: Duration = .seconds(30 * 60), gracePeriod: Duration = .seconds(60)) {
        self.timeout = timeout
        self.gracePeriod = gracePeriod
    }
}

public enum ProcessRunnerError: Error, Sendable, CustomStringConvertible, Equatable {
    case cannotStart(executable: String, reason: String)

    public var description: String {
        switch self {
        case .cannotStart(let executable, let reason): return "cannot start \(executable): \(reason)"
        }
    }
}

/// Spawns a program in its own process group and streams its merged stdout+stderr line by
/// line, in arrival order, while it runs. The seam between nclav and the operating system:
/// the IaC runner only sees this protocol.
public protocol ProcessRunner: Sendable {
    /// Runs `spec` to completion. `onLine` receives every output line (without its line
    /// break) as soon as it is printed. Cancelling the calling task stops the process group
    /// as `policy` describes; the method still returns once the process has ended.
    func run(_ spec: ProcessSpec, policy: StopPolicy, onLine: @escaping @Sendable (String) async -> Void) async throws -> ProcessRunResult
}
