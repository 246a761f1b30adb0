import Foundation
import GRDB

/// Runs every SQLite write on one dedicated thread with **group commit**: whatever writes
/// arrive while a transaction runs are executed together in the next one, each inside its own
/// savepoint (so one failing write rolls back alone), and every caller is resumed only after
/// that transaction has committed.
///
/// Why: a single small write costs ~36 µs synchronously but ~100 µs through GRDB's async
/// bridge, and each transaction has a fixed cost; under 50 concurrent lockers, batching turns
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

    init(pool: DatabasePool) {
        self.pool = pool
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
                    // them on every call, which showed up as ~9% of a lock's server CPU).
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
        // PASSIVE never waits for readers; frames still in use are copied on a later pass.
        _ = try? pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)") }
    }
}
