import Foundation
import NIOHTTP1
import NclavTestSupport
import Testing

/// Each test starts its own `nclav serve` process on a free port.
func withServer(
    arguments: [String] = [], environment: [String: String] = [:],
    _ body: (ServerProcess) async throws -> Void
) async throws {
    let home = try TestSupport.makeScratchDirectory("nclav-home")
    defer { try? FileManager.default.removeItem(at: home) }
    let server = try await ServerProcess.start(home: home, arguments: arguments, environment: environment)
    do {
        try await body(server)
    } catch {
        await server.stop(SIGKILL)
        throw error
    }
    await server.stop()
}

@Suite("nclav serve: authentication on every route")
struct AuthenticationTests {
    static let protectedRoutes: [(String, String)] = [
        ("GET", "/status"), ("GET", "/orphans"), ("GET", "/enclaves"), ("GET", "/enclaves/shop"), ("GET", "/events"), ("GET", "/events?limit=5"),
        ("GET", "/enclaves/shop/partitions/api/iac/runs"), ("GET", "/enclaves/shop/partitions/api/iac/runs/latest"),
        ("GET", "/enclaves/shop/partitions/api/iac/runs/00000000-0000-0000-0000-000000000000"),
        ("GET", "/enclaves/shop/partitions/api/iac/runs/00000000-0000-0000-0000-000000000000/stream"),
        ("GET", "/enclaves/shop/partitions/api/iac/runs/00000000-0000-0000-0000-000000000000/log?offset=0"),
        ("GET", "/terraform/state/shop/api"), ("POST", "/terraform/state/shop/api"), ("DELETE", "/terraform/state/shop/api"),
        ("POST", "/terraform/state/shop/api/lock"), ("DELETE", "/terraform/state/shop/api/lock"), ("GET", "/terraform/state/shop/api/lock"),
        ("LOCK", "/terraform/state/shop/api"), ("UNLOCK", "/terraform/state/shop/api"),
        ("GET", "/terraform/state/shop/api/versions"), ("GET", "/terraform/state/shop/api/versions/1"),
        ("POST", "/terraform/state/shop/api/versions/1/restore"),
        ("GET", "/no/such/route"), ("POST", "/reconcile"), ("POST", "/reconcile/dry-run"), ("GET", "/graph"), ("GET", "/enclaves/shop/graph"),
    ]

    @Test("health and readiness are open and reveal nothing else")
    func openRoutes() async throws {
        try await withServer { server async throws in
            let health = try await http(.GET, server.baseURL + "/health")
            #expect(health.status == 200)
            #expect(health.text == #"{"status":"ok"}"#)
            let ready = try await http(.GET, server.baseURL + "/ready")
            #expect(ready.status == 200)
            #expect(ready.text == #"{"status":"ready"}"#)
        }
    }

    @Test("every other route answers 401 without a token or with a wrong one, and opens with Bearer or Basic")
    func everyRoute() async throws {
        try await withServer { server async throws in
            let token = server.token
            #expect(token.count == 64)
            // Differs from the real token in exactly its first character.
            let wrongToken = (token.first == "0" ? "1" : "0") + token.dropFirst()
            for (method, path) in Self.protectedRoutes {
                let verb = HTTPMethodName(method)
                let url = server.baseURL + path
                let anonymous = try await http(verb, url)
                #expect(anonymous.status == 401, "\(method) \(path) without a token")
                #expect(anonymous.headers.first(name: "WWW-Authenticate") == #"Bearer realm="nclav""#)
                #expect((try anonymous.json())["error"] as? String == "missing or invalid token")
                #expect(try await http(verb, url, auth: .bearer(wrongToken)).status == 401, "\(method) \(path) wrong Bearer")
                #expect(try await http(verb, url, auth: .basic(user: "nclav", password: "nope")).status == 401, "\(method) \(path) wrong Basic")
                let bearer = try await http(verb, url, auth: .bearer(token))
                #expect(bearer.status != 401, "\(method) \(path) with Bearer")
                let basic = try await http(verb, url, auth: .basic(user: "nclav", password: token))
                #expect(basic.status != 401, "\(method) \(path) with Basic")
            }
            // Unknown routes are 404 once authenticated, never a 500.
            let unknown = try await http(.GET, server.baseURL + "/no/such/route", auth: .bearer(token))
            #expect(unknown.status == 404)
            #expect((try unknown.json())["error"] as? String == "no such route")
            // Nothing secret reaches the log.
            #expect(!server.stderr.contains(token))
            #expect(!server.stdout.contains(token))
        }
    }

