import Foundation
import NclavCore

/// Finds the IaC binary for a partition: `terraform.tool` if set, else `terraform` for the
/// terraform backend and `tofu` for opentofu, else whichever of the two is on PATH.
public enum ToolResolver {
    public struct NotFound: Error, Sendable, Equatable, CustomStringConvertible {
        public let tried: [String]
        public let path: String

        public init(tried: [String], path: String) {
            self.tried = tried
            self.path = path
        }

        public var description: String {
            "no IaC tool found: tried \(tried.map { "`\($0)`" }.joined(separator: ", ")) on PATH (\(path)); install terraform or tofu, or set `terraform.tool` to its path"
        }
    }

    public static func resolve(explicit: String?, backend: IacBackend, path: String) throws(NotFound) -> String {
        var candidates: [String] = []
        if let explicit, !explicit.isEmpty {
            candidates = [explicit]
        } else {
            candidates = [backend.defaultTool, backend == .terraform ? "tofu" : "terraform"]
        }
        for candidate in candidates {
            if candidate.contains("/") {
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
                continue
            }
            for directory in path.split(separator: ":") where !directory.isEmpty {
                let full = "\(directory)/\(candidate)"
                if FileManager.default.isExecutableFile(atPath: full) { return full }
            }
        }
        throw NotFound(tried: candidates, path: path)
    }
}

/// One terraform operation on one rendered workspace.
public struct TerraformInvocation: Sendable {
    /// `plan` is read-only: `-detailed-exitcode` (2 = changes), never writes state; without a
    /// `planFile` it does not lock either (drift checks run under nclav's own lock).
    public enum Operation: String, Sendable { case apply, destroy, plan }

    public var key: StateKey
    public var operation: Operation
    public var workspace: URL
    /// Absolute path of terraform or tofu.
    public var tool: String
    /// The server's base URL; the state address is `<base>/terraform/state/<enclave>/<partition>`.
    public var backendBaseURL: String
    /// A run credential scoped to this partition's state (never the admin token).
    public var credential: String
    /// Credentials the enclave's driver gives terraform (GOOGLE_*, ARM_*, AWS_*).
    public var driverEnvironment: [String: String]
    /// Variables of the server's own environment with these prefixes are dropped first, so a
    /// cloud partition sees only the identity its driver gave it (e.g. `AWS_` for aws).
    public var clearedPrefixes: [String] = []
    /// When the cloud credentials in `driverEnvironment` stop working (terraform cannot renew
    /// them); the log says so before, and when, it happens.
    public var credentialsExpire: Date?
    /// For `plan`: save the plan here (`-out`), taking the state lock while planning. For
    /// `apply`: apply exactly this saved plan instead of planning again.
    public var planFile: URL?
    /// For `plan`: plan a destroy (`-destroy`).
    public var planDestroy = false
    /// Paths in terraform's messages as people know them: the vendored module directory
    /// (`nclav_module_source/`) → the module's path in the enclaves tree.
    public var logPathRewrites: [String: String] = [:]
    /// Values that must never appear in the log.
    public var secrets: [String]
    public var pluginCacheDirectory: URL?
    public var policy: StopPolicy
    /// The IacRun this invocation is recorded as (an agent's job carries it).
    public var runID: UUID?
    /// The agent pool the enclave pins its runs to (`agent_pool`); nil for any agent.
    public var agentPool: String?

    public init(
        key: StateKey, operation: Operation, workspace: URL, tool: String, backendBaseURL: String, credential: String,
        driverEnvironment: [String: String] = [:], secrets: [String] = [], pluginCacheDirectory: URL? = nil, policy: StopPolicy = StopPolicy()
    ) {
        self.key = key
        self.operation = operation
        self.workspace = workspace
        self.tool = tool
        self.backendBaseURL = backendBaseURL
        self.credential = credential
        self.driverEnvironment = driverEnvironment
        self.secrets = secrets
        self.pluginCacheDirectory = pluginCacheDirectory
        self.policy = policy
    }
}

public struct InvocationResult: Sendable, Equatable {
    /// The command that ended the invocation (`init`, `apply` or `destroy`).
    public var lastCommand: String
    public var result: ProcessRunResult
    public var toolVersion: String?
    /// For a plan saved to a file: what it will do, read from terraform's JSON output.
    public var plan: PlanDocument?

    public init(lastCommand: String, result: ProcessRunResult, toolVersion: String?, plan: PlanDocument? = nil) {
        self.lastCommand = lastCommand
        self.result = result
        self.toolVersion = toolVersion
        self.plan = plan
    }

    /// A plan that found changes exits 2: a finding, not a failure.
    public var succeeded: Bool {
        result.succeeded || (lastCommand == "plan" && !result.timedOut && !result.cancelled && result.termination == .exited(2))
    }
}

