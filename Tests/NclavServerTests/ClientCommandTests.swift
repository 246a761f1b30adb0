import Foundation
import NclavTestSupport
import Testing

/// The `nclav` client commands against a real server.
@Suite("nclav client commands")
struct ClientCommandTests {
    func nclav(_ arguments: [String], home: URL, environment extra: [String: String] = [:]) async throws -> TestSupport.ProcessResult {
        var environment = ProcessInfo.processInfo.environment
        environment["NCLAV_HOME"] = home.path
        environment["NCLAV_TOKEN"] = nil
        environment["NCLAV_URL"] = nil
        for (name, value) in extra { environment[name] = value }
        return try await TestSupport.runDetached(TestSupport.nclavBinary.path, arguments, environment: environment)
    }

    @Test("status reads the token file and NCLAV_URL; global options may precede the command")
    func status() async throws {
        try await withServer { server async throws in
            let viaEnvironment = try await nclav(["status"], home: server.home, environment: ["NCLAV_URL": server.baseURL])
            #expect(viaEnvironment.exitCode == 0, "\(viaEnvironment.stderr)")
            #expect(
                viaEnvironment.stdoutLines == [
                    "server:         \(server.baseURL) (nclav 0.1.0)", "store:          sqlite", "enclaves:       0",
                    "default cloud:  local", "active drivers: local", "reconcile:      idle", "drift:          never checked (nclav drift)",
                ])
            let global = try await nclav(["--remote", server.baseURL, "status", "--output", "json"], home: server.home)
            #expect(global.exitCode == 0)
            let summary = try JSONSerialization.jsonObject(with: Data(global.stdout.utf8)) as? [String: Any]
            #expect(summary?["enclave_count"] as? Int == 0)
        }
    }

    @Test("a wrong token and an unreachable server give clear errors and exit 1")
    func failures() async throws {
        try await withServer { server async throws in
            let wrong = try await nclav(["status", "--remote", server.baseURL, "--token", "not-the-token"], home: server.home)
            #expect(wrong.exitCode == 1)
            #expect(wrong.stderr.hasPrefix("error: the server at \(server.baseURL) rejected the token from --token"))
            #expect(!wrong.stderr.contains(server.token))
        }
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let noToken = try await nclav(["status", "--remote", "http://127.0.0.1:9"], home: home)
        #expect(noToken.exitCode == 1)
        #expect(noToken.stderr.contains("no API token: pass --token, set NCLAV_TOKEN, or run `nclav serve` once"))
        let start = Date()
        let unreachable = try await nclav(["status", "--remote", "http://127.0.0.1:9", "--token", "x"], home: home)
        #expect(unreachable.exitCode == 1)
        #expect(
            unreachable.stderr
                == "error: cannot reach the nclav server at http://127.0.0.1:9 (connection refused); start it with `nclav serve`, or point --remote / NCLAV_URL at it\n"
        )
        #expect(Date().timeIntervalSince(start) < 10, "a refused connection is reported at once")
    }

    @Test("state push: a continuing state as terraform would; another lineage only with --force")
    func statePush() async throws {
        try await withServer { server async throws in
            let url = server.baseURL + "/terraform/state/shop/db"
            _ = try await http(.POST, url, auth: .bearer(server.token), body: stateJSON(serial: 3))
            let scratch = try TestSupport.makeScratchDirectory("nclav-push")
            defer { try? FileManager.default.removeItem(at: scratch) }
            let next = scratch.appendingPathComponent("next.tfstate")
            try stateJSON(serial: 4).write(to: next)
            let foreign = scratch.appendingPathComponent("foreign.tfstate")
            try stateJSON(serial: 1, lineage: "11111111-2222-3333-4444-555555555555").write(to: foreign)

            let pushed = try await nclavCLI(["state", "push", "shop", "db", next.path], server: server)
            #expect(pushed.exitCode == 0, "\(pushed.stderr)")
            #expect(pushed.stdout == "stored \(next.path) as version 2 of shop/db (serial 4)\n")
            let refused = try await nclavCLI(["state", "push", "shop", "db", foreign.path], server: server)
            #expect(refused.exitCode == 1)
            #expect(
                refused.stderr.contains("shop/db: state lineage differs from the stored state's; pass --force to store it anyway"),
                "\(refused.stderr)")
            let forced = try await nclavCLI(["state", "push", "shop", "db", foreign.path, "--force"], server: server)
            #expect(forced.exitCode == 0, "\(forced.stderr)")
            #expect(forced.stdout == "stored \(foreign.path) as version 3 of shop/db (serial 1)\n")
            let latest = try await http(.GET, url, auth: .bearer(server.token))
            #expect(latest.body == stateJSON(serial: 1, lineage: "11111111-2222-3333-4444-555555555555"))
            let missing = try await nclavCLI(["state", "push", "shop", "db", scratch.appendingPathComponent("nope").path], server: server)
            #expect(missing.exitCode == 1)
            #expect(missing.stderr.contains("cannot read"))
        }
    }

    @Test("state forget: asks off a terminal, drops the record, keeps the state, lists what is left")
    func stateForget() async throws {
        let builder = try TreeBuilder.scratch()
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        try builder.enclave("app")
        try builder.partition("app", "keep", main: "resource \"terraform_data\" \"a\" { input = 1 }\n")
        try builder.partition("app", "lost", main: "resource \"terraform_data\" \"b\" { input = 2 }\n")
        try await withServer { server async throws in
            #expect(try await nclavCLI(["apply", builder.root.path], server: server).exitCode == 0)
            let unconfirmed = try await nclavCLI(["state", "forget", "app", "lost"], server: server)
            #expect(unconfirmed.exitCode == 1)
            #expect(unconfirmed.stderr.contains("refusing to forget app/lost without confirmation; pass --yes"))
            let forgotten = try await nclavCLI(["destroy", "app", "--partition", "lost", "--forget", "--auto-approve"], server: server)
            #expect(forgotten.exitCode == 0, "\(forgotten.stderr)")
            #expect(forgotten.stdoutLines.first == "forgot app/lost: it is no longer in nclav's state")
            #expect(forgotten.stdoutLines.contains("  terraform_data.b"), "\(forgotten.stdout)")
            let enclave = try await http(.GET, server.baseURL + "/enclaves/app", auth: .bearer(server.token)).json()
            #expect((enclave["partitions"] as? [[String: Any]])?.compactMap { $0["partition_id"] as? String } == ["keep"])
            #expect(try await http(.GET, server.baseURL + "/terraform/state/app/lost", auth: .bearer(server.token)).status == 200)
            let again = try await nclavCLI(["state", "forget", "app", "lost", "--yes"], server: server)
            #expect(again.exitCode == 1)
            #expect(again.stderr.contains("is not in state"), "\(again.stderr)")
            let misuse = try await nclavCLI(["destroy", "app", "--forget", "--yes"], server: server)
            #expect(misuse.exitCode != 0)
            #expect(misuse.stderr.contains("--forget needs --partition"))
        }
    }

    @Test("state versions, pull and unlock")
    func stateCommands() async throws {
        try await withServer { server async throws in
            let auth = Auth.bearer(server.token)
            let url = server.baseURL + "/terraform/state/shop/db"
            for serial in 1...2 { _ = try await http(.POST, url, auth: auth, body: stateJSON(serial: serial)) }
            let remote = ["--remote", server.baseURL]

            let versions = try await nclav(["state", "versions", "shop", "db"] + remote, home: server.home)
            #expect(versions.exitCode == 0, "\(versions.stderr)")
            #expect(versions.stdoutLines.count == 3)
            #expect(versions.stdoutLines.first?.hasPrefix("VERSION  SERIAL  LINEAGE") == true)
            #expect(versions.stdoutLines[1].hasPrefix("2        2       0b4c1c55"))

            let pull = try await nclav(["state", "pull", "shop", "db"] + remote, home: server.home)
            #expect(Data(pull.stdout.utf8) == stateJSON(serial: 2))
            let older = try await nclav(["state", "pull", "shop", "db", "--version", "1"] + remote, home: server.home)
            #expect(Data(older.stdout.utf8) == stateJSON(serial: 1))
            let empty = try await nclav(["state", "pull", "shop", "nothing"] + remote, home: server.home)
            #expect(empty.exitCode == 1)
            #expect(empty.stderr == "error: no state stored for shop/nothing\n")
            let invalid = try await nclav(["state", "pull", "shop", "../etc"] + remote, home: server.home)
            #expect(invalid.exitCode == 64)

            let notLocked = try await nclav(["state", "unlock", "shop", "db", "--yes"] + remote, home: server.home)
            #expect(notLocked.stdout == "shop/db is not locked\n")
            _ = try await http(.POST, url + "/lock", auth: auth, body: lockJSON("stuck-lock", who: "crashed@ci"))
            let unconfirmed = try await nclav(["state", "unlock", "shop", "db"] + remote, home: server.home)
            #expect(unconfirmed.exitCode == 1)
            #expect(unconfirmed.stderr.contains("pass --yes"))
            let unlocked = try await nclav(["state", "unlock", "shop", "db", "--yes"] + remote, home: server.home)
            #expect(unlocked.exitCode == 0)
            #expect(unlocked.stdout.contains("crashed@ci"))
            #expect(unlocked.stdout.hasSuffix("unlocked shop/db\n"))
            #expect(try await http(.GET, url + "/lock", auth: auth).status == 204)
        }
    }
}

