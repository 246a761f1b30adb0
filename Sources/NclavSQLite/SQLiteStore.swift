import Foundation
import GRDB
import NclavCore
import NclavStore

/// The default, persistent store: one SQLite file (`$NCLAV_HOME/state.db`) in WAL mode.
///
/// Every method is one transaction. Conditional writes read and write inside the same
/// `IMMEDIATE` transaction, so the writer lock makes them atomic against other tasks and
/// other processes using the same file.
///
/// Durability: `synchronous=NORMAL` under WAL (SQLite's recommended pairing) keeps every
/// committed transaction across a crash or `kill -9` of the process; after a power loss or
/// OS crash the last few commits may be lost but the file stays consistent.
/// `synchronousFull: true` fsyncs every commit and closes that gap at a latency cost.
///
/// State bodies of `bodyFileThreshold` bytes or more live as files in `<path>-bodies/` (see
/// `BodyFiles` for why); a backup is the database plus that directory.
public final class SQLiteStore: StateStore {
    private let pool: DatabasePool
    public let path: String
    private let retainedVersions: Int
    /// The database file's identity when opened; `ping` fails if the file is later removed or
    /// replaced, since writes would then go to an unlinked file and vanish on restart.
    private let fileIdentity: FileIdentity?
    private let writeQueue: WriteQueue
    private let bodyFiles: BodyFiles
    private let bodyFileThreshold: Int

    /// Bodies this size or larger are stored as files: below it a BLOB costs about as little.
    public static let defaultBodyFileThreshold = 64 * 1024

