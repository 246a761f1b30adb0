import Foundation
import NclavAPI
import NclavCore

/// What `nclav agent` asks of the server, and the admin's agent-token and queue calls.
extension NclavAPIClient {
    static let instanceHeader = "Nclav-Agent-Instance"

    /// The oldest job this agent may run, or nil when none came within the request's wait.
    public func claim(_ request: AgentClaimRequest) async throws -> AgentAssignment? {
        let answer = try await send(.POST, APIPath.agentClaim, body: try Wire.encoder().encode(request), contentType: "application/json")
        if answer.status == 204 { return nil }
        return try decode(answer, APIPath.agentClaim).value
    }

    /// The renewed lease, or nil when this agent no longer holds the job (stop its run).
    public func heartbeat(job: String, instance: String) async throws -> AgentHeartbeat? {
        let answer = try await send(.POST, APIPath.agentHeartbeat(job), headers: [(Self.instanceHeader, instance)])
        if answer.status == 409 { return nil }
        return try decode(answer, APIPath.agentHeartbeat(job)).value
    }

    /// False when this agent no longer holds the job.
    public func sendLog(job: String, instance: String, text: String) async throws -> Bool {
        let answer = try await send(
            .POST, APIPath.agentLog(job), body: Data(text.utf8), contentType: "text/plain; charset=utf-8", headers: [(Self.instanceHeader, instance)])
        if answer.status == 409 { return false }
        try Self.requireSuccess(answer)
        return true
    }

    /// False when this agent no longer holds the job.
    public func sendOutcome(job: String, instance: String, outcome: RemoteRunOutcome) async throws -> Bool {
        let answer = try await send(
            .POST, APIPath.agentOutcome(job), body: try JSONEncoder().encode(outcome), contentType: "application/json",
            headers: [(Self.instanceHeader, instance)])
        if answer.status == 409 { return false }
        try Self.requireSuccess(answer)
        return true
    }

    public func createAgentToken(name: String) async throws -> Fetched<AgentTokenCreated> {
        try decode(
            try await send(
                .POST, APIPath.agentTokens, body: try Wire.encoder().encode(AgentTokenRequest(name: name)), contentType: "application/json"),
            APIPath.agentTokens)
    }

    public func agentTokens() async throws -> Fetched<AgentTokenListing> { try await fetch(APIPath.agentTokens) }

    public func revokeAgentToken(_ id: String) async throws {
        try Self.requireSuccess(try await send(.DELETE, APIPath.agentToken(id)))
    }

    public func jobs(_ key: StateKey) async throws -> Fetched<JobListing> { try await fetch(APIPath.jobs(key)) }
}
