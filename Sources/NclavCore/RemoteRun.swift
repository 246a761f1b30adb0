import Foundation

/// One terraform run handed to an agent: the rendered workspace's files and everything the
/// server would give terraform (the run-scoped backend credential, the cloud credentials of
/// the partition's identity), and nothing of the server's own (never the admin token).
public struct RemoteRun: Codable, Sendable, Equatable {
    public struct File: Codable, Sendable, Equatable {
        /// Relative to the workspace; never absolute, never `..`.
        public var path: String
        public var content: Data
        public init(path: String, content: Data) {
            self.path = path
            self.content = content
        }
    }

    public var enclave: String
    public var partition: String
    /// `apply`, `destroy` or `plan`.
    public var operation: String
    /// `terraform` or `tofu`, found on the agent's PATH.
    public var tool: String
    public var files: [File]
    public var credential: String
    public var driverEnvironment: [String: String]
    public var clearedPrefixes: [String]
    /// Values the agent redacts from every line it sends (the credential and the cloud secrets).
    public var secrets: [String]
    public var credentialsExpire: Date?
    public var planDestroy: Bool
    /// `plan` with `-out`: the plan file comes back in the outcome.
    public var savePlan: Bool
    /// Apply exactly this saved plan.
    public var planFile: Data?
    public var logPathRewrites: [String: String]
    public var timeoutSeconds: Double
    public var graceSeconds: Double

    public init(
        enclave: String, partition: String, operation: String, tool: String, files: [File], credential: String,
        driverEnvironment: [String: String], clearedPrefixes: [String], secrets: [String], credentialsExpire: Date?, planDestroy: Bool,
        savePlan: Bool, planFile: Data?, logPathRewrites: [String: String], timeoutSeconds: Double, graceSeconds: Double
    ) {
        self.enclave = enclave
        self.partition = partition
        self.operation = operation
        self.tool = tool
        self.files = files
        self.credential = credential
        self.driverEnvironment = driverEnvironment
        self.clearedPrefixes = clearedPrefixes
        self.secrets = secrets
        self.credentialsExpire = credentialsExpire
        self.planDestroy = planDestroy
        self.savePlan = savePlan
        self.planFile = planFile
        self.logPathRewrites = logPathRewrites
        self.timeoutSeconds = timeoutSeconds
        self.graceSeconds = graceSeconds
    }
}

/// How an agent's run of a `RemoteRun` ended.
public struct RemoteRunOutcome: Codable, Sendable, Equatable {
    /// The terraform command that ended the run (`init`, `apply`, …).
    public var lastCommand: String
    public var exitCode: Int32?
    public var signal: Int32?
    public var timedOut: Bool
    public var cancelled: Bool
    public var toolVersion: String?
    /// The saved plan's summary (a `PlanDocument` as JSON).
    public var plan: Data?
    /// The saved plan file itself.
    public var planFile: Data?
    /// Set when the agent could not run terraform at all (no tool, an unwritable directory).
    public var error: String?
    /// The `errored.tfstate` terraform wrote when it could not save its state to the server:
    /// the only record of what it created, so it comes back to be stored.
    public var erroredState: Data?

    public init(
        lastCommand: String, exitCode: Int32?, signal: Int32? = nil, timedOut: Bool = false, cancelled: Bool = false, toolVersion: String? = nil,
        plan: Data? = nil, planFile: Data? = nil, error: String? = nil
    ) {
        self.lastCommand = lastCommand
        self.exitCode = exitCode
        self.signal = signal
        self.timedOut = timedOut
        self.cancelled = cancelled
        self.toolVersion = toolVersion
        self.plan = plan
        self.planFile = planFile
        self.error = error
    }
}

/// A run waiting for, or held by, an agent. A run lost with its agent is tried once more as a
/// new job (`attempt` 2) with the same run id.
extension AgentJob {
    /// How a worker process names itself in jobs: `<host>-<pid>`, the host name cut to what
    /// the agent routes accept.
    public static func localInstance(pid: Int32) -> String {
        "\(ProcessInfo.processInfo.hostName.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." })-\(pid)"
    }
}

public struct AgentJob: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable, CaseIterable {
        /// Waiting for an agent.
        case queued
        /// An agent holds it under a lease it renews.
        case claimed
        /// The agent reported the outcome.
        case finished
        /// The lease ran out: the agent died or lost the network.
        case interrupted
        /// The reconcile stopped waiting (cancelled, or the server shut down).
        case cancelled
    }

    public var id: UUID
    public var runID: UUID
    public var enclave: String
    public var partition: String
    /// The agent pool (`agent_pool` of the enclave); nil for any agent.
    public var pool: String?
    public var attempt: Int
    public var state: State
    public var agent: String?
    public var createdAt: Date
    public var claimedAt: Date?
    public var leaseExpiresAt: Date?
    public var finishedAt: Date?
    /// The reconcile asked the agent to stop (it learns so on its next heartbeat).
    public var cancelRequested: Bool
    /// The `RemoteRun` as JSON.
    public var payload: Data
    /// The `RemoteRunOutcome` as JSON, once finished.
    public var outcome: Data?

    public init(
        id: UUID = UUID(), runID: UUID, enclave: String, partition: String, pool: String?, attempt: Int, payload: Data, createdAt: Date = Date()
    ) {
        self.id = id
        self.runID = runID
        self.enclave = enclave
        self.partition = partition
        self.pool = pool
        self.attempt = attempt
        self.state = .queued
        self.agent = nil
        self.createdAt = createdAt
        self.claimedAt = nil
        self.leaseExpiresAt = nil
        self.finishedAt = nil
        self.cancelRequested = false
        self.payload = payload
        self.outcome = nil
    }
}

/// An agent's credential: the id is public, only a hash of the secret is kept.
public struct AgentToken: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var secretSHA256: String
    public var createdAt: Date
    public var revokedAt: Date?
    public init(id: String, name: String, secretSHA256: String, createdAt: Date = Date(), revokedAt: Date? = nil) {
        self.id = id
        self.name = name
        self.secretSHA256 = secretSHA256
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}
