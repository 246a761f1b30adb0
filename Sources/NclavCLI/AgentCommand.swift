import ArgumentParser
import Foundation
import IacRunner
import NclavAPI
import NclavAuth
import NclavClient
import NclavCore

/// `nclav agent`: runs terraform for a server whose runs are jobs (`serve --agents-only`).
/// It only ever connects out to the server, so it works from inside private networks.
public struct Agent: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        abstract: "Run terraform for an nclav server whose runs go to agents (`nclav serve --agents-only`).",
        discussion: """
            Claims jobs over the HTTP API (outbound connections only), renders each partition's
            workspace locally, runs terraform with the run-scoped backend credential and the cloud
            credentials the server hands over, streams the log lines back as terraform writes them,
            and reports the outcome. The job's lease is renewed by heartbeats; an agent that stops
            answering loses the job to another agent after the lease (`serve --agent-lease`).

            SIGTERM or SIGINT: no new job is claimed and running ones are interrupted the way a
            timeout interrupts terraform (SIGINT, then SIGKILL after the grace period); their
            outcome is still reported.

            Examples:
              nclav agent --remote https://nclav.example.com --token "$NCLAV_AGENT_TOKEN"
              nclav agent --remote http://10.0.0.5:8080 --token nclav-agent.… --parallelism 4 --labels pool=eu
            """)

    @Option(help: "Server URL (env NCLAV_URL).") var remote: String?
    @Option(help: "Agent token from `nclav agent-token create` (env NCLAV_AGENT_TOKEN).") var token: String?
    @Option(help: "Runs executed at the same time.") var parallelism = 1
    @Option(help: "`pool=<name>`: also run the jobs of enclaves with that `agent_pool` (repeatable).") var labels: [String] = []
    @Option(name: .customLong("work-dir"), help: "Where workspaces and the plugin cache live (default $NCLAV_HOME/agent).")
    var workDirectory: String?
    @Option(name: .customLong("claim-wait"), help: "Seconds one claim request waits on the server for a job before asking again.")
    var claimWait: Double = 20

    public func validate() throws {
        if parallelism < 1 { throw ValidationError("--parallelism must be at least 1") }
        for label in labels where label.split(separator: "=", maxSplits: 1).count != 2 {
            throw ValidationError("--labels takes key=value, e.g. pool=eu; got `\(label)`")
        }
    }

    public func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let url = remote ?? environment["NCLAV_URL"].flatMap({ $0.isEmpty ? nil : $0 }) else {
            throw ValidationError("pass the server's URL: --remote https://… (or set NCLAV_URL)")
        }
        guard let secret = token ?? environment["NCLAV_AGENT_TOKEN"].flatMap({ $0.isEmpty ? nil : $0 }), secret.hasPrefix("nclav-agent.") else {
            throw ValidationError(
                "pass an agent token: --token nclav-agent.… (or set NCLAV_AGENT_TOKEN); the admin creates one with `nclav agent-token create <name>`")
        }
        let work = URL(fileURLWithPath: workDirectory ?? NclavHome.directory().appendingPathComponent("agent").path, isDirectory: true)
        try FileManager.default.createDirectory(at: work.appendingPathComponent("plugin-cache"), withIntermediateDirectories: true)
        let worker = AgentWorker(
            api: NclavAPIClient(endpoint: ServerEndpoint(baseURL: url, token: secret, tokenSource: "--token"), timeout: .seconds(120)),
            baseURL: url, instance: "\(ProcessInfo.processInfo.hostName.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." })-\(getpid())",
            labels: Dictionary(
                labels.map { label in
                    let parts = label.split(separator: "=", maxSplits: 1)
                    return (String(parts[0]), String(parts[1]))
                }
            ) { $1 },
            work: work, claimWait: claimWait)
        Console.say(
            "nclav agent \(worker.instance) serving \(url) with \(parallelism) worker(s)\(labels.isEmpty ? "" : ", labels \(labels.joined(separator: ","))")"
        )
        // SIGTERM and SIGINT end the work: no new claims, running runs interrupted and reported.
        let stop = StopSignal()
        let count = parallelism
        let workers = Task { [worker] in
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<count { group.addTask { await worker.serve() } }
            }
        }
        await stop.wait()
        Console.say("nclav agent: stopping (no new jobs; running ones are interrupted and reported)")
        workers.cancel()
        // Runs end and report; a worker idle in a claim request has nothing to finish.
        await worker.active.waitUntilIdle()
        Console.say("nclav agent: stopped")
        Foundation.exit(0)
    }
}

