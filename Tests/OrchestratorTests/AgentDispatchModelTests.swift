import Foundation
import IacRunner
import NclavAuth
import NclavCore
import NclavPostgres
import NclavStore
import NclavTestSupport
import Orchestrator
import Testing

/// The agents' fault handling explored over generated schedules: a real PostgreSQL queue, the
/// real dispatcher, and simulated agents that finish, fail, die, or die and come back too late.
/// Each attempt's fate is drawn from the seed, so the model knows every run's end in advance;
/// the invariants are checked after every schedule and a failure prints its seed.
@Suite("Agent dispatch over generated fault schedules (real postgres)", .serialized)
struct AgentDispatchModelTests {
    enum Fate: Equatable, CustomStringConvertible {
        case finish(exit: Int32, milliseconds: Int)
        /// Runs longer than the lease, renewing it: must not be taken away.
        case slow(exit: Int32)
        /// Renews its lease once, then dies: a loss.
        case die
        /// Dies at once (never heard from, like a claim answered to an agent already gone), then
        /// returns after its lease ran out and tries to renew and report: refused. Queued again
        /// without counting as a loss, up to the hand-back limit.
        case zombie

        var description: String {
            switch self {
            case .finish(let exit, let ms): "finish(\(exit), \(ms) ms)"
            case .slow(let exit): "slow(\(exit))"
            case .die: "die"
            case .zombie: "zombie"
            }
        }

        /// How a run ends, attempt by attempt: the exit code, or nil when it is lost twice;
        /// and how many attempts it took.
        static func expected(seed: UInt64, run: Int) -> (exit: Int32?, attempts: [Fate]) {
            var losses = 0
            var handedBack = 0
            var fates: [Fate] = []
            for attempt in 1... {
                let fate = draw(seed: seed, run: run, attempt: attempt)
                fates.append(fate)
                switch fate {
                case .finish(let exit, _), .slow(let exit): return (exit, fates)
                case .zombie where handedBack < 5: handedBack += 1
                case .die, .zombie:
                    losses += 1
                    if losses == 2 { return (nil, fates) }
                }
            }
            return (nil, fates)
        }

