import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NclavTestSupport

/// A raw HTTP answer for assertions.
struct Answer: Sendable {
    let status: Int
    let headers: HTTPHeaders
    let body: Data
    var text: String { String(decoding: body, as: UTF8.self) }
    func json() throws -> [String: Any] {
        (try JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:]
    }
}

enum Auth: Sendable {
    case none
    case bearer(String)
    case basic(user: String, password: String)

    var header: String? {
        switch self {
        case .none: return nil
        case .bearer(let token): return "Bearer \(token)"
        case .basic(let user, let password): return "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        }
    }
}

/// Real HTTP over loopback to a server under test.
func http(_ method: HTTPMethod, _ url: String, auth: Auth = .none, body: Data? = nil, headers: [(String, String)] = []) async throws -> Answer {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let value = auth.header { request.headers.add(name: "Authorization", value: value) }
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
    let buffer = try await response.body.collect(upTo: 512 * 1024 * 1024)
    return Answer(status: Int(response.status.code), headers: response.headers, body: buffer.withUnsafeReadableBytes { Data($0) })
}

func lockJSON(_ id: String, who: String = "holder@test") -> Data {
    Data(
        #"{"ID":"\#(id)","Operation":"OperationTypeApply","Info":"","Who":"\#(who)","Version":"1.11.4","Created":"2026-11-22T05:00:00Z","Path":""}"#
            .utf8)
}

func stateJSON(serial: Int, lineage: String = "0b4c1c55-aaaa-bbbb-cccc-000000000000", size: Int = 0) -> Data {
    StateFixtures.body(serial: Int64(serial), lineage: lineage, padding: size > 0 ? String(repeating: "x", count: size) : nil)
}

/// Runs the built `nclav` CLI against `server`, with a clean client environment.
func nclavCLI(_ arguments: [String], server: ServerProcess, environment extra: [String: String] = [:]) async throws -> TestSupport.ProcessResult {
    var environment = ProcessInfo.processInfo.environment
    environment["NCLAV_HOME"] = server.home.path
    environment["NCLAV_URL"] = server.baseURL
    environment["NCLAV_TOKEN"] = nil
    for (name, value) in extra { environment[name] = value }
    return try await TestSupport.runDetached(TestSupport.nclavBinary.path, arguments, environment: environment)
}
