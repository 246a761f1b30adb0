import ArgumentParser
import Foundation
import NclavClient
import Orchestrator

struct Destroy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
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
    @Flag(name: [.short, .customLong("yes")], help: "Do not ask for confirmation.") var yes = false
    @OptionGroup var client: ClientOptions
    @OptionGroup var reportOption: ReportOption

    func validate() throws {
        if all && !enclaves.isEmpty { throw ValidationError("give enclave ids or --all, not both") }
        if !all && enclaves.isEmpty { throw ValidationError("name the enclaves to destroy, or pass --all") }
        if partition != nil && (all || enclaves.count != 1) { throw ValidationError("--partition needs exactly one enclave id") }
        if forget && partition == nil { throw ValidationError("--forget needs --partition: only one partition at a time is forgotten") }
    }

    struct Listing: Decodable {
        struct Entry: Decodable { struct State: Decodable { let id: String }; let enclave: State }
        let enclaves: [Entry]
    }

    struct Report: Decodable {
        let reconcile_id: String?
        let outcomes: [RunReport.Outcome]
        let errors: [String]
    }

    /// Orders enclaves so that every importer is destroyed before what it imports from.
    static func importersFirst(_ enclaves: [String], graph: StateGraph) -> [String] {
        func enclave(_ node: String) -> String { String(node.split(separator: "/").first ?? "") }
        var remaining = enclaves.sorted()
        var order: [String] = []
        while !remaining.isEmpty {
            let free = remaining.first { candidate in
                !graph.edges.contains { enclave($0.to) == candidate && enclave($0.from) != candidate && remaining.contains(enclave($0.from)) }
            } ?? remaining[0]
            order.append(free)
            remaining.removeAll { $0 == free }
        }
        return order
    }

    func run() async throws {
        if forget, let partition {
            return try await ForgetCommand.forget(enclave: enclaves[0], partition: partition, yes: yes, client: client)
        }
        let api = try client.client()
        try await withClient {
            var targets = enclaves
            if all {
                let answer = try await api.send(.GET, "/enclaves")
                try NclavAPIClient.requireSuccess(answer)
                targets = try JSONDecoder().decode(Listing.self, from: answer.body).enclaves.map(\.enclave.id)
                if targets.isEmpty { return print("nothing to destroy: the server has no enclaves") }
            }
            if partition == nil, targets.count > 1 {
                let answer = try await api.send(.GET, "/graph")
                try NclavAPIClient.requireSuccess(answer)
                targets = Self.importersFirst(targets, graph: try JSONDecoder().decode(StateGraph.self, from: answer.body))
            }
            let what = partition.map { "partition \(targets[0])/\($0)" } ?? "enclave(s) \(targets.joined(separator: ", "))"
            try Confirmation.require("destroy \(what)", question: "This runs terraform destroy for \(what).", declined: "nothing destroyed", yes: yes)
            var failed = false
            let start = Date()
            var runReport = RunReport(command: "destroy", started: start)
            for target in targets {
                let path = partition.map { "/enclaves/\(target)/partitions/\($0)" } ?? "/enclaves/\(target)"
                let answer = try await api.send(.DELETE, path)
                try NclavAPIClient.requireSuccess(answer)
                let report = try JSONDecoder().decode(Report.self, from: answer.body)
                for outcome in report.outcomes { print("- \(outcome.partition) \(outcome.operation) \(outcome.result)\(outcome.reason.map { ": \($0)" } ?? "")") }
                for error in report.errors { FileHandle.standardError.write(Data("error: \(error)\n".utf8)) }
                if report.errors.isEmpty { print(partition == nil ? "destroyed enclave \(target)" : "destroyed partition \(target)/\(partition!)") }
                failed = failed || !report.errors.isEmpty
                runReport.reconcile_ids += report.reconcile_id.map { [$0] } ?? []
                runReport.outcomes += report.outcomes
                runReport.errors += report.errors
            }
            runReport.finish(at: Date(), started: start)
            if !runReport.outcomes.isEmpty {
                print("")
                runReport.table.forEach { print($0) }
            }
            if let path = reportOption.reportFile { try runReport.write(to: path) }
            if failed { throw ExitCode(1) }
        }
    }
}