        static func draw(seed: UInt64, run: Int, attempt: Int) -> Fate {
            var random = SeededGenerator(seed: seed &* 1_000_003 &+ UInt64(run) &* 31 &+ UInt64(attempt))
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<5: return .finish(exit: Int.random(in: 0..<4, using: &random) == 0 ? 1 : 0, milliseconds: Int.random(in: 0..<80, using: &random))
            case 5: return .slow(exit: 0)
            case 6, 7: return .die
            default: return .zombie
            }
        }
    }

    /// Long enough that a loaded test machine (other suites run beside this one) does not lose
    /// a live agent's lease between two heartbeats.
    static let lease: TimeInterval = 1.5

    /// One simulated agent: claims until told to stop, and meets each job's fate.
    static func agent(_ name: String, store: PostgresStore, seed: UInt64, runs: [UUID: Int], refused: Counter, stop: Flag) async throws {
        while await !stop.value {
            guard let job = try await store.claimJob(agent: name, pools: [nil], leaseExpiresAt: Date().addingTimeInterval(lease), at: Date())
            else {
                try await Task.sleep(for: .milliseconds(5))
                continue
            }
            let fate = Fate.draw(seed: seed, run: runs[job.runID]!, attempt: job.attempt)
            func report(_ exit: Int32) async throws -> Bool {
                try await store.finishJob(
                    job.id, agent: name, outcome: try JSONEncoder().encode(RemoteRunOutcome(lastCommand: "apply", exitCode: exit)), at: Date())
            }
            switch fate {
            case .finish(let exit, let milliseconds):
                try await Task.sleep(for: .milliseconds(milliseconds))
                #expect(try await report(exit), "seed \(seed): a live agent's report is accepted")
            case .slow(let exit):
                for _ in 0..<14 {
                    try await Task.sleep(for: .milliseconds(150))
                    #expect(try await store.renewLease(job.id, agent: name, until: Date().addingTimeInterval(lease)), "seed \(seed): renewed in time")
                }
                #expect(try await report(exit), "seed \(seed): a slow but live agent keeps its job")
            case .die:
                // Heard from once (a heartbeat a third of the lease in, as agents send them), then gone.
                try await Task.sleep(for: .milliseconds(Int(lease * 1000 / 3) + 50))
                _ = try await store.renewLease(job.id, agent: name, until: Date().addingTimeInterval(lease))
            case .zombie:
                let late = Task {
                    // Back only once the job is taken from it (however slow a loaded machine makes
                    // the dispatcher), so the late renewal and report must both be refused.
                    try await Task.sleep(for: .milliseconds(Int(lease * 1000)))
                    for _ in 0..<600 where try await store.job(job.id)?.state == .claimed { try await Task.sleep(for: .milliseconds(50)) }
                    if try await store.renewLease(job.id, agent: name, until: Date().addingTimeInterval(lease)) { return }
                    if try await report(0) { return }
                    await refused.add()
                }
                _ = late
            }
        }
    }

    @Test("every run ends exactly as its attempts' fates say; no run is held twice at once; lost jobs keep no payload")
    func generatedSchedules() async throws {
        let seeds: [UInt64] = ProcessInfo.processInfo.environment["NCLAV_AGENT_SEED"].flatMap(UInt64.init).map { [$0] } ?? [1, 2, 3, 4, 5]
        let url = try await TestPostgres.shared().createDatabase("dispatch_model")
        let store = try await PostgresStore.open(url: url)
        defer { Task { try? await store.close() } }
        let workspace = try TestSupport.makeScratchDirectory("nclav-dispatch-model")
        defer { try? FileManager.default.removeItem(at: workspace) }
        try "resource \"terraform_data\" \"x\" {}\n".write(to: workspace.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        let dispatch = AgentDispatch(
            jobs: store, store: store, serverSecrets: ["the-admin-token"], seal: JobPayloadSeal(adminToken: "the-admin-token"),
            lease: .milliseconds(Int64(Self.lease * 1000)), poll: .milliseconds(10))

        for seed in seeds {
            let count = 10
            var runs: [UUID: Int] = [:]
            var invocations: [(Int, TerraformInvocation)] = []
            for index in 0..<count {
                let runID = UUID()
                runs[runID] = index
                let key = try StateKey(enclave: "s\(seed)", partition: "p\(index)")
                try await store.createRun(
                    IacRun(id: runID, enclaveID: key.enclave, partitionID: key.partition, operation: .update, startedAt: Date(), tool: "terraform"))
                var invocation = TerraformInvocation(
                    key: key, operation: .apply, workspace: workspace, tool: "/usr/bin/terraform", backendBaseURL: "http://127.0.0.1:1",
                    credential: "run-credential-\(index)", secrets: ["the-admin-token", "cloud-secret"])
                invocation.runID = runID
                invocations.append((index, invocation))
            }
            let refused = Counter()
            let stop = Flag()
            let agents = Task { [runs] in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for name in 0..<4 {
                        group.addTask { try await Self.agent("agent-\(name)", store: store, seed: seed, runs: runs, refused: refused, stop: stop) }
                    }
                    try await group.waitForAll()
                }
            }
            let ended = await withTaskGroup(of: (Int, Result<InvocationResult, any Error>).self) { group in
                for (index, invocation) in invocations {
                    group.addTask {
                        do { return (index, .success(try await dispatch.run(invocation) { _ in })) } catch { return (index, .failure(error)) }
                    }
                }
                return await group.reduce(into: [Int: Result<InvocationResult, any Error>]()) { $0[$1.0] = $1.1 }
            }
            await stop.set()
            try await agents.value

            var zombies = 0
            for index in 0..<count {
                let (exit, fates) = Fate.expected(seed: seed, run: index)
                zombies += fates.filter { $0 == .zombie }.count
                let context = "seed \(seed) run \(index): fates \(fates)"
                switch (exit, ended[index]) {
                case (let exit?, .success(let result)?):
                    #expect(result.result.exitCode == exit, "\(context)")
                case (nil, .failure(let error)?):
                    #expect("\(error)".contains("lost with its agent 2 time(s)"), "\(context): \(error)")
                default:
                    Issue.record("\(context): ended \(String(describing: ended[index]))")
                }
                // The queue's record of the run: one job per attempt made, never two held at once.
                let jobs = try await store.jobs(enclave: "s\(seed)", partition: "p\(index)")
                #expect(jobs.count == fates.count, "\(context): \(jobs.map(\.state))")
                #expect(jobs.map(\.attempt) == Array(1...jobs.count), "\(context)")
                for (earlier, later) in zip(jobs, jobs.dropFirst()) {
                    #expect(
                        earlier.state == .interrupted && (earlier.finishedAt ?? .distantFuture) <= (later.claimedAt ?? .distantPast), "\(context)")
                }
                for job in jobs { #expect(try await store.job(job.id)?.payload.isEmpty == true, "\(context): an ended job keeps no credentials") }
                let log = try await store.run(invocations[index].1.runID!)?.log ?? ""
                #expect(log.contains("== attempt 1 interrupted") == (fates.first == .die), "\(context): \(log)")
                #expect(log.contains("== attempt 1 unheard") == (fates.first == .zombie), "\(context): \(log)")
            }
            // The last zombies come back after their jobs were taken; a loaded machine may keep
            // them a while.
            for _ in 0..<600 where await refused.value < zombies { try await Task.sleep(for: .milliseconds(50)) }
            #expect(await refused.value == zombies, "seed \(seed): every agent that came back too late was refused")
        }
    }
}

