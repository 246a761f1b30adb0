import Foundation
import NclavCore
import NclavPostgres
import NclavStore
import NclavTestSupport
import Testing

/// What only PostgreSQL does: several replicas on one database, migrations, URLs, TLS modes.
/// Each test gets its own database on the real server that `TestPostgres` starts.
@Suite("PostgreSQL store: replicas on one database")
struct PostgresReplicaTests {
    func twoReplicas() async throws -> (PostgresStore, PostgresStore, String) {
        let url = try await TestPostgres.shared().createDatabase("replicas")
        async let first = PostgresStore.open(url: url)
        async let second = PostgresStore.open(url: url)
        return (try await first, try await second, url)
    }

    @Test("replicas starting together apply each migration once")
    func migrationsOnce() async throws {
        let (first, second, url) = try await twoReplicas()
        #expect(first.replicaNumber != second.replicaNumber)
        let database = String(url.split(separator: "/").last!.split(separator: "?").first!)
        #expect(try await TestPostgres.shared().psql("SELECT count(*) FROM nclav_schema_migrations", database: database) == "2")
        try await first.close()
        try await second.close()
    }

    @Test("a database migrated by a newer nclav is refused with a message saying so")
    func newerSchemaRefused() async throws {
        let url = try await TestPostgres.shared().createDatabase("newer")
        try await PostgresStore.open(url: url).close()
        let database = String(url.split(separator: "/").last!.split(separator: "?").first!)
        try await TestPostgres.shared().psql("INSERT INTO nclav_schema_migrations (version, name) VALUES (99, 'from the future')", database: database)
        let error = await #expect(throws: StoreError.self) { try await PostgresStore.open(url: url) }
        #expect("\(error!)".contains("schema is at version 99, newer than this nclav understands (2)"))
    }

