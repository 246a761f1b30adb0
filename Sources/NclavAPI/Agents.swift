import Foundation
import NclavCore

/// `POST /agent/claim`: an agent asks for the oldest job it may run, waiting up to
/// `wait_seconds` for one (204 when none came).
public struct AgentClaimRequest: Codable, Sendable, Equatable {
    /// Names this agent process among those sharing a token (`host-pid`).
    public var instance: String
    /// `pool=<name>` makes the agent run the jobs of enclaves with that `agent_pool`; every
    /// agent also runs jobs of enclaves that name no pool.
    public var labels: [String: String]
    public var waitSeconds: Double

    public init(instance: String, labels: [String: String], waitSeconds: Double) {
        self.instance = instance
        self.labels = labels
        self.waitSeconds = waitSeconds
    }

    public enum CodingKeys: String, CodingKey { case instance, labels, waitSeconds = "wait_seconds" }
}

/// A claimed job: the run to execute and how long the lease lasts between heartbeats.
public struct AgentAssignment: Codable, Sendable, Equatable {
    public var jobID: String
    public var runID: String
    public var attempt: Int
    public var leaseSeconds: Double
    public var run: RemoteRun

    public init(jobID: String, runID: String, attempt: Int, leaseSeconds: Double, run: RemoteRun) {
        self.jobID = jobID
        self.runID = runID
        self.attempt = attempt
        self.leaseSeconds = leaseSeconds
        self.run = run
    }

    public enum CodingKeys: String, CodingKey { case jobID = "job_id", runID = "run_id", attempt, leaseSeconds = "lease_seconds", run }
}

/// `POST /agent/jobs/{job}/heartbeat`: the lease is renewed; `cancel` asks the agent to stop.
public struct AgentHeartbeat: Codable, Sendable, Equatable {
    public var cancel: Bool
    public var leaseExpiresAt: Date

    public init(cancel: Bool, leaseExpiresAt: Date) {
        self.cancel = cancel
        self.leaseExpiresAt = leaseExpiresAt
    }

    public enum CodingKeys: String, CodingKey { case cancel, leaseExpiresAt = "lease_expires_at" }
}

/// `POST /agent-tokens`: `{"name": "…"}`; the answer carries the token once.
public struct AgentTokenRequest: Codable, Sendable, Equatable {
    public var name: String
    public init(name: String) { self.name = name }
}

public struct AgentTokenCreated: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var token: String
    public init(id: String, name: String, token: String) {
        self.id = id
        self.name = name
        self.token = token
    }
}

public struct AgentTokenEntry: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var createdAt: Date
    public var revokedAt: Date?
    public init(id: String, name: String, createdAt: Date, revokedAt: Date?) {
        self.id = id
        self.name = name
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
    public enum CodingKeys: String, CodingKey { case id, name, createdAt = "created_at", revokedAt = "revoked_at" }
}

public struct AgentTokenListing: Codable, Sendable, Equatable {
    public var tokens: [AgentTokenEntry]
    public init(tokens: [AgentTokenEntry]) { self.tokens = tokens }
}

/// `GET /jobs?enclave=&partition=`: a partition's jobs, oldest first, and the queue's depth.
public struct JobEntry: Codable, Sendable, Equatable {
    public var id: String
    public var runID: String
    public var attempt: Int
    public var state: String
    public var agent: String?
    public var pool: String?
    public var createdAt: Date
    public var claimedAt: Date?
    public var leaseExpiresAt: Date?
    public var finishedAt: Date?

    public init(_ job: AgentJob) {
        id = job.id.uuidString.lowercased()
        runID = job.runID.uuidString
        attempt = job.attempt
        state = job.state.rawValue
        agent = job.agent
        pool = job.pool
        createdAt = job.createdAt
        claimedAt = job.claimedAt
        leaseExpiresAt = job.leaseExpiresAt
        finishedAt = job.finishedAt
    }

    public enum CodingKeys: String, CodingKey {
        case id, runID = "run_id", attempt, state, agent, pool, createdAt = "created_at", claimedAt = "claimed_at",
            leaseExpiresAt = "lease_expires_at", finishedAt = "finished_at"
    }
}

public struct JobListing: Codable, Sendable, Equatable {
    public var jobs: [JobEntry]
    public var queued: Int
    public var oldestQueuedAt: Date?
    public init(jobs: [JobEntry], queued: Int, oldestQueuedAt: Date?) {
        self.jobs = jobs
        self.queued = queued
        self.oldestQueuedAt = oldestQueuedAt
    }
    public enum CodingKeys: String, CodingKey { case jobs, queued, oldestQueuedAt = "oldest_queued_at" }
}