extension AgentDispatchModelTests {
    @Test("an errored.tfstate an agent brings back lands in the server's workspace, where the engine stores it as a state version")
    func erroredStateComesBack() async throws {
        let url = try await TestPostgres.shared().createDatabase("dispatch_errored")
        let store = try await PostgresStore.open(url: url)
        defer { Task { try? await store.close() } }
        let workspace = try TestSupport.makeScratchDirectory("nclav-dispatch-errored")
        defer { try? FileManager.default.removeItem(at: workspace) }
        try "resource \"terraform_data\" \"x\" {}\n".write(to: workspace.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        let runID = UUID()
        let key = try StateKey(enclave: "e", partition: "p")
        try await store.createRun(IacRun(id: runID, enclaveID: "e", partitionID: "p", operation: .update, startedAt: Date(), tool: "terraform"))
        var invocation = TerraformInvocation(
            key: key, operation: .apply, workspace: workspace, tool: "terraform", backendBaseURL: "http://127.0.0.1:1", credential: "c")
        invocation.runID = runID
        let agent = Task {
            while true {
                if let job = try await store.claimJob(agent: "a", pools: [nil], leaseExpiresAt: Date().addingTimeInterval(30), at: Date()) {
                    var outcome = RemoteRunOutcome(lastCommand: "apply", exitCode: 1)
                    outcome.erroredState = Data(#"{"version":4,"serial":3,"lineage":"l","resources":[]}"#.utf8)
                    _ = try await store.finishJob(job.id, agent: "a", outcome: try JSONEncoder().encode(outcome), at: Date())
                    return
                }
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        let result = try await AgentDispatch(jobs: store, store: store, serverSecrets: [], seal: JobPayloadSeal(adminToken: "t"), lease: .seconds(30))
            .run(invocation) {
                _ in
            }
        try await agent.value
        #expect(result.result.exitCode == 1)
        let errored = try String(contentsOf: workspace.appendingPathComponent("errored.tfstate"), encoding: .utf8)
        #expect(errored.contains(#""serial":3"#))
    }
}

actor Counter {
    private(set) var value = 0
    func add() { value += 1 }
}

actor Flag {
    private(set) var value = false
    func set() { value = true }
}
