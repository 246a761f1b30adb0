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
    /// Redacted from the lines agents send.
    let secrets: [String]
    /// Opens the jobs' sealed payloads for the agents that claim them.
    let seal: JobPayloadSeal

    static let instanceHeader = HTTPField.Name("Nclav-Agent-Instance")!

    var jobs: any JobStore {
        get throws {
            guard let queue else {
                throw APIError(
                    .notImplemented, "agents and their tokens need the PostgreSQL store",
                    details: ["start the server with --postgres-url: its runs are then jobs agents can claim"])
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

    var desk: JobDesk {
        get throws { JobDesk(jobs: try jobs, store: store, lease: lease, secrets: secrets, seal: seal) }
    }

    func claim(_ data: Data, _ context: NclavRequestContext) async throws -> Response {
        let request: AgentClaimRequest
        do { request = try Wire.decoder().decode(AgentClaimRequest.self, from: data) } catch {
            throw APIError(.badRequest, #"the body must be JSON like {"instance": "host-1234", "labels": {"pool": "eu"}, "wait_seconds": 20}"#)
        }
        let agent = try agentName(context, instance: request.instance)
        let desk = try desk
        guard let (job, run) = try await desk.claim(agent: agent, pool: request.labels["pool"], waitSeconds: request.waitSeconds) else {
            return Response(status: .noContent)
        }
        return Routes.json(
            AgentAssignment(
                jobID: job.id.uuidString.lowercased(), runID: job.runID.uuidString, attempt: job.attempt, leaseSeconds: lease.inSeconds, run: run))
    }

    /// Runs `body` for the job in the path and the agent instance in the header; a job the
    /// agent no longer holds is a conflict.
    func asHolder<T>(_ request: Request, _ context: NclavRequestContext, _ body: (JobDesk, UUID, String) async throws -> T) async throws -> T {
        let id = try Routes.uuid(context, "job")
        let agent = try agentName(context, instance: request.headers[Self.instanceHeader] ?? "")
        do { return try await body(try desk, id, agent) } catch let error as JobDeskError { throw APIError(.conflict, error.description) }
    }

    func heartbeat(_ request: Request, _ context: NclavRequestContext) async throws -> Response {
        let beat = try await asHolder(request, context) { desk, id, agent in try await desk.heartbeat(id, agent: agent) }
        return Routes.json(AgentHeartbeat(cancel: beat.cancel, leaseExpiresAt: beat.until))
    }

    func log(_ request: Request, _ context: NclavRequestContext, _ data: Data) async throws -> Response {
        try await asHolder(request, context) { desk, id, agent in try await desk.log(id, agent: agent, text: String(decoding: data, as: UTF8.self)) }
        return Response(status: .noContent)
    }

    func outcome(_ request: Request, _ context: NclavRequestContext, _ data: Data) async throws -> Response {
        do { _ = try JSONDecoder().decode(RemoteRunOutcome.self, from: data) } catch {
            throw APIError(.badRequest, "the body must be the run's outcome as JSON (last_command, exit_code, …)")
        }
        try await asHolder(request, context) { desk, id, agent in try await desk.outcome(id, agent: agent, outcome: data) }
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
