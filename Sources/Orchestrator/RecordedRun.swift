import Foundation
import IacRunner
import NclavAuth
import NclavCore
import NclavDrivers
import NclavStore
import TFBackend

/// One terraform operation in an already rendered workspace, recorded as an IacRun: the tool
/// and its version, a backend credential that is good for this run only, the driver's cloud
/// credentials, every log line while it runs, `errored.tfstate` pushed, locks freed, and (for
/// an apply) the declared outputs read from the state terraform just stored.
struct RecordedRun: Sendable {
    let environment: ReconcileEnvironment
    let reconcileID: UUID

    struct Result: Sendable {
        var outcome: PartitionOutcome
        /// Declared outputs, for an apply that succeeded.
        var outputs: [String: String] = [:]
        var exitCode: Int32?
        /// For a plan saved to a file: what it will do.
        var plan: PlanDocument?
    }

    /// - Parameters:
    ///   - planFile: for `plan`, where to save the plan (it is then read back as JSON); for
    ///     `provision`, `update` and `teardown`, the saved plan to apply instead of planning again.
    ///   - planDestroy: for `plan`, plan a teardown.
    func run(
        _ key: StateKey, partition: Partition, operation: IacRun.Operation, workspace: URL, enclave: Enclave?,
        context: EnclaveContext, cloud: CloudTarget, identity: PartitionIdentity, planFile: URL? = nil, planDestroy: Bool = false,
        logPathRewrites: [String: String] = [:]
    ) async -> Result {
        let store = environment.store
        let start = Date()
        func outcome(_ result: PartitionOutcome.Result, runID: UUID?, reason: String? = nil) -> PartitionOutcome {
            PartitionOutcome(key: key, operation: operation, result: result, runID: runID, reason: reason, seconds: Date().timeIntervalSince(start))
        }
        let tool: String
        if environment.invoker.runsHere {
            do { tool = try ToolResolver.resolve(explicit: partition.terraform.tool, backend: partition.backend, path: environment.searchPath) } catch
            {
                return Result(outcome: outcome(.failed, runID: nil, reason: error.description))
            }
        } else {
            // An agent finds the binary on its own PATH.
            tool = partition.terraform.tool ?? partition.backend.defaultTool
        }
        let version = await environment.invoker.version(of: tool)
        let runID = UUID()
        do {
            try await store.createRun(
                IacRun(
                    id: runID, enclaveID: key.enclave, partitionID: key.partition, operation: operation, startedAt: start,
                    tool: URL(fileURLWithPath: tool).lastPathComponent, toolVersion: version, reconcileID: reconcileID))
        } catch {
            return Result(outcome: outcome(.failed, runID: nil, reason: "the run could not be recorded: \(error)"))
        }
        await environment.progress(ProgressLine.started(key, operation, runID: runID))

        /// Ends the run record once, with the last line of its log saying why, even when the
        /// reconcile was cancelled (a server shutting down).
        func finish(_ status: IacRun.Status, exitCode: Int32?, note: String? = nil) async {
            let observer = environment.observer
            await completing {
                if let note { try? await store.appendRunLog(runID, "== \(note)\n") }
                try? await store.finishRun(runID, status: status, exitCode: exitCode, finishedAt: Date())
                observer.runFinished(operation: operation, status: status, seconds: Date().timeIntervalSince(start))
                // Terraform unlocks on its own; a killed terraform cannot, so locks die with the run.
                _ = try? await store.releaseLocks(heldBy: runID)
            }
        }

        var driverEnvironment = TerraformEnvironment()
        if let enclave {
            do {
                driverEnvironment = try await environment.registry.driver(for: cloud)
                    .terraformEnvironment(enclave: enclave, context: context, partition: partition, identity: identity)
            } catch {
                let reason = "the \(cloud.rawValue) driver could not give terraform its credentials: \(error)"
                await finish(.failed, exitCode: nil, note: reason)
                return Result(outcome: outcome(.failed, runID: runID, reason: reason))
            }
        }
        let scope = RunScope(key: key, runID: runID, expiresAt: Date().addingTimeInterval(environment.runCredentialLifetime))
        var invocation = TerraformInvocation(
            key: key, operation: operation == .teardown ? .destroy : operation == .plan ? .plan : .apply, workspace: workspace, tool: tool,
            backendBaseURL: environment.backendBaseURL, credential: environment.signer.mint(scope),
            driverEnvironment: driverEnvironment.variables, secrets: environment.secrets + driverEnvironment.secretValues,
            pluginCacheDirectory: environment.pluginCache, policy: environment.stopPolicy)
        invocation.clearedPrefixes = driverEnvironment.clearedPrefixes
        invocation.planFile = planFile
        invocation.planDestroy = planDestroy
        invocation.logPathRewrites = logPathRewrites
        invocation.credentialsExpire = driverEnvironment.credentialsExpire
        invocation.runID = runID
        invocation.agentPool = enclave?.agentPool
        await pushErroredState(key: key, workspace: workspace, runID: runID)
        let result: InvocationResult
        let logBuffer = LineBatcher { text in try? await store.appendRunLog(runID, text) }
        do {
            result = try await environment.invoker.run(invocation) { line in await logBuffer.append(line) }
            await logBuffer.flush()
            // Recorded even when the reconcile was cancelled (see `finish`).
            let ran = version == nil ? result.toolVersion : nil
            await completing {
                await pushErroredState(key: key, workspace: workspace, runID: runID)
                if let ran { try? await store.setRunToolVersion(runID, ran) }
            }
        } catch {
            await logBuffer.flush()
            await finish(.failed, exitCode: nil, note: "could not run \(tool): \(error)")
            return Result(outcome: outcome(.failed, runID: runID, reason: "\(error)"))
        }
        guard result.succeeded else {
            let status: IacRun.Status = result.result.cancelled || result.result.timedOut ? .cancelled : .failed
            await finish(status, exitCode: result.result.exitCode)
            let reason =
                "terraform \(result.lastCommand) \(TerraformInvoker.describe(result.result)); see `nclav iac logs \(key.enclave) \(key.partition) \(runID)`"
            return Result(outcome: outcome(.failed, runID: runID, reason: reason), exitCode: result.result.exitCode)
        }
        if operation == .plan, planFile != nil {
            guard let document = result.plan else {
                let reason = "terraform's plan output had no change summary, so what the saved plan does is unknown"
                await finish(.failed, exitCode: result.result.exitCode, note: reason)
                return Result(outcome: outcome(.failed, runID: runID, reason: reason))
            }
            try? await store.appendRunLog(runID, "== saved plan: \(document.summary)\n")
            await finish(.succeeded, exitCode: result.result.exitCode)
            return Result(outcome: outcome(.succeeded, runID: runID), exitCode: result.result.exitCode, plan: document)
        }
        var outputs: [String: String] = [:]
        if operation == .provision || operation == .update {
            // Read even when the reconcile is being cancelled: terraform applied, and its
            // outputs are what the record keeps.
            let names = partition.declaredOutputs
            switch await completing({ await self.declaredOutputs(names, key: key) }) {
            case .success(let values): outputs = values
            case .failure(let problem):
                await finish(.failed, exitCode: result.result.exitCode, note: "failed: \(problem.reason)")
                return Result(outcome: outcome(.failed, runID: runID, reason: problem.reason), exitCode: result.result.exitCode)
            }
        }
        await finish(.succeeded, exitCode: result.result.exitCode)
        return Result(outcome: outcome(.succeeded, runID: runID), outputs: outputs, exitCode: result.result.exitCode)
    }

