import Foundation
import Logging
import NclavCore
import NclavStore
import PostgresNIO

/// The store for hosted deployments: PostgreSQL through a PostgresNIO connection pool, safe
/// for several `nclav serve` replicas sharing one database.
///
/// How replicas stay one system:
/// - Conditional writes (state versions, state locks) take a transaction-scoped advisory lock
///   on the state's key first, so a check and the write it guards are atomic across replicas.
/// - The reconcile lock is a *session-level* advisory lock held on this replica's own
///   connection: if the replica dies, PostgreSQL frees it with the connection. A row beside it
///   records who holds it, for the 409 answer.
/// - Each replica registers itself and holds a second advisory lock on its session for as long
///   as it lives. Runs record the replica that started them, so a replica that starts (or takes
///   the reconcile lock) marks `interrupted` only the runs of replicas that are gone — never a
///   live neighbour's.
/// - Migrations are numbered and applied at start under an advisory lock, so replicas starting
///   together apply each one once.
public final class PostgresStore: StateStore {
    public let url: PostgresURL
    let client: PostgresClient
    private let clientTask: Task<Void, Never>
    private let session: SessionConnection
    private let retainedVersions: Int
    let logger: Logger
    let closedFlag = ClosedFlag()
    /// Wakes this replica's claimers when a job is queued (see `waitForJobs`).
    let bell = JobBell()
    /// The `NOTIFY` channel of queued jobs.
    static let jobChannel = "nclav_jobs"
    /// This replica's number in `nclav_replicas`, also the key of its liveness lock.
    public let replicaNumber: Int64

    /// Advisory lock namespace ("nclv"); the second key says what is locked.
    static let lockNamespace: Int32 = 0x6E63_6C76
    static let migrationKey: Int32 = 0
    static let reconcileKey: Int32 = 1
    /// Liveness locks live in their own namespace, keyed by replica number.
    static let replicaNamespace: Int32 = 0x6E63_6C77

    /// Connects, applies pending migrations and registers this replica.
    public static func open(
        url text: String, retainedVersions: Int = 100, logger: Logger = Logger(label: "nclav.postgres")
    ) async throws -> PostgresStore {
        let url: PostgresURL
        do { url = try PostgresURL(text) } catch let error as PostgresURL.ParseError {
            throw StoreError.cannotOpen(path: PostgresURL.redact(text), reason: error.description)
        }
        let configuration: PostgresClient.Configuration
        let sessionConfiguration: PostgresConnection.Configuration
        do {
            configuration = try url.clientConfiguration()
            sessionConfiguration = try url.connectionConfiguration()
        } catch {
            throw StoreError.cannotOpen(path: url.redacted, reason: "\(error)")
        }
        var poolConfiguration = configuration
        poolConfiguration.options.maximumConnections = 20
        let client = PostgresClient(configuration: poolConfiguration, backgroundLogger: logger)
        let clientTask = Task { await client.run() }
        var opened: SessionConnection?
        do {
            let session = try await SessionConnection.connect(sessionConfiguration, logger: logger)
            opened = session
            try await Migrations.apply(on: session, logger: logger)
            let number = try await session.registerReplica(host: ProcessInfo.processInfo.hostName, pid: getpid())
            return PostgresStore(
                url: url, client: client, clientTask: clientTask, session: session,
                retainedVersions: retainedVersions, logger: logger, replicaNumber: number)
        } catch {
            await opened?.close()
            clientTask.cancel()
            throw StoreError.cannotOpen(path: url.redacted, reason: Self.message(error))
        }
    }

    private init(
        url: PostgresURL, client: PostgresClient, clientTask: Task<Void, Never>, session: SessionConnection,
        retainedVersions: Int, logger: Logger, replicaNumber: Int64
    ) {
        self.url = url
        self.client = client
        self.clientTask = clientTask
        self.session = session
        self.retainedVersions = max(1, retainedVersions)
        self.logger = logger
        self.replicaNumber = replicaNumber
    }

    deinit {
        // A store dropped without `close()` still hangs up: the session holds this replica's locks.
        let session = session
        let bell = bell
        clientTask.cancel()
        Task {
            await bell.stop()
            await session.close()
        }
    }

