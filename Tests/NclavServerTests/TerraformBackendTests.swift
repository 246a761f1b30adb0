import AsyncHTTPClient
import Foundation
import NIOCore
import NclavAuth
import NclavCore
import NclavTestSupport
import TFBackend
import Testing

/// A tiny root module that needs no provider download.
let terraformModule = """
    terraform {
      backend "http" {}
    }

    variable "greeting" {
      type    = string
      default = "hello"
    }

    resource "terraform_data" "example" {
      input = var.greeting
    }

    output "message" {
      value = terraform_data.example.output
    }

    output "answer" {
      value = 42
    }
    """

/// Runs terraform against a server's state backend the way nclav's runner will: all backend
/// settings through `TF_HTTP_*`, so no secret lands in `.terraform/`.
struct TerraformWorkspace {
    let directory: URL
    let address: String
    var password: String

    init(server: ServerProcess, enclave: String = "demo", partition: String = "app", password: String? = nil) throws {
        directory = try TestSupport.makeScratchDirectory("nclav-tf")
        try terraformModule.write(to: directory.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        address = "\(server.baseURL)/terraform/state/\(enclave)/\(partition)"
        self.password = password ?? server.token
    }

    var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment.merge([
            "TF_HTTP_ADDRESS": address, "TF_HTTP_LOCK_ADDRESS": address + "/lock", "TF_HTTP_UNLOCK_ADDRESS": address + "/lock",
            "TF_HTTP_LOCK_METHOD": "POST", "TF_HTTP_UNLOCK_METHOD": "DELETE", "TF_HTTP_USERNAME": "nclav", "TF_HTTP_PASSWORD": password,
            "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1",
        ]) { $1 }
        return environment
    }

    func terraform(_ arguments: String...) async throws -> TestSupport.ProcessResult {
        try await TestSupport.runDetached(try TestSupport.which("terraform"), arguments, in: directory, environment: environment)
    }

    func initAndApply(greeting: String = "hello") async throws -> (TestSupport.ProcessResult, TestSupport.ProcessResult) {
        let initResult = try await terraform("init", "-input=false", "-no-color")
        let apply = try await terraform("apply", "-auto-approve", "-input=false", "-no-color", "-var", "greeting=\(greeting)")
        return (initResult, apply)
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }
}

@Suite("nclav serve as Terraform's HTTP backend (real terraform)", .serialized)
struct TerraformBackendTests {
    @Test("init + apply store the state; GET and versions show it; no secret lands in .terraform")
    func applyStoresState() async throws {
        try await withServer { server async throws in
            let workspace = try TerraformWorkspace(server: server)
            defer { workspace.remove() }
            let (initResult, apply) = try await workspace.initAndApply()
            #expect(initResult.exitCode == 0, "\(initResult.stdout)\(initResult.stderr)")
            #expect(apply.exitCode == 0, "\(apply.stdout)\(apply.stderr)")
            #expect(apply.stdout.contains("Apply complete! Resources: 1 added"))

            let auth = Auth.bearer(server.token)
            let state = try await http(.GET, workspace.address, auth: auth)
            #expect(state.status == 200)
            let document = try state.json()
            let outputs = document["outputs"] as? [String: [String: Any]]
            #expect(outputs?["message"]?["value"] as? String == "hello")
            #expect(outputs?["answer"]?["value"] as? Int == 42)
            #expect(state.headers.first(name: "Content-MD5")?.isEmpty == false)

            let versions = try await http(.GET, workspace.address + "/versions", auth: auth)
            let listed = (try versions.json())["versions"] as? [[String: Any]] ?? []
            #expect(!listed.isEmpty)
            #expect(listed.first?["serial"] as? Int == document["serial"] as? Int)

            // A second apply with a new value adds a version with a higher serial.
            let (_, reapply) = try await workspace.initAndApply(greeting: "bonjour")
            #expect(reapply.exitCode == 0, "\(reapply.stderr)")
            let after = (try await http(.GET, workspace.address + "/versions", auth: auth).json())["versions"] as? [[String: Any]] ?? []
            #expect(after.count > listed.count)
            #expect((after.first?["serial"] as? Int ?? 0) > (listed.first?["serial"] as? Int ?? 0))
            let oldest = try await http(.GET, workspace.address + "/versions/1", auth: auth)
            #expect(oldest.status == 200)

            // The backend was configured through the environment only.
            let terraformDirectory = workspace.directory.appendingPathComponent(".terraform")
            let files = FileManager.default.enumerator(atPath: terraformDirectory.path)?.compactMap { $0 as? String } ?? []
            for file in files {
                let text = (try? String(contentsOf: terraformDirectory.appendingPathComponent(file), encoding: .utf8)) ?? ""
                #expect(!text.contains(server.token), ".terraform/\(file) holds the token")
            }
        }
    }

