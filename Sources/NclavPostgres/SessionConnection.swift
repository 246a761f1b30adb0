import Foundation
import Logging
import NclavCore
import NclavStore
import PostgresNIO

/// One long-lived connection per replica, outside the pool, that holds the session-level
/// advisory locks: the replica's liveness lock for its whole life, and the reconcile lock while
/// this replica reconciles. When the process dies the connection dies and PostgreSQL frees both.
actor SessionConnection {
    private let connection: PostgresConnection
    private let logger: Logger
    private var heldReconcileLock: ReconcileLock?
    /// Set before the first `await` of an acquisition: advisory locks are re-entrant within a
    /// session, so two tasks of this replica must not both ask PostgreSQL.
    private var acquiringReconcileLock: ReconcileLock?

    private init(connection: PostgresConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    static func connect(_ configuration: PostgresConnection.Configuration, logger: Logger) async throws -> SessionConnection {
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        return SessionConnection(connection: connection, logger: logger)
    }

    @discardableResult
    func query(_ query: PostgresQuery) async throws -> [PostgresRandomAccessRow] {
        try await connection.query(query, logger: logger).collect().map { $0.makeRandomAccess() }
    }

    /// The locks this replica holds are only as alive as this connection.
    func check() throws {
        if connection.isClosed {
            throw StoreError.database(
                "this replica lost its session connection to PostgreSQL (its reconcile and liveness locks are gone); restart it")
        }
    }

    func registerReplica(host: String, pid: Int32) async throws -> Int64 {
        let rows = try await query(
            """
            INSERT INTO nclav_replicas (host, pid, started_at) VALUES (\(host), \(Int64(pid)), \(Date().timeIntervalSinceReferenceDate))
            RETURNING number
            """)
        guard let number = try rows.first?["number"].decode(Int64.self), let key = Int32(exactly: number) else {
            throw StoreError.database("could not register this replica")
        }
        try await query("SELECT pg_advisory_lock(\(PostgresStore.replicaNamespace), \(key))")
        return number
    }

    /// `nil` when taken; otherwise the holder (another replica, or this one in another reconcile).
    func tryReconcileLock(_ lock: ReconcileLock) async throws -> ReconcileLock? {
        try check()
        if let holder = heldReconcileLock ?? acquiringReconcileLock { return holder }
        acquiringReconcileLock = lock
        defer { acquiringReconcileLock = nil }
        let taken = try await query("SELECT pg_try_advisory_lock(\(PostgresStore.lockNamespace), \(PostgresStore.reconcileKey)) AS taken")
        guard try taken.first?["taken"].decode(Bool.self) == true else {
            let holder = try await query("SELECT id, holder, started_at FROM nclav_reconcile_lock").first.flatMap(ReconcileLock.init(row:))
            // The winner records itself just after taking the lock; between the two it is anonymous.
            return holder ?? ReconcileLock(id: UUID(), holder: "another nclav replica", startedAt: Date())
        }
        do {
            try await query(
                """
                INSERT INTO nclav_reconcile_lock (singleton, id, holder, started_at)
                VALUES (1, \(lock.id.uuidString), \(lock.holder), \(lock.startedAt.timeIntervalSinceReferenceDate))
                ON CONFLICT (singleton) DO UPDATE SET id = excluded.id, holder = excluded.holder, started_at = excluded.started_at
                """)
        } catch {
            _ = try? await query("SELECT pg_advisory_unlock(\(PostgresStore.lockNamespace), \(PostgresStore.reconcileKey))")
            throw error
        }
        heldReconcileLock = lock
        return nil
    }

    func heldReconcileLockRecord() -> ReconcileLock? { heldReconcileLock }

    func releaseReconcileLock(_ id: UUID) async throws {
        guard heldReconcileLock?.id == id else {
            // Not ours: at most a stale record of a holder that died.
            try await query("DELETE FROM nclav_reconcile_lock WHERE id = \(id.uuidString)")
            return
        }
        try await query("DELETE FROM nclav_reconcile_lock WHERE id = \(id.uuidString)")
        try await query("SELECT pg_advisory_unlock(\(PostgresStore.lockNamespace), \(PostgresStore.reconcileKey))")
        heldReconcileLock = nil
    }

    func close() async {
        heldReconcileLock = nil
        try? await connection.close()
    }
}

/// Numbered schema migrations, applied once each under an advisory lock so replicas that start
/// together do not race. A database migrated by a newer nclav is refused rather than misread.
enum Migrations {
    static let all: [(version: Int32, name: String, statements: [String])] = [
        (
            1, "initial schema",
            [
                "CREATE TABLE nclav_enclaves (id TEXT PRIMARY KEY, json BYTEA NOT NULL)",
                """
                CREATE TABLE nclav_partitions (enclave_id TEXT NOT NULL, partition_id TEXT NOT NULL, json BYTEA NOT NULL,
                    PRIMARY KEY (enclave_id, partition_id))
                """,
                """
                CREATE TABLE nclav_events (seq BIGSERIAL PRIMARY KEY, time DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL,
                    enclave_id TEXT, partition_id TEXT, reconcile_id TEXT, message TEXT NOT NULL)
                """,
                "CREATE INDEX nclav_events_by_enclave ON nclav_events (enclave_id, seq)",
                """
                CREATE TABLE nclav_replicas (number BIGSERIAL PRIMARY KEY, host TEXT NOT NULL, pid BIGINT NOT NULL,
                    started_at DOUBLE PRECISION NOT NULL)
                """,
                """
                CREATE TABLE nclav_runs (id TEXT PRIMARY KEY, enclave_id TEXT NOT NULL, partition_id TEXT NOT NULL,
                    operation TEXT NOT NULL, status TEXT NOT NULL, exit_code BIGINT, started_at DOUBLE PRECISION NOT NULL,
                    finished_at DOUBLE PRECISION, tool TEXT NOT NULL, tool_version TEXT, reconcile_id TEXT, replica BIGINT NOT NULL)
                """,
                "CREATE INDEX nclav_runs_by_partition ON nclav_runs (enclave_id, partition_id, started_at)",
                "CREATE INDEX nclav_runs_running ON nclav_runs (status) WHERE status = 'running'",
                "CREATE TABLE nclav_run_logs (seq BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, text TEXT NOT NULL)",
                "CREATE INDEX nclav_run_logs_by_run ON nclav_run_logs (run_id, seq)",
                """
                CREATE TABLE nclav_state_versions (enclave_id TEXT NOT NULL, partition_id TEXT NOT NULL, version BIGINT NOT NULL,
                    serial BIGINT NOT NULL, lineage TEXT NOT NULL, sha256 TEXT NOT NULL, md5 TEXT NOT NULL, size BIGINT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL, run_id TEXT, body BYTEA NOT NULL,
                    PRIMARY KEY (enclave_id, partition_id, version))
                """,
                """
                CREATE TABLE nclav_state_locks (enclave_id TEXT NOT NULL, partition_id TEXT NOT NULL, lock_id TEXT NOT NULL,
                    info BYTEA NOT NULL, run_id TEXT, created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (enclave_id, partition_id))
                """,
                "CREATE INDEX nclav_state_locks_by_run ON nclav_state_locks (run_id)",
                """
                CREATE TABLE nclav_reconcile_lock (singleton INTEGER PRIMARY KEY CHECK (singleton = 1), id TEXT NOT NULL,
                    holder TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL)
                """,
            ]
        ),
        (
            2, "agent jobs and agent tokens",
            [
                """
                CREATE TABLE nclav_jobs (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, enclave_id TEXT NOT NULL, partition_id TEXT NOT NULL,
                    pool TEXT, attempt INTEGER NOT NULL, state TEXT NOT NULL, agent TEXT, created_at DOUBLE PRECISION NOT NULL,
                    claimed_at DOUBLE PRECISION, lease_expires_at DOUBLE PRECISION, finished_at DOUBLE PRECISION,
                    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE, payload BYTEA NOT NULL, outcome BYTEA)
                """,
                "CREATE INDEX nclav_jobs_queued ON nclav_jobs (created_at) WHERE state = 'queued'",
                "CREATE INDEX nclav_jobs_by_partition ON nclav_jobs (enclave_id, partition_id, created_at)",
                """
                CREATE TABLE nclav_agent_tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_sha256 TEXT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION)
                """,
            ]
        ),
    ]

    static func apply(on session: SessionConnection, logger: Logger) async throws {
        try await session.query("SELECT pg_advisory_lock(\(PostgresStore.lockNamespace), \(PostgresStore.migrationKey))")
        do {
            try await applyLocked(on: session)
            try await session.query("SELECT pg_advisory_unlock(\(PostgresStore.lockNamespace), \(PostgresStore.migrationKey))")
        } catch {
            _ = try? await session.query("SELECT pg_advisory_unlock(\(PostgresStore.lockNamespace), \(PostgresStore.migrationKey))")
            throw error
        }
    }

    private static func applyLocked(on session: SessionConnection) async throws {
        try await session.query(
            """
            CREATE TABLE IF NOT EXISTS nclav_schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now())
            """)
        let applied = Set(try await session.query("SELECT version FROM nclav_schema_migrations").map { try $0["version"].decode(Int32.self) })
        let known = all.map(\.version).max() ?? 0
        if let newest = applied.max(), newest > known {
            throw StoreError.database(
                "the database schema is at version \(newest), newer than this nclav understands (\(known)); upgrade nclav on this replica")
        }
        for migration in all where !applied.contains(migration.version) {
            try await session.query("BEGIN")
            do {
                for statement in migration.statements { try await session.query(PostgresQuery(unsafeSQL: statement)) }
                try await session.query("INSERT INTO nclav_schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))")
                try await session.query("COMMIT")
            } catch {
                _ = try? await session.query("ROLLBACK")
                throw error
            }
        }
    }
}