/// The seam between the engine and the IaC binary: everything the reconciler asks of
/// terraform or tofu. `TerraformInvoker` runs the real binary; tests put a recording tool here.
public protocol IacTool: Sendable {
    /// True when terraform runs on this machine, so its binary is looked up here; false when
    /// runs go to agents, which find their own.
    var runsHere: Bool { get }
    /// The version `<tool> version -json` reports (e.g. `1.11.4`), or nil when it cannot tell.
    func version(of tool: String) async -> String?
    /// Runs the invocation's commands in its workspace, passing every output line to `log`.
    func run(_ invocation: TerraformInvocation, log: @escaping @Sendable (String) async -> Void) async throws -> InvocationResult
}

extension IacTool {
    public var runsHere: Bool { true }
}

/// Runs `init` then `apply` (or `destroy`) with the backend configured through `TF_HTTP_*`, so
/// no secret is ever written to `.terraform/`.
public struct TerraformInvoker: IacTool {
    private let runner: any ProcessRunner
    private let initGate: InitGate
    static let versions = ToolVersionCache()
    let backendInits = BackendInitCache()

    /// How long before the cloud credentials expire the run's log warns.
    let credentialWarningLead: Duration

    public init(runner: any ProcessRunner = SubprocessRunner(), credentialWarningLead: Duration = .seconds(600)) {
        self.runner = runner
        self.initGate = InitGate()
        self.credentialWarningLead = credentialWarningLead
    }

    /// The environment terraform runs with: the server's own environment without nclav's
    /// secrets or stray backend settings, plus automation flags, the backend, the plugin cache
    /// and the driver's credentials.
    public static func environment(for invocation: TerraformInvocation, base: [String: String]) -> [String: String] {
        var environment = base.filter { !$0.key.hasPrefix("NCLAV_") && !$0.key.hasPrefix("TF_HTTP_") && $0.key != "TF_WORKSPACE" }
        let address = "\(invocation.backendBaseURL)/terraform/state/\(invocation.key.enclave)/\(invocation.key.partition)"
        environment.merge([
            "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1",
            "TF_HTTP_ADDRESS": address, "TF_HTTP_LOCK_ADDRESS": address + "/lock", "TF_HTTP_UNLOCK_ADDRESS": address + "/lock",
            "TF_HTTP_LOCK_METHOD": "POST", "TF_HTTP_UNLOCK_METHOD": "DELETE",
            "TF_HTTP_USERNAME": "nclav-run", "TF_HTTP_PASSWORD": invocation.credential,
        ]) { $1 }
        if let cache = invocation.pluginCacheDirectory { environment["TF_PLUGIN_CACHE_DIR"] = cache.path }
        environment = environment.filter { entry in !invocation.clearedPrefixes.contains { entry.key.hasPrefix($0) } }
        environment.merge(invocation.driverEnvironment) { $1 }
        return environment
    }