    @Test("agents claiming through two replicas at once: every job claimed exactly once, in order, by pool; leases end and renew as stated")
    func jobQueueAcrossReplicas() async throws {
        let (first, second, _) = try await twoReplicas()
        let runs = (0..<60).map { _ in UUID() }
        let start = Date()
        for (index, run) in runs.enumerated() {
            try await (index.isMultiple(of: 2) ? first : second).enqueueJob(
                AgentJob(
                    runID: run, enclave: "e", partition: "p\(index)", pool: index % 3 == 0 ? "eu" : nil, attempt: 1, payload: Data("x".utf8),
                    createdAt: start.addingTimeInterval(Double(index) / 1000)))
        }
        // Twelve claimers, half through each replica; a third of them also take the `eu` pool.
        let claims = try await withThrowingTaskGroup(of: [(String, AgentJob)].self) { group in
            for claimer in 0..<12 {
                let store = claimer.isMultiple(of: 2) ? first : second
                let pools: [String?] = claimer % 3 == 0 ? [nil, "eu"] : [nil]
                group.addTask {
                    var mine: [(String, AgentJob)] = []
                    while let job = try await store.claimJob(
                        agent: "a\(claimer)", pools: pools, leaseExpiresAt: Date().addingTimeInterval(60), at: Date())
                    {
                        mine.append(("a\(claimer)", job))
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(claims.count == 60, "every job once")
        #expect(Set(claims.map(\.1.id)).count == 60, "no job twice")
        for (agent, job) in claims where job.pool == "eu" {
            #expect(["a0", "a3", "a6", "a9"].contains(agent), "\(job.partition) of pool eu went to \(agent)")
        }
        // Each claimer got its jobs oldest first.
        for agent in Set(claims.map(\.0)) {
            let times = claims.filter { $0.0 == agent }.map(\.1.createdAt)
            #expect(times == times.sorted(), "\(agent)")
        }
        // Leases: renewed only by their holder; an expired one is interrupted once; a finished job keeps no payload.
        let (holder, job) = try #require(claims.first)
        #expect(try await second.renewLease(job.id, agent: "someone-else", until: Date().addingTimeInterval(60)) == false)
        #expect(try await first.renewLease(job.id, agent: holder, until: Date().addingTimeInterval(-1)))
        #expect(try await second.interruptExpiredJob(job.id, at: Date()))
        #expect(try await first.interruptExpiredJob(job.id, at: Date()) == false)
        #expect(try await first.finishJob(job.id, agent: holder, outcome: Data("{}".utf8), at: Date()) == false, "a lost job cannot be finished")
        let (other, done) = try #require(claims.last)
        #expect(try await second.finishJob(done.id, agent: other, outcome: Data("{}".utf8), at: Date()))
        #expect(try await first.job(done.id)?.payload.isEmpty == true)
        #expect(try await first.queueDepth().queued == 0)
        try await first.close()
        try await second.close()
    }

    @Test("a claimer waiting on one replica wakes when another replica queues a job, not at its timeout")
    func queuedJobWakesOtherReplica() async throws {
        let (first, second, _) = try await twoReplicas()
        // Listening starts with the first wait; a short one sets it up.
        await second.waitForJobs(after: await second.jobTicket(), upTo: .milliseconds(200))
        let started = ContinuousClock.now
        let ticket = await second.jobTicket()
        async let woke: Void = second.waitForJobs(after: ticket, upTo: .seconds(60))
        try await Task.sleep(for: .milliseconds(300))
        try await first.enqueueJob(AgentJob(runID: UUID(), enclave: "e", partition: "p", pool: nil, attempt: 1, payload: Data("x".utf8)))
        await woke
        #expect(ContinuousClock.now - started < .seconds(30), "woken by the notification, not the 60 s timeout")
        let claimed = try await second.claimJob(agent: "a", pools: [nil], leaseExpiresAt: Date().addingTimeInterval(60), at: Date())
        #expect(claimed?.partition == "p")
        try await first.close()
        try await second.close()
    }

    @Test("lockers spread over two replicas: exactly one holder")
    func lockersAcrossReplicas() async throws {
        let (first, second, _) = try await twoReplicas()
        let k = try StateKey(enclave: "race", partition: "state")
        let outcomes = try await withThrowingTaskGroup(of: LockOutcome.self) { group in
            for index in 0..<60 {
                let store = index.isMultiple(of: 2) ? first : second
                group.addTask { try await store.acquireLock(k, StateLock(id: "locker-\(index)", info: Data("{}".utf8))) }
            }
            return try await group.reduce(into: [LockOutcome]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == .acquired }.count == 1)
        #expect(try await first.lock(k) == second.lock(k))
        try await first.close()
        try await second.close()
    }

    @Test("forced state writes through both replicas: every one kept, versions without gaps or duplicates")
    func noLostVersion() async throws {
        let (first, second, _) = try await twoReplicas()
        let k = try StateKey(enclave: "e", partition: "p")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<40 {
                let store = index.isMultiple(of: 2) ? first : second
                group.addTask {
                    let body = StateFixtures.body(serial: Int64(index), lineage: "l")
                    let outcome = try await store.writeState(
                        k,
                        StateWrite(
                            body: body, serial: Int64(index), lineage: "l",
                            sha256: "sha-\(index)", lockID: nil, force: true))
                    guard case .stored = outcome else { throw TestSupport.StartError("write \(index) was not stored: \(outcome)") }
                }
            }
            try await group.waitForAll()
        }
        let versions = try await second.stateVersions(k)
        #expect(versions.map(\.version) == Array((1...40).reversed()).map(Int64.init))
        #expect(Set(versions.map(\.sha256)).count == 40)
        try await first.close()
        try await second.close()
    }

    @Test("one reconcile across replicas; a replica that dies frees it and its runs become interrupted when another takes over")
    func reconcileAcrossReplicas() async throws {
        let (first, second, _) = try await twoReplicas()
        let held = ReconcileLock(holder: "replica one")
        #expect(try await first.acquireReconcileLock(held) == nil)
        #expect(try await second.acquireReconcileLock(ReconcileLock(holder: "replica two"))?.id == held.id)
        #expect(try await second.reconcileLock()?.holder == "replica one")

        // Replica one is mid-apply: a run holding a state lock.
        let run = IacRun(enclaveID: "e", partitionID: "p", operation: .provision, tool: "terraform")
        try await first.createRun(run)
        let k = try StateKey(enclave: "e", partition: "p")
        _ = try await first.acquireLock(k, StateLock(id: "terraform-lock", info: Data("{}".utf8), runID: run.id))

        // A replica starting up now leaves a live neighbour's run alone.
        let report = try await second.recoverAfterRestart(at: Date())
        #expect(report.interruptedRuns.isEmpty)
        #expect(try await second.run(run.id)?.status == .running)
        #expect(try await second.reconcileLock()?.holder == "replica one")

        // Replica one dies without releasing anything (its connections close).
        try await first.close()
        try await waitUntil { try await second.reconcileLock() == nil }
        #expect(try await second.acquireReconcileLock(ReconcileLock(holder: "replica two")) == nil)
        #expect(try await second.run(run.id)?.status == .interrupted)
        #expect(try await second.lock(k) == nil, "the dead run's state lock is freed")
        try await second.close()
    }

    @Test(
        "a replica that takes over ends a dead replica's jobs: queued ones withdrawn, its own workers' interrupted, a live agent's told to stop with the state lock kept until it reports; old ended jobs are purged"
    )
    func takeOverJobs() async throws {
        let (first, second, url) = try await twoReplicas()
        let database = String(url.split(separator: "/").last!.split(separator: "?").first!)
        #expect(try await first.acquireReconcileLock(ReconcileLock(holder: "replica one")) == nil)
        // Replica one's reconcile has three runs: one queued, one on its own worker, one on an agent.
        var jobs: [AgentJob] = []
        for name in ["own", "agent", "queued"] {
            let run = IacRun(enclaveID: "e", partitionID: name, operation: .provision, tool: "terraform")
            try await first.createRun(run)
            _ = try await first.acquireLock(
                try StateKey(enclave: "e", partition: name), StateLock(id: "lock-\(name)", info: Data("{}".utf8), runID: run.id))
            let job = AgentJob(runID: run.id, enclave: "e", partition: name, pool: nil, attempt: 1, payload: Data("x".utf8))
            try await first.enqueueJob(job)
            jobs.append(job)
        }
        let lease = Date().addingTimeInterval(600)
        #expect(
            try await first.claimJob(
                agent: "\(PostgresStore.replicaWorkerPrefix)\(first.replicaNumber)/h-1", pools: [nil], leaseExpiresAt: lease, at: Date())?.id
                == jobs[0].id)
        #expect(try await first.claimJob(agent: "0123456789ab/agent-1", pools: [nil], leaseExpiresAt: lease, at: Date())?.id == jobs[1].id)
        try await first.close()
        try await waitUntil { try await second.reconcileLock() == nil }
        #expect(try await second.acquireReconcileLock(ReconcileLock(holder: "replica two")) == nil)

        #expect(try await second.job(jobs[0].id)?.state == .interrupted, "the dead replica's own worker is gone with it")
        #expect(try await second.lock(try StateKey(enclave: "e", partition: "own")) == nil)
        let agents = try #require(try await second.job(jobs[1].id))
        #expect(agents.state == .claimed && agents.cancelRequested, "a live agent is told to stop")
        #expect(try await second.lock(try StateKey(enclave: "e", partition: "agent")) != nil, "its terraform may still write: the lock stays")
        #expect(try await second.job(jobs[2].id)?.state == .cancelled, "a queued job is withdrawn")
        #expect(try await second.lock(try StateKey(enclave: "e", partition: "queued")) == nil)

        // Jobs that ended more than the retention ago are purged at the next takeover.
        #expect(try await second.finishJob(jobs[1].id, agent: "0123456789ab/agent-1", outcome: Data("{}".utf8), at: Date()))
        try await TestPostgres.shared().psql(
            "UPDATE nclav_jobs SET finished_at = finished_at - \(Int(PostgresStore.endedJobRetention) + 60) WHERE id <> '\(jobs[1].id.uuidString)'",
            database: database)
        try await second.releaseReconcileLock(try #require(try await second.reconcileLock()).id)
        #expect(try await second.acquireReconcileLock(ReconcileLock(holder: "replica two")) == nil)
        #expect(try await second.job(jobs[0].id) == nil)
        #expect(try await second.job(jobs[2].id) == nil)
        #expect(try await second.job(jobs[1].id)?.state == .finished, "a recent one stays")
        try await second.close()
    }

    @Test("a wrong password is a clear error that does not repeat the password")
    func wrongPassword() async throws {
        let server = try await TestPostgres.shared()
        let url = server.url(database: "postgres").replacingOccurrences(of: server.password, with: "not-the-Secret-pw")
        let error = await #expect(throws: StoreError.self) { try await PostgresStore.open(url: url) }
        let message = "\(error!)"
        #expect(!message.contains("not-the-Secret-pw"))
        #expect(message.contains("postgres://nclav:***@127.0.0.1:\(server.port)/postgres"))
        #expect(message.contains("28P01") || message.contains("password authentication failed"), "\(message)")
    }

    @Test("sslmode is honoured: require and verify-full connect over TLS, verify-full with the wrong CA is refused, disable stays plain")
    func tlsModes() async throws {
        let server = try await TestPostgres.shared()
        let url = try server.createDatabase("tls")
        let base = url.replacingOccurrences(of: "?sslmode=disable", with: "")
        /// What the server itself says about this store's connections.
        func sessionsUseTLS(_ store: PostgresStore, _ database: String) async throws -> String {
            try server.psql(
                """
                SELECT string_agg(DISTINCT s.ssl::text, ',') FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
                WHERE a.datname = '\(database)' AND a.application_name = 'nclav'
                """)
        }
        let database = String(base.split(separator: "/").last!)
        for mode in ["require", "verify-full&sslrootcert=\(server.caCertificatePath)", "verify-ca&sslrootcert=\(server.caCertificatePath)"] {
            let store = try await PostgresStore.open(url: base + "?sslmode=" + mode)
            _ = try await store.enclaves()
            #expect(try await sessionsUseTLS(store, database) == "true", "sslmode=\(mode)")
            try await store.close()
        }
        // The system's CAs did not sign this server's certificate.
        let refused = await #expect(throws: StoreError.self) { try await PostgresStore.open(url: base + "?sslmode=verify-full") }
        #expect("\(refused!)".contains("postgres://nclav:***@"))
        let plain = try await PostgresStore.open(url: base + "?sslmode=disable")
        _ = try await plain.enclaves()
        #expect(try await sessionsUseTLS(plain, database) == "false")
        try await plain.close()
        // A CA file that cannot be read is named in the error.
        let missing = await #expect(throws: StoreError.self) {
            try await PostgresStore.open(url: base + "?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
        }
        #expect("\(missing!)".contains("cannot read sslrootcert /nonexistent/ca.pem"))
    }

    func waitUntil(_ condition: () async throws -> Bool) async throws {
        for _ in 0..<100 {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("condition not met within 5 s")
    }
}

@Suite("PostgreSQL URLs")
struct PostgresURLTests {
    @Test("libpq-style URLs: user, password, host, port, database, sslmode")
    func parses() throws {
        let url = try PostgresURL("postgresql://app%40corp:p%2Fss@db.internal:6432/nclav?sslmode=verify-full&application_name=nclav-a")
        #expect(url.user == "app@corp")
        #expect(url.password == "p/ss")
        #expect(url.host == "db.internal")
        #expect(url.port == 6432)
        #expect(url.database == "nclav")
        #expect(url.sslMode == .verifyFull)
        #expect(url.applicationName == "nclav-a")
        #expect(url.redacted == "postgres://app@corp:***@db.internal:6432/nclav?sslmode=verify-full")
        #expect(try PostgresURL("postgres://u@h").sslMode == .prefer, "libpq's default")
        #expect(try PostgresURL("postgres://u@h").database == "u", "libpq's default database is the user name")
        #expect(try PostgresURL("postgres://u@/db?host=/run/postgresql").socketDirectory == "/run/postgresql")
    }

    @Test("bad URLs say what is accepted and never echo the password")
    func rejects() {
        #expect(
            throws: PostgresURL.ParseError.badParameter(
                name: "sslmode", value: "always",
                accepted: "disable, allow, prefer, require, verify-ca, verify-full")
        ) {
            try PostgresURL("postgres://u:secret@h/db?sslmode=always")
        }
        #expect(throws: PostgresURL.ParseError.scheme("mysql")) { try PostgresURL("mysql://u:secret@h/db") }
        #expect(throws: PostgresURL.ParseError.missing("user name")) { try PostgresURL("postgres://h/db") }
    }

    @Test("an unparseable URL given to the store is reported without its password")
    func unparseableURL() async {
        let error = await #expect(throws: StoreError.self) { try await PostgresStore.open(url: "postgres://u:secret@h:notaport/db") }
        #expect(!"\(error!)".contains("secret"))
        #expect("\(error!)".contains("postgres://u:***@h:notaport/db"), "\(error!)")
    }
}