    public init(
        path: String, retainedVersions: Int = 100, synchronousFull: Bool = false,
        bodyFileThreshold: Int = SQLiteStore.defaultBodyFileThreshold
    ) throws {
        self.path = path
        self.retainedVersions = max(1, retainedVersions)
        self.bodyFileThreshold = max(0, bodyFileThreshold)
        var configuration = Configuration()
        configuration.busyMode = .timeout(30)
        configuration.label = "nclav-state"
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronousFull ? "FULL" : "NORMAL")")
            // Checkpoints run on the write queue between batches, not inside a commit.
            try db.execute(sql: "PRAGMA wal_autocheckpoint = 0")
            // Debian's SQLite is built with secure_delete on: every page a pruned state version
            // frees is overwritten with zeros, so pruning a version wrote its size again and doubled
            // the cost of a write past the retention limit (docs/benchmarks.md). FAST still zeroes deleted
            // content wherever that costs no extra I/O; freed overflow pages keep their bytes
            // until reused, inside a 0600 file that holds the retained versions anyway.
            try db.execute(sql: "PRAGMA secure_delete = FAST")
        }
        do {
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
            bodyFiles = try BodyFiles(directory: path + "-bodies", synchronous: synchronousFull)
            let referenced = try pool.read { db in
                Set(try String.fetchAll(db, sql: "SELECT body_file FROM state_versions WHERE body_file IS NOT NULL"))
            }
            _ = bodyFiles.sweep(keeping: referenced)
        } catch {
            throw StoreError.cannotOpen(path: path, reason: "\(error)")
        }
        fileIdentity = FileIdentity(path: path)
        writeQueue = WriteQueue(pool: pool, databasePath: path)
        // The sweep above spares files younger than its grace period; after a crash and a quick
        // restart those are leftovers too, so look once more when the grace period is over.
        DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + BodyFiles.sweepGraceSeconds + 1) { [weak self] in
            _ = try? self?.sweepOrphanedBodies()
        }
    }

    /// Removes body files that no row references and that are older than the sweep's grace
    /// period (see `BodyFiles.sweep`); returns how many. Runs at open and once shortly after.
    @discardableResult
    public func sweepOrphanedBodies() throws -> Int {
        let referenced = try readNow { db in
            Set(try String.fetchAll(db, sql: "SELECT body_file FROM state_versions WHERE body_file IS NOT NULL"))
        }
        return bodyFiles.sweep(keeping: referenced)
    }

    // MARK: Schema

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE enclaves (id TEXT PRIMARY KEY, json BLOB NOT NULL);
                    CREATE TABLE partitions (
                        enclave_id TEXT NOT NULL, partition_id TEXT NOT NULL, json BLOB NOT NULL,
                        PRIMARY KEY (enclave_id, partition_id));
                    CREATE TABLE events (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, kind TEXT NOT NULL,
                        enclave_id TEXT, partition_id TEXT, reconcile_id TEXT, message TEXT NOT NULL);
                    CREATE INDEX events_by_enclave ON events (enclave_id, seq);
                    CREATE TABLE runs (
                        id TEXT PRIMARY KEY, enclave_id TEXT NOT NULL, partition_id TEXT NOT NULL,
                        operation TEXT NOT NULL, status TEXT NOT NULL, exit_code INTEGER,
                        started_at REAL NOT NULL, finished_at REAL, tool TEXT NOT NULL, tool_version TEXT,
                        reconcile_id TEXT);
                    CREATE INDEX runs_by_partition ON runs (enclave_id, partition_id, started_at);
                    CREATE INDEX runs_by_status ON runs (status);
                    CREATE TABLE run_logs (
                        run_id TEXT NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL,
                        PRIMARY KEY (run_id, seq));
                    CREATE TABLE state_versions (
                        enclave_id TEXT NOT NULL, partition_id TEXT NOT NULL, version INTEGER NOT NULL,
                        serial INTEGER NOT NULL, lineage TEXT NOT NULL, sha256 TEXT NOT NULL, md5 TEXT NOT NULL, size INTEGER NOT NULL,
                        created_at REAL NOT NULL, run_id TEXT, body BLOB NOT NULL,
                        PRIMARY KEY (enclave_id, partition_id, version));
                    CREATE TABLE state_locks (
                        enclave_id TEXT NOT NULL, partition_id TEXT NOT NULL, lock_id TEXT NOT NULL,
                        info BLOB NOT NULL, run_id TEXT, created_at REAL NOT NULL,
                        PRIMARY KEY (enclave_id, partition_id));
                    CREATE TABLE reconcile_lock (
                        singleton INTEGER PRIMARY KEY CHECK (singleton = 1), id TEXT NOT NULL,
                        holder TEXT NOT NULL, started_at REAL NOT NULL);
                    """)
        }
        // Large bodies as files (`BodyFiles`); `body` is then empty.
        migrator.registerMigration("v2-body-files") { db in
            try db.execute(sql: "ALTER TABLE state_versions ADD COLUMN body_file TEXT")
        }
        return migrator
    }

    // MARK: Plumbing

    private let closedFlag = ClosedFlag()

    private func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try closedFlag.check()
        // Readers write their read marks into the shared-memory file too.
        if let problem = writeQueue.filesProblem() { throw problem }
        do { return try await pool.read(body) } catch let error as StoreError { throw error } catch {
            throw StoreError.database("\(error)")
        }
    }

    /// A read on the calling thread. GRDB's async `read` hops to a reader queue and back,
    /// which was about half of a state GET's time (docs/benchmarks.md); a one-row
    /// read under WAL never waits for the writer, so blocking for it is the cheaper wait.
    private func readNow<T>(_ body: (Database) throws -> T) throws -> T {
        try closedFlag.check()
        if let problem = writeQueue.filesProblem() { throw problem }
        do { return try pool.read(body) } catch let error as StoreError { throw error } catch {
            throw StoreError.database("\(error)")
        }
    }

    /// `singleStatement`: the write changes the database with at most one statement, which
    /// SQLite already applies all-or-nothing, so it needs no savepoint of its own in the batch.
    private func write<T: Sendable>(
        weight: Int = 4096, singleStatement: Bool = false,
        _ body: @escaping @Sendable (Database) throws -> T
    ) async throws -> T {
        try closedFlag.check()
        do { return try await writeQueue.submit(weight: weight, savepoint: !singleStatement, body) } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.database("\(error)")
        }
    }

    public func ping() async throws {
        if let fileIdentity, FileIdentity(path: path) != fileIdentity {
            throw StoreError.database("the database file \(path) was removed or replaced while the server runs; restart the server")
        }
        // Ready means able to write too: a store that only reads would fail every apply.
        if let problem = writeQueue.writeProblem() { throw problem }
        _ = try await read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM reconcile_lock") }
    }

    public func close() async throws {
        closedFlag.close()
        writeQueue.stop()
        bodyFiles.drain()
        do { try pool.close() } catch { throw StoreError.database("closing: \(error)") }
    }

    // MARK: Enclaves and partitions

    public func enclaves() async throws -> [EnclaveState] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT json FROM enclaves ORDER BY id").map { try RecordCoding.decode(EnclaveState.self, $0["json"]) }
        }
    }

    public func enclave(_ id: String) async throws -> EnclaveState? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT json FROM enclaves WHERE id = ?", arguments: [id]).map {
                try RecordCoding.decode(EnclaveState.self, $0["json"])
            }
        }
    }

    public func putEnclave(_ state: EnclaveState) async throws {
        let json = try RecordCoding.encode(state)
        try await write { db in
            try db.execute(
                sql: "INSERT INTO enclaves (id, json) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET json = excluded.json",
                arguments: [state.id, json])
        }
    }

    public func deleteEnclave(_ id: String) async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM partitions WHERE enclave_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM enclaves WHERE id = ?", arguments: [id])
        }
    }

    public func partitions(ofEnclave id: String) async throws -> [PartitionState] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT json FROM partitions WHERE enclave_id = ? ORDER BY partition_id", arguments: [id])
                .map { try RecordCoding.decode(PartitionState.self, $0["json"]) }
        }
    }

    public func putPartition(_ state: PartitionState) async throws {
        let json = try RecordCoding.encode(state)
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO partitions (enclave_id, partition_id, json) VALUES (?, ?, ?)
                    ON CONFLICT(enclave_id, partition_id) DO UPDATE SET json = excluded.json
                    """, arguments: [state.enclaveID, state.partitionID, json])
        }
    }

    public func deletePartition(enclave: String, partition: String) async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM partitions WHERE enclave_id = ? AND partition_id = ?", arguments: [enclave, partition])
        }
    }

    // MARK: Events

    public func appendEvent(_ event: AuditEvent) async throws -> AuditEvent {
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO events (time, kind, enclave_id, partition_id, reconcile_id, message) VALUES (?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    event.time.timeIntervalSinceReferenceDate, event.kind, event.enclaveID, event.partitionID,
                    event.reconcileID?.uuidString, event.message,
                ])
            var stored = event
            stored.sequence = db.lastInsertedRowID
            return stored
        }
    }

    public func events(enclave: String?, limit: Int) async throws -> [AuditEvent] {
        try await read { db in
            let rows: [Row]
            if let enclave {
                rows = try Row.fetchAll(
                    db, sql: "SELECT * FROM events WHERE enclave_id = ? ORDER BY seq DESC LIMIT ?", arguments: [enclave, max(0, limit)])
            } else {
                rows = try Row.fetchAll(db, sql: "SELECT * FROM events ORDER BY seq DESC LIMIT ?", arguments: [max(0, limit)])
            }
            return rows.map { row in
                AuditEvent(
                    sequence: row["seq"], time: Date(timeIntervalSinceReferenceDate: row["time"]), kind: row["kind"],
                    enclaveID: row["enclave_id"], partitionID: row["partition_id"],
                    reconcileID: (row["reconcile_id"] as String?).flatMap(UUID.init(uuidString:)), message: row["message"])
            }
        }
    }

    // MARK: Runs

    public func createRun(_ run: IacRun) async throws {
        try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO runs (id, enclave_id, partition_id, operation, status, exit_code, started_at, finished_at, tool, tool_version, reconcile_id)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    run.id.uuidString, run.enclaveID, run.partitionID, run.operation.rawValue, run.status.rawValue,
                    run.exitCode.map { Int64($0) }, run.startedAt.timeIntervalSinceReferenceDate,
                    run.finishedAt?.timeIntervalSinceReferenceDate, run.tool, run.toolVersion, run.reconcileID?.uuidString,
                ])
            if !run.log.isEmpty {
                try db.execute(sql: "INSERT INTO run_logs (run_id, seq, text) VALUES (?, 1, ?)", arguments: [run.id.uuidString, run.log])
            }
        }
    }

    public func appendRunLog(_ runID: UUID, _ text: String) async throws {
        try await write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM runs WHERE id = ?", arguments: [runID.uuidString]) != nil else {
                throw StoreError.unknownRun(runID)
            }
            try db.execute(
                sql: """
                    INSERT INTO run_logs (run_id, seq, text)
                    VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_logs WHERE run_id = ?), ?)
                    """, arguments: [runID.uuidString, runID.uuidString, text])
        }
    }

    public func finishRun(_ runID: UUID, status: IacRun.Status, exitCode: Int32?, finishedAt: Date) async throws {
        try await write { db in
            try db.execute(
                sql: "UPDATE runs SET status = ?, exit_code = ?, finished_at = ? WHERE id = ?",
                arguments: [status.rawValue, exitCode.map { Int64($0) }, finishedAt.timeIntervalSinceReferenceDate, runID.uuidString])
            if db.changesCount == 0 { throw StoreError.unknownRun(runID) }
        }
    }

    public func setRunToolVersion(_ runID: UUID, _ version: String) async throws {
        try await write { db in
            try db.execute(sql: "UPDATE runs SET tool_version = ? WHERE id = ?", arguments: [version, runID.uuidString])
            if db.changesCount == 0 { throw StoreError.unknownRun(runID) }
        }
    }

    public func run(_ runID: UUID) async throws -> IacRun? {
        try await read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE id = ?", arguments: [runID.uuidString]) else { return nil }
            var run = try Self.run(from: row)
            run.log = try String.fetchAll(db, sql: "SELECT text FROM run_logs WHERE run_id = ? ORDER BY seq", arguments: [runID.uuidString]).joined()
            return run
        }
    }

    public func runStatus(_ runID: UUID) async throws -> IacRun.Status? {
        try await read { db in
            try String.fetchOne(db, sql: "SELECT status FROM runs WHERE id = ?", arguments: [runID.uuidString]).flatMap(IacRun.Status.init(rawValue:))
        }
    }

    public func runs(enclave: String, partition: String, limit: Int) async throws -> [IacRun] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM runs WHERE enclave_id = ? AND partition_id = ? ORDER BY started_at DESC, id DESC LIMIT ?
                    """, arguments: [enclave, partition, max(0, limit)]
            ).map(Self.run(from:))
        }
    }

    public func runningRuns() async throws -> [IacRun] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM runs WHERE status = 'running'").map(Self.run(from:))
        }
    }

    private static func run(from row: Row) throws -> IacRun {
        guard let id = UUID(uuidString: row["id"]),
            let operation = IacRun.Operation(rawValue: row["operation"]),
            let status = IacRun.Status(rawValue: row["status"])
        else {
            throw StoreError.corrupt("run row \(row["id"] as String? ?? "?")")
        }
        return IacRun(
            id: id, enclaveID: row["enclave_id"], partitionID: row["partition_id"], operation: operation, status: status,
            exitCode: (row["exit_code"] as Int64?).map { Int32(truncatingIfNeeded: $0) },
            startedAt: Date(timeIntervalSinceReferenceDate: row["started_at"]),
            finishedAt: (row["finished_at"] as Double?).map(Date.init(timeIntervalSinceReferenceDate:)),
            tool: row["tool"], toolVersion: row["tool_version"],
            reconcileID: (row["reconcile_id"] as String?).flatMap(UUID.init(uuidString:)))
    }

    // MARK: Terraform state

    private static func versionInfo(from row: Row) -> StateVersionInfo {
        StateVersionInfo(
            version: row["version"], serial: row["serial"], lineage: row["lineage"], sha256: row["sha256"],
            md5: row["md5"], size: row["size"], createdAt: Date(timeIntervalSinceReferenceDate: row["created_at"]),
            runID: (row["run_id"] as String?).flatMap(UUID.init(uuidString:)))
    }

    private static let infoColumns = "version, serial, lineage, sha256, md5, size, created_at, run_id"

    private static func latestInfo(_ db: Database, _ key: StateKey) throws -> StateVersionInfo? {
        try Row.fetchOne(
            db.cachedStatement(
                sql: """
                    SELECT \(infoColumns) FROM state_versions WHERE enclave_id = ? AND partition_id = ? ORDER BY version DESC LIMIT 1
                    """), arguments: [key.enclave, key.partition]
        ).map(versionInfo(from:))
    }

    /// Where a version's body is: in its row, or in a body file.
    private enum StoredBody: Sendable {
        case inline(Data)
        case file(name: String, size: Int)
    }

    private static func storedBody(from row: Row) -> StoredBody {
        if let name = row["body_file"] as String? { return .file(name: name, size: row["size"]) }
        return .inline(row["body"])
    }

    /// Reads a version's row, then opens its body: `load` turns the stored body into what
    /// the caller wants (bytes, or an open file). A writer may prune that version and remove
    /// its file between the two steps (the row read is a snapshot), so a missing file means
    /// "read the row again"; a file still missing while its row is still there is damage,
    /// reported as such. Reads run on the calling thread (see `readNow`).
    private func version<Body>(_ fetch: (Database) throws -> Row?, load: (StoredBody) throws -> Body) throws -> (info: StateVersionInfo, body: Body)?
    {
        var attempt = 0
        while true {
            attempt += 1
            guard let (info, stored) = try readNow({ db in try fetch(db).map { (Self.versionInfo(from: $0), Self.storedBody(from: $0)) } }) else {
                return nil
            }
            do {
                return (info, try load(stored))
            } catch BodyFiles.Failure.missing(let name) {
                if attempt < 3 { continue }
                throw StoreError.corrupt(
                    "the body file of state version \(info.version) (\(bodyFiles.directory)/\(name)) is missing; "
                        + "restore an intact version with `nclav state rollback`")
            }
        }
    }

    private func bytes(_ stored: StoredBody) throws -> Data {
        switch stored {
        case .inline(let body): return body
        case .file(let name, let size): return try bodyFiles.read(name, size: size)
        }
    }

    private static func latestRow(_ db: Database, _ key: StateKey) throws -> Row? {
        try Row.fetchOne(
            db.cachedStatement(
                sql: """
                    SELECT \(infoColumns), body, body_file FROM state_versions WHERE enclave_id = ? AND partition_id = ? ORDER BY version DESC LIMIT 1
                    """), arguments: [key.enclave, key.partition])
    }

    public func latestState(_ key: StateKey) async throws -> (info: StateVersionInfo, body: Data)? {
        try version({ try Self.latestRow($0, key) }, load: bytes)
    }

    public func latestStateBody(_ key: StateKey) async throws -> (info: StateVersionInfo, body: StateBody)? {
        try version({ try Self.latestRow($0, key) }) { stored in
            switch stored {
            case .inline(let body): return .data(body)
            case .file(let name, let size): return .file(descriptor: try bodyFiles.open(name, size: size), size: size)
            }
        }
    }

    public func stateVersions(_ key: StateKey) async throws -> [StateVersionInfo] {
        try await read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT \(Self.infoColumns) FROM state_versions WHERE enclave_id = ? AND partition_id = ? ORDER BY version DESC
                    """, arguments: [key.enclave, key.partition]
            ).map(Self.versionInfo(from:))
        }
    }

    public func stateVersion(_ key: StateKey, version number: Int64) async throws -> (info: StateVersionInfo, body: Data)? {
        try version(
            { db in
                try Row.fetchOne(
                    db,
                    sql: """
                        SELECT \(Self.infoColumns), body, body_file FROM state_versions WHERE enclave_id = ? AND partition_id = ? AND version = ?
                        """, arguments: [key.enclave, key.partition, number])
            }, load: bytes)
    }

    public func writeState(_ key: StateKey, _ write: StateWrite) async throws -> StateWriteOutcome {
        let retained = retainedVersions
        // A large body is written to its file first, outside the transaction, so the writer
        // thread only records its name; the file is removed again if the write is refused.
        let bodyFile: String?
        if let staged = write.staged as? StagedBodyFile, staged.directory == bodyFiles.directory, staged.claim() {
            bodyFile = staged.name
        } else {
            bodyFile = write.body.count >= bodyFileThreshold ? try bodyFiles.write(write.body) : nil
        }
        let result: (outcome: StateWriteOutcome, pruned: [String], superseded: String?)
        do {
            result = try await self.write(weight: bodyFile == nil ? write.body.count : 4096) { db in
                let latest = try Self.latestInfo(db, key)
                let lock = try Self.lock(db, key)
                if let answer = StateRules.decide(write, latest: latest, lock: lock) { return (answer, [], nil) }
                let info = StateVersionInfo(
                    version: (latest?.version ?? 0) + 1, serial: write.serial, lineage: write.lineage,
                    sha256: write.sha256, md5: write.md5, size: write.body.count, createdAt: write.time, runID: write.runID)
                try db.cachedStatement(
                    sql: """
                        INSERT INTO state_versions (enclave_id, partition_id, version, serial, lineage, sha256, md5, size, created_at, run_id, body, body_file)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """
                ).execute(arguments: [
                    key.enclave, key.partition, info.version, info.serial, info.lineage, info.sha256, info.md5, info.size,
                    info.createdAt.timeIntervalSinceReferenceDate, info.runID?.uuidString,
                    bodyFile == nil ? write.body : Data(), bodyFile,
                ])
                let pruned = try String?.fetchAll(
                    db.cachedStatement(
                        sql: """
                            DELETE FROM state_versions WHERE enclave_id = ? AND partition_id = ? AND version <= ? RETURNING body_file
                            """), arguments: [key.enclave, key.partition, info.version - Int64(retained)]
                ).compactMap { $0 }
                let superseded = try latest.flatMap { latest in
                    try String.fetchOne(
                        db.cachedStatement(
                            sql: """
                                SELECT body_file FROM state_versions WHERE enclave_id = ? AND partition_id = ? AND version = ?
                                """), arguments: [key.enclave, key.partition, latest.version])
                }
                return (.stored(info), pruned, superseded)
            }
        } catch {
            if let bodyFile { bodyFiles.remove([bodyFile]) }
            throw error
        }
        // Files go only after their rows are committed away: a crash in between leaves
        // unreferenced files for the next open's sweep, never a row without its body.
        if case .stored = result.outcome {} else if let bodyFile { bodyFiles.remove([bodyFile]) }
        bodyFiles.remove(result.pruned)
        if let superseded = result.superseded, !result.pruned.contains(superseded) { bodyFiles.release(superseded) }
        return result.outcome
    }

    public func stageStateBody(expectedSize: Int) throws -> (any StagedStateBody)? {
        try closedFlag.check()
        return expectedSize >= bodyFileThreshold ? try StagedBodyFile(files: bodyFiles) : nil
    }

    public func deleteState(_ key: StateKey) async throws -> StateDeleteOutcome {
        let result: (outcome: StateDeleteOutcome, files: [String]) = try await write { db in
            if let lock = try Self.lock(db, key) { return (.locked(lock), []) }
            let deleted = try String?.fetchAll(
                db, sql: "DELETE FROM state_versions WHERE enclave_id = ? AND partition_id = ? RETURNING body_file",
                arguments: [key.enclave, key.partition])
            return (.deleted(versions: deleted.count), deleted.compactMap { $0 })
        }
        bodyFiles.remove(result.files)
        return result.outcome
    }

    // MARK: Locks

    private static func lock(_ db: Database, _ key: StateKey) throws -> StateLock? {
        try Row.fetchOne(
            db.cachedStatement(sql: "SELECT lock_id, info, run_id, created_at FROM state_locks WHERE enclave_id = ? AND partition_id = ?"),
            arguments: [key.enclave, key.partition]
        ).map(lock(from:))
    }

    /// From a row of `lock_id, info, run_id, created_at`, by position: GRDB's lookup by
    /// name lowercases each name, measurable on the lock path.
    private static func lock(from row: Row) -> StateLock {
        StateLock(
            id: row[0], info: row[1], runID: (row[2] as String?).flatMap(UUID.init(uuidString:)),
            createdAt: Date(timeIntervalSinceReferenceDate: row[3]))
    }

    public func lock(_ key: StateKey) async throws -> StateLock? {
        try await read { db in try Self.lock(db, key) }
    }

    // Locks are the hottest writes (terraform takes and frees one around every command), so
    // each is one statement in the common case: the insert or delete itself, with the existing
    // lock read only when it did not happen. The outcome is the one `StateRules` decides.

    public func acquireLock(_ key: StateKey, _ lock: StateLock) async throws -> LockOutcome {
        try await write(singleStatement: true) { db in
            try db.cachedStatement(
                sql: """
                    INSERT INTO state_locks (enclave_id, partition_id, lock_id, info, run_id, created_at) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (enclave_id, partition_id) DO NOTHING
                    """
            ).execute(arguments: [
                key.enclave, key.partition, lock.id, lock.info, lock.runID?.uuidString, lock.createdAt.timeIntervalSinceReferenceDate,
            ])
            if db.changesCount == 1 { return .acquired }
            return StateRules.decideLock(lock, existing: try Self.lock(db, key)) ?? .acquired
        }
    }

    public func releaseLock(_ key: StateKey, id: String?) async throws -> UnlockOutcome {
        try await write(singleStatement: true) { db in
            if let removed = try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        DELETE FROM state_locks WHERE enclave_id = ? AND partition_id = ? AND (? IS NULL OR lock_id = ?)
                        RETURNING lock_id, info, run_id, created_at
                        """), arguments: [key.enclave, key.partition, id, id])
            {
                return .released(Self.lock(from: removed))
            }
            return StateRules.decideUnlock(id: id, existing: try Self.lock(db, key)) ?? .notLocked
        }
    }

    public func releaseLocks(heldBy runID: UUID) async throws -> [StateKey] {
        try await write { db in
            let rows = try Row.fetchAll(
                db, sql: "SELECT enclave_id, partition_id FROM state_locks WHERE run_id = ? ORDER BY enclave_id, partition_id",
                arguments: [runID.uuidString])
            try db.execute(sql: "DELETE FROM state_locks WHERE run_id = ?", arguments: [runID.uuidString])
            return try rows.map { try StateKey(enclave: $0["enclave_id"], partition: $0["partition_id"]) }
        }
    }

    // MARK: Reconcile lock

    private static func reconcileLock(_ db: Database) throws -> ReconcileLock? {
        try Row.fetchOne(db, sql: "SELECT * FROM reconcile_lock WHERE singleton = 1").flatMap { row in
            UUID(uuidString: row["id"]).map {
                ReconcileLock(id: $0, holder: row["holder"], startedAt: Date(timeIntervalSinceReferenceDate: row["started_at"]))
            }
        }
    }

    public func acquireReconcileLock(_ lock: ReconcileLock) async throws -> ReconcileLock? {
        try await write { db in
            if let current = try Self.reconcileLock(db) { return current }
            try db.execute(
                sql: "INSERT INTO reconcile_lock (singleton, id, holder, started_at) VALUES (1, ?, ?, ?)",
                arguments: [lock.id.uuidString, lock.holder, lock.startedAt.timeIntervalSinceReferenceDate])
            return nil
        }
    }

    public func releaseReconcileLock(_ id: UUID) async throws {
        try await write { db in
            try db.execute(sql: "DELETE FROM reconcile_lock WHERE id = ?", arguments: [id.uuidString])
        }
    }

    public func reconcileLock() async throws -> ReconcileLock? {
        try await read { db in try Self.reconcileLock(db) }
    }

    // MARK: Recovery

    public func recoverAfterRestart(at time: Date) async throws -> RecoveryReport {
        try await write { db in
            var report = RecoveryReport()
            report.interruptedRuns = try String.fetchAll(db, sql: "SELECT id FROM runs WHERE status = 'running' ORDER BY id")
                .compactMap(UUID.init(uuidString:))
            for runID in report.interruptedRuns {
                try db.execute(
                    sql: "UPDATE runs SET status = 'interrupted', finished_at = ? WHERE id = ?",
                    arguments: [time.timeIntervalSinceReferenceDate, runID.uuidString])
                let rows = try Row.fetchAll(
                    db, sql: "SELECT enclave_id, partition_id FROM state_locks WHERE run_id = ?", arguments: [runID.uuidString])
                report.releasedLocks += try rows.map { try StateKey(enclave: $0["enclave_id"], partition: $0["partition_id"]) }
                try db.execute(sql: "DELETE FROM state_locks WHERE run_id = ?", arguments: [runID.uuidString])
            }
            report.releasedLocks.sort()
            report.releasedReconcileLock = try Self.reconcileLock(db)
            try db.execute(sql: "DELETE FROM reconcile_lock")
            return report
        }
    }
}

struct FileIdentity: Equatable, Sendable {
    let device: UInt64
    let inode: UInt64

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }
}
