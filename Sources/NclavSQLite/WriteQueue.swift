import Foundation
import GRDB
import NclavStore

/// Runs every SQLite write on one dedicated thread with **group commit**: whatever writes
/// arrive while a transaction runs are executed together in the next one, each inside its own
/// savepoint (so one failing write rolls back alone), and every caller is resumed only after
/// that transaction has committed.
///
/// Why: a small write costs several times more through GRDB's async bridge than
/// synchronously (docs/benchmarks.md), and each transaction has a fixed cost; under 50 concurrent lockers, batching turns
/// a queue of transactions into a few. WAL checkpoints also run here, between batches when
/// the queue is idle, instead of inside the commit of whichever write crossed SQLite's
/// auto-checkpoint threshold (which doubled the cost of a 10 MB state write).
final class WriteQueue: @unchecked Sendable {
    // `jobs`, `stopped` and `walBytes` are guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var stopped = false
    private var finished = false
    private var walBytes = 0
    private let pool: DatabasePool
    private let files: WritableFiles?

    /// Checkpoint when idle past this much WAL, and even when busy past the hard limit.
    static let idleCheckpointBytes = 4 * 1024 * 1024
    static let forcedCheckpointBytes = 64 * 1024 * 1024

    private struct Job {
        /// Runs the write inside the batch's transaction and returns what to do after commit.
        let run: (Database) -> () -> Void
        /// Called instead when the batch's transaction fails.
        let fail: (Error) -> Void
        /// Roughly how many bytes it adds to the WAL.
        let weight: Int
    }

    /// `databasePath`: checked for writability before writes (nil for an in-memory database).
    init(pool: DatabasePool, databasePath: String? = nil) {
        self.pool = pool
        self.files = databasePath.map(WritableFiles.init)
        let thread = Thread { [self] in self.loop() }
        thread.name = "nclav-sqlite-writer"
        thread.start()
    }

    /// `savepoint: false` only for a write that changes the database with at most one
    /// statement (SQLite applies each statement all-or-nothing): it saves three statements.
    func submit<T: Sendable>(weight: Int = 4096, savepoint: Bool = true, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            let job = Job(
                run: { db in
                    guard savepoint else {
                        do {
                            let result = try body(db)
                            return { continuation.resume(returning: result) }
                        } catch {
                            return { continuation.resume(throwing: error) }
                        }
                    }
                    // A savepoint per job, so one failing write rolls back alone. The three
                    // statements are prepared once per connection (GRDB's `inSavepoint` compiles
                    // them on every call, which showed up in a lock's CPU profile).
                    do {
                        try db.cachedStatement(sql: "SAVEPOINT nclav_job").execute()
                    } catch {
                        return { continuation.resume(throwing: error) }
                    }
                    do {
                        let result = try body(db)
                        try db.cachedStatement(sql: "RELEASE SAVEPOINT nclav_job").execute()
                        return { continuation.resume(returning: result) }
                    } catch {
                        try? db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT nclav_job").execute()
                        try? db.cachedStatement(sql: "RELEASE SAVEPOINT nclav_job").execute()
                        return { continuation.resume(throwing: error) }
                    }
                },
                fail: { continuation.resume(throwing: $0) },
                weight: weight)
            condition.lock()
            if stopped {
                condition.unlock()
                continuation.resume(throwing: StoreError.closed)
                return
            }
            jobs.append(job)
            condition.signal()
            condition.unlock()
        }
    }

    /// Why writes would fail now (the files cannot be written), checked afresh.
    func writeProblem() -> StoreError? { files?.problem(fresh: true) }

    /// The same, from a check at most 100 ms old (cheap enough for every read).
    func filesProblem() -> StoreError? { files?.problem() }

    /// Finishes queued writes, checkpoints, and stops the thread.
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped {
                if walBytes >= Self.idleCheckpointBytes {
                    walBytes = 0
                    condition.unlock()
                    checkpoint()
                    condition.lock()
                    continue
                }
                condition.wait()
            }
            if jobs.isEmpty && stopped {
                condition.unlock()
                checkpoint()
                condition.lock()
                finished = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            walBytes += batch.reduce(0) { $0 + $1.weight }
            let forceCheckpoint = walBytes >= Self.forcedCheckpointBytes
            if forceCheckpoint { walBytes = 0 }
            condition.unlock()

            run(batch)
            if forceCheckpoint { checkpoint() }
        }
    }

    private func run(_ batch: [Job]) {
        if let problem = files?.problem() {
            for job in batch { job.fail(problem) }
            return
        }
        var completions: [() -> Void] = []
        completions.reserveCapacity(batch.count)
        do {
            try pool.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    completions = batch.map { $0.run(db) }
                    return .commit
                }
            }
        } catch {
            for job in batch { job.fail(StoreError.database("\(error)")) }
            return
        }
        for completion in completions { completion() }
    }

    private func checkpoint() {
        if files?.problem() != nil { return }
        // PASSIVE never waits for readers; frames still in use are copied on a later pass.
        _ = try? pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)") }
    }
}

/// Whether the database and its WAL and shared-memory files can still be written. SQLite
/// writes the shared-memory file through a memory map: if that file stops being writable
/// under a running server (made immutable, a read-only remount), the next write would end the
/// process with SIGBUS, which no program can catch. Checked before writes, at most every
/// 100 ms (an `access` per file; checking every batch measurably slowed the lock path), so a
/// change is noticed within that window and writes fail as store errors (503) instead.
final class WritableFiles: @unchecked Sendable {
    private let paths: [String]
    private let lock = NSLock()
    private var checkedAt: UInt64 = 0
    private var cached: StoreError?

    init(databasePath: String) {
        paths = [databasePath, databasePath + "-wal", databasePath + "-shm"]
    }

    /// Why the files cannot be written, or nil; `fresh` skips the 100 ms reuse (for /ready).
    func problem(fresh: Bool = false) -> StoreError? {
        let now = DispatchTime.now().uptimeNanoseconds
        lock.lock()
        defer { lock.unlock() }
        if !fresh, checkedAt != 0, now &- checkedAt < 100_000_000 { return cached }
        checkedAt = now
        cached = nil
        for path in paths where access(path, F_OK) == 0 && access(path, W_OK) != 0 {
            cached = .database(
                "\(path) cannot be written (\(String(cString: strerror(errno)))); SQLite needs it writable even to read. Restore write access (permissions, `chattr -i`, a read-write mount); the server keeps running and answers 503 meanwhile"
            )
            break
        }
        return cached
    }
}
