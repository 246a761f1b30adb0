import ArgumentParser
import Foundation
import NclavClient
import NclavCore

enum GraphFormat: String, ExpressibleByArgument, CaseIterable { case text, json, dot }

public struct Graph: AsyncParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
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
    @Option(name: [.short, .long], help: "Output format: text, json or dot.") var output: GraphFormat = .text
    @Option(help: "Only this enclave and the imports that touch it.") var enclave: String?

    public func run() async throws {
        let api = try client.client()
        try await withClient {
            let fetched = try await api.graph(enclave: enclave)
            if output == .json { return printJSON(fetched.raw) }
            let graph = fetched.value
            print(output == .dot ? graph.dot : graph.textLines.joined(separator: "\n"))
        }
    }
}