/// Waits for SIGTERM or SIGINT. Unchecked: the sources are set once in `init` and only kept
/// alive here; the stream is Sendable.
final class StopSignal: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]
    private let stream: AsyncStream<Void>

    init() {
        var continuation: AsyncStream<Void>.Continuation!
        stream = AsyncStream { continuation = $0 }
        let yield = continuation!
        sources = [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { yield.yield() }
            source.resume()
            return source
        }
    }

    func wait() async {
        for await _ in stream { return }
    }
}

enum Console {
    static func say(_ text: String) {
        FileHandle.standardError.write(Data("\(Timestamp.string(Date())) \(text)\n".utf8))
    }
}

/// One agent process: claims and runs jobs until cancelled.
struct AgentWorker: Sendable {
    let api: NclavAPIClient
    let baseURL: String
    let instance: String
    let labels: [String: String]
    let work: URL
    let claimWait: Double
    let invoker = TerraformInvoker()
    /// Jobs being run right now.
    let active = ActiveJobs()

    func serve() async {
        while !Task.isCancelled {
            let assignment: AgentAssignment?
            do {
                assignment = try await api.claim(AgentClaimRequest(instance: instance, labels: labels, waitSeconds: claimWait))
            } catch {
                if Task.isCancelled { return }
                Console.say("nclav agent: cannot claim a job: \(error); retrying in 2 s")
                try? await Task.sleep(for: .seconds(2))
                continue
            }
            guard let assignment else { continue }
            await active.started()
            await execute(assignment)
            await active.ended()
        }
    }

    func execute(_ job: AgentAssignment) async {
        let run = job.run
        let label = "\(run.enclave)/\(run.partition) \(run.operation) (job \(job.jobID), attempt \(job.attempt))"
        Console.say("nclav agent: running \(label)")
        let workspace = work.appendingPathComponent("jobs").appendingPathComponent(job.jobID)
        defer { try? FileManager.default.removeItem(at: workspace) }
        let shipper = LineBatcher { [api, instance] text in _ = try? await api.sendLog(job: job.jobID, instance: instance, text: text) }
        let invocation: TerraformInvocation
        do {
            let tool = try ToolResolver.resolve(explicit: run.tool, backend: .terraform, path: ProcessInfo.processInfo.environment["PATH"] ?? "")
            invocation = try run.invocation(
                in: workspace, backendBaseURL: baseURL, tool: tool, pluginCache: work.appendingPathComponent("plugin-cache"))
        } catch {
            _ = try? await api.sendOutcome(
                job: job.jobID, instance: instance, outcome: RemoteRunOutcome(lastCommand: "init", exitCode: nil, error: "\(error)"))
            Console.say("nclav agent: \(label) could not start: \(error)")
            return
        }
        let terraform = Task { try await invoker.run(invocation) { line in await shipper.append(line) } }
        // Heartbeats keep the lease; losing it (or being asked to stop) interrupts terraform.
        let heartbeat = Task {
            var renewed = Date()
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(Int64(job.leaseSeconds * 1000 / 3)))
                if Task.isCancelled { return }
                do {
                    guard let beat = try await api.heartbeat(job: job.jobID, instance: instance) else {
                        Console.say("nclav agent: lost \(label) (its lease ran out); interrupting terraform")
                        terraform.cancel()
                        return
                    }
                    renewed = Date()
                    if beat.cancel {
                        Console.say("nclav agent: the server cancelled \(label); interrupting terraform")
                        terraform.cancel()
                    }
                } catch {
                    if Date().timeIntervalSince(renewed) > job.leaseSeconds {
                        Console.say("nclav agent: no heartbeat for a whole lease on \(label): \(error); interrupting terraform")
                        terraform.cancel()
                        return
                    }
                }
            }
        }
        var outcome: RemoteRunOutcome
        // A SIGTERM cancels this task: terraform is interrupted, and the outcome still reported.
        let result = await withTaskCancellationHandler {
            await terraform.result
        } onCancel: {
            terraform.cancel()
        }
        heartbeat.cancel()
        // The last lines and the outcome are sent even when a SIGTERM cancelled this task (a
        // cancelled task's requests would fail at once): from a task of their own.
        await Task { await shipper.flush() }.value
        switch result {
        case .success(let ended):
            outcome = RemoteRunOutcome(ended, planFile: run.savePlan ? invocation.planFile : nil)
            outcome.erroredState = FileManager.default.contents(atPath: workspace.appendingPathComponent("errored.tfstate").path)
        case .failure(let error): outcome = RemoteRunOutcome(lastCommand: "init", exitCode: nil, cancelled: Task.isCancelled, error: "\(error)")
        }
        let report = outcome
        let reported = await Task { [api, instance] in
            (try? await api.sendOutcome(job: job.jobID, instance: instance, outcome: report)) ?? false
        }.value
        Console.say(
            "nclav agent: \(label) ended: \(outcome.exitCode.map { "exit \($0)" } ?? outcome.error ?? "stopped")\(reported ? "" : " (not reported: the job was no longer ours)")"
        )
    }
}

