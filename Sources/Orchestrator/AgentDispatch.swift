import Foundation
import IacRunner
import NclavAuth
import NclavCore
import NclavStore

/// The IaC tool of a server with the PostgreSQL store: each invocation becomes a job in the
/// store's queue; a worker (an `nclav agent`, or a replica's own) claims it under a lease and
/// runs terraform, sending log lines to the run's log and the outcome back to the job.
///
/// The engine is unchanged above this seam: it renders the workspace and records the run as
/// before, and waits here for the outcome. A job whose lease runs out (the agent died or lost
/// its network) is interrupted, the run's state locks are released, and the job is queued
/// once more; a second loss fails the run with the reason.
public struct AgentDispatch: IacTool {
    let jobs: any JobStore
    let store: any StateStore
    /// Never sent to an agent: the admin token.
    let serverSecrets: [String]
    /// Seals each job's payload while it is in the database.
    let seal: JobPayloadSeal
    /// The lease a claim gets (`serve --agent-lease`): a job whose lease was never renewed
    /// after it was claimed was lost before its worker was heard from.
    let lease: Duration
    /// How often the outcome is looked for.
    let poll: Duration
    /// How many times a run is tried in all.
    let attempts: Int
    let maximumPoll: Duration = .milliseconds(500)

    public init(
        jobs: any JobStore, store: any StateStore, serverSecrets: [String], seal: JobPayloadSeal, lease: Duration,
        poll: Duration = .milliseconds(25), attempts: Int = 2
    ) {
        self.jobs = jobs
        self.store = store
        self.serverSecrets = serverSecrets
        self.seal = seal
        self.lease = lease
        self.poll = poll
        self.attempts = attempts
    }

    public var runsHere: Bool { false }

    public func version(of tool: String) async -> String? { nil }

    public func run(_ invocation: TerraformInvocation, log: @escaping @Sendable (String) async -> Void) async throws -> InvocationResult {
        guard let runID = invocation.runID else { throw AgentDispatchError.noRun }
        let payload = try seal.seal(try JSONEncoder().encode(try RemoteRun(invocation, serverSecrets: serverSecrets)))
        await waitForEarlierJobs(of: invocation.key, runID: runID, limit: invocation.policy.timeout.inSeconds)
        var lost: [String] = []
        // Jobs handed back by a worker that shut down (a replica or agent stopping, say in a
        // rolling deploy): queued again without counting as a loss, a few times at most.
        var handedBack = 0
        var attempt = 0
        while true {
            attempt += 1
            let job = AgentJob(
                runID: runID, enclave: invocation.key.enclave, partition: invocation.key.partition, pool: invocation.agentPool, attempt: attempt,
                payload: payload)
            try await jobs.enqueueJob(job)
            if attempt > 1 {
                try? await store.appendRunLog(runID, "== queued again for another agent (attempt \(attempt) of \(attempts + handedBack))\n")
            }
            switch try await outcome(of: job.id, queueLimit: invocation.policy.timeout.inSeconds, pool: invocation.agentPool) {
            case .finished(let outcome) where outcome.cancelled && !Task.isCancelled && handedBack < Self.handBackLimit:
                handedBack += 1
                await endAttempt(runID, "attempt \(attempt) stopped: its worker shut down and interrupted terraform")
            case .finished(let outcome):
                if let error = outcome.error { throw AgentDispatchError.agentFailed(error) }
                if outcome.savePlan(to: invocation.planFile) == false { throw AgentDispatchError.planFileMissing }
                // Where the engine looks for it after every run, to store it as a state version.
                if let errored = outcome.erroredState {
                    try? errored.write(to: invocation.workspace.appendingPathComponent("errored.tfstate"), options: .atomic)
                }
                var result = outcome.invocationResult
                if result.toolVersion == nil { result.toolVersion = outcome.toolVersion }
                return result
            case .interrupted(let agent, let expiredAt, let heardFrom):
                if Task.isCancelled {
                    _ = try? await store.releaseLocks(heldBy: runID)
                    throw CancellationError()
                }
                // A claim answered to a worker that was already gone (its long poll outlived it)
                // or that died at once: not a loss of the run, which is queued again.
                if !heardFrom && handedBack < Self.handBackLimit {
                    handedBack += 1
                    await endAttempt(
                        runID, "attempt \(attempt) unheard: agent \(agent) claimed it and never renewed its lease", then: "; not counted as lost")
                    continue
                }
                // A lease still running means the replica that took over ended the job: the
                // worker was one of a replica that is gone.
                let reason =
                    expiredAt > Date()
                    ? "agent \(agent) is gone with its replica"
                    : "agent \(agent) stopped answering (its lease ran out at \(Timestamp.string(expiredAt)))"
                lost.append(reason)
                await endAttempt(runID, "attempt \(attempt) interrupted: \(reason)")
                if lost.count >= attempts { throw AgentDispatchError.lost(lost) }
            }
        }
    }

