import ArgumentParser
import Foundation
import NclavAPI
import NclavClient

/// How client commands find and authenticate to the server.
struct ClientOptions: ParsableArguments {
    @Option(help: "Server URL (env NCLAV_URL; default http://localhost:8080).")
    var remote: String?

    @Option(help: "API token (env NCLAV_TOKEN; default: the file $NCLAV_HOME/token written by `nclav serve`).")
    var token: String?

    func client() throws -> NclavAPIClient {
        let environment = ProcessInfo.processInfo.environment
        let url = remote ?? environment["NCLAV_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "http://localhost:8080"
        if let token, !token.isEmpty {
            return NclavAPIClient(endpoint: ServerEndpoint(baseURL: url, token: token, tokenSource: "--token"))
        }
        if let token = environment["NCLAV_TOKEN"], !token.isEmpty {
            return NclavAPIClient(endpoint: ServerEndpoint(baseURL: url, token: token, tokenSource: "NCLAV_TOKEN"))
        }
        let path = NclavHome.tokenFile(environment: environment).path
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            case let value = text.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty
        else {
            throw CommandFailure("no API token: pass --token, set NCLAV_TOKEN, or run `nclav serve` once on this machine (it writes \(path))")
        }
        return NclavAPIClient(endpoint: ServerEndpoint(baseURL: url, token: value, tokenSource: path))
    }
}

/// The command ran but the answer is "no": printed to stderr as `error: …`, exit 1.
public struct CommandFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// Runs a client call, turning client errors into a one-line failure (exit 1).
func withClient<T>(_ body: () async throws -> T) async throws -> T {
    do { return try await body() } catch let error as ClientError {
        throw CommandFailure(error.description)
    }
}

/// Pretty JSON for `--output json`.
func printJSON(_ data: Data) {
    if let object = try? JSONSerialization.jsonObject(with: data),
        let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    {
        print(String(decoding: pretty, as: UTF8.self))
    } else {
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Left-aligned columns separated by two spaces.
func table(_ header: [String], _ rows: [[String]]) -> [String] {
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
    return ([header] + rows).map { row in
        row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
}
