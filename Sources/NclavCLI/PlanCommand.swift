import ArgumentParser
import Foundation
import NclavAPI
import NclavClient

/// `--enclave` and `--partition`, shared by `diff`, `plan` and `apply`.
struct TargetOptions: ParsableArguments {
    @Option(name: .customLong("enclave"), help: "Only this enclave's partitions (and what they read upstream). Repeatable.")
    var enclaves: [String] = []
    @Option(name: .customLong("partition"), help: "Only this partition, as enclave/partition (and what it reads upstream). Repeatable.")
    var partitions: [String] = []

    func validate() throws {
        for partition in partitions where partition.split(separator: "/", omittingEmptySubsequences: false).count != 2 {
            throw ValidationError("--partition `\(partition)` must be enclave/partition, e.g. shop/web")
        }
    }

    /// The request's `targets`, when any were given.
    var body: [String: Any] {
        guard !enclaves.isEmpty || !partitions.isEmpty else { return [:] }
        return ["targets": ["enclaves": enclaves, "partitions": partitions]]
    }
}

/// Makes a saved plan on the server, printing its progress, and returns it.
func makePlan(_ api: NclavAPIClient, body: Data, progress: (String) -> Void) async throws -> PlanBody {
    let start = Date()
    var made: PlanBody?
    for try await event in api.plan(body) {
        switch event {
        case .progress(let line): progress("[\(String(format: "%6.1fs", Date().timeIntervalSince(start)))] \(line)")
        case .plan(let plan): made = plan
        case .error(let message): throw CommandFailure(message)
        }
    }
    guard let made else { throw CommandFailure("the server ended the plan without one; see its log") }
    return made
}

public struct PlanCommand: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Terraform's plan of every partition `apply` would run, saved for `apply --plan`.",
        discussion: """
            Each partition that would run is planned by terraform itself (`plan -out`, a run you
            can read with `nclav iac logs`), in dependency order, and shown resource by resource:
            + create, ~ update, -/+ replace, - destroy, <= read. Removed partitions are planned
            with -destroy. A partition that reads outputs an upstream changes in the same plan is
            marked deferred: it is planned again, with the real values, after that upstream
            applies. The plan is kept on the server for 24 hours; `nclav apply <dir> --plan <id>`
            applies exactly it, and refuses it once the tree or a planned state has changed.

            Exit status (as terraform plan -detailed-exitcode): 0 nothing to do, 2 changes, 1 errors.

            Examples:
              nclav plan ./enclaves
              nclav plan ./enclaves --partition shop/web
              nclav plan ./enclaves --output json
            """
    )
    @Argument(help: "The enclaves directory.") var directory: String
    @OptionGroup var client: ClientOptions
    @OptionGroup var targets: TargetOptions
    @Flag(name: .customLong("server-path"), help: "Send the path for the server to read instead of uploading the tree.") var serverPath = false
    @Option(help: "Partitions planned at the same time (default: the server's cores).") var parallelism: Int?
    @Option(name: [.short, .long], help: "Output format: text or json.") var output: OutputFormat = .text

    public func validate() throws {
        if let parallelism, parallelism < 1 { throw ValidationError("--parallelism must be at least 1") }
    }

    public func run() async throws {
        let api = try client.client()
        var extra = targets.body
        if let parallelism { extra["parallelism"] = parallelism }
        let body = try TreeBundle.body(directory: directory, serverPath: serverPath, extra: extra)
        let plan: PlanBody
        var planned = false
        do {
            plan = try await makePlan(api, body: body) { line in
                planned = true
                if output == .json { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { print(Style.line(line)) }
            }
        } catch let error as ClientError {
            throw invalidTree(error, directory: directory, serverPath: serverPath)
        }
        if output == .json {
            printJSON(try Wire.encoder().encode(plan))
        } else {
            if planned { print("") }
            plan.textLines.forEach { print(Style.line($0)) }
            if plan.hasChanges && plan.errors.isEmpty { print("Apply exactly this plan: nclav apply \(directory) --plan \(plan.id)") }
        }
        for error in plan.errors { FileHandle.standardError.write(Data("error: \(error)\n".utf8)) }
        if !plan.errors.isEmpty { throw ExitCode(1) }
        if plan.hasChanges { throw ExitCode(2) }
    }
}
