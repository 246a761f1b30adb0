import Foundation
import NclavAuth
import NclavCore
import NclavPostgres
import NclavStore
import ServiceLifecycle

/// The server's side of the job queue, for whoever works it: agents over HTTP
/// (`AgentRoutes`) and this replica's own workers (`ReplicaWorkers`). Every call after the
/// claim must come from the worker that holds the job's lease.
struct JobDesk: Sendable {
    let jobs: any JobStore
    let store: any StateStore
    let lease: Duration
    /// Redacted from the log lines workers send (the admin token, should one ever echo it).
    let secrets: [String]
    /// Opens the payloads the dispatcher sealed.
    let seal: JobPayloadSeal

    /// The oldest queued job this worker may take (jobs without a pool, and those of `pool`),
    /// waiting up to `waitSeconds` for one.
    func claim(agent: String, pool: String?, waitSeconds: Double) async throws -> (job: AgentJob, run: RemoteRun)? {
        let pools: [String?] = [nil] + (pool.map { [$0] } ?? [])
        let deadline = Date().addingTimeInterval(min(max(waitSeconds, 0), 60))
        while true {
            let ticket = await jobs.jobTicket()
            let now = Date()
            if let job = try await jobs.claimJob(agent: agent, pools: pools, leaseExpiresAt: now.addingTimeInterval(lease.inSeconds), at: now) {
                let run: RemoteRun
                do { run = try JSONDecoder().decode(RemoteRun.self, from: try seal.open(job.payload)) } catch {
                    // Unreadable here means unreadable for every worker: the job ends with why.
                    let outcome = RemoteRunOutcome(lastCommand: "init", exitCode: nil, error: "\(error)")
                    _ = try? await jobs.finishJob(job.id, agent: agent, outcome: try JSONEncoder().encode(outcome), at: Date())
                    continue
                }
                let who = agent.hasPrefix(PostgresStore.replicaWorkerPrefix) ? "replica worker" : "agent"
                try? await store.appendRunLog(
                    job.runID, "== \(who) \(agent) runs this (job \(job.id.uuidString.lowercased()), attempt \(job.attempt))\n")
                return (job, run)
            }
            // A stopping server answers at once rather than keep its shutdown waiting on the wait.
            if now >= deadline || Task.isCancelled || Task.isShuttingDownGracefully { return nil }
            // Woken when a job is queued; the timeout covers a notification lost on the way. A
            // server shutting down ends the wait.
            let wait = Duration.milliseconds(min(2000, max(10, Int64(deadline.timeIntervalSince(Date()) * 1000))))
            await cancelWhenGracefulShutdown { [jobs] in await jobs.waitForJobs(after: ticket, upTo: wait) }
        }
    }

    /// The job, when this worker still holds it.
    func held(_ id: UUID, agent: String) async throws -> AgentJob {
        guard let job = try await jobs.job(id), job.agent == agent, job.state == .claimed else { throw JobDeskError.notHeld(id) }
        return job
    }

    /// Renews the lease; true when the run is to stop.
    func heartbeat(_ id: UUID, agent: String) async throws -> (cancel: Bool, until: Date) {
        let job = try await held(id, agent: agent)
        let until = Date().addingTimeInterval(lease.inSeconds)
        guard try await jobs.renewLease(job.id, agent: agent, until: until) else { throw JobDeskError.notHeld(id) }
        return (job.cancelRequested, until)
    }

    func log(_ id: UUID, agent: String, text: String) async throws {
        let job = try await held(id, agent: agent)
        let redacted = secrets.filter { $0.count >= 4 }.reduce(text) { $0.replacingOccurrences(of: $1, with: "[redacted]") }
        try await store.appendRunLog(job.runID, redacted)
    }

    func outcome(_ id: UUID, agent: String, outcome: Data) async throws {
        let job = try await held(id, agent: agent)
        guard try await jobs.finishJob(job.id, agent: agent, outcome: outcome, at: Date()) else { throw JobDeskError.notHeld(id) }
    }
}

enum JobDeskError: Error, CustomStringConvertible {
    case notHeld(UUID)

    var description: String {
        switch self {
        case .notHeld(let id):
            "this agent no longer holds job \(id.uuidString.lowercased()): its lease ran out or the job ended; stop its run"
        }
    }
}