    // MARK: Plumbing

    /// PostgresNIO keeps server error details out of `description` (they may hold data);
    /// the server's message and SQLSTATE say what went wrong without any of our secrets.
    static func message(_ error: any Error) -> String {
        if let error = error as? StoreError { return error.description }
        if let error = error as? PSQLError {
            var parts = ["\(error.code)"]
            if let message = error.serverInfo?[.message] { parts.append(message) }
            if let state = error.serverInfo?[.sqlState] { parts.append("SQLSTATE \(state)") }
            if let underlying = error.underlying { parts.append("\(underlying)") }
            return parts.joined(separator: ": ")
        }
        return "\(error)"
    }

    private func mapped<T>(_ body: () async throws -> T) async throws -> T {
        try closedFlag.check()
        do { return try await body() } catch let error as StoreError { throw error } catch {
            if closedFlag.isClosed { throw StoreError.closed }
            throw StoreError.database(Self.message(error))
        }
    }

    func rows(_ query: PostgresQuery) async throws -> [PostgresRandomAccessRow] {
        try await mapped {
            try await client.query(query, logger: logger).collect().map { $0.makeRandomAccess() }
        }
    }

    func execute(_ query: PostgresQuery) async throws {
        try await mapped { _ = try await client.query(query, logger: logger).collect() }
    }

