import Foundation
import NclavCore
import NclavFiles

/// A `TerraformInvocation` sent to an agent and back: the workspace travels as files, paths
/// are rebuilt on the agent's side, and the result returns as a `RemoteRunOutcome`.
extension RemoteRun {
    /// Files nclav never ships: terraform's own working data and local state files.
    static func shipped(_ path: String) -> Bool {
        let first = path.split(separator: "/").first.map(String.init) ?? path
        return first != ".terraform" && !first.hasPrefix("terraform.tfstate") && !first.hasPrefix("errored.tfstate")
            && !first.hasPrefix(".nclav-")
    }

    /// The run of `invocation`, its workspace read from disk. `serverSecrets` (the admin token)
    /// are kept out, and refused if anything would carry them.
    public init(_ invocation: TerraformInvocation, serverSecrets: [String]) throws {
        var files: [File] = []
        let root = invocation.workspace.standardizedFileURL.path
        guard let walker = FileManager.default.enumerator(atPath: root) else {
            throw RemoteRunError.unreadable(root)
        }
        while let relative = walker.nextObject() as? String {
            guard Self.shipped(relative) else {
                walker.skipDescendants()
                continue
            }
            let url = URL(fileURLWithPath: root).appendingPathComponent(relative)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            if let plan = invocation.planFile, url.standardizedFileURL.path == plan.standardizedFileURL.path { continue }
            guard let content = FileManager.default.contents(atPath: url.path) else { throw RemoteRunError.unreadable(url.path) }
            files.append(File(path: relative, content: content))
        }
        let operation = invocation.operation
        var planFile: Data?
        if operation != .plan, let plan = invocation.planFile {
            guard let content = FileManager.default.contents(atPath: plan.path) else { throw RemoteRunError.unreadable(plan.path) }
            planFile = content
        }
        self.init(
            enclave: invocation.key.enclave, partition: invocation.key.partition, operation: operation.rawValue,
            tool: URL(fileURLWithPath: invocation.tool).lastPathComponent, files: files.sorted { $0.path < $1.path },
            credential: invocation.credential, driverEnvironment: invocation.driverEnvironment, clearedPrefixes: invocation.clearedPrefixes,
            secrets: invocation.secrets.filter { !serverSecrets.contains($0) }, credentialsExpire: invocation.credentialsExpire,
            planDestroy: invocation.planDestroy, savePlan: operation == .plan && invocation.planFile != nil, planFile: planFile,
            logPathRewrites: invocation.logPathRewrites, timeoutSeconds: invocation.policy.timeout.inSeconds,
            graceSeconds: invocation.policy.gracePeriod.inSeconds)
        let leaked = serverSecrets.filter { $0.count >= 4 }.contains { secret in
            credential.contains(secret) || driverEnvironment.values.contains { $0.contains(secret) } || self.secrets.contains(secret)
        }
        if leaked { throw RemoteRunError.serverSecret }
    }

    /// Writes the files under `workspace` and returns the invocation to run there, against the
    /// server at `backendBaseURL`, with `tool` found on the agent.
    public func invocation(in workspace: URL, backendBaseURL: String, tool: String, pluginCache: URL?) throws -> TerraformInvocation {
        guard let operation = TerraformInvocation.Operation(rawValue: operation) else {
            throw RemoteRunError.malformed("operation `\(self.operation)`")
        }
        let key: StateKey
        do { key = try StateKey(enclave: enclave, partition: partition) } catch { throw RemoteRunError.malformed("`\(enclave)/\(partition)`") }
        let manager = FileManager.default
        try manager.createDirectory(at: workspace, withIntermediateDirectories: true)
        for file in files {
            let parts = file.path.split(separator: "/")
            guard !file.path.hasPrefix("/"), !parts.isEmpty, !parts.contains(".."), !parts.contains("."), Self.shipped(file.path) else {
                throw RemoteRunError.malformed("file path `\(file.path)`")
            }
            let target = workspace.appendingPathComponent(file.path)
            try manager.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            try file.content.write(to: target, options: .atomic)
        }
        var invocation = TerraformInvocation(
            key: key, operation: operation, workspace: workspace, tool: tool, backendBaseURL: backendBaseURL, credential: credential,
            driverEnvironment: driverEnvironment, secrets: secrets, pluginCacheDirectory: pluginCache,
            policy: StopPolicy(timeout: .milliseconds(Int64(timeoutSeconds * 1000)), gracePeriod: .milliseconds(Int64(graceSeconds * 1000))))
        invocation.clearedPrefixes = clearedPrefixes
        invocation.credentialsExpire = credentialsExpire
        invocation.planDestroy = planDestroy
        invocation.logPathRewrites = logPathRewrites
        if savePlan { invocation.planFile = workspace.appendingPathComponent(".nclav-plan") }
        if let planFile {
            let file = workspace.appendingPathComponent(".nclav-plan")
            try planFile.write(to: file, options: .atomic)
            invocation.planFile = file
        }
        return invocation
    }
}

extension RemoteRunOutcome {
    /// What an agent reports of `result`; the saved plan file is read from `planFile`.
    public init(_ result: InvocationResult, planFile: URL?) {
        var exitCode: Int32?, signal: Int32?
        switch result.result.termination {
        case .exited(let code): exitCode = code
        case .signalled(let number): signal = number
        case .stopped: break
        }
        self.init(
            lastCommand: result.lastCommand, exitCode: exitCode, signal: signal, timedOut: result.result.timedOut,
            cancelled: result.result.cancelled, toolVersion: result.toolVersion,
            plan: result.plan.flatMap { try? JSONEncoder().encode($0) }, planFile: planFile.flatMap { FileManager.default.contents(atPath: $0.path) })
    }

    /// The result as the engine reads it.
    public var invocationResult: InvocationResult {
        let termination: ProcessRunResult.Termination = exitCode.map { .exited($0) } ?? signal.map { .signalled($0) } ?? .stopped
        return InvocationResult(
            lastCommand: lastCommand, result: ProcessRunResult(termination: termination, timedOut: timedOut, cancelled: cancelled),
            toolVersion: toolVersion, plan: plan.flatMap { try? JSONDecoder().decode(PlanDocument.self, from: $0) })
    }
}

public enum RemoteRunError: Error, Sendable, Equatable, CustomStringConvertible {
    case unreadable(String)
    case malformed(String)
    case serverSecret

    public var description: String {
        switch self {
        case .unreadable(let path): "`\(path)` could not be read for the agent"
        case .malformed(let what): "the job is malformed: \(what)"
        case .serverSecret: "the run would carry a secret of the server's own to the agent; it was not sent"
        }
    }
}
