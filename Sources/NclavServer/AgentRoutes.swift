import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import NclavAPI
import NclavAuth
import NclavCore
import NclavStore
import ServiceLifecycle

/// The routes agents use (`/agent/…`, agent tokens only) and the admin's routes for agent
/// tokens and the job queue. An agent claims a job under a lease, renews it with heartbeats,
/// sends the run's log lines as terraform writes them, and reports the outcome; every call
/// after the claim must come from the same agent instance that holds the lease.
struct AgentRoutes: Sendable {
    /// The store's queue; nil when the store keeps none (only PostgreSQL does): every route then
    /// says so.
    let queue: (any JobStore)?
    let store: any StateStore
    let lease: Duration
    /// Redacted from the lines agents send (the admin token, should an agent ever echo it).
    let secrets: [String]

    static let instanceHeader = HTTPField.Name("Nclav-Agent-Instance")!

    var jobs: any JobStore {
        get throws {
            guard let queue else {
                throw APIError(
                    .notImplemented, "agents and their tokens need the PostgreSQL store",
                    details: ["start the server with --postgres-url and --agents-only"])
            }
            return queue
        }
    }

    func register(on router: Router<NclavRequestContext>, body: @escaping @Sendable (Request) async throws -> Data) {
        router.post(RouterPath(APIPath.agentClaim)) { request, context in try await claim(try await body(request), context) }
        router.post(RouterPath(APIPath.Template.agentHeartbeat)) { request, context in try await heartbeat(request, context) }
        router.post(RouterPath(APIPath.Template.agentLog)) { request, context in try await log(request, context, try await body(request)) }
        router.post(RouterPath(APIPath.Template.agentOutcome)) { request, context in
            try await outcome(request, context, try await body(request))
        }
        router.post(RouterPath(APIPath.agentTokens)) { request, _ in try await createToken(try await body(request)) }
        router.get(RouterPath(APIPath.agentTokens)) { _, _ in
            Routes.json(
                AgentTokenListing(
                    tokens: try await jobs.agentTokens().map {
                        AgentTokenEntry(id: $0.id, name: $0.name, createdAt: $0.createdAt, revokedAt: $0.revokedAt)
                    }))
        }
        router.delete(RouterPath(APIPath.Template.agentToken)) { _, context in
            let id = context.parameters.get("token") ?? ""
            guard AgentTokenSecret.isID(id) else { throw APIError(.badRequest, "`\(id.prefix(64))` is not an agent token id (12 hex digits)") }
            guard try await jobs.revokeAgentToken(id, at: Date()) else { throw APIError(.notFound, "no active agent token `\(id)`") }
            return Response(status: .noContent)
        }
        router.get(RouterPath(APIPath.jobs)) { request, _ in
            let enclave = request.uri.queryParameters.get("enclave").map { String($0) } ?? ""
            let partition = request.uri.queryParameters.get("partition").map { String($0) } ?? ""
            let key: StateKey
            do { key = try StateKey(enclave: enclave, partition: partition) } catch {
                throw APIError(.badRequest, "name a partition: `/jobs?enclave=<id>&partition=<id>`")
            }
            let depth = try await jobs.queueDepth()
            return Routes.json(
                JobListing(
                    jobs: try await jobs.jobs(enclave: key.enclave, partition: key.partition).map(JobEntry.init), queued: depth.queued,
                    oldestQueuedAt: depth.oldest))
        }
    }

    // MARK: Agents

