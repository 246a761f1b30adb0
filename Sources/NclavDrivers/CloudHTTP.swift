import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// One HTTP exchange with a cloud API, body collected. Transport failures keep the URL and the
/// reason but never a header (headers carry signatures and tokens).
public struct CloudHTTP: Sendable {
    public struct Response: Sendable {
        public let status: Int
        public let headers: [(String, String)]
        public let body: Data
        public func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
        public var bodyText: String { String(decoding: body, as: UTF8.self) }
    }

    public struct TransportError: Error, Sendable, CustomStringConvertible {
        public let url: String
        public let reason: String
        public var description: String { "cannot reach \(url): \(reason)" }
    }

    public init() {}

    public func send(
        _ method: String, _ url: URL, headers: [(String, String)] = [], body: Data? = nil,
        timeout: TimeAmount = .seconds(60), maxResponseBytes: Int = 32 * 1024 * 1024
    ) async throws(TransportError) -> Response {
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let shownURL = "\(url.scheme ?? "http")://\(url.host ?? "")\(url.port.map { ":\($0)" } ?? "")\(url.path)"
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: timeout)
            let buffer = try await response.body.collect(upTo: maxResponseBytes)
            return Response(
                status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
                body: buffer.withUnsafeReadableBytes { Data($0) })
        } catch {
            throw TransportError(url: shownURL, reason: "\(error)")
        }
    }
}
