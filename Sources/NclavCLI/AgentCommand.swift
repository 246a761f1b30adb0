import ArgumentParser
import Foundation
import IacRunner
import NclavAPI
import NclavAuth
import NclavClient
import NclavCore

/// `nclav agent`: runs terraform for a server whose runs are jobs (the PostgreSQL store).
/// It only ever connects out to the server, so it works from inside private networks.
public struct Agent: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        abstract: "Run terraform for an nclav server whose runs are jobs (the PostgreSQL store; `serve --agents-only` leaves them all to agents).",
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
        let instance = AgentJob.localInstance(pid: getpid())
        let channel = HTTPJobChannel(
            api: NclavAPIClient(endpoint: ServerEndpoint(baseURL: url, token: secret, tokenSource: "--token"), timeout: .seconds(120)),
            instance: instance,
            labels: Dictionary(
                labels.map { label in
                    let parts = label.split(separator: "=", maxSplits: 1)
                    return (String(parts[0]), String(parts[1]))
                }
            ) { $1 },
            claimWait: claimWait)
        let worker = JobWorker(channel: channel, backendBaseURL: url, work: work) { Console.say("nclav agent: \($0)") }
        Console.say(
            "nclav agent \(instance) serving \(url) with \(parallelism) worker(s)\(labels.isEmpty ? "" : ", labels \(labels.joined(separator: ","))")"
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
        // Runs end and report (a job claimed as the stop came is interrupted at once and handed
        // back); a worker idle in a claim request has nothing to finish.
        await workers.value
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

/// The agent's side of the job API: claims, heartbeats, log lines and outcomes over HTTP.
struct HTTPJobChannel: JobChannel {
    let api: NclavAPIClient
    let instance: String
    let labels: [String: String]
    let claimWait: Double

    func claim() async throws -> JobAssignment? {
        try await api.claim(AgentClaimRequest(instance: instance, labels: labels, waitSeconds: claimWait)).map {
            JobAssignment(jobID: $0.jobID, attempt: $0.attempt, leaseSeconds: $0.leaseSeconds, run: $0.run)
        }
    }

    func heartbeat(job: String) async throws -> Bool? {
        try await api.heartbeat(job: job, instance: instance)?.cancel
    }

    func sendLog(job: String, text: String) async throws {
        _ = try await api.sendLog(job: job, instance: instance, text: text)
    }

    func sendOutcome(job: String, outcome: RemoteRunOutcome) async throws -> Bool {
        try await api.sendOutcome(job: job, instance: instance, outcome: outcome)
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