@Suite("nclav state rollback")
struct RollbackTests {
    @Test("an old version becomes the newest with a higher serial; locks and run credentials are refused")
    func rollback() async throws {
        try await withServer { server async throws in
            let auth = Auth.bearer(server.token)
            let url = server.baseURL + "/terraform/state/shop/db"
            for serial in 1...3 { _ = try await http(.POST, url, auth: auth, body: stateJSON(serial: serial, size: serial * 10)) }
            let result = try await nclavCLI(["state", "rollback", "shop", "db", "1", "--yes"], server: server)
            #expect(result.exitCode == 0, "\(result.stderr)")
            #expect(result.stdout == "restored version 1 of shop/db as version 4 (serial 4)\n")
            let latest = try await http(.GET, url, auth: auth).json()
            #expect(latest["serial"] as? Int == 4)
            #expect((latest["padding"] as? String)?.count == 10, "the content of version 1")
            let versions = (try await http(.GET, url + "/versions", auth: auth).json())["versions"] as? [[String: Any]]
            #expect(versions?.count == 4)

            _ = try await http(.POST, url + "/lock", auth: auth, body: lockJSON("busy"))
            let locked = try await nclavCLI(["state", "rollback", "shop", "db", "2", "--yes"], server: server)
            #expect(locked.exitCode == 1)
            #expect(locked.stderr.contains("shop/db is locked by"))
            let missing = try await http(.POST, url + "/versions/99/restore", auth: auth)
            #expect(missing.status == 404)
        }
    }

    @Test("a port in use and a host name that does not resolve are named, with what to do")
    func startAndReachErrors() async throws {
        try await withServer { server async throws in
            let home = try TestSupport.makeScratchDirectory("nclav-second")
            defer { try? FileManager.default.removeItem(at: home) }
            let second = try await TestSupport.runDetached(
                TestSupport.nclavBinary.path, ["serve", "--port", String(server.port)],
                environment: ProcessInfo.processInfo.environment.merging(["NCLAV_HOME": home.path]) { $1 })
            #expect(second.exitCode == 1)
            #expect(
                second.stderr.contains(
                    "error: cannot listen on 127.0.0.1:\(server.port): the address is already in use (another `nclav serve`, or another program); stop it, or pass another --port"
                ), "\(second.stderr)")
        }
        let unknown = try TestSupport.run(TestSupport.nclavBinary.path, ["status", "--remote", "http://nclav.invalid:8080", "--token", "x"])
        #expect(unknown.exitCode == 1)
        #expect(unknown.stderr.hasPrefix("error: the server's host name `nclav.invalid` does not resolve"), "\(unknown.stderr)")
    }
}
