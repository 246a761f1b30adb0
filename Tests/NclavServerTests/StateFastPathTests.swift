import Foundation
import HTTPTypes
import NclavTestSupport
import TFBackend
import Testing

@testable import NclavServer

/// One plain TCP connection to the server under test, for what an HTTP client library hides:
/// several requests written at once (pipelining) and answers read back in wire order.
final class RawConnection {
    private let socket: Int32

    init(port: Int) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var timeout = timeval(tv_sec: 15, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close(socket) }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { return }
            offset += written
        }
    }

    /// Reads `count` responses (each with a Content-Length) and returns status line and body of each.
    func responses(_ count: Int) -> [(status: Int, headers: String, body: String)] {
        var buffer: [UInt8] = []
        var answers: [(Int, String, String)] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while answers.count < count {
            if let (answer, used) = Self.parse(buffer) {
                answers.append(answer)
                buffer.removeFirst(used)
                continue
            }
            let read = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if read <= 0 { break }
            buffer += chunk[0..<read]
        }
        return answers
    }

    /// Whether the server closed the connection (a read returns end of stream).
    func isClosedByServer() -> Bool {
        var byte: UInt8 = 0
        return recv(socket, &byte, 1, 0) == 0
    }

    private static func parse(_ buffer: [UInt8]) -> ((Int, String, String), Int)? {
        let separator = Array("\r\n\r\n".utf8)
        guard let end = (0..<max(0, buffer.count - 3)).first(where: { Array(buffer[$0..<$0 + 4]) == separator }) else { return nil }
        let head = String(decoding: buffer[0..<end], as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        let status = Int(lines[0].split(separator: " ")[1]) ?? 0
        let length =
            lines.dropFirst().compactMap { line -> Int? in
                let parts = line.split(separator: ":", maxSplits: 1)
                return parts.count == 2 && parts[0].lowercased() == "content-length" ? Int(parts[1].trimmingCharacters(in: .whitespaces)) : nil
            }.first ?? 0
        guard buffer.count >= end + 4 + length else { return nil }
        return ((status, head, String(decoding: buffer[(end + 4)..<(end + 4 + length)], as: UTF8.self)), end + 4 + length)
    }
}

@Suite("Lock requests and state reads answered in the channel pipeline")
struct StateFastPathTests {
    static func head(_ method: String, _ path: String) -> HTTPRequest {
        HTTPRequest(method: HTTPRequest.Method(method)!, scheme: nil, authority: "x", path: path)
    }

    @Test("recognises terraform's lock, unlock and state reads and nothing else")
    func routes() {
        let lock = StateRoute(Self.head("POST", "/terraform/state/e1/p1/lock"))
        #expect(lock?.operation == .lock && lock?.enclave == "e1" && lock?.partition == "p1")
        #expect(lock?.template == "/terraform/state/{enclave}/{partition}/lock")
        #expect(StateRoute(Self.head("LOCK", "/terraform/state/e1/p1"))?.operation == .lock)
        #expect(StateRoute(Self.head("POST", "/terraform/state/e1/p1/lock?x=1"))?.partition == "p1")
        #expect(StateRoute(Self.head("UNLOCK", "/terraform/state/e1/p1"))?.operation == .unlock)
        #expect(StateRoute(Self.head("DELETE", "/terraform/state/e1/p1/lock"))?.operation == .unlock)
        #expect(StateRoute(Self.head("GET", "/terraform/state/e1/p1"))?.operation == .read)
        #expect(StateRoute(Self.head("GET", "/terraform/state/e1/p1"))?.template == "/terraform/state/{enclave}/{partition}")
        for (method, path) in [
            ("POST", "/terraform/state/e1/p1"), ("DELETE", "/terraform/state/e1/p1"), ("GET", "/terraform/state/e1/p1/lock"),
            ("GET", "/terraform/state/e1/p1/versions"), ("LOCK", "/terraform/state/e1/p1/lock"), ("UNLOCK", "/terraform/state/e1/p1/lock"),
            ("POST", "/terraform/state/e1/p1/lock/x"), ("POST", "/terraform/state/e1/p1/"), ("POST", "/terraform/state//p1/lock"),
            ("POST", "/terraform/state/e%31/p1/lock"), ("POST", "/terraform/state/e1"), ("POST", "/enclaves/e1/lock"),
        ] {
            #expect(StateRoute(Self.head(method, path)) == nil, "\(method) \(path) is the router's")
        }
    }

