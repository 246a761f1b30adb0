import Foundation
import NclavTestSupport
import Testing

/// Runs on a pool of agents: real PostgreSQL, two `nclav serve --agents-only` replicas, real
/// `nclav agent` processes on loopback, real terraform.
@Suite("Agents: runs as jobs through PostgreSQL (real postgres, real terraform)", .serialized)
struct AgentTests {
    /// Replicas on one database with one admin token; no terraform runs in them.
    func startReplicas(_ count: Int, database: String, lease: String = "3s", extra: [String] = []) async throws -> ([ServerProcess], () -> Void) {
        try await ServerProcess.startReplicas(count, database: database, arguments: ["--agents-only", "--agent-lease", lease] + extra)
    }

    func agentToken(_ server: ServerProcess, name: String) async throws -> String {
        let created = try await nclavCLI(["agent-token", "create", name, "-o", "json"], server: server)
        #expect(created.exitCode == 0, "\(created.stderr)")
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(created.stdout.utf8)) as? [String: Any])
        return try #require(answer["token"] as? String)
    }

    /// `enclaves` × `partitions` partitions that each sleep `sleep` seconds; e1/p0 imports e0/p0's hostname.
    func tree(enclaves: Int, partitions: Int, sleep: String, pools: [Int: String] = [:]) throws -> TreeBuilder {
        let builder = try TreeBuilder.scratch("nclav-agents-tree")
        for e in 0..<enclaves {
            var enclave = pools[e].map { "agent_pool: \($0)\n" } ?? ""
            if e == 0 { enclave += "exports:\n  - name: base\n    target_partition: p0\n    type: http\n    to: any_enclave\n" }
            if e == 1 { enclave += "imports:\n  - from: e0\n    export_name: base\n    alias: base\n" }
            try builder.enclave("e\(e)", enclave)
            for p in 0..<partitions {
                let exporter = e == 0 && p == 0
                let input = e == 1 && p == 0 ? "{{ base.hostname }}" : "e\(e)-p\(p)"
                try builder.partition(
                    "e\(e)", "p\(p)",
                    (exporter ? "produces: http\ndeclared_outputs: [value, hostname, port]\n" : "declared_outputs: [value]\n")
                        + "inputs:\n  n: \"\(input)\"\n",
                    main: """
                        variable "n" { type = string }
                        resource "terraform_data" "x" {
                          input = var.n
                          provisioner "local-exec" {
                            command = "sleep \(sleep)"
                          }
                        }
                        output "value" { value = "v-${terraform_data.x.output}" }
                        """ + (exporter ? "\noutput \"hostname\" { value = \"base.internal\" }\noutput \"port\" { value = 443 }\n" : "\n"))
            }
        }
        return builder
    }

    /// Every job of every partition, from the server's records.
    func jobs(_ server: ServerProcess, enclaves: Int, partitions: Int) async throws -> [String: [[String: Any]]] {
        var all: [String: [[String: Any]]] = [:]
        for e in 0..<enclaves {
            for p in 0..<partitions {
                let listing = try await http(.GET, server.baseURL + "/jobs?enclave=e\(e)&partition=p\(p)", auth: .bearer(server.token)).json()
                all["e\(e)/p\(p)"] = listing["jobs"] as? [[String: Any]] ?? []
            }
        }
        return all
    }

    static func date(_ value: Any?) -> Date? {
        guard let text = value as? String else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }

    /// No two jobs of one partition were held at once (a job ends when it finishes or is interrupted).
    func expectNoOverlap(_ jobs: [String: [[String: Any]]]) {
        for (partition, list) in jobs {
            let spans = list.compactMap { job -> (Date, Date)? in
                guard let claimed = Self.date(job["claimed_at"]) else { return nil }
                return (claimed, Self.date(job["finished_at"]) ?? .distantFuture)
            }.sorted { $0.0 < $1.0 }
            for (earlier, later) in zip(spans, spans.dropFirst()) {
                #expect(earlier.1 <= later.0, "\(partition): a job was claimed before the previous one ended: \(list)")
            }
        }
    }

    @Test("30 partitions apply with every run on an agent (three agents, two replicas), the same outputs as in-process, no run overlapping another")
    func poolApplies() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents")
        let builder = try tree(enclaves: 3, partitions: 10, sleep: "0.2")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        let (servers, cleanup) = try await startReplicas(2, database: database)
        defer { cleanup() }
        let (a, b) = (servers[0], servers[1])
        let token = try await agentToken(a, name: "pool")
        let agents = try [a, a, b].map { try AgentProcess.start(remote: $0.baseURL, token: token, arguments: ["--parallelism", "2"]) }

        let apply = try await nclavCLI(["apply", builder.root.path, "--auto-approve", "--parallelism", "6"], server: a)
        #expect(apply.exitCode == 0, "\(apply.stdout)\(apply.stderr)\n\(agents.map(\.log).joined(separator: "\n"))")
        #expect(apply.stdout.contains("Apply complete: 30 succeeded, 0 failed, 0 skipped (partitions)."), "\(apply.stdout)")

        // Outputs, imports included, are what the same tree gives in-process.
        for e in 0..<3 {
            let detail = try await http(.GET, b.baseURL + "/enclaves/e\(e)", auth: .bearer(b.token)).json()
            let partitions = detail["partitions"] as? [[String: Any]] ?? []
            #expect(partitions.count == 10)
            for partition in partitions {
                let id = partition["partition_id"] as? String ?? "?"
                let outputs = partition["outputs"] as? [String: String] ?? [:]
                let expected = e == 1 && id == "p0" ? "v-base.internal" : "v-e\(e)-\(id)"
                #expect(outputs["value"] == expected, "e\(e)/\(id): \(outputs)")
            }
        }
        // Every run was an agent's, and the agents shared the work.
        let all = try await jobs(a, enclaves: 3, partitions: 10)
        #expect(all.values.allSatisfy { $0.count == 1 && $0[0]["state"] as? String == "finished" }, "\(all)")
        let byAgent = Dictionary(grouping: all.values.compactMap { $0.first?["agent"] as? String }, by: { $0 })
        #expect(byAgent.count == 3, "each of the three agents ran some: \(byAgent.mapValues(\.count))")
        let log = try await nclavCLI(["iac", "logs", "e2", "p9"], server: b)
        #expect(log.stdout.contains("== agent ") && log.stdout.contains("Apply complete! Resources: 1 added"), "\(log.stdout)")
        expectNoOverlap(all)
        // A job's credentials are not kept once it ended.
        let name = String(database.split(separator: "/").last!.split(separator: "?").first!)
        #expect(try await TestPostgres.shared().psql("SELECT count(*) FROM nclav_jobs WHERE length(payload) > 0", database: name) == "0")

        // An agent token claims jobs and nothing else.
        let agentAuth = Auth.bearer(token)
        #expect(try await http(.GET, a.baseURL + "/status", auth: agentAuth).status == 403)
        #expect(try await http(.POST, a.baseURL + "/reconcile", auth: agentAuth, body: Data("{}".utf8)).status == 403)
        #expect(try await http(.POST, a.baseURL + "/agent-tokens", auth: agentAuth, body: Data(#"{"name":"x"}"#.utf8)).status == 403)
        #expect(try await http(.GET, a.baseURL + "/terraform/state/e0/p0", auth: agentAuth).status == 401)
        #expect(try await http(.POST, a.baseURL + "/agent/claim", auth: .bearer(a.token), body: Data("{}".utf8)).status == 403)
        // Revoked, it is refused.
        let id = String(token.split(separator: ".")[1])
        #expect(try await nclavCLI(["agent-token", "revoke", id], server: a).exitCode == 0)
        #expect(
            try await http(.POST, a.baseURL + "/agent/claim", auth: agentAuth, body: Data(#"{"instance":"x","labels":{},"wait_seconds":0}"#.utf8))
                .status == 401)
        for agent in agents { await agent.stop() }
        for server in servers { await server.stop() }
    }

    @Test(
        "kill -9 of an agent mid-run: its lease runs out, the run is interrupted, its lock released and the job re-run by another agent; the tree converges"
    )
    func lostAgent() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents_lost")
        let builder = try tree(enclaves: 1, partitions: 3, sleep: "5")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        let (servers, cleanup) = try await startReplicas(1, database: database, lease: "3s")
        defer { cleanup() }
        let server = servers[0]
        let token = try await agentToken(server, name: "pool")
        let doomed = try AgentProcess.start(remote: server.baseURL, token: token)
        async let apply = nclavCLI(["apply", builder.root.path, "--auto-approve", "--parallelism", "1"], server: server)

        // Wait until the doomed agent holds a job, then the machine it runs on dies.
        var held: (partition: String, job: String)?
        for _ in 0..<400 where held == nil {
            for p in 0..<3 {
                let listing = try await http(.GET, server.baseURL + "/jobs?enclave=e0&partition=p\(p)", auth: .bearer(server.token)).json()
                if let job = (listing["jobs"] as? [[String: Any]])?.first(where: { $0["state"] as? String == "claimed" }) {
                    held = ("p\(p)", job["id"] as? String ?? "")
                }
            }
            if held == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        let taken = try #require(held, "the agent claimed a job")
        // Kill it only once its terraform holds the state lock (on a loaded machine terraform can
        // take seconds to get there), so the lock release is part of what is checked.
        var locked = false
        for _ in 0..<400 where !locked {
            locked =
                try await TestPostgres.shared().psql(
                    "SELECT count(*) FROM nclav_state_locks WHERE enclave_id = 'e0' AND partition_id = '\(taken.partition)'",
                    database: database) == "1"
            if !locked { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(locked, "the doomed agent's terraform took the state lock")
        // ... and once it has been heard from (a heartbeat renewed its lease): an agent that
        // dies before that counts as never having started the run.
        var heard = false
        for _ in 0..<200 where !heard {
            heard =
                try await TestPostgres.shared().psql(
                    "SELECT count(*) FROM nclav_jobs WHERE id = '\(taken.job.uppercased())' AND lease_expires_at - claimed_at > 3.5",
                    database: database)
                == "1"
            if !heard { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(heard, "the doomed agent renewed its lease")
        doomed.killMachine()
        let rescuer = try AgentProcess.start(remote: server.baseURL, token: token)

        let result = try await apply
        #expect(result.exitCode == 0, "\(result.stdout)\(result.stderr)\n\(rescuer.log)")
        let listing = try await http(.GET, server.baseURL + "/jobs?enclave=e0&partition=\(taken.partition)", auth: .bearer(server.token)).json()
        let jobs = listing["jobs"] as? [[String: Any]] ?? []
        #expect(jobs.map { $0["state"] as? String } == ["interrupted", "finished"], "\(jobs)")
        #expect(jobs.map { $0["attempt"] as? Int } == [1, 2])
        #expect(jobs.first?["agent"] as? String != jobs.last?["agent"] as? String, "another agent re-ran it")
        expectNoOverlap(try await self.jobs(server, enclaves: 1, partitions: 3))
        let log = try await nclavCLI(["iac", "logs", "e0", taken.partition], server: server)
        #expect(log.stdout.contains("== attempt 1 interrupted: agent ") && log.stdout.contains("stopped answering"), "\(log.stdout)")
        #expect(log.stdout.contains("; state lock of e0/\(taken.partition) released"), "terraform held the lock when it died: \(log.stdout)")
        #expect(log.stdout.contains("== queued again for another agent (attempt 2 of 2)"), "\(log.stdout)")
        #expect(log.stdout.contains("Apply complete! Resources: 1 added"), "\(log.stdout)")
        // Converged: nothing left to do.
        #expect(try await nclavCLI(["diff", builder.root.path], server: server).stdout == "No changes.\n")
        await rescuer.stop()
        await server.stop()
    }

    @Test("agent_pool pins an enclave's runs to agents with that pool label; /metrics shows the queue waiting for them")
    func pools() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents_pools")
        let builder = try tree(enclaves: 2, partitions: 2, sleep: "0", pools: [1: "eu"])
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        let (servers, cleanup) = try await startReplicas(1, database: database)
        defer { cleanup() }
        let server = servers[0]
        let token = try await agentToken(server, name: "pools")
        let anyPool = try AgentProcess.start(remote: server.baseURL, token: token)
        async let apply = nclavCLI(["apply", builder.root.path, "--auto-approve", "--parallelism", "4"], server: server)

        // e0 is done by the agent without labels; e1's jobs wait for an `eu` agent.
        var waiting = ""
        for _ in 0..<400 {
            waiting = try await http(.GET, server.baseURL + "/metrics", auth: .bearer(server.token)).text
            if waiting.contains("nclav_agent_jobs_queued 2\n") { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(waiting.contains("nclav_agent_jobs_queued 2\n"), "e1's two runs wait: \(waiting.suffix(400))")
        // What waits in the database (and its WAL and backups) carries no usable credential.
        let stored = try await TestPostgres.shared().psql(
            "SELECT count(*) FROM nclav_jobs WHERE state = 'queued' AND position('nclavrun.'::bytea in payload) = 0 AND position('nclavjob1:'::bytea in payload) = 1",
            database: database)
        #expect(stored == "2", "queued payloads are sealed: \(stored)")
        let status = try await nclavCLI(["status"], server: server)
        #expect(status.stdout.contains("job queue:      2 run(s) waiting for a worker, the oldest for "), "\(status.stdout)")
        #expect(waiting.contains("nclav_agent_oldest_job_age_seconds "))
        let eu = try AgentProcess.start(remote: server.baseURL, token: token, arguments: ["--labels", "pool=eu"])
        let result = try await apply
        #expect(result.exitCode == 0, "\(result.stdout)\(result.stderr)")
        let all = try await jobs(server, enclaves: 2, partitions: 2)
        let euAgent = "\(token.split(separator: ".")[1])/"
        for p in 0..<2 {
            let pinned = try #require(all["e1/p\(p)"]?.first)
            #expect(pinned["pool"] as? String == "eu")
            #expect(
                (pinned["agent"] as? String)?.hasPrefix(euAgent) == true && (pinned["agent"] as? String)?.hasSuffix("-\(eu.pid)") == true, "\(pinned)"
            )
        }
        let metrics = try await http(.GET, server.baseURL + "/metrics", auth: .bearer(server.token)).text
        #expect(metrics.contains("nclav_agent_jobs_queued 0\n") && metrics.contains("nclav_agent_oldest_job_age_seconds 0\n"))
        await anyPool.stop()
        await eu.stop()
        await server.stop()
    }

    @Test(
        "SIGTERM to an agent: it claims nothing more, interrupts its run the way a timeout does and hands the job back, exits 0; another agent runs it"
    )
    func agentShutdown() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents_stop")
        let mark = try TestSupport.makeScratchDirectory("nclav-agent-mark").appendingPathComponent("first-try").path
        // The first try sleeps 30 s (it is the one stopped); the next one 1 s.
        let builder = try tree(enclaves: 1, partitions: 1, sleep: "$(test -e \(mark) && echo 1 || (touch \(mark); echo 30))")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        let (servers, cleanup) = try await startReplicas(1, database: database, lease: "10s")
        defer { cleanup() }
        let server = servers[0]
        let token = try await agentToken(server, name: "stop")
        let agent = try AgentProcess.start(remote: server.baseURL, token: token)
        async let apply = nclavCLI(["apply", builder.root.path, "--auto-approve"], server: server)
        for _ in 0..<400 where !FileManager.default.fileExists(atPath: mark) {
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .seconds(1))
        let started = Date()
        #expect(await agent.stop(SIGTERM) == 0, "\(agent.log)")
        #expect(Date().timeIntervalSince(started) < 30, "it did not wait for the 30 s run")
        #expect(agent.log.contains("stopping (no new jobs"), "\(agent.log)")
        let next = try AgentProcess.start(remote: server.baseURL, token: token)

        let result = try await apply
        #expect(result.exitCode == 0, "\(result.stdout)\(result.stderr)")
        let jobs =
            try await http(.GET, server.baseURL + "/jobs?enclave=e0&partition=p0", auth: .bearer(server.token)).json()["jobs"] as? [[String: Any]]
        #expect(jobs?.map { $0["state"] as? String } == ["finished", "finished"], "reported, not lost: \(jobs ?? [])")
        let log = try await nclavCLI(["iac", "logs", "e0", "p0"], server: server)
        #expect(log.stdout.contains("== attempt 1 stopped: its worker shut down and interrupted terraform"), "\(log.stdout)")
        #expect(log.stdout.contains("== queued again for another agent (attempt 2 of 3)"), "\(log.stdout)")
        #expect(log.stdout.contains("Apply complete!"), "\(log.stdout)")
        await next.stop()
        await server.stop()
    }

    @Test("with no agent to claim it, a run fails after the run timeout and says to start one")
    func noAgent() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents_none")
        let builder = try tree(enclaves: 1, partitions: 1, sleep: "0", pools: [0: "gpu"])
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        let (servers, cleanup) = try await startReplicas(1, database: database, extra: ["--run-timeout", "2"])
        defer { cleanup() }
        let apply = try await nclavCLI(["apply", builder.root.path, "--auto-approve"], server: servers[0])
        #expect(apply.exitCode == 1)
        #expect(
            apply.stdout.contains(
                "no agent of pool `gpu` claimed the run within 2 s (the run timeout); start one: `nclav agent --token … --labels pool=gpu`"),
            "\(apply.stdout)")
        // While it waited, its log said for what.
        let log = try await nclavCLI(["iac", "logs", "e0", "p0"], server: servers[0])
        #expect(
            log.stdout.contains(
                "== waiting 1 s so far for an agent of pool `gpu` to claim this run (all busy, or none running; the run fails after 2 s)"),
            "\(log.stdout)")
        await servers[0].stop()
    }

    @Test("a saved plan is made by an agent and applied exactly by an agent (the plan file travels both ways)")
    func savedPlanThroughAgents() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents_plan")
        let builder = try tree(enclaves: 2, partitions: 1, sleep: "0")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        let (servers, cleanup) = try await startReplicas(1, database: database)
        defer { cleanup() }
        let server = servers[0]
        let agent = try AgentProcess.start(remote: server.baseURL, token: try await agentToken(server, name: "plans"))
        let plan = try await nclavCLI(["plan", builder.root.path], server: server)
        #expect(plan.exitCode == 2, "\(plan.stdout)\(plan.stderr)")
        #expect(plan.stdout.contains("+ e0/p0 (provision): 1 to add"), "\(plan.stdout)")
        let id = try #require(plan.stdoutLines.last { $0.hasPrefix("Apply exactly this plan: ") }?.split(separator: " ").last.map(String.init))
        let apply = try await nclavCLI(["apply", builder.root.path, "--plan", id], server: server)
        #expect(apply.exitCode == 0, "\(apply.stdout)\(apply.stderr)\n\(agent.log)")
        let runs = try await nclavCLI(["iac", "runs", "e0", "p0"], server: server)
        #expect(runs.stdoutLines.filter { $0.contains(" plan ") || $0.contains(" provision ") }.count == 2, "\(runs.stdout)")
        let log = try await nclavCLI(["iac", "logs", "e0", "p0"], server: server)
        #expect(log.stdout.contains("== agent ") && log.stdout.contains("Apply complete! Resources: 1 added"), "\(log.stdout)")
        #expect(try await nclavCLI(["diff", builder.root.path], server: server).stdout == "No changes.\n")
        await agent.stop()
        await server.stop()
    }

    @Test("a token made elsewhere (as terraform would) is accepted when the server starts with its hash; a malformed hash is a usage error")
    func registeredToken() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents_registered")
        let builder = try tree(enclaves: 1, partitions: 1, sleep: "0")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        let hex = { (count: Int) in (0..<count).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() }
        let token = "nclav-agent.\(hex(6)).\(hex(32))"
        let hashed = try TestSupport.run(TestSupport.nclavBinary.path, ["agent-token", "hash", token])
        #expect(hashed.exitCode == 0)
        let registration = hashed.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(registration.range(of: #"^[0-9a-f]{12}:[0-9a-f]{64}$"#, options: .regularExpression) != nil, "\(registration)")
        #expect(!registration.contains(String(token.split(separator: ".")[2])), "the secret itself is not in the registration")
        // The recipe `agent-token hash --help` gives for terraform computes the same registration.
        let module = try TestSupport.makeScratchDirectory("nclav-agent-recipe")
        defer { try? FileManager.default.removeItem(at: module) }
        let parts = token.split(separator: ".").map(String.init)
        try "output \"registration\" { value = \"\(parts[1]):${sha256(\"\(parts[2])\")}\" }\n".write(
            to: module.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        let terraform = try TestSupport.which("terraform")
        #expect(try TestSupport.run(terraform, ["init", "-input=false", "-no-color"], in: module).exitCode == 0)
        #expect(try TestSupport.run(terraform, ["apply", "-auto-approve", "-input=false", "-no-color"], in: module).exitCode == 0)
        #expect(try TestSupport.run(terraform, ["output", "-raw", "registration"], in: module).stdout == registration)

        let bad = try TestSupport.run(
            TestSupport.nclavBinary.path, ["serve", "--port", "0", "--postgres-url", database, "--agent-token-hash", "nope"])
        #expect(bad.exitCode == 64 && bad.stderr.contains("is not <id>:<sha256>"), "\(bad.stderr)")
        // Queue settings mean nothing without the queue's store.
        for flags in [["--agents-only"], ["--replica-workers", "0"], ["--agent-token-hash", registration]] {
            let sqlite = try TestSupport.run(TestSupport.nclavBinary.path, ["serve", "--port", "0", "--ephemeral"] + flags)
            #expect(sqlite.exitCode == 64 && sqlite.stderr.contains("needs the PostgreSQL store"), "\(flags): \(sqlite.stderr)")
        }

        let (servers, cleanup) = try await startReplicas(1, database: database, extra: ["--agent-token-hash", registration])
        defer { cleanup() }
        let agent = try AgentProcess.start(remote: servers[0].baseURL, token: token)
        let apply = try await nclavCLI(["apply", builder.root.path, "--auto-approve"], server: servers[0])
        #expect(apply.exitCode == 0, "\(apply.stdout)\(apply.stderr)\n\(agent.log)")
        let listed = try await nclavCLI(["agent-token", "list"], server: servers[0])
        #expect(listed.stdout.contains("registered at start"), "\(listed.stdout)")
        await agent.stop()
        await servers[0].stop()
    }

    @Test(
        "without --agents-only, replicas work the queue themselves: runs of one apply are executed by both replicas' workers and by an agent that joins, never two at once"
    )
    func replicasWorkTheQueue() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents_replicas_work")
        let builder = try tree(enclaves: 2, partitions: 4, sleep: "1")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        let (servers, cleanup) = try await ServerProcess.startReplicas(
            2, database: database, arguments: ["--replica-workers", "1", "--agent-lease", "3s"])
        defer { cleanup() }
        let token = try await agentToken(servers[0], name: "joins")
        let agent = try AgentProcess.start(remote: servers[1].baseURL, token: token)

        let apply = try await nclavCLI(["apply", builder.root.path, "--auto-approve", "--parallelism", "4"], server: servers[0])
        #expect(apply.exitCode == 0, "\(apply.stdout)\(apply.stderr)")
        let jobs = try await self.jobs(servers[1], enclaves: 2, partitions: 4)
        #expect(jobs.values.allSatisfy { $0.map { $0["state"] as? String } == ["finished"] }, "one finished job per run: \(jobs)")
        let workers = Set(jobs.values.flatMap { $0 }.compactMap { ($0["agent"] as? String)?.split(separator: "/").first.map(String.init) })
        #expect(workers.filter { $0.hasPrefix("replica-") }.count == 2, "both replicas ran jobs: \(workers)")
        #expect(workers.contains(String(token.split(separator: ".")[1])), "the agent ran jobs too: \(workers)")
        expectNoOverlap(jobs)
        let log = try await nclavCLI(["iac", "logs", "e1", "p0"], server: servers[1])
        #expect(
            (log.stdout.contains("== agent ") || log.stdout.contains("== replica worker replica-")) && log.stdout.contains(" runs this (job ")
                && log.stdout.contains("Apply complete!"), "\(log.stdout)")
        let runs = try await nclavCLI(["iac", "runs", "e1", "p0", "--output", "json"], server: servers[1])
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(runs.stdout.utf8)) as? [String: Any], "\(runs.stdout)")
        let version = (listed["runs"] as? [[String: Any]])?.first?["tool_version"] as? String ?? ""
        #expect(
            version.split(separator: ".").count == 3 && version.first?.isNumber == true, "the worker's terraform version is recorded: \(runs.stdout)")
        #expect(try await nclavCLI(["diff", builder.root.path], server: servers[1]).stdout == "No changes.\n")
        await agent.stop()
        for server in servers { await server.stop() }
    }

    @Test(
        "kill -9 of the replica whose reconcile an agent is running: the other replica takes over, tells the agent to stop, and runs the partition again only after its terraform has stopped"
    )
    func replicaDiesUnderAgent() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents_replica_dies")
        let builder = try tree(enclaves: 1, partitions: 1, sleep: "8")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        let (servers, cleanup) = try await startReplicas(2, database: database)
        defer { cleanup() }
        let (a, b) = (servers[0], servers[1])
        let token = try await agentToken(a, name: "survivor")
        // Room for the new run beside the old one, so only the wait keeps them apart.
        let agent = try AgentProcess.start(remote: b.baseURL, token: token, arguments: ["--parallelism", "2"])
        async let doomed = nclavCLI(["apply", builder.root.path, "--auto-approve"], server: a)

        // The agent's terraform holds the state lock for replica A's run; then A dies.
        var locked = false
        for _ in 0..<400 where !locked {
            locked = try await TestPostgres.shared().psql("SELECT count(*) FROM nclav_state_locks", database: database) == "1"
            if !locked { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(locked, "the agent's terraform took the state lock")
        await a.stop(SIGKILL)
        #expect(try await doomed.exitCode == 1)

        // B's run waits for the agent's terraform, which B tells to stop, instead of failing on its lock.
        let takeover = try await nclavCLI(["apply", builder.root.path, "--auto-approve"], server: b)
        #expect(takeover.exitCode == 0, "\(takeover.stdout)\(takeover.stderr)\n\(agent.log)")
        let runs = try await nclavCLI(["iac", "runs", "e0", "p0", "--output", "json"], server: b)
        let listing = try #require(try JSONSerialization.jsonObject(with: Data(runs.stdout.utf8)) as? [String: Any], "\(runs.stdout)")
        #expect((listing["runs"] as? [[String: Any]])?.map { $0["status"] as? String } == ["succeeded", "interrupted"], "\(runs.stdout)")
        let jobs = try await self.jobs(b, enclaves: 1, partitions: 1)
        #expect(jobs["e0/p0"]?.map { $0["state"] as? String } == ["finished", "finished"], "the old job ended with the agent's report: \(jobs)")
        expectNoOverlap(jobs)
        let newest = try await nclavCLI(["iac", "logs", "e0", "p0"], server: b)
        #expect(newest.stdout.contains("== waiting for agent ") && newest.stdout.contains("(its server went away)"), "\(newest.stdout)")
        #expect(agent.log.contains("the server cancelled e0/p0"), "\(agent.log)")
        #expect(try await nclavCLI(["diff", builder.root.path], server: b).stdout == "No changes.\n")
        await agent.stop()
        await b.stop()
    }

    @Test(
        "a replica that stops while an agent runs its job tells the agent to stop and ends the run only when the agent has reported, so its state lock outlives the agent's terraform"
    )
    func replicaStopsUnderAgent() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents_replica_stops")
        let builder = try tree(enclaves: 1, partitions: 1, sleep: "30")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        let (servers, cleanup) = try await startReplicas(1, database: database)
        defer { cleanup() }
        let server = servers[0]
        let token = try await agentToken(server, name: "told")
        let agent = try AgentProcess.start(remote: server.baseURL, token: token)
        async let stopped = nclavCLI(["apply", builder.root.path, "--auto-approve"], server: server)
        var locked = false
        for _ in 0..<400 where !locked {
            locked = try await TestPostgres.shared().psql("SELECT count(*) FROM nclav_state_locks", database: database) == "1"
            if !locked { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(locked, "the agent's terraform took the state lock")

        #expect(await server.stop(SIGTERM) == 0, "\(server.stderr)")
        _ = try await stopped
        #expect(agent.log.contains("the server cancelled e0/p0"), "\(agent.log)")
        let ends = try await TestPostgres.shared().psql(
            """
            SELECT r.status || ' ' || j.state || ' ' || (r.finished_at >= j.finished_at)::text
            FROM nclav_runs r JOIN nclav_jobs j ON j.run_id = r.id
            """, database: database)
        #expect(ends == "cancelled finished true", "the run ended after its job: \(ends)\n\(agent.log)")
        #expect(try await TestPostgres.shared().psql("SELECT count(*) FROM nclav_state_locks", database: database) == "0")
        await agent.stop()
    }

    @Test(
        "a rolling deploy: a replica stopped while its worker runs another replica's job hands the job back, and a new replica's worker runs it; the reconcile succeeds"
    )
    func rollingDeploy() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents_rolling")
        let mark = try TestSupport.makeScratchDirectory("nclav-rolling-mark").appendingPathComponent("first-try").path
        let builder = try tree(enclaves: 1, partitions: 1, sleep: "$(test -e \(mark) && echo 1 || (touch \(mark); echo 30))")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        // A holds the reconcile and runs nothing; B's worker takes the job.
        let (holders, cleanup) = try await ServerProcess.startReplicas(1, database: database, arguments: ["--replica-workers", "0"])
        defer { cleanup() }
        let a = holders[0]
        let (b, bHome) = try await ServerProcess.startReplica(database: database, token: a.token, arguments: ["--replica-workers", "1"])
        defer { try? FileManager.default.removeItem(at: bHome) }
        async let apply = nclavCLI(["apply", builder.root.path, "--auto-approve"], server: a)
        for _ in 0..<400 where !FileManager.default.fileExists(atPath: mark) {
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .seconds(1))

        let stopping = Date()
        #expect(await b.stop(SIGTERM) == 0, "\(b.stderr)")
        #expect(Date().timeIntervalSince(stopping) < 30, "B interrupted its worker's run instead of waiting 30 s")
        let (c, cHome) = try await ServerProcess.startReplica(database: database, token: a.token, arguments: ["--replica-workers", "1"])
        defer { try? FileManager.default.removeItem(at: cHome) }

        let result = try await apply
        #expect(result.exitCode == 0, "\(result.stdout)\(result.stderr)")
        let jobs = try await self.jobs(a, enclaves: 1, partitions: 1)["e0/p0"] ?? []
        #expect(jobs.map { $0["state"] as? String } == ["finished", "finished"], "\(jobs)")
        let workers = jobs.compactMap { ($0["agent"] as? String)?.split(separator: "/").first.map(String.init) }
        #expect(workers.count == 2 && workers.allSatisfy { $0.hasPrefix("replica-") } && workers[0] != workers[1], "B's worker, then C's: \(workers)")
        let log = try await nclavCLI(["iac", "logs", "e0", "p0"], server: a)
        #expect(log.stdout.contains("== attempt 1 stopped: its worker shut down and interrupted terraform"), "\(log.stdout)")
        #expect(log.stdout.contains("Apply complete!"), "\(log.stdout)")
        await c.stop()
        await a.stop()
    }

    @Test("a replica with another admin token cannot open a job's sealed payload: the job ends at once and the run says why")
    func sealedWithAnotherToken() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents_other_token")
        let builder = try tree(enclaves: 1, partitions: 1, sleep: "0")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        let (holders, cleanup) = try await ServerProcess.startReplicas(1, database: database, arguments: ["--replica-workers", "0"])
        defer { cleanup() }
        let (stranger, home) = try await ServerProcess.startReplica(
            database: database, token: String(repeating: "f", count: 64), arguments: ["--replica-workers", "1"])
        defer { try? FileManager.default.removeItem(at: home) }

        let apply = try await nclavCLI(["apply", builder.root.path, "--auto-approve"], server: holders[0])
        #expect(apply.exitCode == 1)
        #expect(apply.stdout.contains("sealed with another admin token"), "\(apply.stdout)\(apply.stderr)")
        let jobs = try await self.jobs(holders[0], enclaves: 1, partitions: 1)["e0/p0"] ?? []
        #expect(jobs.map { $0["state"] as? String } == ["finished"], "ended at once, not left to its lease: \(jobs)")
        await stranger.stop()
        await holders[0].stop()
    }

    @Test(
        "an agent killed while its claim waits on the server: the claim still takes the next job, which is never heard of and is queued again without counting as a loss"
    )
    func claimOutlivesAgent() async throws {
        let database = try await TestPostgres.shared().createDatabase("agents_stale_claim")
        let builder = try tree(enclaves: 1, partitions: 1, sleep: "0")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        let (servers, cleanup) = try await startReplicas(1, database: database)
        defer { cleanup() }
        let server = servers[0]
        let token = try await agentToken(server, name: "stale")
        let gone = try AgentProcess.start(remote: server.baseURL, token: token)
        // Killed while its first claim waits on the server (it asks as soon as it says it serves).
        for _ in 0..<200 where !gone.log.contains("serving") { try await Task.sleep(for: .milliseconds(50)) }
        try await Task.sleep(for: .seconds(2))
        gone.killMachine()
        async let apply = nclavCLI(["apply", builder.root.path, "--auto-approve"], server: server)
        try await Task.sleep(for: .seconds(1))
        let next = try AgentProcess.start(remote: server.baseURL, token: token)

        let result = try await apply
        #expect(result.exitCode == 0, "\(result.stdout)\(result.stderr)")
        let log = try await nclavCLI(["iac", "logs", "e0", "p0"], server: server)
        #expect(log.stdout.contains("== attempt 1 unheard: agent ") && log.stdout.contains("not counted as lost"), "\(log.stdout)")
        #expect(log.stdout.contains("Apply complete!"), "\(log.stdout)")
        let jobs = try await self.jobs(server, enclaves: 1, partitions: 1)["e0/p0"] ?? []
        #expect(jobs.map { $0["state"] as? String } == ["interrupted", "finished"], "\(jobs)")
        await next.stop()
        await server.stop()
    }
}