    public func version(of tool: String) async -> String? {
        let environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("NCLAV_") && !$0.key.hasPrefix("TF_") }
        return try? await Self.versions.version(of: tool) { try await probeVersion(of: tool, environment: environment, directory: nil) }
    }

    private func probeVersion(of tool: String, environment: [String: String], directory: String?) async throws -> String? {
        let version = VersionCapture()
        let result = try await runner.run(
            ProcessSpec(
                executable: tool, arguments: ["version", "-json"], environment: environment,
                workingDirectory: directory ?? FileManager.default.temporaryDirectory.path),
            policy: StopPolicy(timeout: .seconds(60), gracePeriod: .seconds(5))
        ) { await version.scan($0) }
        return result.succeeded ? await version.value : nil
    }

    public func run(_ invocation: TerraformInvocation, log: @escaping @Sendable (String) async -> Void) async throws -> InvocationResult {
        try await run(invocation, base: ProcessInfo.processInfo.environment, log: log)
    }

    public func run(
        _ invocation: TerraformInvocation, base: [String: String],
        log: @escaping @Sendable (String) async -> Void
    ) async throws -> InvocationResult {
        let environment = Self.environment(for: invocation, base: base)
        let redactor = Redactor(secrets: invocation.secrets + [invocation.credential])
        let rewrites = invocation.logPathRewrites.sorted { $0.key.count > $1.key.count }
        let emit: @Sendable (String) async -> Void = { line in
            var text = redactor.redact(line)
            for (from, to) in rewrites where text.contains(from) { text = text.replacingOccurrences(of: from, with: to) }
            await log(text)
        }
        if let cache = invocation.pluginCacheDirectory {
            try? FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
        }
        let toolVersion = try await Self.versions.version(of: invocation.tool) {
            try await probeVersion(of: invocation.tool, environment: environment, directory: invocation.workspace.path)
        }

        guard let expires = invocation.credentialsExpire else {
            return try await steps(invocation, environment: environment, toolVersion: toolVersion, emit: emit)
        }
        return try await withThrowingTaskGroup(of: InvocationResult?.self) { group in
            group.addTask {
                await Self.warnBeforeExpiry(expires, lead: credentialWarningLead, emit: emit)
                return nil
            }
            group.addTask { try await steps(invocation, environment: environment, toolVersion: toolVersion, emit: emit) }
            while let finished = try await group.next() {
                guard let result = finished else { continue }
                group.cancelAll()
                return result
            }
            preconditionFailure("the steps' task always returns a result")
        }
    }

    /// Says in the log, `lead` before `expires` and again at it, that the cloud credentials
    /// terraform received run out and cannot be renewed by terraform. Returns when cancelled.
    static func warnBeforeExpiry(_ expires: Date, lead: Duration, emit: @Sendable (String) async -> Void) async {
        let clock = ContinuousClock()
        let leadSeconds = lead.inSeconds
        let warnIn = expires.timeIntervalSinceNow - leadSeconds
        if warnIn > 0 { try? await clock.sleep(for: .seconds(warnIn)) }
        guard !Task.isCancelled else { return }
        let time = ISO8601DateFormatter().string(from: expires)
        await emit(
            "nclav: the cloud credentials this run received expire at \(time) and terraform cannot renew them; calls after that fail. A partition whose runs last this long should be split (see README, \"Long runs\")"
        )
        let expireIn = expires.timeIntervalSinceNow
        if expireIn > 0 { try? await clock.sleep(for: .seconds(expireIn)) }
        guard !Task.isCancelled else { return }
        await emit("nclav: the cloud credentials this run received have expired (\(time)); the cloud will refuse terraform's calls from now on")
        // Nothing more to say; wait to be cancelled when the run ends.
        while !Task.isCancelled { try? await clock.sleep(for: .seconds(3600)) }
    }

    private func steps(
        _ invocation: TerraformInvocation, environment: [String: String], toolVersion: String?, emit: @escaping @Sendable (String) async -> Void
    ) async throws -> InvocationResult {
        let toolName = URL(fileURLWithPath: invocation.tool).lastPathComponent
        let main: (name: String, arguments: [String]) =
            switch invocation.operation {
            case .apply:
                if let planFile = invocation.planFile {
                    ("apply", ["apply", "-input=false", "-no-color", planFile.path])
                } else {
                    ("apply", ["apply", "-auto-approve", "-input=false", "-no-color"])
                }
            case .destroy:
                if let planFile = invocation.planFile {
                    ("destroy", ["apply", "-input=false", "-no-color", planFile.path])
                } else {
                    ("destroy", ["destroy", "-auto-approve", "-input=false", "-no-color"])
                }
            case .plan:
                if let planFile = invocation.planFile {
                    // -json: the changes come as they are planned, so no second terraform
                    // process (`show -json`) is needed to read them; the log gets each message.
                    (
                        "plan",
                        ["plan", "-detailed-exitcode", "-input=false", "-no-color", "-json", "-out=\(planFile.path)"]
                            + (invocation.planDestroy ? ["-destroy"] : [])
                    )
                } else {
                    ("plan", ["plan", "-detailed-exitcode", "-lock=false", "-input=false", "-no-color"])
                }
            }
        let steps: [(name: String, arguments: [String])] = [("init", ["init", "-input=false", "-no-color"]), main]
        var last = ProcessRunResult(termination: .exited(0))
        var planned: PlanDocument?
        for step in steps {
            let spec = ProcessSpec(
                executable: invocation.tool, arguments: step.arguments, environment: environment, workingDirectory: invocation.workspace.path)
            // A self-contained module's init would only record the backend, identically for
            // every workspace: reuse one real init's record instead of starting terraform.
            if step.name == "init", ProviderScan.isSelfContained(invocation.workspace),
                await backendInits.install(
                    into: invocation.workspace, tool: invocation.tool, version: toolVersion, environment: environment, runner: runner)
            {
                await emit(
                    "== \(toolName) init skipped  [\(invocation.key)]: only the built-in provider and no module blocks, so the backend record comes from one shared init of \(toolName) \(toolVersion ?? "")"
                )
                continue
            }
            await emit("== \(toolName) \(step.arguments.joined(separator: " "))  [\(invocation.key)]")
            // Inits that fill the shared plugin cache must not overlap: terraform does not lock it.
            // Modules that use only the built-in provider never write there and run freely.
            if step.name == "init", invocation.pluginCacheDirectory != nil, ProviderScan.mayInstallProviders(in: invocation.workspace) {
                last = try await initGate.serialized { try await runner.run(spec, policy: invocation.policy, onLine: emit) }
            } else if step.arguments.contains("-json") {
                let reader = PlanStreamReader()
                last = try await runner.run(spec, policy: invocation.policy) { line in await emit(await reader.read(line)) }
                planned = await reader.document
            } else {
                last = try await runner.run(spec, policy: invocation.policy, onLine: emit)
            }
            let stepResult = InvocationResult(lastCommand: step.name, result: last, toolVersion: toolVersion)
            await emit("== \(step.name) \(step.name == "plan" && stepResult.succeeded && !last.succeeded ? "found changes" : Self.describe(last))")
            if !stepResult.succeeded { return stepResult }
        }
        return InvocationResult(lastCommand: steps.last!.name, result: last, toolVersion: toolVersion, plan: planned)
    }

    public static func describe(_ result: ProcessRunResult) -> String {
        if result.timedOut { return "stopped: timed out" }
        if result.cancelled { return "stopped: cancelled" }
        switch result.termination {
        case .exited(0): return "succeeded"
        case .exited(let code): return "failed with exit code \(code)"
        case .signalled(let signal): return "killed by signal \(signal)"
        case .stopped: return "stopped"
        }
    }
}