    @Test("a held lock blocks a second terraform, which names the holder; force-unlock frees it")
    func lockingAndForceUnlock() async throws {
        try await withServer { server async throws in
            let workspace = try TerraformWorkspace(server: server)
            defer { workspace.remove() }
            let (_, first) = try await workspace.initAndApply()
            #expect(first.exitCode == 0, "\(first.stderr)")

            // Someone else holds the lock.
            let auth = Auth.bearer(server.token)
            #expect(try await http(.POST, workspace.address + "/lock", auth: auth, body: lockJSON("held-1234", who: "ops@elsewhere")).status == 200)
            let blocked = try await workspace.terraform(
                "apply", "-auto-approve", "-input=false", "-no-color", "-lock-timeout=0s", "-var", "greeting=blocked")
            #expect(blocked.exitCode != 0)
            #expect(blocked.stderr.contains("Error acquiring the state lock"), "\(blocked.stderr)")
            // Terraform reads the holder's ID from nclav's 423 body and names it.
            #expect(blocked.stderr.contains("HTTP remote state already locked: ID=held-1234"))

            // A write carrying the wrong lock ID is refused, and nothing is stored.
            let before = (try await http(.GET, workspace.address + "/versions", auth: auth).json())["versions"] as? [[String: Any]] ?? []
            let wrong = try await http(.POST, workspace.address + "?ID=not-the-holder", auth: auth, body: stateJSON(serial: 99))
            #expect(wrong.status == 423)
            #expect((try wrong.json())["ID"] as? String == "held-1234")
            let after = (try await http(.GET, workspace.address + "/versions", auth: auth).json())["versions"] as? [[String: Any]] ?? []
            #expect(after.count == before.count)

            let unlock = try await workspace.terraform("force-unlock", "-force", "held-1234")
            #expect(unlock.exitCode == 0, "\(unlock.stdout)\(unlock.stderr)")
            #expect(try await http(.GET, workspace.address + "/lock", auth: auth).status == 204)
            let (_, retried) = try await workspace.initAndApply(greeting: "unblocked")
            #expect(retried.exitCode == 0, "\(retried.stderr)")
        }
    }

    @Test("a run credential works for its own partition only and cannot force-unlock")
    func runCredential() async throws {
        try await withServer { server async throws in
            let (credential, runID) = try await server.runCredential(for: try StateKey(enclave: "demo", partition: "app"))
            let workspace = try TerraformWorkspace(server: server, password: credential)
            defer { workspace.remove() }
            let (initResult, apply) = try await workspace.initAndApply()
            #expect(initResult.exitCode == 0, "\(initResult.stderr)")
            #expect(apply.exitCode == 0, "\(apply.stderr)")
            let versions = (try await http(.GET, workspace.address + "/versions", auth: .bearer(server.token)).json())["versions"] as? [[String: Any]]
            #expect(versions?.first?["run_id"] as? String == runID.uuidString)

            let elsewhere = try TerraformWorkspace(server: server, partition: "other", password: credential)
            defer { elsewhere.remove() }
            let refused = try await elsewhere.terraform("init", "-input=false", "-no-color")
            #expect(refused.exitCode != 0)
            #expect(try await http(.GET, elsewhere.address, auth: .basic(user: "nclav", password: credential)).status == 403)
            #expect(try await http(.GET, server.baseURL + "/status", auth: .bearer(credential)).status == 403)

            #expect(try await http(.POST, workspace.address + "/lock", auth: .bearer(server.token), body: lockJSON("admin-lock")).status == 200)
            let forced = try await workspace.terraform("force-unlock", "-force", "admin-lock")
            #expect(forced.exitCode != 0, "a run credential must not force-unlock")
            #expect(try await http(.GET, workspace.address + "/lock", auth: .bearer(server.token)).status == 200)

            // Once its run is over, the credential opens nothing, though it has not expired.
            try await server.finishRun(runID)
            #expect(try await http(.GET, workspace.address, auth: .basic(user: "nclav", password: credential)).status == 401)
            let late = try await workspace.terraform("plan", "-input=false", "-no-color", "-lock=false")
            #expect(late.exitCode != 0)
        }
    }

    @Test("bodies over the size cap get 413 and store nothing")
    func sizeCap() async throws {
        try await withServer(arguments: ["--max-state-size", "4096"]) { server async throws in
            let auth = Auth.bearer(server.token)
            let url = server.baseURL + "/terraform/state/demo/big"
            #expect(try await http(.POST, url, auth: auth, body: stateJSON(serial: 1)).status == 200)
            let tooLarge = try await http(.POST, url, auth: auth, body: stateJSON(serial: 2, size: 8192))
            #expect(tooLarge.status == 413)
            #expect((try tooLarge.json())["error"] as? String == "request body is larger than the 4096-byte limit")
            let versions = (try await http(.GET, url + "/versions", auth: auth).json())["versions"] as? [[String: Any]]
            #expect(versions?.count == 1)
            let malformed = try await http(.POST, url, auth: auth, body: Data("{not json".utf8))
            #expect(malformed.status == 400)
            let badMD5 = try await http(.POST, url, auth: auth, body: stateJSON(serial: 3), headers: [("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA==")])
            #expect(badMD5.status == 400)
        }
    }
}