    func agentName(_ context: NclavRequestContext, instance: String) throws -> String {
        guard case .agent(let id) = context.principal else { throw APIError(.forbidden, "only an agent token may claim and report jobs") }
        guard !instance.isEmpty, instance.count <= 100, instance.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw APIError(.badRequest, "the agent instance must be 1–100 letters, digits, `-`, `_` or `.` (e.g. host-1234)")
        }
        return "\(id)/\(instance)"
    }

    func claim(_ data: Data, _ context: NclavRequestContext) async throws -> Response {
        let request: AgentClaimRequest
        do { request = try Wire.decoder().decode(AgentClaimRequest.self, from: data) } catch {
            throw APIError(.badRequest, #"the body must be JSON like {"instance": "host-1234", "labels": {"pool": "eu"}, "wait_seconds": 20}"#)
        }
        let agent = try agentName(context, instance: request.instance)
        let pools: [String?] = [nil] + (request.labels["pool"].map { [$0] } ?? [])
        let deadline = Date().addingTimeInterval(min(max(request.waitSeconds, 0), 60))
        let leaseSeconds = lease.inSeconds
        while true {
            let now = Date()
            if let job = try await jobs.claimJob(agent: agent, pools: pools, leaseExpiresAt: now.addingTimeInterval(leaseSeconds), at: now) {
                let run = try JSONDecoder().decode(RemoteRun.self, from: job.payload)
                try? await store.appendRunLog(
                    job.runID, "== agent \(agent) runs this (job \(job.id.uuidString.lowercased()), attempt \(job.attempt))\n")
                return Routes.json(
                    AgentAssignment(
                        jobID: job.id.uuidString.lowercased(), runID: job.runID.uuidString, attempt: job.attempt, leaseSeconds: leaseSeconds, run: run
                    ))
            }
            // A stopping server answers at once rather than keep its shutdown waiting on the wait.
            if now >= deadline || Task.isCancelled || Task.isShuttingDownGracefully { return Response(status: .noContent) }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// The job, when this agent instance still holds it.
    func held(_ request: Request, _ context: NclavRequestContext) async throws -> (AgentJob, String) {
        let id = try Routes.uuid(context, "job")
        let agent = try agentName(context, instance: request.headers[Self.instanceHeader] ?? "")
        guard let job = try await jobs.job(id), job.agent == agent, job.state == .claimed else {
            throw APIError(
                .conflict, "this agent no longer holds job \(id.uuidString.lowercased()): its lease ran out or the job ended; stop its run")
        }
        return (job, agent)
    }

    func heartbeat(_ request: Request, _ context: NclavRequestContext) async throws -> Response {
        let (job, agent) = try await held(request, context)
        let until = Date().addingTimeInterval(lease.inSeconds)
        guard try await jobs.renewLease(job.id, agent: agent, until: until) else {
            throw APIError(.conflict, "this agent no longer holds job \(job.id.uuidString.lowercased()); stop its run")
        }
        return Routes.json(AgentHeartbeat(cancel: job.cancelRequested, leaseExpiresAt: until))
    }

    func log(_ request: Request, _ context: NclavRequestContext, _ data: Data) async throws -> Response {
        let (job, _) = try await held(request, context)
        let text = secrets.filter { $0.count >= 4 }.reduce(String(decoding: data, as: UTF8.self)) {
            $0.replacingOccurrences(of: $1, with: "[redacted]")
        }
        try await store.appendRunLog(job.runID, text)
        return Response(status: .noContent)
    }

    func outcome(_ request: Request, _ context: NclavRequestContext, _ data: Data) async throws -> Response {
        let (job, agent) = try await held(request, context)
        do { _ = try JSONDecoder().decode(RemoteRunOutcome.self, from: data) } catch {
            throw APIError(.badRequest, "the body must be the run's outcome as JSON (last_command, exit_code, …)")
        }
        guard try await jobs.finishJob(job.id, agent: agent, outcome: data, at: Date()) else {
            throw APIError(.conflict, "this agent no longer holds job \(job.id.uuidString.lowercased())")
        }
        return Response(status: .noContent)
    }

    // MARK: Admin

    func createToken(_ data: Data) async throws -> Response {
        let request: AgentTokenRequest
        do { request = try Wire.decoder().decode(AgentTokenRequest.self, from: data) } catch {
            throw APIError(.badRequest, #"the body must be JSON like {"name": "eu-pool"}"#)
        }
        guard !request.name.isEmpty, request.name.count <= 100 else { throw APIError(.badRequest, "`name` must be 1–100 characters") }
        let made = AgentTokenSecret.make()
        try await jobs.createAgentToken(AgentToken(id: made.id, name: request.name, secretSHA256: made.secretSHA256))
        return Routes.json(AgentTokenCreated(id: made.id, name: request.name, token: made.token), status: 201)
    }
}