/// Tool versions by executable path and modification time: asking costs a process per run
/// (about a third of a trivial apply's overhead), and the answer changes only when the binary does.
actor ToolVersionCache {
    private var known: [String: String] = [:]

    func version(of tool: String, probe: () async throws -> String?) async throws -> String? {
        let modified = (try? FileManager.default.attributesOfItem(atPath: tool)[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let key = "\(tool)@\(modified)"
        if let cached = known[key] { return cached }
        let value = try await probe()
        if let value { known[key] = value }
        return value
    }
}

/// Replaces every known secret value in a log line.
struct Redactor: Sendable {
    let secrets: [String]

    init(secrets: [String]) {
        // Longest first, so a secret containing another is replaced whole.
        self.secrets = Array(Set(secrets.filter { $0.count >= 4 })).sorted { $0.count > $1.count }
    }

    func redact(_ line: String) -> String {
        secrets.reduce(line) { $0.replacingOccurrences(of: $1, with: "[redacted]") }
    }
}

/// Serialises plugin-cache writes across parallel inits.
actor InitGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func serialized<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        if busy {
            await withCheckedContinuation { waiters.append($0) }
        }
        busy = true
        defer {
            if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
        }
        return try await body()
    }
}

/// Picks `"terraform_version": "x"` out of `version -json` output, ignoring anything else
/// terraform prints on the merged stream (such as CLI configuration warnings).
actor VersionCapture {
    private(set) var value: String?

    func scan(_ line: String) {
        guard value == nil, let range = line.range(of: #""terraform_version":\s*"([^"]+)""#, options: .regularExpression) else { return }
        value = line[range].split(separator: "\"").dropFirst(2).first.map(String.init)
    }
}

/// The `.terraform/terraform.tfstate` a real `init` writes for nclav's generated backend block,
/// per tool binary and version. Every nclav workspace has the same block (the settings come
/// from `TF_HTTP_*` at run time), so one real init in a scratch directory serves them all.
actor BackendInitCache {
    private var records: [String: Data] = [:]
    private var failed: Set<String> = []

    /// Writes the record into `workspace`; false when none could be made (run a real init).
    func install(into workspace: URL, tool: String, version: String?, environment: [String: String], runner: any ProcessRunner) async -> Bool {
        let backendFile = workspace.appendingPathComponent(WorkspaceRenderer.backendFile)
        guard let version, let backend = try? Data(contentsOf: backendFile) else { return false }
        let key = "\(tool)|\(version)|\(String(decoding: backend, as: UTF8.self))"
        if failed.contains(key) { return false }
        if records[key] == nil {
            guard let record = await makeRecord(backend: backend, tool: tool, environment: environment, runner: runner) else {
                failed.insert(key)
                return false
            }
            records[key] = record
        }
        let directory = workspace.appendingPathComponent(".terraform")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try records[key]!.write(to: directory.appendingPathComponent("terraform.tfstate"), options: .atomic)
            return true
        } catch {
            return false
        }
    }

    private func makeRecord(backend: Data, tool: String, environment: [String: String], runner: any ProcessRunner) async -> Data? {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("nclav-init-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        do {
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            try backend.write(to: scratch.appendingPathComponent(WorkspaceRenderer.backendFile))
            let result = try await runner.run(
                ProcessSpec(
                    executable: tool, arguments: ["init", "-input=false", "-no-color"], environment: environment, workingDirectory: scratch.path),
                policy: StopPolicy(timeout: .seconds(120), gracePeriod: .seconds(5))
            ) { _ in }
            guard result.succeeded else { return nil }
            return try Data(contentsOf: scratch.appendingPathComponent(".terraform/terraform.tfstate"))
        } catch {
            return nil
        }
    }
}
