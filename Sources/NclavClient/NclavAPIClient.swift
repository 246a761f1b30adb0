import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NclavAPI
import NclavCore

/// Where the server is and how to authenticate, with where each came from (for messages).
public struct ServerEndpoint: Sendable {
    public let baseURL: String
    public let token: String
    /// "--token", "NCLAV_TOKEN" or the token file's path.
    public let tokenSource: String

    public init(baseURL: String, token: String, tokenSource: String) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.token = token
        self.tokenSource = tokenSource
    }
}

/// Client failures phrased for the person at the terminal.
public enum ClientError: Error, Sendable, CustomStringConvertible {
    case invalidURL(String)
    case unreachable(url: String, reason: String)
    case unauthorized(url: String, tokenSource: String)
    case server(status: Int, message: String, details: [String])
    case invalidResponse(String)

    public var description: String {
        switch self {
        case .invalidURL(let url):
            return "`\(url)` is not a valid server URL; expected something like http://localhost:8080"
        case .unreachable(let url, let reason):
            if reason.contains("UnknownHost") || reason.contains("Name or service not known") {
                let host = URL(string: url)?.host ?? url
                return "the server's host name `\(host)` does not resolve (from \(url)); check --remote / NCLAV_URL for a typo, or this machine's DNS"
            }
            return "cannot reach the nclav server at \(url) (\(reason)); start it with `nclav serve`, or point --remote / NCLAV_URL at it"
        case .unauthorized(let url, let source):
            return
                "the server at \(url) rejected the token from \(source); check --token, NCLAV_TOKEN or the token file (`nclav serve --rotate-token` makes a new one)"
        case .server(let status, let message, let details):
            return ([("server answered \(status): \(message)")] + details.map { "  \($0)" }).joined(separator: "\n")
        case .invalidResponse(let reason):
            return "unexpected answer from the server: \(reason)"
        }
    }
}

public struct HTTPAnswer: Sendable {
    public let status: Int
    public let headers: [(String, String)]
    public let body: Data

    public func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
}

/// The typed HTTP client the CLI uses. One shared connection pool; every request carries the
/// bearer token and a timeout.
public struct NclavAPIClient: Sendable {
    public let endpoint: ServerEndpoint
    public var timeout: TimeAmount

    public init(endpoint: ServerEndpoint, timeout: TimeAmount = .seconds(60)) {
        self.endpoint = endpoint
        self.timeout = timeout
    }

    /// Sends one request; 401 and transport failures become `ClientError`s, other statuses are
    /// returned for the caller to interpret.
    public func send(
        _ method: HTTPMethod, _ path: String, body: Data? = nil, contentType: String? = nil,
        maxResponseBytes: Int = 512 * 1024 * 1024, headers: [(String, String)] = []
    ) async throws -> HTTPAnswer {
        let url = endpoint.baseURL + path
        guard URL(string: url)?.host != nil else { throw ClientError.invalidURL(endpoint.baseURL) }
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(endpoint.token)")
        request.headers.add(name: "User-Agent", value: Self.userAgent)
        if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response: HTTPClientResponse
        do {
            response = try await Self.http.execute(request, timeout: timeout)
        } catch {
            throw ClientError.unreachable(url: endpoint.baseURL, reason: Self.describe(error))
        }
        let buffer: ByteBuffer
        do { buffer = try await response.body.collect(upTo: maxResponseBytes) } catch {
            throw ClientError.invalidResponse("the body could not be read: \(Self.describe(error))")
        }
        let data = buffer.withUnsafeReadableBytes { Data($0) }
        if response.status.code == 401 { throw ClientError.unauthorized(url: endpoint.baseURL, tokenSource: endpoint.tokenSource) }
        return HTTPAnswer(status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: data)
    }

    /// Sends a request whose answer is a stream of lines (NDJSON); each line reaches `onLine`
    /// as soon as it arrives. A non-2xx answer becomes `ClientError.server`.
    public func streamLines(_ method: HTTPMethod, _ path: String, body: Data, onLine: (String) async throws -> Void) async throws {
        let url = endpoint.baseURL + path
        guard URL(string: url)?.host != nil else { throw ClientError.invalidURL(endpoint.baseURL) }
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(endpoint.token)")
        request.headers.add(name: "User-Agent", value: Self.userAgent)
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: body))
        let response: HTTPClientResponse
        do { response = try await Self.http.execute(request, timeout: .hours(24)) } catch {
            throw ClientError.unreachable(url: endpoint.baseURL, reason: Self.describe(error))
        }
        if response.status.code == 401 { throw ClientError.unauthorized(url: endpoint.baseURL, tokenSource: endpoint.tokenSource) }
        guard (200..<300).contains(response.status.code) else {
            let buffer = (try? await response.body.collect(upTo: 16 * 1024 * 1024)) ?? ByteBuffer()
            try Self.requireSuccess(HTTPAnswer(status: Int(response.status.code), headers: [], body: buffer.withUnsafeReadableBytes { Data($0) }))
            return
        }
        var pending = Data()
        do {
            for try await chunk in response.body {
                chunk.withUnsafeReadableBytes { pending.append(contentsOf: $0) }
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    try await onLine(line)
                }
            }
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError.invalidResponse("the connection ended early: \(Self.describe(error))")
        }
        if !pending.isEmpty { try await onLine(String(decoding: pending, as: UTF8.self)) }
    }

    /// GET a JSON document; any non-2xx answer becomes `ClientError.server` with its message.
    public func getJSON<T: Decodable>(_ path: String, as type: T.Type) async throws -> T {
        let answer = try await send(.GET, path)
        try Self.requireSuccess(answer)
        do { return try Self.decoder.decode(type, from: answer.body) } catch {
            throw ClientError.invalidResponse("\(path): \(error)")
        }
    }

    public static func requireSuccess(_ answer: HTTPAnswer) throws {
        guard (200..<300).contains(answer.status) else {
            struct ErrorBody: Decodable {
                let error: String
                let details: [String]?
            }
            let parsed = try? JSONDecoder().decode(ErrorBody.self, from: answer.body)
            throw ClientError.server(
                status: answer.status, message: parsed?.error ?? String(decoding: answer.body.prefix(500), as: UTF8.self),
                details: parsed?.details ?? [])
        }
    }

    /// One process-wide client. Connection establishment is not retried: for a command line,
    /// "connection refused" should be said at once, not after the whole request timeout.
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(10)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    public static let decoder: JSONDecoder = Wire.decoder()

    /// `nclav-cli/0.1.0 apply`: the version and the command, which the server records as what
    /// started a reconcile.
    static let userAgent: String = {
        let command = CommandLine.arguments.dropFirst().first { !$0.hasPrefix("-") && $0.allSatisfy { $0.isLetter || $0 == "-" } }
        return "nclav-cli/\(NclavVersion.current)" + (command.map { " \($0)" } ?? "")
    }()

    static func describe(_ error: Error) -> String {
        let text = String(describing: error)
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
        if text.contains("deadlineExceeded") || text.contains("timeout") { return "timed out" }
        if text.contains("NXDOMAIN") || text.contains("getaddrinfo") { return "unknown host" }
        return text
    }
}