    @Test("takes exactly the lock, unlock and read routes of the table the router is built from")
    func sameTableAsTheRouter() {
        for route in StateRoutes.table {
            let path = "/terraform/state/e1/p1" + route.suffix.replacingOccurrences(of: "{version}", with: "3")
            let taken = StateRoute(Self.head(route.method, path))
            let expected: StateRoute.Operation? =
                switch route.operation {
                case .lock: .lock
                case .unlock: .unlock
                case .read: .read
                default: nil
                }
            #expect(taken?.operation == expected, "\(route.method) \(path)")
            if let taken { #expect(taken.template == "/terraform/state/{enclave}/{partition}" + route.suffix) }
        }
    }

    @Test("pipelined requests on one connection are answered in order, whichever path answers them")
    func pipelining() async throws {
        try await withServer { server async throws in
            let connection = try RawConnection(port: server.port)
            let auth = "Authorization: Bearer \(server.token)\r\n"
            let lock = String(decoding: lockJSON("pipelined"), as: UTF8.self)
            func request(_ method: String, _ path: String, body: String = "") -> String {
                "\(method) \(path) HTTP/1.1\r\nHost: x\r\n\(auth)Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
            }
            // The router's GET first, then a lock behind it, a read of the lock, a second locker, the unlock.
            connection.send(
                request("GET", "/health") + request("POST", "/terraform/state/demo/pipe/lock", body: lock)
                    + request("GET", "/terraform/state/demo/pipe/lock")
                    + request("LOCK", "/terraform/state/demo/pipe", body: String(decoding: lockJSON("other"), as: UTF8.self))
                    + request("UNLOCK", "/terraform/state/demo/pipe", body: lock) + request("GET", "/terraform/state/demo/pipe/lock"))
            let answers = connection.responses(6)
            #expect(answers.map(\.status) == [200, 200, 200, 423, 200, 204])
            #expect(answers[0].body.contains("ok"))
            #expect(answers[2].body.contains("pipelined"), "the lock was held when the read behind it ran")
            #expect(answers[3].body.contains("pipelined"), "the second locker is told who holds it")
        }
    }

    @Test("a state kept as a file is sent with sendfile, byte for byte, in order with pipelined requests around it")
    func fileBodies() async throws {
        try await withServer { server async throws in
            let state = stateJSON(serial: 1, size: 3 << 20)
            #expect(try await http(.POST, server.baseURL + "/terraform/state/demo/file", auth: .bearer(server.token), body: state).status == 200)
            let connection = try RawConnection(port: server.port)
            let auth = "Authorization: Bearer \(server.token)\r\n"
            let lock = String(decoding: lockJSON("between"), as: UTF8.self)
            connection.send(
                "GET /terraform/state/demo/file HTTP/1.1\r\nHost: x\r\n\(auth)\r\n"
                    + "POST /terraform/state/demo/file/lock HTTP/1.1\r\nHost: x\r\n\(auth)Content-Length: \(lock.utf8.count)\r\n\r\n\(lock)"
                    + "GET /terraform/state/demo/file HTTP/1.1\r\nHost: x\r\n\(auth)\r\n"
                    + "GET /terraform/state/demo/none HTTP/1.1\r\nHost: x\r\n\(auth)\r\n")
            let answers = connection.responses(4)
            #expect(answers.map(\.status) == [200, 200, 200, 204])
            #expect(answers.first?.body == String(decoding: state, as: UTF8.self))
            #expect(answers.dropFirst(2).first?.body == String(decoding: state, as: UTF8.self))
            #expect(answers.first?.headers.contains("Content-MD5: \(Digest.md5Base64(state))") == true)
        }
    }

    @Test("answers match the router's: 401 with WWW-Authenticate, 400, 403, 423; counted in /metrics")
    func answers() async throws {
        try await withServer { server async throws in
            let url = server.baseURL + "/terraform/state/demo/answers/lock"
            let anonymous = try await http(.POST, url, body: lockJSON("a"))
            #expect(anonymous.status == 401)
            #expect(anonymous.headers.first(name: "WWW-Authenticate") == #"Bearer realm="nclav""#)
            #expect((try anonymous.json())["error"] as? String == "missing or invalid token")
            #expect(try await http(.POST, url, auth: .bearer("wrong"), body: lockJSON("a")).status == 401)
            let admin = Auth.bearer(server.token)
            #expect(try await http(.POST, url, auth: admin, body: Data("{}".utf8)).status == 400)
            #expect(try await http(.POST, server.baseURL + "/terraform/state/Bad_Id!/x/lock", auth: admin, body: lockJSON("a")).status == 400)
            #expect(try await http(.POST, url, auth: .basic(user: "terraform", password: server.token), body: lockJSON("a")).status == 200)
            let conflict = try await http(.POST, url, auth: admin, body: lockJSON("b"))
            #expect(conflict.status == 423)
            #expect((try conflict.json())["ID"] as? String == "a")
            #expect(conflict.headers.first(name: "Server") == "nclav")
            #expect(try await http(.DELETE, url, auth: admin, body: lockJSON("b")).status == 409)
            #expect(try await http(.DELETE, url, auth: admin).status == 200, "an empty body is the admin's force-unlock")
            let metrics = try await http(.GET, server.baseURL + "/metrics", auth: admin).text
            #expect(metrics.contains(#"route="/terraform/state/{enclave}/{partition}/lock""#), "\(metrics.prefix(2000))")
        }
    }

    @Test("a lock body too large for terraform's lock info, and an escaped path, go the router's way")
    func fallBack() async throws {
        try await withServer { server async throws in
            let admin = Auth.bearer(server.token)
            var big = #"{"ID":"big","Info":""#.data(using: .utf8)!
            big.append(Data(repeating: UInt8(ascii: "i"), count: 80 * 1024))
            big.append(Data(#""}"#.utf8))
            #expect(try await http(.POST, server.baseURL + "/terraform/state/demo/big/lock", auth: admin, body: big).status == 200)
            #expect((try await http(.GET, server.baseURL + "/terraform/state/demo/big/lock", auth: admin).json())["ID"] as? String == "big")
            // The router does not decode escapes in ids, so it refuses this one, as it does a GET of it.
            let escaped = try await http(.POST, server.baseURL + "/terraform/state/demo/esc%61ped/lock", auth: admin, body: lockJSON("e"))
            let read = try await http(.GET, server.baseURL + "/terraform/state/demo/esc%61ped/lock", auth: admin)
            #expect(escaped.status == 400 && read.status == 400)
            #expect((try escaped.json())["error"] as? String == (try read.json())["error"] as? String)
        }
    }

    @Test("a lock half received when SIGTERM arrives is still answered and kept, then the server exits 0")
    func lockInFlightAtShutdown() async throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let server = try await ServerProcess.start(home: home)
        let connection = try RawConnection(port: server.port)
        let body = String(decoding: lockJSON("held-over-shutdown"), as: UTF8.self)
        let half = body.index(body.startIndex, offsetBy: body.count / 2)
        connection.send(
            "POST /terraform/state/demo/shutdown/lock HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(server.token)\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n\(body[..<half])")
        try await Task.sleep(for: .milliseconds(300))  // the head and half the body reach the handler
        kill(server.process.processIdentifier, SIGTERM)
        try await Task.sleep(for: .milliseconds(400))
        connection.send(String(body[half...]))
        let answers = connection.responses(1)
        #expect(answers.first?.status == 200)
        #expect(await server.stop() == 0)

        let restarted = try await ServerProcess.start(home: home)
        let holder = try await http(.GET, restarted.baseURL + "/terraform/state/demo/shutdown/lock", auth: .bearer(restarted.token))
        #expect((try holder.json())["ID"] as? String == "held-over-shutdown")
        await restarted.stop()
    }

    @Test("Connection: close on a lock request closes the connection after the answer")
    func connectionClose() async throws {
        try await withServer { server async throws in
            let connection = try RawConnection(port: server.port)
            let body = String(decoding: lockJSON("closing"), as: UTF8.self)
            connection.send(
                "POST /terraform/state/demo/close/lock HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(server.token)\r\n"
                    + "Connection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            let answers = connection.responses(1)
            #expect(answers.first?.status == 200)
            #expect(answers.first?.headers.lowercased().contains("connection: close") == true)
            #expect(connection.isClosedByServer())
        }
    }
}