/// How many jobs an agent is running, so a stop waits for exactly those.
actor ActiveJobs {
    private var count = 0
    func started() { count += 1 }
    func ended() { count -= 1 }
    func waitUntilIdle() async {
        while count > 0 { try? await Task.sleep(for: .milliseconds(50)) }
    }
}

/// `nclav agent-token create|list|revoke`: the admin's side of agent credentials.
public struct AgentTokenCommand: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "agent-token",
        abstract: "Create, list and revoke the tokens agents (`nclav agent`) authenticate with.",
        discussion: """
            An agent token can claim and report jobs and nothing else: every other route answers
            403. The server keeps only a hash of it; `create` prints it once.
            """,
        subcommands: [Create.self, List.self, Revoke.self, Hash.self])

    struct Hash: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print what `nclav serve --agent-token-hash` takes for a token made elsewhere: <id>:<sha256 of its secret>.",
            discussion: """
                A deployment can make its agents' token in the same apply as the server: a token is
                `nclav-agent.<12 hex digits>.<64 hex digits>`, and the server accepts it when started
                with `--agent-token-hash <id>:<sha256 of the 64 hex digits>`. In terraform:
                  id = random_id.agent_id.hex; secret = random_id.agent_secret.hex (6 and 32 bytes)
                  token = "nclav-agent.${id}.${secret}"; registration = "${id}:${sha256(secret)}"

                Example:
                  nclav agent-token hash "$NCLAV_AGENT_TOKEN"
                """)
        @Argument(help: "The agent token.") var token: String

        func run() throws {
            guard let registration = AgentTokenSecret.registration(of: token) else {
                throw ValidationError("not an agent token: expected nclav-agent.<12 hex digits>.<64 hex digits>")
            }
            print(registration)
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an agent token; the token is the last line printed (or `token` with -o json).",
            discussion: "Example:\n  nclav agent-token create eu-pool")
        @Argument(help: "A name to recognise it by (a pool, a cluster).") var name: String
        @OptionGroup var client: ClientOptions
        @Option(name: [.short, .long], help: "Output format: text or json.") var output: OutputFormat = .text

        func run() async throws {
            let api = try client.client()
            try await withClient {
                let created = try await api.createAgentToken(name: name)
                if output == .json { return printJSON(created.raw) }
                FileHandle.standardError.write(
                    Data(
                        "agent token \(created.value.id) (\(created.value.name)) created; it is shown once — give it to `nclav agent --token`:\n".utf8
                    ))
                print(created.value.token)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List agent tokens (never the tokens themselves).")
        @OptionGroup var client: ClientOptions
        @Option(name: [.short, .long], help: "Output format: text or json.") var output: OutputFormat = .text

        func run() async throws {
            let api = try client.client()
            try await withClient {
                let listing = try await api.agentTokens()
                if output == .json { return printJSON(listing.raw) }
                table(
                    ["ID", "NAME", "CREATED", "REVOKED"],
                    listing.value.tokens.map { [$0.id, $0.name, Timestamp.string($0.createdAt), $0.revokedAt.map(Timestamp.string) ?? "-"] }
                ).forEach { print($0) }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke an agent token: its agents' next request is refused.", discussion: "Example:\n  nclav agent-token revoke 3f6d9e1ac4b2")
        @Argument(help: "The token's id (from `create` or `list`).") var id: String
        @OptionGroup var client: ClientOptions

        func run() async throws {
            let api = try client.client()
            try await withClient {
                try await api.revokeAgentToken(id)
                print("agent token \(id) revoked")
            }
        }
    }
}
