import Foundation
import NclavCore

/// A job handed to a worker: the run to execute under a lease.
public struct JobAssignment: Sendable {
    public var jobID: String
    public var attempt: Int
    public var leaseSeconds: Double
    public var run: RemoteRun

    public init(jobID: String, attempt: Int, leaseSeconds: Double, run: RemoteRun) {
        self.jobID = jobID
        self.attempt = attempt
        self.leaseSeconds = leaseSeconds
        self.run = run
    }
}

/// Where a worker gets jobs and reports them: the HTTP API for `nclav agent`, the store itself
/// for a server replica that works the queue too.
public protocol JobChannel: Sendable {
    /// The next job for this worker, or nil when none came within the channel's wait.
    func claim() async throws -> JobAssignment?
    /// Renews the lease. Nil: the job is no longer this worker's (stop its run); `true`: the
    /// server asks for the run to stop.
    func heartbeat(job: String) async throws -> Bool?
    func sendLog(job: String, text: String) async throws
    /// False when the job was no longer this worker's.
    func sendOutcome(job: String, outcome: RemoteRunOutcome) async throws -> Bool
}

/// Claims jobs and runs their terraform until cancelled: render the workspace from the job,
/// run terraform with the run's credentials, ship log lines as they come, keep the lease with
/// heartbeats, report the outcome. Cancelling interrupts a running terraform the way a timeout
/// does, and the outcome is still reported.
public struct JobWorker: Sendable {
    let channel: any JobChannel
    /// The state backend terraform talks to (the server's URL).
    let backendBaseURL: String
    /// Workspaces (`jobs/<id>`) and the plugin cache.
    let work: URL
    let say: @Sendable (String) -> Void
    let invoker = TerraformInvoker()

    public init(channel: any JobChannel, backendBaseURL: String, work: URL, say: @escaping @Sendable (String) -> Void) {
        self.channel = channel
        self.backendBaseURL = backendBaseURL
        self.work = work
        self.say = say
    }

    /// Claims and runs one job after another until the task is cancelled.
    public func serve() async {
        while !Task.isCancelled {
            let assignment: JobAssignment?
            do { assignment = try await channel.claim() } catch {
                if Task.isCancelled { return }
                say("cannot claim a job: \(error); retrying in 2 s")
                try? await Task.sleep(for: .seconds(2))
                continue
            }
            guard let assignment else { continue }
            await execute(assignment)
        }
    }

    func execute(_ job: JobAssignment) async {
        let run = job.run
        let label = "\(run.enclave)/\(run.partition) \(run.operation) (job \(job.jobID), attempt \(job.attempt))"
        say("running \(label)")
        let workspace = work.appendingPathComponent("jobs").appendingPathComponent(job.jobID)
        defer { try? FileManager.default.removeItem(at: workspace) }
        let shipper = LineBatcher { [channel] text in try? await channel.sendLog(job: job.jobID, text: text) }
        let invocation: TerraformInvocation
        do {
            let tool = try ToolResolver.resolve(explicit: run.tool, backend: .terraform, path: ProcessInfo.processInfo.environment["PATH"] ?? "")
            invocation = try run.invocation(
                in: workspace, backendBaseURL: backendBaseURL, tool: tool, pluginCache: work.appendingPathComponent("plugin-cache"))
        } catch {
            _ = try? await channel.sendOutcome(job: job.jobID, outcome: RemoteRunOutcome(lastCommand: "init", exitCode: nil, error: "\(error)"))
            say("\(label) could not start: \(error)")
            return
        }
        let terraform = Task { [invoker] in try await invoker.run(invocation) { line in await shipper.append(line) } }
        // Heartbeats keep the lease; losing it (or being asked to stop) interrupts terraform.
        let heartbeat = Task { [channel, say] in
            var renewed = Date()
            while !Task.isCancelled {
                // A third of the lease keeps it; at most 5 s, so a cancelled run stops soon.
                try? await Task.sleep(for: .milliseconds(Int64(min(job.leaseSeconds / 3, 5) * 1000)))
                if Task.isCancelled { return }
                do {
                    guard let cancel = try await channel.heartbeat(job: job.jobID) else {
                        say("lost \(label) (its lease ran out); interrupting terraform")
                        terraform.cancel()
                        return
                    }
                    renewed = Date()
                    if cancel {
                        say("the server cancelled \(label); interrupting terraform")
                        terraform.cancel()
                    }
                } catch {
                    if Date().timeIntervalSince(renewed) > job.leaseSeconds {
                        say("no heartbeat for a whole lease on \(label): \(error); interrupting terraform")
                        terraform.cancel()
                        return
                    }
                }
            }
        }
        // Cancelling this task (SIGTERM, a server shutting down) interrupts terraform; the
        // outcome is still reported.
        let result = await withTaskCancellationHandler {
            await terraform.result
        } onCancel: {
            terraform.cancel()
        }
        heartbeat.cancel()
        // The last lines (the batcher sends them whatever the cancellation) and the outcome are
        // sent even when this task was cancelled.
        await shipper.flush()
        var outcome: RemoteRunOutcome
        switch result {
        case .success(let ended):
            outcome = RemoteRunOutcome(ended, planFile: run.savePlan ? invocation.planFile : nil)
            outcome.erroredState = FileManager.default.contents(atPath: workspace.appendingPathComponent("errored.tfstate").path)
        case .failure(let error): outcome = RemoteRunOutcome(lastCommand: "init", exitCode: nil, cancelled: Task.isCancelled, error: "\(error)")
        }
        let report = outcome
        let reported = await completing { [channel] in (try? await channel.sendOutcome(job: job.jobID, outcome: report)) ?? false }
        say(
            "\(label) ended: \(outcome.exitCode.map { "exit \($0)" } ?? outcome.error ?? "stopped")\(reported ? "" : " (not reported: the job was no longer ours)")"
        )
    }
}