    func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await mapped {
            try await client.withConnection { connection in
                try await connection.withTransaction(logger: logger) { connection in try await body(connection) }
            }
        }
    }

    /// Serialises writers of one state across replicas until the transaction ends.
    private static func lockKey(_ connection: PostgresConnection, _ key: StateKey, logger: Logger) async throws {
        let text = "\(key.enclave)/\(key.partition)"
        _ = try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\(text), 0))", logger: logger).collect()
    }

    public func ping() async throws {
        try await session.check()
        _ = try await rows("SELECT 1")
    }

    public func close() async throws {
        closedFlag.close()
        await bell.stop()
        await session.close()
        clientTask.cancel()
    }

    // MARK: Enclaves and partitions

    public func enclaves() async throws -> [EnclaveState] {
        try await rows("SELECT json FROM nclav_enclaves ORDER BY id").map { try RecordCoding.decode(EnclaveState.self, $0["json"].decode(Data.self)) }
    }

    public func enclave(_ id: String) async throws -> EnclaveState? {
        try await rows("SELECT json FROM nclav_enclaves WHERE id = \(id)").first.map {
            try RecordCoding.decode(EnclaveState.self, $0["json"].decode(Data.self))
        }
    }

    public func putEnclave(_ state: EnclaveState) async throws {
        let json = try RecordCoding.encode(state)
        try await execute("INSERT INTO nclav_enclaves (id, json) VALUES (\(state.id), \(json)) ON CONFLICT (id) DO UPDATE SET json = excluded.json")
    }

    public func deleteEnclave(_ id: String) async throws {
        try await transaction { connection in
            _ = try await connection.query("DELETE FROM nclav_partitions WHERE enclave_id = \(id)", logger: logger).collect()
            _ = try await connection.query("DELETE FROM nclav_enclaves WHERE id = \(id)", logger: logger).collect()
        }
    }

    public func partitions(ofEnclave id: String) async throws -> [PartitionState] {
        try await rows("SELECT json FROM nclav_partitions WHERE enclave_id = \(id) ORDER BY partition_id")
            .map { try RecordCoding.decode(PartitionState.self, $0["json"].decode(Data.self)) }
    }

    public func putPartition(_ state: PartitionState) async throws {
        let json = try RecordCoding.encode(state)
        try await execute(
            """
            INSERT INTO nclav_partitions (enclave_id, partition_id, json) VALUES (\(state.enclaveID), \(state.partitionID), \(json))
            ON CONFLICT (enclave_id, partition_id) DO UPDATE SET json = excluded.json
            """)
    }

    public func deletePartition(enclave: String, partition: String) async throws {
        try await execute("DELETE FROM nclav_partitions WHERE enclave_id = \(enclave) AND partition_id = \(partition)")
    }

    // MARK: Events

    public func appendEvent(_ event: AuditEvent) async throws -> AuditEvent {
        let rows = try await rows(
            """
            INSERT INTO nclav_events (time, kind, enclave_id, partition_id, reconcile_id, message)
            VALUES (\(event.time.timeIntervalSinceReferenceDate), \(event.kind), \(event.enclaveID), \(event.partitionID),
                    \(event.reconcileID?.uuidString), \(event.message))
            RETURNING seq
            """)
        guard let sequence = try rows.first?["seq"].decode(Int64.self) else {
            throw StoreError.database("the event insert returned no sequence number")
        }
        var stored = event
        stored.sequence = sequence
        return stored
    }

    public func events(enclave: String?, limit: Int) async throws -> [AuditEvent] {
        let limit = Int64(max(0, limit))
        let found =
            if let enclave {
                try await rows("SELECT * FROM nclav_events WHERE enclave_id = \(enclave) ORDER BY seq DESC LIMIT \(limit)")
            } else {
                try await rows("SELECT * FROM nclav_events ORDER BY seq DESC LIMIT \(limit)")
            }
        return try found.map { row in
            AuditEvent(
                sequence: try row["seq"].decode(Int64.self),
                time: Date(timeIntervalSinceReferenceDate: try row["time"].decode(Double.self)),
                kind: try row["kind"].decode(String.self),
                enclaveID: try row["enclave_id"].decode(String?.self), partitionID: try row["partition_id"].decode(String?.self),
                reconcileID: try row["reconcile_id"].decode(String?.self).flatMap(UUID.init(uuidString:)),
                message: try row["message"].decode(String.self))
        }
    }

    // MARK: Runs

    public func createRun(_ run: IacRun) async throws {
        let replica = replicaNumber
        try await transaction { connection in
            _ = try await connection.query(
                """
                INSERT INTO nclav_runs (id, enclave_id, partition_id, operation, status, exit_code, started_at, finished_at, tool,
                                        tool_version, reconcile_id, replica)
                VALUES (\(run.id.uuidString), \(run.enclaveID), \(run.partitionID), \(run.operation.rawValue), \(run.status.rawValue),
                        \(run.exitCode.map { Int64($0) }), \(run.startedAt.timeIntervalSinceReferenceDate),
                        \(run.finishedAt?.timeIntervalSinceReferenceDate), \(run.tool), \(run.toolVersion), \(run.reconcileID?.uuidString),
                        \(replica))
                """, logger: logger
            ).collect()
            if !run.log.isEmpty {
                _ = try await connection.query(
                    "INSERT INTO nclav_run_logs (run_id, text) VALUES (\(run.id.uuidString), \(run.log))",
                    logger: logger
                ).collect()
            }
        }
    }

    public func appendRunLog(_ runID: UUID, _ text: String) async throws {
        // One statement: the row is added only when the run exists, so an unknown id is an error.
        let inserted = try await rows(
            """
            INSERT INTO nclav_run_logs (run_id, text) SELECT id, \(text) FROM nclav_runs WHERE id = \(runID.uuidString) RETURNING seq
            """)
        if inserted.isEmpty { throw StoreError.unknownRun(runID) }
    }

    public func finishRun(_ runID: UUID, status: IacRun.Status, exitCode: Int32?, finishedAt: Date) async throws {
        let updated = try await rows(
            """
            UPDATE nclav_runs SET status = \(status.rawValue), exit_code = \(exitCode.map { Int64($0) }),
                   finished_at = \(finishedAt.timeIntervalSinceReferenceDate)
            WHERE id = \(runID.uuidString) RETURNING id
            """)
        if updated.isEmpty { throw StoreError.unknownRun(runID) }
    }

    public func setRunToolVersion(_ runID: UUID, _ version: String) async throws {
        let updated = try await rows("UPDATE nclav_runs SET tool_version = \(version) WHERE id = \(runID.uuidString) RETURNING id")
        if updated.isEmpty { throw StoreError.unknownRun(runID) }
    }

    public func run(_ runID: UUID) async throws -> IacRun? {
        guard let row = try await rows("SELECT * FROM nclav_runs WHERE id = \(runID.uuidString)").first else { return nil }
        var run = try Self.run(from: row)
        run.log = try await rows("SELECT text FROM nclav_run_logs WHERE run_id = \(runID.uuidString) ORDER BY seq")
            .map { try $0["text"].decode(String.self) }.joined()
        return run
    }

    public func runStatus(_ runID: UUID) async throws -> IacRun.Status? {
        try await rows("SELECT status FROM nclav_runs WHERE id = \(runID.uuidString)").first
            .flatMap { IacRun.Status(rawValue: try $0["status"].decode(String.self)) }
    }

    public func runs(enclave: String, partition: String, limit: Int) async throws -> [IacRun] {
        try await rows(
            """
            SELECT * FROM nclav_runs WHERE enclave_id = \(enclave) AND partition_id = \(partition)
            ORDER BY started_at DESC, id DESC LIMIT \(Int64(max(0, limit)))
            """
        ).map(Self.run(from:))
    }

    public func runningRuns() async throws -> [IacRun] {
        try await rows("SELECT * FROM nclav_runs WHERE status = 'running'").map(Self.run(from:))
    }

    private static func run(from row: PostgresRandomAccessRow) throws -> IacRun {
        let idText = try row["id"].decode(String.self)
        guard let id = UUID(uuidString: idText),
            let operation = IacRun.Operation(rawValue: try row["operation"].decode(String.self)),
            let status = IacRun.Status(rawValue: try row["status"].decode(String.self))
        else {
            throw StoreError.corrupt("run row \(idText)")
        }
        return IacRun(
            id: id, enclaveID: try row["enclave_id"].decode(String.self), partitionID: try row["partition_id"].decode(String.self),
            operation: operation, status: status,
            exitCode: try row["exit_code"].decode(Int64?.self).map { Int32(truncatingIfNeeded: $0) },
            startedAt: Date(timeIntervalSinceReferenceDate: try row["started_at"].decode(Double.self)),
            finishedAt: try row["finished_at"].decode(Double?.self).map(Date.init(timeIntervalSinceReferenceDate:)),
            tool: try row["tool"].decode(String.self), toolVersion: try row["tool_version"].decode(String?.self),
            reconcileID: try row["reconcile_id"].decode(String?.self).flatMap(UUID.init(uuidString:)))
    }

    // MARK: Terraform state

    private static let infoColumns = "version, serial, lineage, sha256, md5, size, created_at, run_id"

    private static func versionInfo(from row: PostgresRandomAccessRow) throws -> StateVersionInfo {
        StateVersionInfo(
            version: try row["version"].decode(Int64.self), serial: try row["serial"].decode(Int64.self),
            lineage: try row["lineage"].decode(String.self), sha256: try row["sha256"].decode(String.self),
            md5: try row["md5"].decode(String.self), size: Int(try row["size"].decode(Int64.self)),
            createdAt: Date(timeIntervalSinceReferenceDate: try row["created_at"].decode(Double.self)),
            runID: try row["run_id"].decode(String?.self).flatMap(UUID.init(uuidString:)))
    }

    public func latestState(_ key: StateKey) async throws -> (info: StateVersionInfo, body: Data)? {
        try await rows(
            """
            SELECT \(unescaped: Self.infoColumns), body FROM nclav_state_versions
            WHERE enclave_id = \(key.enclave) AND partition_id = \(key.partition) ORDER BY version DESC LIMIT 1
            """
        ).first.map { (try Self.versionInfo(from: $0), try $0["body"].decode(Data.self)) }
    }

    public func stateVersions(_ key: StateKey) async throws -> [StateVersionInfo] {
        try await rows(
            """
            SELECT \(unescaped: Self.infoColumns) FROM nclav_state_versions
            WHERE enclave_id = \(key.enclave) AND partition_id = \(key.partition) ORDER BY version DESC
            """
        ).map(Self.versionInfo(from:))
    }

    public func stateVersion(_ key: StateKey, version: Int64) async throws -> (info: StateVersionInfo, body: Data)? {
        try await rows(
            """
            SELECT \(unescaped: Self.infoColumns), body FROM nclav_state_versions
            WHERE enclave_id = \(key.enclave) AND partition_id = \(key.partition) AND version = \(version)
            """
        ).first.map { (try Self.versionInfo(from: $0), try $0["body"].decode(Data.self)) }
    }

    private static func latestInfo(_ connection: PostgresConnection, _ key: StateKey, logger: Logger) async throws -> StateVersionInfo? {
        try await connection.query(
            """
            SELECT \(unescaped: infoColumns) FROM nclav_state_versions
            WHERE enclave_id = \(key.enclave) AND partition_id = \(key.partition) ORDER BY version DESC LIMIT 1
            """, logger: logger
        ).collect().first.map { try versionInfo(from: $0.makeRandomAccess()) }
    }

    public func writeState(_ key: StateKey, _ write: StateWrite) async throws -> StateWriteOutcome {
        let retained = Int64(retainedVersions)
        return try await transaction { connection in
            try await Self.lockKey(connection, key, logger: logger)
            let latest = try await Self.latestInfo(connection, key, logger: logger)
            let lock = try await Self.lock(connection, key, logger: logger)
            if let answer = StateRules.decide(write, latest: latest, lock: lock) { return answer }
            let info = StateVersionInfo(
                version: (latest?.version ?? 0) + 1, serial: write.serial, lineage: write.lineage,
                sha256: write.sha256, md5: write.md5, size: write.body.count, createdAt: write.time, runID: write.runID)
            _ = try await connection.query(
                """
                INSERT INTO nclav_state_versions (enclave_id, partition_id, version, serial, lineage, sha256, md5, size, created_at, run_id, body)
                VALUES (\(key.enclave), \(key.partition), \(info.version), \(info.serial), \(info.lineage), \(info.sha256), \(info.md5),
                        \(Int64(info.size)), \(info.createdAt.timeIntervalSinceReferenceDate), \(info.runID?.uuidString), \(write.body))
                """, logger: logger
            ).collect()
            _ = try await connection.query(
                """
                DELETE FROM nclav_state_versions
                WHERE enclave_id = \(key.enclave) AND partition_id = \(key.partition) AND version <= \(info.version - retained)
                """, logger: logger
            ).collect()
            return .stored(info)
        }
    }

    public func deleteState(_ key: StateKey) async throws -> StateDeleteOutcome {
        try await transaction { connection in
            try await Self.lockKey(connection, key, logger: logger)
            if let lock = try await Self.lock(connection, key, logger: logger) { return .locked(lock) }
            let deleted = try await connection.query(
                """
                DELETE FROM nclav_state_versions WHERE enclave_id = \(key.enclave) AND partition_id = \(key.partition) RETURNING version
                """, logger: logger
            ).collect()
            return .deleted(versions: deleted.count)
        }
    }

    // MARK: Locks

    private static func lock(_ connection: PostgresConnection, _ key: StateKey, logger: Logger) async throws -> StateLock? {
        try await connection.query(
            """
            SELECT * FROM nclav_state_locks WHERE enclave_id = \(key.enclave) AND partition_id = \(key.partition)
            """, logger: logger
        ).collect().first.map { try lock(from: $0.makeRandomAccess()) }
    }

    private static func lock(from row: PostgresRandomAccessRow) throws -> StateLock {
        StateLock(
            id: try row["lock_id"].decode(String.self), info: try row["info"].decode(Data.self),
            runID: try row["run_id"].decode(String?.self).flatMap(UUID.init(uuidString:)),
            createdAt: Date(timeIntervalSinceReferenceDate: try row["created_at"].decode(Double.self)))
    }

    public func lock(_ key: StateKey) async throws -> StateLock? {
        try await rows("SELECT * FROM nclav_state_locks WHERE enclave_id = \(key.enclave) AND partition_id = \(key.partition)")
            .first.map(Self.lock(from:))
    }

    public func acquireLock(_ key: StateKey, _ lock: StateLock) async throws -> LockOutcome {
        try await transaction { connection in
            try await Self.lockKey(connection, key, logger: logger)
            if let answer = StateRules.decideLock(lock, existing: try await Self.lock(connection, key, logger: logger)) { return answer }
            _ = try await connection.query(
                """
                INSERT INTO nclav_state_locks (enclave_id, partition_id, lock_id, info, run_id, created_at)
                VALUES (\(key.enclave), \(key.partition), \(lock.id), \(lock.info), \(lock.runID?.uuidString),
                        \(lock.createdAt.timeIntervalSinceReferenceDate))
                """, logger: logger
            ).collect()
            return .acquired
        }
    }

    public func releaseLock(_ key: StateKey, id: String?) async throws -> UnlockOutcome {
        try await transaction { connection in
            try await Self.lockKey(connection, key, logger: logger)
            let existing = try await Self.lock(connection, key, logger: logger)
            if let answer = StateRules.decideUnlock(id: id, existing: existing) { return answer }
            _ = try await connection.query(
                """
                DELETE FROM nclav_state_locks WHERE enclave_id = \(key.enclave) AND partition_id = \(key.partition)
                """, logger: logger
            ).collect()
            return .released(existing!)
        }
    }

    public func releaseLocks(heldBy runID: UUID) async throws -> [StateKey] {
        try await rows(
            """
            DELETE FROM nclav_state_locks WHERE run_id = \(runID.uuidString) RETURNING enclave_id, partition_id
            """
        ).map { try StateKey(enclave: $0["enclave_id"].decode(String.self), partition: $0["partition_id"].decode(String.self)) }.sorted()
    }

    // MARK: Reconcile lock

    public func acquireReconcileLock(_ lock: ReconcileLock) async throws -> ReconcileLock? {
        try await mapped {
            if let current = try await session.tryReconcileLock(lock) {
                return current
            }
            // This replica now leads: whatever dead replicas left running is over. Should that
            // fail, the lock is let go again: a caller that got an error holds nothing to release.
            do { _ = try await interruptRuns(at: Date(), includingOwn: false) } catch {
                try? await session.releaseReconcileLock(lock.id)
                throw error
            }
            // Housekeeping, never a reason to refuse the reconcile: jobs that ended long ago go
            // (the run records keep what happened).
            _ = try? await purgeEndedJobs(endedBefore: Date().addingTimeInterval(-Self.endedJobRetention))
            return nil
        }
    }

    public func releaseReconcileLock(_ id: UUID) async throws {
        try await mapped { try await session.releaseReconcileLock(id) }
    }

    public func reconcileLock() async throws -> ReconcileLock? {
        // The row alone may outlive a dead holder; the lock itself is the truth.
        try await rows(
            """
            SELECT r.id, r.holder, r.started_at FROM nclav_reconcile_lock r
            WHERE EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
                          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                          AND l.classid::bigint = \(Int64(Self.lockNamespace)) AND l.objid::bigint = \(Int64(Self.reconcileKey))
                          AND l.objsubid = 2)
            """
        ).first.flatMap(ReconcileLock.init(row:))
    }

    // MARK: Recovery

    /// Called once at start: this replica has no runs yet, so `running` runs of this replica
    /// number (none, unless a test reuses a store) and of every replica that is gone are
    /// over. A live neighbour's runs and reconcile are left alone.
    public func recoverAfterRestart(at time: Date) async throws -> RecoveryReport {
        try await mapped {
            var report = try await interruptRuns(at: time, includingOwn: true)
            if let own = await session.heldReconcileLockRecord() {
                try await session.releaseReconcileLock(own.id)
                report.releasedReconcileLock = own
            } else if try await reconcileLock() == nil {
                report.releasedReconcileLock = try await rows("DELETE FROM nclav_reconcile_lock RETURNING id, holder, started_at")
                    .first.flatMap(ReconcileLock.init(row:))
            }
            return report
        }
    }

    /// How a replica's own workers are named in `nclav_jobs.agent`: `replica-<number>/…`, so a
    /// job held by a replica that is gone is known at once (agents' names start with their
    /// token id, 12 hex digits).
    public static let replicaWorkerPrefix = "replica-"

    /// How long a job that ended stays listed (`GET /jobs`): 30 days.
    public static let endedJobRetention: TimeInterval = 30 * 24 * 3600

    /// Marks `interrupted` the running runs of replicas whose liveness lock is gone (and, at
    /// start, this replica's own), and frees the state locks those runs held.
    ///
    /// With jobs: the jobs of those runs are withdrawn (queued) or told to stop (claimed), and
    /// jobs held by the workers of replicas that are gone are interrupted. A run whose job a
    /// live agent still holds keeps its state locks until that job ends, so no other run can
    /// write the state while its terraform is still stopping.
    private func interruptRuns(at time: Date, includingOwn: Bool) async throws -> RecoveryReport {
        let own: Int64 = includingOwn ? replicaNumber : -1
        let liveReplicas = """
            SELECT l.objid::bigint FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid::bigint = \(Int64(Self.replicaNamespace)) AND l.objsubid = 2
            """
        return try await transaction { connection in
            let runIDs = try await connection.query(
                """
                UPDATE nclav_runs SET status = 'interrupted', finished_at = \(time.timeIntervalSinceReferenceDate)
                WHERE status = 'running' AND (replica = \(own) OR replica NOT IN (\(unescaped: liveReplicas)))
                RETURNING id
                """, logger: logger
            ).collect().map { try $0.makeRandomAccess()["id"].decode(String.self) }
            let ownWorkers = "\(Self.replicaWorkerPrefix)\(own)/%"
            let prefixPattern = "^\(Self.replicaWorkerPrefix)([0-9]+)/"
            let orphanedJobRuns = try await connection.query(
                """
                UPDATE nclav_jobs SET state = 'interrupted', finished_at = \(unescaped: Self.databaseNow), payload = ''::bytea
                WHERE state = 'claimed' AND (agent LIKE \(ownWorkers)
                      OR substring(agent from \(prefixPattern))::bigint NOT IN (\(unescaped: liveReplicas))
                      OR (lease_expires_at < \(time.timeIntervalSinceReferenceDate)
                          AND run_id NOT IN (SELECT id FROM nclav_runs WHERE status = 'running')))
                RETURNING run_id
                """, logger: logger
            ).collect().map { try $0.makeRandomAccess()["run_id"].decode(String.self) }
            try await connection.query(
                """
                UPDATE nclav_jobs SET \(unescaped: Self.cancelAssignments)
                WHERE run_id = ANY(\(runIDs)) AND state IN ('queued', 'claimed')
                """, logger: logger)
            var report = RecoveryReport()
            report.interruptedRuns = runIDs.compactMap(UUID.init(uuidString:)).sorted { $0.uuidString < $1.uuidString }
            // The locks of those runs and jobs, and any other lock a run that ended left behind
            // (its job's end could not free it), unless a worker still runs its terraform.
            let released = Array(Set(runIDs + orphanedJobRuns))
            do {
                report.releasedLocks = try await connection.query(
                    """
                    DELETE FROM nclav_state_locks l
                    WHERE (l.run_id = ANY(\(released))
                           OR EXISTS (SELECT 1 FROM nclav_runs r WHERE r.id = l.run_id AND r.status <> 'running'))
                      AND l.run_id NOT IN (SELECT run_id FROM nclav_jobs WHERE state = 'claimed')
                    RETURNING enclave_id, partition_id
                    """, logger: logger
                ).collect().map { row in
                    let row = row.makeRandomAccess()
                    return try StateKey(enclave: row["enclave_id"].decode(String.self), partition: row["partition_id"].decode(String.self))
                }.sorted()
            }
            return report
        }
    }
}

extension ReconcileLock {
    init?(row: PostgresRandomAccessRow) {
        guard let idText = try? row["id"].decode(String.self), let id = UUID(uuidString: idText),
            let holder = try? row["holder"].decode(String.self), let started = try? row["started_at"].decode(Double.self)
        else { return nil }
        self.init(id: id, holder: holder, startedAt: Date(timeIntervalSinceReferenceDate: started))
    }
}

extension ClosedFlag {
    var isClosed: Bool { (try? check()) == nil }
}
