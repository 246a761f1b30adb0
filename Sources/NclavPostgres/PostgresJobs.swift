import Foundation
import NclavCore
import NclavStore
import PostgresNIO

/// The agents' job queue. A claim is one statement whose inner `FOR UPDATE SKIP LOCKED`
/// picks the oldest waiting job no other replica is claiming at that moment, so replicas and
/// agents never block on each other and never share a job. A job's payload holds the run's
/// credentials, so it is emptied as soon as the job ends, however it ends.
///
/// Claim and end times come from the database's clock at the moment each statement runs, so
/// the record of a run's attempts orders them as they happened: an attempt's end is before the
/// next attempt's claim, whichever client's clock is ahead.
extension PostgresStore: JobStore {
    /// The database's clock as seconds since 2001 (how every time column is stored): claims
    /// and ends are stamped by it, whichever replica's clock is ahead.
    static let databaseNow = "(EXTRACT(EPOCH FROM clock_timestamp()) - 978307200)"

    /// Cancelling a job: a queued one is withdrawn (and its payload dropped), a claimed one is
    /// asked to stop on its worker's next heartbeat.
    static let cancelAssignments = """
        cancel_requested = TRUE,
               state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
               finished_at = CASE WHEN state = 'queued' THEN \(databaseNow) ELSE finished_at END,
               payload = CASE WHEN state = 'queued' THEN ''::bytea ELSE payload END
        """

    public func enqueueJob(_ job: AgentJob) async throws {
        // The insert and the notification in one statement: every replica's waiting claimers
        // wake at once (`waitForJobs`).
        try await execute(
            """
            WITH queued AS (
                INSERT INTO nclav_jobs (id, run_id, enclave_id, partition_id, pool, attempt, state, created_at, payload)
                VALUES (\(job.id.uuidString), \(job.runID.uuidString), \(job.enclave), \(job.partition), \(job.pool), \(Int32(job.attempt)),
                        \(job.state.rawValue), \(job.createdAt.timeIntervalSinceReferenceDate), \(ByteBuffer(bytes: job.payload)))
                RETURNING id)
            SELECT pg_notify(\(Self.jobChannel), '') FROM queued
            """)
        await bell.ring()
    }

    public func jobTicket() async -> UInt64 { await bell.rings }