    static let handBackLimit = 5
    /// A queued run says it waits after this long (or half the run timeout, if shorter).
    static let waitingNoteAfter: Double = 5

    static func waitingNote(pool: String?, seconds: Double, limit: Double) -> String {
        let who = pool.map { "an agent of pool `\($0)`" } ?? "a worker (an agent, or a replica's own)"
        let start = pool.map { "`nclav agent --token … --labels pool=\($0)`" } ?? "`nclav agent --token …`"
        return
            "== waiting \(Int(seconds)) s so far for \(who) to claim this run (all busy, or none running; the run fails after \(Int(limit)) s): start one with \(start)\n"
    }

    /// An attempt that will not report: what its terraform held dies with it, so the next
    /// attempt can take the state, and the run's log says so.
    func endAttempt(_ runID: UUID, _ text: String, then tail: String = "") async {
        let released = (try? await store.releaseLocks(heldBy: runID)) ?? []
        let note = released.isEmpty ? "" : "; state lock of \(released.map(\.description).joined(separator: ", ")) released"
        try? await store.appendRunLog(runID, "== \(text)\(note)\(tail)\n")
    }

    /// Reconciles take turns, so a job of this partition still held by a worker belongs to a
    /// run whose server went away: its terraform is being stopped (the replica that took over
    /// asked for that). This run starts when it has ended, or when its lease has run out; the
    /// state lock would refuse it meanwhile. After `limit` seconds it starts anyway, and the
    /// lock says why it cannot run.
    func waitForEarlierJobs(of key: StateKey, runID: UUID, limit: Double) async {
        let started = Date()
        var said = false
        while !Task.isCancelled, Date().timeIntervalSince(started) < limit {
            guard
                let held = try? await jobs.jobs(enclave: key.enclave, partition: key.partition).filter({ $0.state == .claimed && $0.runID != runID }),
                let job = held.first
            else { return }
            if let expires = job.leaseExpiresAt, expires < Date() {
                if (try? await jobs.interruptExpiredJob(job.id, at: Date())) == true { _ = try? await store.releaseLocks(heldBy: job.runID) }
                continue
            }
            if !said {
                said = true
                try? await store.appendRunLog(
                    runID,
                    "== waiting for agent \(job.agent ?? "?") to stop run \(job.runID.uuidString.lowercased()) of this partition (its server went away)\n"
                )
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    enum Ending {
        case finished(RemoteRunOutcome)
        /// `heardFrom`: the worker renewed the lease at least once after its claim.
        case interrupted(agent: String, expiredAt: Date, heardFrom: Bool)
    }

    /// Whether a job's lease was renewed after its claim: a renewal moves its end past the
    /// claim's own lease by a heartbeat interval (a third of the lease, at most 5 s).
    func heardFrom(_ job: AgentJob) -> Bool {
        guard let claimed = job.claimedAt, let expires = job.leaseExpiresAt else { return true }
        return expires.timeIntervalSince(claimed) > lease.inSeconds + min(lease.inSeconds / 3, 5) / 2
    }

    /// Waits for the job to finish or to lose its agent. Cancelling the caller cancels the job:
    /// a queued job is withdrawn, an agent holding it is told to stop on its next heartbeat. A
    /// job no agent claims within `queueLimit` seconds (the run timeout) fails the run.
    ///
    /// The job is looked at often at first (a short run's outcome is not kept waiting) and
    /// less often as it runs (a long run does not cost the database a query every few ms).
    func outcome(of id: UUID, queueLimit: Double, pool: String?) async throws -> Ending {
        let started = ContinuousClock.now
        var saidWaiting = false
        while true {
            if Task.isCancelled {
                // A queued job is withdrawn at once. A claimed one ends when its worker has
                // stopped terraform (told on its next heartbeat), and the engine waits for that:
                // the run's state lock is released only when its terraform is gone. From a task
                // of its own: a cancelled task's database calls would fail at once.
                return try await completing {
                    // Until it is recorded: a worker not told to stop would go on writing.
                    var tries = 0
                    while true {
                        do {
                            try await jobs.cancelJob(id, at: Date())
                            break
                        } catch {
                            tries += 1
                            if tries >= 30 { throw error }
                            try? await Task.sleep(for: .seconds(1))
                        }
                    }
                    return try await self.outcome(of: id, queueLimit: .infinity, pool: pool)
                }
            }
            guard let job = try await jobs.job(id) else { throw AgentDispatchError.jobVanished(id) }
            switch job.state {
            case .finished:
                guard let data = job.outcome else { throw AgentDispatchError.agentFailed("the agent reported no outcome") }
                return .finished(try JSONDecoder().decode(RemoteRunOutcome.self, from: data))
            case .interrupted:
                return .interrupted(agent: job.agent ?? "?", expiredAt: job.leaseExpiresAt ?? Date(), heardFrom: heardFrom(job))
            case .cancelled:
                throw CancellationError()
            case .claimed:
                let now = Date()
                if let expires = job.leaseExpiresAt, expires < now, try await jobs.interruptExpiredJob(id, at: now) {
                    return .interrupted(agent: job.agent ?? "?", expiredAt: expires, heardFrom: heardFrom(job))
                }
            case .queued:
                let waited = Date().timeIntervalSince(job.createdAt)
                if waited > queueLimit {
                    try? await jobs.cancelJob(id, at: Date())
                    throw AgentDispatchError.noAgent(pool: pool, seconds: queueLimit)
                }
                // Said once, so a run that waits (`--follow`, the UI's live log) says for what.
                if !saidWaiting, waited >= min(Self.waitingNoteAfter, queueLimit / 2) {
                    saidWaiting = true
                    try? await store.appendRunLog(job.runID, Self.waitingNote(pool: pool, seconds: waited, limit: queueLimit))
                }
            }
            let elapsed = ContinuousClock.now - started
            do { try await Task.sleep(for: min(maximumPoll, max(poll, elapsed / 20))) } catch { continue }
        }
    }
}

extension RemoteRunOutcome {
    /// Writes the plan file the agent saved where the engine expects it; false when a plan
    /// was to be saved and none came back.
    func savePlan(to file: URL?) -> Bool {
        guard let file, let planFile else { return true }
        do {
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try planFile.write(to: file, options: .atomic)
            return true
        } catch { return false }
    }
}

public enum AgentDispatchError: Error, Sendable, CustomStringConvertible {
    case noRun
    case jobVanished(UUID)
    case agentFailed(String)
    case planFileMissing
    case lost([String])
    case noAgent(pool: String?, seconds: Double)

    public var description: String {
        switch self {
        case .noRun: "the run was not recorded before it was handed to an agent"
        case .jobVanished(let id): "job \(id) disappeared from the queue"
        case .agentFailed(let reason): "the agent could not run terraform: \(reason)"
        case .planFileMissing: "the agent saved no plan file"
        case .noAgent(let pool, let seconds):
            "no agent\(pool.map { " of pool `\($0)`" } ?? "") claimed the run within \(Int(seconds)) s (the run timeout); start one: `nclav agent --token …\(pool.map { " --labels pool=\($0)" } ?? "")`"
        case .lost(let reasons):
            "the run was lost with its agent \(reasons.count) time(s) and is not tried again: \(reasons.joined(separator: "; "))"
        }
    }
}
