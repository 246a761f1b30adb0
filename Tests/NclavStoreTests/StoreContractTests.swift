import Foundation
import NclavCore
import NclavPostgres
import NclavSQLite
import NclavStore
import NclavTestSupport
import Testing

/// Builds a fresh store for one test, and cleans up after it.
struct StoreFactory: Sendable, CustomTestStringConvertible {
    let name: String
    let make: @Sendable (_ retainedVersions: Int) async throws -> (store: any StateStore, cleanup: @Sendable () -> Void)

    var testDescription: String { name }

    static let memory = StoreFactory(name: "memory") { retained in (MemoryStore(retainedVersions: retained), {}) }
    static let sqlite = StoreFactory(name: "sqlite") { retained in
        let directory = try TestSupport.makeScratchDirectory("nclav-store")
        let store = try SQLiteStore(path: directory.appendingPathComponent("state.db").path, retainedVersions: retained)
        return (store, { try? FileManager.default.removeItem(at: directory) })
    }
    /// SQLite with every state body, however small, in a body file (`state.db-bodies/`).
    static let sqliteBodyFiles = StoreFactory(name: "sqlite, bodies as files") { retained in
        let directory = try TestSupport.makeScratchDirectory("nclav-store-files")
        let store = try SQLiteStore(path: directory.appendingPathComponent("state.db").path, retainedVersions: retained, bodyFileThreshold: 0)
        return (store, { try? FileManager.default.removeItem(at: directory) })
    }
    /// A fresh database on the real PostgreSQL server the tests start (TestPostgres).
    static let postgres = StoreFactory(name: "postgres") { retained in
        let url = try await TestPostgres.shared().createDatabase("contract")
        return (try await PostgresStore.open(url: url, retainedVersions: retained), {})
    }
    static let all = [memory, sqlite, sqliteBodyFiles, postgres]
}

func withStore(_ factory: StoreFactory, retainedVersions: Int = 100, _ body: (any StateStore) async throws -> Void) async throws {
    let (store, cleanup) = try await factory.make(retainedVersions)
    defer { cleanup() }
    try await body(store)
    try await store.close()
}

func key(_ enclave: String, _ partition: String) -> StateKey { try! StateKey(enclave: enclave, partition: partition) }

/// A write of `StateFixtures.body`; `padding` makes it larger (or, with the same serial, different).
func stateBody(lineage: String = "lineage-a", serial: Int64, padding: String? = nil) -> StateWrite {
    let body = StateFixtures.body(serial: serial, lineage: lineage, padding: padding)
    return StateWrite(body: body, serial: serial, lineage: lineage, sha256: "sha-\(lineage)-\(serial)-\(padding?.count ?? -1)", lockID: nil)
}