    public func waitForJobs(after ticket: UInt64, upTo timeout: Duration) async {
        await bell.startListening { [client, logger, bell, closedFlag] in
            while !Task.isCancelled && !closedFlag.isClosed {
                do {
                    try await client.withConnection { connection in
                        try await connection.listen(on: Self.jobChannel) { notifications in
                            // Whatever was queued while this connection was being made.
                            await bell.ring()
                            for try await _ in notifications { await bell.ring() }
                        }
                    }
                } catch {
                    logger.debug("listening for queued jobs stopped; again in 1 s", metadata: ["error": "\(Self.message(error))"])
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
        await bell.wait(after: ticket, upTo: timeout)
    }

    public func claimJob(agent: String, pools: [String?], leaseExpiresAt: Date, at time: Date) async throws -> AgentJob? {
        let named = pools.compactMap { $0 }
        let anyPool = pools.contains { $0 == nil }
        return try await rows(
            """
            UPDATE nclav_jobs SET state = 'claimed', agent = \(agent), claimed_at = \(unescaped: Self.databaseNow),
                   lease_expires_at = \(leaseExpiresAt.timeIntervalSinceReferenceDate)
            WHERE id = (SELECT id FROM nclav_jobs WHERE state = 'queued' AND ((pool IS NULL AND \(anyPool)) OR pool = ANY(\(named)))
                        ORDER BY created_at, id FOR UPDATE SKIP LOCKED LIMIT 1)
            RETURNING *
            """
        ).first.map(Self.job(from:))
    }

    public func renewLease(_ id: UUID, agent: String, until: Date) async throws -> Bool {
        !(try await rows(
            """
            UPDATE nclav_jobs SET lease_expires_at = \(until.timeIntervalSinceReferenceDate)
            WHERE id = \(id.uuidString) AND agent = \(agent) AND state = 'claimed' RETURNING id
            """
        ).isEmpty)
    }

    public func finishJob(_ id: UUID, agent: String, outcome: Data, at time: Date) async throws -> Bool {
        try await transaction { connection in
            let finished = try await connection.query(
                """
                UPDATE nclav_jobs SET state = 'finished', outcome = \(ByteBuffer(bytes: outcome)),
                       finished_at = \(unescaped: Self.databaseNow), payload = ''::bytea
                WHERE id = \(id.uuidString) AND agent = \(agent) AND state = 'claimed' RETURNING run_id
                """, logger: logger
            ).collect().map { try $0.makeRandomAccess()["run_id"].decode(String.self) }
            guard let runID = finished.first else { return false }
            // A run that already ended was taken over from a replica that is gone; it kept its
            // state locks until this job's terraform stopped, which it now has.
            try await connection.query(
                """
                DELETE FROM nclav_state_locks WHERE run_id = \(runID)
                  AND EXISTS (SELECT 1 FROM nclav_runs WHERE id = \(runID) AND status <> 'running')
                """, logger: logger)
            return true
        }
    }

    public func interruptExpiredJob(_ id: UUID, at time: Date) async throws -> Bool {
        !(try await rows(
            """
            UPDATE nclav_jobs SET state = 'interrupted', finished_at = \(unescaped: Self.databaseNow), payload = ''::bytea
            WHERE id = \(id.uuidString) AND state = 'claimed' AND lease_expires_at < \(time.timeIntervalSinceReferenceDate) RETURNING id
            """
        ).isEmpty)
    }

    public func cancelJob(_ id: UUID, at time: Date) async throws {
        try await execute(
            """
            UPDATE nclav_jobs SET \(unescaped: Self.cancelAssignments)
            WHERE id = \(id.uuidString)
            """)
    }

    public func job(_ id: UUID) async throws -> AgentJob? {
        try await rows("SELECT * FROM nclav_jobs WHERE id = \(id.uuidString)").first.map(Self.job(from:))
    }

    public func jobs(enclave: String, partition: String) async throws -> [AgentJob] {
        try await rows(
            """
            SELECT id, run_id, enclave_id, partition_id, pool, attempt, state, agent, created_at, claimed_at, lease_expires_at,
                   finished_at, cancel_requested, ''::bytea AS payload, NULL::bytea AS outcome
            FROM nclav_jobs WHERE enclave_id = \(enclave) AND partition_id = \(partition) ORDER BY created_at, id
            """
        ).map(Self.job(from:))
    }

    public func purgeEndedJobs(endedBefore time: Date) async throws -> Int {
        try await rows(
            """
            DELETE FROM nclav_jobs WHERE state IN ('finished', 'interrupted', 'cancelled')
              AND finished_at < \(time.timeIntervalSinceReferenceDate) RETURNING id
            """
        ).count
    }

    public func queueDepth() async throws -> (queued: Int, oldest: Date?) {
        guard let row = try await rows("SELECT count(*) AS queued, min(created_at) AS oldest FROM nclav_jobs WHERE state = 'queued'").first
        else { return (0, nil) }
        return (Int(try row["queued"].decode(Int64.self)), try row["oldest"].decode(Double?.self).map(Date.init(timeIntervalSinceReferenceDate:)))
    }

    static func job(from row: PostgresRandomAccessRow) throws -> AgentJob {
        func date(_ column: String) throws -> Date? { try row[column].decode(Double?.self).map(Date.init(timeIntervalSinceReferenceDate:)) }
        guard let id = UUID(uuidString: try row["id"].decode(String.self)), let runID = UUID(uuidString: try row["run_id"].decode(String.self)),
            let state = AgentJob.State(rawValue: try row["state"].decode(String.self))
        else { throw StoreError.corrupt("a job row has a malformed id or state") }
        var payload = try row["payload"].decode(ByteBuffer.self)
        var job = AgentJob(
            id: id, runID: runID, enclave: try row["enclave_id"].decode(String.self), partition: try row["partition_id"].decode(String.self),
            pool: try row["pool"].decode(String?.self), attempt: Int(try row["attempt"].decode(Int32.self)),
            payload: Data(payload.readBytes(length: payload.readableBytes) ?? []),
            createdAt: try date("created_at") ?? Date())
        job.state = state
        job.agent = try row["agent"].decode(String?.self)
        job.claimedAt = try date("claimed_at")
        job.leaseExpiresAt = try date("lease_expires_at")
        job.finishedAt = try date("finished_at")
        job.cancelRequested = try row["cancel_requested"].decode(Bool.self)
        if var outcome = try row["outcome"].decode(ByteBuffer?.self) { job.outcome = Data(outcome.readBytes(length: outcome.readableBytes) ?? []) }
        return job
    }

    // MARK: Agent tokens

    public func createAgentToken(_ token: AgentToken) async throws {
        try await execute(
            """
            INSERT INTO nclav_agent_tokens (id, name, secret_sha256, created_at)
            VALUES (\(token.id), \(token.name), \(token.secretSHA256), \(token.createdAt.timeIntervalSinceReferenceDate))
            """)
    }

    public func ensureAgentToken(_ token: AgentToken) async throws -> Bool {
        !(try await rows(
            """
            INSERT INTO nclav_agent_tokens (id, name, secret_sha256, created_at)
            VALUES (\(token.id), \(token.name), \(token.secretSHA256), \(token.createdAt.timeIntervalSinceReferenceDate))
            ON CONFLICT (id) DO NOTHING RETURNING id
            """
        ).isEmpty)
    }

    public func agentToken(_ id: String) async throws -> AgentToken? {
        try await rows("SELECT * FROM nclav_agent_tokens WHERE id = \(id)").first.map(Self.token(from:))
    }

    public func agentTokens() async throws -> [AgentToken] {
        try await rows("SELECT * FROM nclav_agent_tokens ORDER BY created_at, id").map(Self.token(from:))
    }

    public func revokeAgentToken(_ id: String, at time: Date) async throws -> Bool {
        !(try await rows(
            """
            UPDATE nclav_agent_tokens SET revoked_at = \(time.timeIntervalSinceReferenceDate) WHERE id = \(id) AND revoked_at IS NULL RETURNING id
            """
        ).isEmpty)
    }

    static func token(from row: PostgresRandomAccessRow) throws -> AgentToken {
        AgentToken(
            id: try row["id"].decode(String.self), name: try row["name"].decode(String.self),
            secretSHA256: try row["secret_sha256"].decode(String.self),
            createdAt: Date(timeIntervalSinceReferenceDate: try row["created_at"].decode(Double.self)),
            revokedAt: try row["revoked_at"].decode(Double?.self).map(Date.init(timeIntervalSinceReferenceDate:)))
    }
}
