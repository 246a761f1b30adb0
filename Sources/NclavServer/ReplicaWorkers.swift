import Foundation
import IacRunner
import Logging
import NclavCore
import NclavStore
import ServiceLifecycle

/// A replica's own share of the job queue (PostgreSQL store without `--agents-only`): a few
/// workers that claim jobs as agents do, straight from the store, and run terraform on this
/// machine. Jobs of enclaves pinned to an `agent_pool` are left to that pool's agents.
///
/// Shut down after the reconciles (which cancel their jobs) and before the listener: a run in
/// progress is interrupted the way a timeout interrupts it, and its outcome reported.
struct ReplicaWorkers: Service {
    let count: Int
    let desk: JobDesk
    /// How jobs name this replica's workers: `replica-<n>/<host>-<pid>`.
    let name: String
    let address: ServerAddress
    let bindHost: String
    let work: URL
    let logger: Logger

    func run() async throws {
        let serving = Task {
            // Terraform reaches the state backend on this replica's own port, known once it listens.
            var port = await address.port
            while port == 0 {
                do { try await Task.sleep(for: .milliseconds(20)) } catch { return }
                port = await address.port
            }
            let host = ["0.0.0.0", "::", ""].contains(bindHost) ? "127.0.0.1" : bindHost
            let base = host.contains(":") ? "http://[\(host)]:\(port)" : "http://\(host):\(port)"
            let worker = JobWorker(channel: LocalJobChannel(desk: desk, agent: name), backendBaseURL: base, work: work) { [logger] text in
                logger.info("\(text)")
            }
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<count { group.addTask { await worker.serve() } }
            }
        }
        try? await gracefulShutdown()
        serving.cancel()
        await serving.value
    }
}

/// A replica's worker's way to the queue: the job desk itself, no HTTP.
struct LocalJobChannel: JobChannel {
    let desk: JobDesk
    let agent: String
    /// One claim waits this long for a job before the worker loop asks again.
    var claimWait: Double = 5

    func claim() async throws -> JobAssignment? {
        try await desk.claim(agent: agent, pool: nil, waitSeconds: claimWait).map {
            JobAssignment(jobID: $0.job.id.uuidString.lowercased(), attempt: $0.job.attempt, leaseSeconds: desk.lease.inSeconds, run: $0.run)
        }
    }

    func heartbeat(job: String) async throws -> Bool? {
        do { return try await desk.heartbeat(try id(job), agent: agent).cancel } catch is JobDeskError { return nil }
    }

    func sendLog(job: String, text: String) async throws {
        try await desk.log(try id(job), agent: agent, text: text)
    }

    func sendOutcome(job: String, outcome: RemoteRunOutcome) async throws -> Bool {
        do {
            try await desk.outcome(try id(job), agent: agent, outcome: try JSONEncoder().encode(outcome))
            return true
        } catch is JobDeskError { return false }
    }

    func id(_ job: String) throws -> UUID {
        guard let id = UUID(uuidString: job) else { throw JobDeskError.notHeld(UUID()) }
        return id
    }
}
