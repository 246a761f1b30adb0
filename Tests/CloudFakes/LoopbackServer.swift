import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// What the cloud fakes share: a Hummingbird app on a loopback port the kernel picks, that
/// hands every request (any method, any path) to one handler and is ready when `start` returns.
///
/// Why port 0: a port picked first and bound later can be taken by another test in between,
/// and a readiness probe then talks to the other test's server (seen as a 401 from a
/// `nclav serve` where a metadata fake was expected).
public enum LoopbackServer {
    public struct Reply: Sendable {
        public var status: Int
        public var body: Data
        public var headers: [(String, String)] = []

        public init(status: Int, body: Data, headers: [(String, String)] = []) {
            self.status = status
            self.body = body
            self.headers = headers
        }
    }

    /// Runs `router` on 127.0.0.1 until the returned task is cancelled; returns once it listens.
    public static func run(_ router: Router<BasicRequestContext>, label: String) async throws -> (port: Int, task: Task<Void, any Error>) {
        var quiet = Logger(label: label)
        quiet.logLevel = .critical  // cancelling the server at the end of a test is not news
        let (bound, announce) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                announce.yield(channel.localAddress?.port ?? 0)
                announce.finish()
            }, logger: quiet)
        let task = Task {
            defer { announce.finish() }  // a server that fails to start ends the wait too
            try await app.runService(gracefulShutdownSignals: [])
        }
        for await port in bound where port > 0 { return (port, task) }
        task.cancel()
        throw FakeStartError(label: label)
    }

    /// A server answering every request with `handler`.
    static func start(
        label: String,
        handler:
            @escaping @Sendable (_ method: String, _ path: String, _ query: [(String, String)], _ headers: HTTPFields, _ body: Data) async -> Reply
    )
        async throws -> (port: Int, task: Task<Void, any Error>)
    {
        let router = Router()
        for method in [HTTPRequest.Method.get, .post, .put, .delete, .patch] {
            router.on("**", method: method) { request, _ -> Response in
                let body = try await request.body.collect(upTo: 1 << 20)
                let reply = await handler(
                    method.rawValue, request.uri.path, request.uri.queryParameters.map { (String($0.key), String($0.value)) },
                    request.headers, Data(buffer: body))
                var headers = HTTPFields()
                for (name, value) in reply.headers { headers[HTTPField.Name(name)!] = value }
                return Response(status: .init(code: reply.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: reply.body)))
            }
        }
        return try await run(router, label: label)
    }

    struct FakeStartError: Error, CustomStringConvertible {
        let label: String
        var description: String { "\(label) did not start listening on 127.0.0.1" }
    }

}