    struct OutputProblem: Error { let reason: String }

    /// The declared outputs from the state terraform just stored, stringified for templates.
    private func declaredOutputs(_ names: [String], key: StateKey) async -> Swift.Result<[String: String], OutputProblem> {
        guard !names.isEmpty else { return .success([:]) }
        let document: StateDocument?
        do {
            document = try await environment.store.latestState(key).map { try StateDocument(parsing: $0.body) }
        } catch {
            return .failure(OutputProblem(reason: "the state terraform wrote could not be read: \(error)"))
        }
        var outputs: [String: String] = [:]
        for name in names {
            guard let value = document?.outputs[name] else {
                return .failure(
                    OutputProblem(
                        reason: "declared output `\(name)` is missing from the state terraform wrote; add `output \"\(name)\"` to the module"))
            }
            outputs[name] = value.templateString
        }
        return .success(outputs)
    }

    /// Terraform writes `errored.tfstate` when it cannot save state to the backend (the server
    /// went away mid-run). That file is the only record of what it created: store it as a new
    /// version, note it in the run's log, and keep the file renamed beside it.
    func pushErroredState(key: StateKey, workspace: URL, runID: UUID) async {
        let file = workspace.appendingPathComponent("errored.tfstate")
        guard let body = try? Data(contentsOf: file) else { return }
        let store = environment.store
        let note: String
        if let document = try? StateDocument(parsing: body) {
            let write = StateWrite(
                body: body, serial: document.serial, lineage: document.lineage, sha256: Digest.sha256Hex(body),
                md5: Digest.md5Base64(body), lockID: nil, force: true, runID: runID)
            switch try? await store.writeState(key, write) {
            case .stored(let info)?: note = "pushed errored.tfstate (serial \(document.serial)) as state version \(info.version)"
            case .unchanged(let info)?: note = "errored.tfstate matches state version \(info.version); nothing to push"
            case .locked(let holder)?: note = "errored.tfstate NOT pushed: the state is locked by \(holder.id); it stays in the workspace"
            default: note = "errored.tfstate NOT pushed: the store refused it; it stays in the workspace"
            }
        } else {
            note = "errored.tfstate is not a readable state; left in the workspace for inspection"
        }
        try? await store.appendRunLog(runID, "== \(note)\n")
        if note.hasPrefix("pushed") || note.hasPrefix("errored.tfstate matches") {
            let kept = workspace.appendingPathComponent("errored.tfstate.pushed-\(Int(Date().timeIntervalSince1970))")
            try? FileManager.default.moveItem(at: file, to: kept)
        }
    }
}

/// The progress lines a reconcile prints as partitions start and end. Every outcome gets an
/// end line, whether or not a terraform process started.
enum ProgressLine {
    static func started(_ key: StateKey, _ operation: IacRun.Operation, runID: UUID) -> String {
        "  \(operation == .teardown ? "-" : "+") \(key) \(operation.rawValue) started (run \(runID))"
    }

    static func finished(_ outcome: PartitionOutcome) -> String {
        let key = outcome.key, operation = outcome.operation.rawValue
        let seconds = String(format: "%.1f", outcome.seconds ?? 0)
        switch outcome.result {
        case .succeeded:
            return "  \(outcome.operation == .teardown ? "-" : "✓") \(key) \(operation) succeeded in \(seconds) s"
        case .failed:
            return "  ! \(key) \(operation) failed after \(seconds) s: \(outcome.reason ?? "see its run log")"
        case .skipped:
            return "  · \(key) \(operation) skipped: \(outcome.reason ?? "")"
        case .unchanged:
            return "  = \(key) unchanged: \(outcome.reason ?? "")"
        }
    }
}
