import ArgumentParser
import Foundation
import NclavClient
import Orchestrator

enum GraphFormat: String, ExpressibleByArgument, CaseIterable { case text, json, dot }

struct Graph: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the dependency graph of what the server has applied.",
        discussion: """
        Examples:
          nclav graph
          nclav graph --output dot | dot -Tsvg > graph.svg
          nclav graph --output json
          nclav graph --enclave product-a-dev
        """
    )
    @OptionGroup var client: ClientOptions
    @Option(help: "Output format: text, json or dot.") var output: GraphFormat = .text
    @Option(help: "Only this enclave and the imports that touch it.") var enclave: String?

    func run() async throws {
        let api = try client.client()
        try await withClient {
            let answer = try await api.send(.GET, enclave.map { "/enclaves/\($0)/graph" } ?? "/graph")
            try NclavAPIClient.requireSuccess(answer)
            if output == .json { return printJSON(answer.body) }
            let graph = try JSONDecoder().decode(StateGraph.self, from: answer.body)
            print(output == .dot ? graph.dot : graph.textLines.joined(separator: "\n"))
        }
    }
}