func lockInfo(_ id: String, who: String = "tester") -> StateLock {
    StateLock(id: id, info: Data(#"{"ID":"\#(id)","Operation":"OperationTypeApply","Who":"\#(who)"}"#.utf8))
}

/// The behaviour every `StateStore` must have. Each test runs once per implementation.
@Suite("StateStore contract")
struct StoreContractTests {
    @Test("enclave and partition states round-trip, list sorted, and delete together", arguments: StoreFactory.all)
    func enclavesAndPartitions(_ factory: StoreFactory) async throws {
        try await withStore(factory) { store async throws in
            let created = Date(timeIntervalSinceReferenceDate: 800_000_000.123456)
            let beta = EnclaveState(
                id: "beta", desired: Enclave(id: "beta", name: "Beta", cloud: .local), resolvedCloud: .local,
                status: .active, context: ["nclav_project_id": "beta"], fingerprint: "f1", createdAt: created, updatedAt: created)
            let alpha = EnclaveState(id: "alpha", desired: Enclave(id: "alpha", name: "Alpha"), resolvedCloud: .gcp)
            try await store.putEnclave(beta)
            try await store.putEnclave(alpha)
            #expect(try await store.enclaves().map(\.id) == ["alpha", "beta"])
            #expect(try await store.enclave("beta") == beta)
            #expect(try await store.enclave("gamma") == nil)

            var updated = beta
            updated.status = .failed
            updated.lastError = "boom"
            try await store.putEnclave(updated)
            #expect(try await store.enclave("beta") == updated)

            let api = PartitionState(
                enclaveID: "beta", partitionID: "api", desired: Partition(id: "api", name: "API"),
                outputs: ["hostname": "api.internal"], lastRunID: UUID())
            let db = PartitionState(enclaveID: "beta", partitionID: "db", desired: Partition(id: "db", name: "DB", produces: .tcp))
            try await store.putPartition(db)
            try await store.putPartition(api)
            #expect(try await store.partitions(ofEnclave: "beta") == [api, db])
            try await store.deletePartition(enclave: "beta", partition: "db")
            #expect(try await store.partitions(ofEnclave: "beta") == [api])

            try await store.deleteEnclave("beta")
            #expect(try await store.enclave("beta") == nil)
            #expect(try await store.partitions(ofEnclave: "beta").isEmpty)
            #expect(try await store.enclaves().map(\.id) == ["alpha"])
        }
    }

    @Test("audit events get increasing sequence numbers and list newest first", arguments: StoreFactory.all)
    func events(_ factory: StoreFactory) async throws {
        try await withStore(factory) { store async throws in
            let reconcile = UUID()
            let first = try await store.appendEvent(AuditEvent(kind: "enclave.created", enclaveID: "a", reconcileID: reconcile, message: "one"))
            let second = try await store.appendEvent(AuditEvent(kind: "partition.applied", enclaveID: "b", partitionID: "p", message: "two"))
            let third = try await store.appendEvent(AuditEvent(kind: "enclave.updated", enclaveID: "a", message: "three"))
            #expect(first.sequence < second.sequence && second.sequence < third.sequence)
            #expect(try await store.events(enclave: nil, limit: 10).map(\.message) == ["three", "two", "one"])
            #expect(try await store.events(enclave: "a", limit: 10).map(\.message) == ["three", "one"])
            #expect(try await store.events(enclave: nil, limit: 2).map(\.message) == ["three", "two"])
            let stored = try await store.events(enclave: "a", limit: 10).last
            #expect(stored?.reconcileID == reconcile)
            #expect(stored?.kind == "enclave.created")
        }
    }

    @Test("runs record logs while running and list newest first without logs", arguments: StoreFactory.all)
    func runs(_ factory: StoreFactory) async throws {
        try await withStore(factory) { store async throws in
            let older = IacRun(enclaveID: "e", partitionID: "p", operation: .provision, startedAt: Date(timeIntervalSinceNow: -60), tool: "terraform")
            let newer = IacRun(enclaveID: "e", partitionID: "p", operation: .update, startedAt: Date(), tool: "terraform", toolVersion: "1.11.4")
            try await store.createRun(older)
            try await store.createRun(newer)
            try await store.appendRunLog(newer.id, "== terraform init\n")
            try await store.appendRunLog(newer.id, "Initializing...\n")
            #expect(try await store.run(newer.id)?.log == "== terraform init\nInitializing...\n")
            #expect(try await store.run(newer.id)?.status == .running)
            let running = try await store.runningRuns()
            #expect(Set(running.map(\.id)) == [older.id, newer.id] && running.allSatisfy { $0.log.isEmpty })

            let finished = Date()
            try await store.finishRun(newer.id, status: .failed, exitCode: 1, finishedAt: finished)
            #expect(try await store.runningRuns().map(\.id) == [older.id], "a finished run is not running")
            let run = try #require(try await store.run(newer.id))
            #expect(run.status == .failed)
            #expect(run.exitCode == 1)
            #expect(run.finishedAt == finished)
            #expect(run.toolVersion == "1.11.4")

            let listed = try await store.runs(enclave: "e", partition: "p", limit: 10)
            #expect(listed.map(\.id) == [newer.id, older.id])
            #expect(listed.allSatisfy { $0.log.isEmpty })
            #expect(try await store.runs(enclave: "e", partition: "other", limit: 10).isEmpty)
            // An agent's run learns its tool's version only when the agent reports.
            try await store.setRunToolVersion(older.id, "1.0.3")
            #expect(try await store.run(older.id)?.toolVersion == "1.0.3")
            await #expect(throws: StoreError.self) { try await store.setRunToolVersion(UUID(), "1.0.3") }

            await #expect(throws: StoreError.self) { try await store.appendRunLog(UUID(), "x") }
            await #expect(throws: StoreError.self) { try await store.finishRun(UUID(), status: .succeeded, exitCode: 0, finishedAt: Date()) }
        }
    }

    @Test("state writes become versions; lineage and serial are checked unless forced", arguments: StoreFactory.all)
    func stateVersions(_ factory: StoreFactory) async throws {
        try await withStore(factory) { store async throws in
            let k = key("e", "p")
            #expect(try await store.latestState(k) == nil)
            guard case .stored(let v1) = try await store.writeState(k, stateBody(serial: 1)) else {
                Issue.record("first write")
                return
            }
            #expect(v1.version == 1 && v1.serial == 1)
            guard case .stored(let v2) = try await store.writeState(k, stateBody(serial: 2)) else {
                Issue.record("second write")
                return
            }
            #expect(v2.version == 2)
            #expect(try await store.latestState(k)?.body == stateBody(serial: 2).body)

            #expect(try await store.writeState(k, stateBody(serial: 2)) == .unchanged(v2))
            #expect(try await store.writeState(k, stateBody(serial: 1, padding: "x")) == .serialConflict(current: v2))
            #expect(try await store.writeState(k, stateBody(serial: 2, padding: "x")) == .serialConflict(current: v2))
            #expect(try await store.writeState(k, stateBody(lineage: "other", serial: 9)) == .lineageConflict(current: v2))
            var forced = stateBody(lineage: "other", serial: 1)
            forced.force = true
            guard case .stored(let v3) = try await store.writeState(k, forced) else {
                Issue.record("forced write")
                return
            }
            #expect(v3.lineage == "other")

            #expect(try await store.stateVersions(k).map(\.version) == [3, 2, 1])
            #expect(try await store.stateVersion(k, version: 1)?.body == stateBody(serial: 1).body)
            #expect(try await store.stateVersion(k, version: 7) == nil)
            #expect(try await store.stateVersions(key("e", "other")).isEmpty)

            #expect(try await store.deleteState(k) == .deleted(versions: 3))
            #expect(try await store.latestState(k) == nil)
        }
    }

    @Test("only the configured number of versions is kept", arguments: StoreFactory.all)
    func retention(_ factory: StoreFactory) async throws {
        try await withStore(factory, retainedVersions: 3) { store async throws in
            let k = key("e", "p")
            for serial in 1...5 { _ = try await store.writeState(k, stateBody(serial: Int64(serial))) }
            #expect(try await store.stateVersions(k).map(\.serial) == [5, 4, 3])
            #expect(try await store.latestState(k)?.info.serial == 5)
        }
    }

    @Test("large (1 MB) state bodies: versions, refusals, retention and deletion behave as for small ones", arguments: StoreFactory.all)
    func largeBodies(_ factory: StoreFactory) async throws {
        try await withStore(factory, retainedVersions: 2) { store async throws in
            let k = key("e", "big")
            let padding = String(repeating: "x", count: 1 << 20)
            func big(_ serial: Int64) -> StateWrite { stateBody(serial: serial, padding: "\(serial)\(padding)") }
            for serial in Int64(1)...4 {
                guard case .stored = try await store.writeState(k, big(serial)) else {
                    Issue.record("write \(serial)")
                    return
                }
            }
            #expect(try await store.latestState(k)?.body == big(4).body)
            #expect(try await store.stateVersions(k).map(\.serial) == [4, 3])
            #expect(try await store.stateVersion(k, version: 3)?.body == big(3).body)
            #expect(try await store.stateVersion(k, version: 1) == nil, "pruned")
            _ = try await store.acquireLock(k, lockInfo("held"))
            guard case .locked = try await store.writeState(k, big(5)) else {
                Issue.record("a write without the lock id is refused")
                return
            }
            #expect(try await store.latestState(k)?.info.serial == 4)
            guard case .released = try await store.releaseLock(k, id: "held") else {
                Issue.record("unlock")
                return
            }
            #expect(try await store.deleteState(k) == .deleted(versions: 2))
            #expect(try await store.latestState(k) == nil)
        }
    }

    @Test("locks: one holder, retries with the same id succeed, writes need the holder's id", arguments: StoreFactory.all)
    func locks(_ factory: StoreFactory) async throws {
        try await withStore(factory) { store async throws in
            let k = key("e", "p")
            let mine = lockInfo("lock-1", who: "me")
            #expect(try await store.acquireLock(k, mine) == .acquired)
            #expect(try await store.acquireLock(k, mine) == .alreadyHeld)
            guard case .heldByOther(let holder) = try await store.acquireLock(k, lockInfo("lock-2")) else {
                Issue.record("second locker")
                return
            }
            #expect(holder.id == "lock-1")
            #expect(holder.info == mine.info)

            var write = stateBody(serial: 1)
            guard case .locked = try await store.writeState(k, write) else {
                Issue.record("write without id")
                return
            }
            write.lockID = "lock-2"
            guard case .locked = try await store.writeState(k, write) else {
                Issue.record("write with wrong id")
                return
            }
            write.lockID = "lock-1"
            guard case .stored = try await store.writeState(k, write) else {
                Issue.record("write with the holder's id")
                return
            }
            guard case .locked = try await store.deleteState(k) else {
                Issue.record("delete while locked")
                return
            }

            guard case .heldByOther = try await store.releaseLock(k, id: "lock-2") else {
                Issue.record("unlock with wrong id")
                return
            }
            guard case .released(let released) = try await store.releaseLock(k, id: "lock-1") else {
                Issue.record("unlock")
                return
            }
            #expect(released.id == "lock-1" && released.info == mine.info, "the freed lock is the one that was held")
            #expect(try await store.releaseLock(k, id: "lock-1") == .notLocked)
            #expect(try await store.lock(k) == nil)

            #expect(try await store.acquireLock(k, lockInfo("lock-3")) == .acquired)
            guard case .released = try await store.releaseLock(k, id: nil) else {
                Issue.record("force unlock")
                return
            }
            #expect(try await store.lock(k) == nil)
        }
    }

    @Test("locks held by a run are freed when the run ends", arguments: StoreFactory.all)
    func runLocks(_ factory: StoreFactory) async throws {
        try await withStore(factory) { store async throws in
            let owner = UUID()
            var held = lockInfo("run-lock")
            held.runID = owner
            #expect(try await store.acquireLock(key("e", "a"), held) == .acquired)
            #expect(try await store.acquireLock(key("e", "b"), lockInfo("hand-run")) == .acquired)
            #expect(try await store.lock(key("e", "a"))?.runID == owner)
            #expect(try await store.releaseLocks(heldBy: owner) == [key("e", "a")])
            #expect(try await store.lock(key("e", "a")) == nil)
            #expect(try await store.lock(key("e", "b"))?.id == "hand-run")
        }
    }

    @Test("100 concurrent lockers: exactly one holds the lock", arguments: StoreFactory.all)
    func concurrentLockers(_ factory: StoreFactory) async throws {
        try await withStore(factory) { store async throws in
            let k = key("race", "state")
            let outcomes = try await withThrowingTaskGroup(of: LockOutcome.self) { group in
                for index in 0..<100 { group.addTask { try await store.acquireLock(k, lockInfo("locker-\(index)")) } }
                return try await group.reduce(into: [LockOutcome]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == .acquired }.count == 1)
            let holders = Set(
                outcomes.compactMap { outcome -> String? in
                    if case .heldByOther(let lock) = outcome { return lock.id }
                    return nil
                })
            #expect(outcomes.count == 100)
            #expect(holders.count == 1, "every loser sees the same holder")
            #expect(try await store.lock(k).map { holders.contains($0.id) } == true)
        }
    }

    @Test("one reconcile at a time", arguments: StoreFactory.all)
    func reconcileLock(_ factory: StoreFactory) async throws {
        try await withStore(factory) { store async throws in
            let first = ReconcileLock(holder: "host-a pid 1")
            #expect(try await store.acquireReconcileLock(first) == nil)
            #expect(try await store.acquireReconcileLock(ReconcileLock(holder: "host-b pid 2"))?.id == first.id)
            #expect(try await store.reconcileLock()?.holder == "host-a pid 1")
            try await store.releaseReconcileLock(UUID())
            #expect(try await store.reconcileLock() != nil, "only the holder's id releases it")
            try await store.releaseReconcileLock(first.id)
            #expect(try await store.reconcileLock() == nil)
            let outcomes = try await withThrowingTaskGroup(of: ReconcileLock?.self) { group in
                for index in 0..<20 { group.addTask { try await store.acquireReconcileLock(ReconcileLock(holder: "racer \(index)")) } }
                return try await group.reduce(into: [ReconcileLock?]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == nil }.count == 1)
        }
    }

    @Test("recovery interrupts running runs and frees what they held", arguments: StoreFactory.all)
    func recovery(_ factory: StoreFactory) async throws {
        try await withStore(factory) { store async throws in
            let running = IacRun(enclaveID: "e", partitionID: "p", operation: .provision, tool: "terraform")
            let done = IacRun(enclaveID: "e", partitionID: "q", operation: .provision, tool: "terraform")
            try await store.createRun(running)
            try await store.createRun(done)
            try await store.finishRun(done.id, status: .succeeded, exitCode: 0, finishedAt: Date())
            var held = lockInfo("held-by-run")
            held.runID = running.id
            _ = try await store.acquireLock(key("e", "p"), held)
            _ = try await store.acquireLock(key("e", "manual"), lockInfo("someone-by-hand"))
            _ = try await store.acquireReconcileLock(ReconcileLock(holder: "dead server"))

            let now = Date()
            let report = try await store.recoverAfterRestart(at: now)
            #expect(report.interruptedRuns == [running.id])
            #expect(report.releasedLocks == [key("e", "p")])
            #expect(report.releasedReconcileLock?.holder == "dead server")
            #expect(try await store.run(running.id)?.status == .interrupted)
            #expect(try await store.run(running.id)?.finishedAt == now)
            #expect(try await store.run(done.id)?.status == .succeeded)
            #expect(try await store.lock(key("e", "manual"))?.id == "someone-by-hand")
            #expect(try await store.reconcileLock() == nil)
        }
    }

    @Test("a closed store refuses further calls", arguments: StoreFactory.all)
    func closed(_ factory: StoreFactory) async throws {
        let (store, cleanup) = try await factory.make(10)
        defer { cleanup() }
        try await store.ping()
        try await store.close()
        await #expect(throws: StoreError.self) { try await store.ping() }
        await #expect(throws: StoreError.self) { try await store.enclaves() }
    }
}

@Suite("SQLite store durability", .serialized)
struct SQLiteDurabilityTests {
    @Test("everything survives closing and reopening the file")
    func reopen() async throws {
        let directory = try TestSupport.makeScratchDirectory("nclav-sqlite")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("state.db").path
        let run = IacRun(enclaveID: "e", partitionID: "p", operation: .provision, tool: "terraform")
        do {
            let store = try SQLiteStore(path: path)
            try await store.putEnclave(EnclaveState(id: "e", desired: Enclave(id: "e", name: "E"), resolvedCloud: .local))
            try await store.createRun(run)
            try await store.appendRunLog(run.id, "line\n")
            _ = try await store.writeState(key("e", "p"), stateBody(serial: 1))
            _ = try await store.acquireLock(key("e", "p"), lockInfo("kept"))
            _ = try await store.appendEvent(AuditEvent(kind: "k", message: "kept"))
            try await store.close()
        }
        let reopened = try SQLiteStore(path: path)
        #expect(try await reopened.enclave("e")?.desired.name == "E")
        #expect(try await reopened.run(run.id)?.log == "line\n")
        #expect(try await reopened.latestState(key("e", "p"))?.info.serial == 1)
        #expect(try await reopened.lock(key("e", "p"))?.id == "kept")
        #expect(try await reopened.events(enclave: nil, limit: 5).map(\.message) == ["kept"])
        try await reopened.close()
    }

    @Test("kill -9 of a writing process loses no committed write")
    func killNine() async throws {
        let directory = try TestSupport.makeScratchDirectory("nclav-kill9")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("state.db").path
        let output = directory.appendingPathComponent("acknowledged.txt")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)

        let writer = Process()
        writer.executableURL = TestSupport.productsDirectory.appendingPathComponent("nclav-store-writer")
        writer.arguments = [path]
        writer.standardOutput = try FileHandle(forWritingTo: output)
        try writer.run()
        // Let it commit a couple of thousand events, then kill it mid-stream.
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let lines = (try? String(contentsOf: output, encoding: .utf8))?.split(separator: "\n").count ?? 0
            if lines >= 2000 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        kill(writer.processIdentifier, SIGKILL)
        writer.waitUntilExit()
        #expect(writer.terminationReason == .uncaughtSignal)

        let acknowledged = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").compactMap { Int64($0) }
        #expect(acknowledged.count >= 2000)
        let store = try SQLiteStore(path: path)
        let stored = Set(try await store.events(enclave: nil, limit: 1_000_000).map(\.sequence))
        let lost = acknowledged.filter { !stored.contains($0) }
        #expect(lost.isEmpty, "acknowledged but lost: \(lost.prefix(10))")
        try await store.close()
    }

    @Test("ping fails once the database file is removed under a running store")
    func removedFile() async throws {
        let directory = try TestSupport.makeScratchDirectory("nclav-removed")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("state.db").path
        let store = try SQLiteStore(path: path)
        try await store.ping()
        try FileManager.default.removeItem(atPath: path)
        await #expect(throws: StoreError.self) { try await store.ping() }
        try await store.close()
    }

    @Test("an unopenable path is a clear error")
    func cannotOpen() {
        #expect(throws: StoreError.self) { try SQLiteStore(path: "/dev/null/state.db") }
    }
}