    @Test("the token file is 0600, reused across restarts and replaced by --rotate-token")
    func tokenFile() async throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let first = try await ServerProcess.start(home: home)
        let token = first.token
        let mode = try FileManager.default.attributesOfItem(atPath: home.appendingPathComponent("token").path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let dbMode = try FileManager.default.attributesOfItem(atPath: home.appendingPathComponent("state.db").path)[.posixPermissions] as? Int
        #expect(dbMode == 0o600, "the state database holds secrets")
        #expect(first.stdout.contains("token: generated and written to"))
        #expect(await first.stop() == 0)

        let second = try await ServerProcess.start(home: home)
        #expect(second.token == token)
        #expect(try await http(.GET, second.baseURL + "/status", auth: .bearer(token)).status == 200)
        await second.stop()

        let rotated = try await ServerProcess.start(home: home, arguments: ["--rotate-token"])
        #expect(rotated.token != token)
        #expect(try await http(.GET, rotated.baseURL + "/status", auth: .bearer(token)).status == 401)
        #expect(try await http(.GET, rotated.baseURL + "/status", auth: .bearer(rotated.token)).status == 200)
        await rotated.stop()
    }

    @Test("NCLAV_TOKEN replaces the token file")
    func environmentToken() async throws {
        let secret = "env-token-0123456789abcdef"
        try await withServer(environment: ["NCLAV_TOKEN": secret]) { server async throws in
            #expect(try await http(.GET, server.baseURL + "/status", auth: .bearer(secret)).status == 200)
            #expect(!FileManager.default.fileExists(atPath: server.home.appendingPathComponent("token").path))
            #expect(server.stdout.contains("token: from NCLAV_TOKEN"))
        }
    }
}

@Suite("nclav serve: read routes")
struct ReadRouteTests {
    @Test("status, enclaves and events answer JSON; bad input is a 400 that says why")
    func readRoutes() async throws {
        try await withServer { server async throws in
            let auth = Auth.bearer(server.token)
            let status = try await http(.GET, server.baseURL + "/status", auth: auth)
            let summary = try status.json()
            #expect(summary["enclave_count"] as? Int == 0)
            #expect(summary["default_cloud"] as? String == "local")
            #expect(summary["active_drivers"] as? [String] == ["local"])
            #expect(summary["store"] as? String == "sqlite")
            #expect(try await http(.GET, server.baseURL + "/enclaves", auth: auth).text == #"{"enclaves":[]}"#)
            #expect(try await http(.GET, server.baseURL + "/events", auth: auth).text == #"{"events":[]}"#)

            let missing = try await http(.GET, server.baseURL + "/enclaves/shop", auth: auth)
            #expect(missing.status == 404)
            #expect((try missing.json())["error"] as? String == "no enclave `shop` in state")
            let badID = try await http(.GET, server.baseURL + "/enclaves/Bad%20Id", auth: auth)
            #expect(badID.status == 400)
            #expect(try await http(.GET, server.baseURL + "/events?limit=0", auth: auth).status == 400)
            #expect(try await http(.GET, server.baseURL + "/events?enclave_id=..", auth: auth).status == 400)
            #expect(try await http(.GET, server.baseURL + "/terraform/state/shop/..", auth: auth).status == 400)
            #expect(try await http(.GET, server.baseURL + "/enclaves/shop/partitions/api/iac/runs/latest", auth: auth).status == 404)
            #expect(try await http(.GET, server.baseURL + "/enclaves/shop/partitions/api/iac/runs/not-a-uuid", auth: auth).status == 400)
        }
    }
}

func HTTPMethodName(_ name: String) -> HTTPMethodValue { HTTPMethodValue(rawValue: name) }

typealias HTTPMethodValue = HTTPMethod
