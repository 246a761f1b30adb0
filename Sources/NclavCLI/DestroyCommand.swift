import ArgumentParser
import Foundation
import NclavAPI
import NclavClient

public struct Destroy: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        abstract: "Tear down enclaves (or one partition) and remove them from state.",
        discussion: """
            Runs `terraform destroy` for each partition (dependents first), then removes the
            enclave. The declarative way is to delete it from the YAML and `apply`; this is the
            imperative escape hatch. Asks for confirmation unless --yes.

            Examples:
              nclav destroy product-a-dev
              nclav destroy product-a-dev product-b-staging --yes
              nclav destroy product-a-dev --partition db
              nclav destroy product-a-dev --partition db --forget
              nclav destroy --all --yes

            --forget drops one partition from nclav's state without running terraform, for a
            partition whose teardown can never succeed (its tool, code or workspace is gone). Its
            Terraform state and workspace are kept; whatever it created stays in the cloud.
            """
    )
    @Argument(help: "Enclave ids.") var enclaves: [String] = []
    @Flag(help: "Destroy every enclave the server knows.") var all = false
    @Option(help: "Destroy only this partition of the (single) enclave given.") var partition: String?
    @Flag(help: "With --partition: drop it from state without a teardown (its cloud resources are left as they are).") var forget = false
    @Flag(
        name: [.short, .customLong("yes"), .customLong("auto-approve")],
        help: "Do not ask for confirmation (`--auto-approve`, as for apply and terraform destroy).")
    var yes = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var reportOption: ReportOption
    @Option(name: [.short, .long], help: "Output format: text, or json (NDJSON: the destroy's events, then the run report).")
    var output: OutputFormat = .text

    public func validate() throws {
        if all && !enclaves.isEmpty { throw ValidationError("give enclave ids or --all, not both") }
        if !all && enclaves.isEmpty { throw ValidationError("name the enclaves to destroy, or pass --all") }
        if partition != nil && (all || enclaves.count != 1) { throw ValidationError("--partition needs exactly one enclave id") }
        if forget && partition == nil { throw ValidationError("--forget needs --partition: only one partition at a time is forgotten") }
    }

    /// What a destroy removes, partition by partition with the resources in its state, for the
    /// question before it.
    static func listDoomed(_ api: NclavAPIClient, enclaves: [String], partition: String?) async throws -> [String] {
        var lines = ["This destroys:"]
        for enclave in enclaves.sorted() {
            let detail = try await api.enclave(enclave).value
            for state in detail.partitions.sorted(by: { $0.partitionID < $1.partitionID }) where partition == nil || state.partitionID == partition {
                guard let key = state.key else { continue }
                let count = try await api.state(key).map(Self.managedResources) ?? 0
                lines.append("  - partition \(key) (\(count) resource\(count == 1 ? "" : "s") in its state)")
            }
            if partition == nil { lines.append("  - enclave \(enclave) (its \(detail.enclave.resolvedCloud.rawValue) boundary)") }
        }
        return lines
    }

    /// Managed resource instances in a Terraform state document.
    static func managedResources(_ state: Data) -> Int {
        let resources = ((try? JSONSerialization.jsonObject(with: state)) as? [String: Any])?["resources"] as? [[String: Any]] ?? []
        return resources.filter { $0["mode"] as? String != "data" }.reduce(0) { $0 + max(1, ($1["instances"] as? [Any])?.count ?? 1) }
    }

    public func run() async throws {
        if forget, let partition {
            return try await ForgetCommand.forget(enclave: enclaves[0], partition: partition, yes: yes, client: client)
        }
        let api = try client.client()
        let json = output == .json
        func say(_ text: String) { if json { FileHandle.standardError.write(Data((text + "\n").utf8)) } else { print(text) } }
        try await withClient {
            var targets = enclaves
            if all {
                targets = try await api.enclaves().value.enclaves.map(\.enclave.id)
                if targets.isEmpty { return print("nothing to destroy: the server has no enclaves") }
            }
            let what = partition.map { "partition \(targets[0])/\($0)" } ?? "enclave(s) \(targets.sorted().joined(separator: ", "))"
            if !yes { try await Self.listDoomed(api, enclaves: targets, partition: partition).forEach { say($0) } }
            try Confirmation.require("destroy \(what)", question: "This runs terraform destroy for \(what).", declined: "nothing destroyed", yes: yes)
            let start = Date()
            var runReport = RunReport(command: "destroy", started: start)
            // The server orders the teardowns: importers before what they import, across all of them.
            for try await event in try api.destroy(DestroyRequest(enclaves: targets, partition: partition)) {
                if json { print(Wire.line(event), terminator: "") }
                switch event {
                case .progress:
                    continue
                case .report(let report):
                    runReport.reconcile_ids = [report.reconcileID]
                    runReport.outcomes = report.outcomes
                    runReport.enclaves = report.enclaves
                    runReport.errors = report.errors
                case .error(let message):
                    runReport.errors.append(message)
                }
            }
            for outcome in runReport.outcomes {
                say("- \(outcome.partition) \(outcome.operation) \(outcome.result)\(outcome.reason.map { ": \($0)" } ?? "")")
            }
            for error in runReport.errors { FileHandle.standardError.write(Data("error: \(error)\n".utf8)) }
            if let partition {
                if runReport.errors.isEmpty { say("destroyed partition \(targets[0])/\(partition)") }
            } else {
                for outcome in runReport.enclaves where outcome.result == "succeeded" { say("destroyed enclave \(outcome.enclave)") }
            }
            runReport.finish(at: Date(), started: start)
            if !runReport.outcomes.isEmpty {
                say("")
                runReport.table(enclaves: false).forEach { say($0) }
            }
            if json { print(Wire.line(RunReport.Line(report: runReport)), terminator: "") }
            if let path = reportOption.reportFile { try runReport.write(to: path) }
            if !runReport.errors.isEmpty { throw ExitCode(1) }
        }
    }
}
