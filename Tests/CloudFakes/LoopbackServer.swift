import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// What the cloud fakes share: a free loopback port, and a Hummingbird app that hands every
/// request (any method, any path) to one handler and is ready when `start` returns.
enum LoopbackServer {
    struct Reply: Sendable {
        var status: Int
        var body: Data
        var headers: [(String, String)] = []
    }

    /// A port nothing listens on right now.
    static func freePort() -> Int {
        for _ in 0..<20 {
            let candidate = Int.random(in: 20000...60000)
            if bindOrConnect(candidate, connect: false) { return candidate }
        }
        return 0
    }

    /// Runs the app until the returned task is cancelled.
    static func start(port: Int, label: String,
                      handler: @escaping @Sendable (_ method: String, _ path: String, _ query: [(String, String)], _ headers: HTTPFields, _ body: Data) async -> Reply)
        async throws -> Task<Void, any Error> {
        let router = Router()
        for method in [HTTPRequest.Method.get, .post, .put, .delete, .patch] {
            router.on("**", method: method) { request, _ -> Response in
                let body = try await request.body.collect(upTo: 1 << 20)
                let reply = await handler(method.rawValue, request.uri.path, request.uri.queryParameters.map { (String($0.key), String($0.value)) },
                                          request.headers, Data(buffer: body))
                var headers = HTTPFields()
                for (name, value) in reply.headers { headers[HTTPField.Name(name)!] = value }
                return Response(status: .init(code: reply.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: reply.body)))
            }
        }
        var quiet = Logger(label: label)
        quiet.logLevel = .critical  // cancelling the server at the end of a test is not news
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: quiet)
        let task = Task { try await app.runService(gracefulShutdownSignals: []) }
        for _ in 0..<200 {
            if bindOrConnect(port, connect: true) { return task }
            try await Task.sleep(for: .milliseconds(25))
        }
        task.cancel()
        throw FakeStartError(label: label, port: port)
    }

    struct FakeStartError: Error, CustomStringConvertible {
        let label: String
        let port: Int
        var description: String { "\(label) did not start listening on 127.0.0.1:\(port)" }
    }

    /// Binds (free-port probe) or connects (readiness probe) a TCP socket to 127.0.0.1:port.
    private static func bindOrConnect(_ port: Int, connect shouldConnect: Bool) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                shouldConnect ? connect(fd, address, socklen_t(MemoryLayout<sockaddr_in>.size)) : bind(fd, address, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return result == 0
    }
}