@Suite("Large state bodies through the server")
struct LargeStateTests {
    /// The body files of a server's SQLite store; removals run in the background, so wait a little for a count.
    func bodyFiles(_ server: ServerProcess, settlingOn expected: Int) async throws -> [String] {
        let directory = server.home.appendingPathComponent("state.db-bodies").path
        var files: [String] = []
        for _ in 0..<100 {
            files = try FileManager.default.contentsOfDirectory(atPath: directory)
            if files.count == expected { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        return files
    }

    @Test("a 3 MB state is hashed and staged as it arrives: served back byte for byte; refused uploads leave no file")
    func largeStates() async throws {
        try await withServer(arguments: ["--state-versions", "2"]) { server async throws in
            let auth = Auth.bearer(server.token)
            let url = server.baseURL + "/terraform/state/demo/big"
            func post(_ body: Data, md5: String? = nil) async throws -> Answer {
                try await http(.POST, url, auth: auth, body: body, headers: [("Content-MD5", md5 ?? Digest.md5Base64(body))])
            }
            let first = stateJSON(serial: 1, size: 3 << 20)
            #expect(try await post(first).status == 200)
            let served = try await http(.GET, url, auth: auth)
            #expect(served.status == 200)
            #expect(served.body == first)
            #expect(served.headers.first(name: "Content-MD5") == Digest.md5Base64(first))
            let listed = (try await http(.GET, url + "/versions", auth: auth).json())["versions"] as? [[String: Any]]
            #expect(listed?.first?["sha256"] as? String == Digest.sha256Hex(first), "the SHA-256 computed while receiving is the body's")
            #expect(try await bodyFiles(server, settlingOn: 1).count == 1)

            let second = stateJSON(serial: 2, size: 3 << 20)
            #expect(try await post(second, md5: Digest.md5Base64(first)).status == 400, "Content-MD5 of other bytes")
            var broken = second
            broken.removeLast()
            #expect(try await post(broken).status == 400, "not JSON")
            #expect(try await post(stateJSON(serial: 1, lineage: "another-lineage", size: 3 << 20)).status == 409)
            #expect(try await bodyFiles(server, settlingOn: 1).count == 1, "nothing refused was kept")

            #expect(try await post(second).status == 200)
            #expect(try await post(stateJSON(serial: 3, size: 3 << 20)).status == 200)
            #expect(try await bodyFiles(server, settlingOn: 2).count == 2, "the version past --state-versions 2 went with its file")
            #expect(try await http(.GET, url + "/versions/2", auth: auth).body == second)
        }
    }

    @Test("a state sent without Content-Length (chunked) is received the same way")
    func chunkedState() async throws {
        try await withServer { server async throws in
            let url = server.baseURL + "/terraform/state/demo/chunked"
            let body = stateJSON(serial: 1, size: 1 << 20)
            let pieces = stride(from: 0, to: body.count, by: 100_000).map { ByteBuffer(bytes: body[$0..<min(body.count, $0 + 100_000)]) }
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(server.token)")
            request.headers.add(name: "Content-MD5", value: Digest.md5Base64(body))
            let (stream, feed) = AsyncStream<ByteBuffer>.makeStream()
            for piece in pieces { feed.yield(piece) }
            feed.finish()
            request.body = .stream(stream, length: .unknown)
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            #expect(response.status.code == 200)
            #expect(try await http(.GET, url, auth: .bearer(server.token)).body == body)
        }
    }
}

@Suite("nclav serve restarts and readiness", .serialized)
struct RestartTests {
    @Test("state, versions and locks survive SIGTERM and SIGKILL", arguments: [SIGTERM, SIGKILL])
    func survivesRestart(_ signal: Int32) async throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let first = try await ServerProcess.start(home: home)
        let auth = Auth.bearer(first.token)
        let url = first.baseURL + "/terraform/state/demo/app"
        for serial in 1...3 { #expect(try await http(.POST, url, auth: auth, body: stateJSON(serial: serial)).status == 200) }
        #expect(try await http(.POST, url + "/lock", auth: auth, body: lockJSON("survivor")).status == 200)
        let status = await first.stop(signal)
        if signal == SIGTERM {
            #expect(status == 0)
            #expect(first.stderr.contains("stopped; store closed"))
        }

        let second = try await ServerProcess.start(home: home)
        let again = second.baseURL + "/terraform/state/demo/app"
        #expect(try await http(.GET, again, auth: auth).body == stateJSON(serial: 3))
        let versions = (try await http(.GET, again + "/versions", auth: auth).json())["versions"] as? [[String: Any]]
        #expect(versions?.compactMap { $0["serial"] as? Int } == [3, 2, 1])
        let lock = try await http(.GET, again + "/lock", auth: auth)
        #expect((try lock.json())["ID"] as? String == "survivor")
        #expect(try await http(.POST, again + "/lock", auth: auth, body: lockJSON("intruder")).status == 423)
        await second.stop()
    }

    @Test("/ready turns 503 when the database file disappears under the server")
    func readiness() async throws {
        try await withServer { server async throws in
            #expect(try await http(.GET, server.baseURL + "/ready").status == 200)
            for suffix in ["", "-wal", "-shm"] {
                try? FileManager.default.removeItem(at: server.home.appendingPathComponent("state.db" + suffix))
            }
            let ready = try await http(.GET, server.baseURL + "/ready")
            #expect(ready.status == 503)
            #expect(ready.text == #"{"details":[],"error":"the state store is not reachable"}"#)
            #expect(try await http(.GET, server.baseURL + "/health").status == 200)
        }
    }

    @Test("a store that cannot be opened stops the server at start with the reason")
    func unopenableStore() async throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        do {
            let server = try await ServerProcess.start(home: home, arguments: ["--store-path", "/dev/null/state.db"])
            await server.stop(SIGKILL)
            Issue.record("the server started on an unopenable store")
        } catch let failure as ServerProcess.StartFailure {
            #expect(failure.description.contains("exited with 1"))
            #expect(failure.description.contains("cannot open the state store at /dev/null/state.db"))
        }
    }

    @Test("--ephemeral keeps state in memory only")
    func ephemeral() async throws {
        try await withServer(arguments: ["--ephemeral"]) { server async throws in
            #expect(server.stdout.contains("store: in memory"))
            let summary = try await http(.GET, server.baseURL + "/status", auth: .bearer(server.token)).json()
            #expect(summary["store"] as? String == "memory")
            #expect(!FileManager.default.fileExists(atPath: server.home.appendingPathComponent("state.db").path))
        }
    }
}

@Suite("nclav serve graceful shutdown", .serialized)
struct GracefulShutdownTests {
    @Test("a request in flight when SIGTERM arrives still completes, then the server exits 0")
    func inFlightRequestFinishes() async throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let server = try await ServerProcess.start(home: home)
        let token = server.token
        let body = stateJSON(serial: 1, size: 200_000)
        let half = body.count / 2
        // The body arrives in two halves with a pause between them; SIGTERM lands in the pause.
        // The pause starts only once the client has pulled the first half (so the connection is
        // up, not merely requested: under a loaded test run connecting alone took > 300 ms, the
        // signal came first and the connection was refused), and ends when the test says so.
        let (pulled, announcePulled) = AsyncStream.makeStream(of: Void.self)
        let (release, releaseSecondHalf) = AsyncStream.makeStream(of: Void.self)
        let chunks = TwoHalves(
            first: ByteBuffer(bytes: body.prefix(half)), second: ByteBuffer(bytes: body.suffix(from: half)),
            pulledFirst: announcePulled, release: release)
        var request = HTTPClientRequest(url: server.baseURL + "/terraform/state/demo/slow")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.body = .stream(chunks, length: .known(Int64(body.count)))
        async let response = HTTPClient.shared.execute(request, timeout: .seconds(30))
        for await _ in pulled { break }
        try await Task.sleep(for: .milliseconds(300))  // the first half reaches the server
        kill(server.process.processIdentifier, SIGTERM)
        try await Task.sleep(for: .milliseconds(400))
        releaseSecondHalf.yield()
        let answer = try await response
        #expect(answer.status.code == 200)
        #expect(await server.stop() == 0)

        let restarted = try await ServerProcess.start(home: home)
        #expect(try await http(.GET, restarted.baseURL + "/terraform/state/demo/slow", auth: .bearer(token)).body == body)
        await restarted.stop()
    }
}

/// A request body in two halves: announces when the first is pulled, and holds the second back
/// until released.
struct TwoHalves: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let first: ByteBuffer
    let second: ByteBuffer
    let pulledFirst: AsyncStream<Void>.Continuation
    let release: AsyncStream<Void>

    struct Iterator: AsyncIteratorProtocol {
        let halves: TwoHalves
        var step = 0

        mutating func next() async -> ByteBuffer? {
            step += 1
            switch step {
            case 1:
                halves.pulledFirst.yield()
                return halves.first
            case 2:
                for await _ in halves.release { break }
                return halves.second
            default:
                return nil
            }
        }
    }

    func makeAsyncIterator() -> Iterator { Iterator(halves: self) }
}
