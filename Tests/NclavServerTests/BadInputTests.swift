import Foundation
import NclavTestSupport
import Testing

/// Bad input through the real CLI and server: it gets a clear error naming what is wrong,
/// and nothing is lost — no partition is torn down because a file could not be read.
@Suite("Bad input costs nothing (real terraform)", .serialized)
struct BadInputTests {
    static let main = "resource \"terraform_data\" \"thing\" { input = \"thing\" }\n"

    /// A two-partition tree applied through the CLI.
    func applied(_ server: ServerProcess) async throws -> TreeBuilder {
        let builder = try TreeBuilder.scratch("nclav-bad-input")
        try builder.enclave("app")
        try builder.partition("app", "api", main: Self.main)
        try builder.partition("app", "web", main: Self.main)
        let first = try await nclavCLI(["apply", builder.root.path], server: server)
        #expect(first.exitCode == 0, "\(first.stdout)\(first.stderr)")
        return builder
    }

    func resources(_ server: ServerProcess, _ partition: String) async throws -> Int {
        let state = try await http(.GET, server.baseURL + "/terraform/state/app/\(partition)", auth: .bearer(server.token))
        return ((try? state.json())?["resources"] as? [Any])?.count ?? -1
    }

    func partitions(_ server: ServerProcess) async throws -> [String] {
        let enclave = try await http(.GET, server.baseURL + "/enclaves/app", auth: .bearer(server.token)).json()
        return (enclave["partitions"] as? [[String: Any]])?.compactMap { $0["partition_id"] as? String } ?? []
    }

    func link(_ builder: TreeBuilder, _ relative: String, to target: String) throws {
        let url = builder.root.appendingPathComponent(relative)
        try? FileManager.default.removeItem(at: url)
        try FileManager.default.createSymbolicLink(atPath: url.path, withDestinationPath: target)
    }

    @Test("a main.tf replaced by a link to the same content inside the tree changes nothing, uploaded or read on the server")
    func linkInsideTree() async throws {
        try await withServer { server async throws in
            let builder = try await applied(server)
            defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
            try builder.file("shared/thing.tf", Self.main)
            try link(builder, "app/api/main.tf", to: "../../shared/thing.tf")
            try builder.file("shared/web.yml", "id: web\nname: web\n")
            try link(builder, "app/web/config.yml", to: "../../shared/web.yml")
            for mode in [[], ["--server-path"]] {
                let apply = try await nclavCLI(["apply", builder.root.path] + mode, server: server)
                #expect(apply.exitCode == 0, "\(apply.stderr)")
                #expect(apply.stdout == "No changes.\n", "\(mode): \(apply.stdout)")
            }
            #expect(try await resources(server, "api") == 1, "nothing was destroyed")
            #expect(try await partitions(server) == ["api", "web"])
        }
    }

    @Test("a link leaving the tree, or a config.yml that cannot be read, stops everything and tears nothing down")
    func unreadableStopsEverything() async throws {
        try await withServer { server async throws in
            let builder = try await applied(server)
            defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
            try link(builder, "app/api/main.tf", to: "/etc/hostname")
            let upload = try await nclavCLI(["apply", builder.root.path], server: server)
            #expect(upload.exitCode == 1)
            #expect(
                upload.stderr.contains(
                    "\(builder.root.path)/app/api/main.tf: error: is a symbolic link to /etc/hostname, outside the enclaves directory"),
                "\(upload.stderr)")
            let onServer = try await nclavCLI(["apply", builder.root.path, "--server-path"], server: server)
            #expect(onServer.exitCode == 1)
            #expect(
                onServer.stderr.contains(
                    "app/api/main.tf:1:1: error: `app/api/main.tf` is a symbolic link to /etc/hostname, outside the enclaves directory"),
                "\(onServer.stderr)")

            try builder.file("app/api/main.tf", Self.main)
            try link(builder, "app/web/config.yml", to: "gone.yml")
            for mode in [[], ["--server-path"]] {
                let apply = try await nclavCLI(["apply", builder.root.path] + mode, server: server)
                #expect(apply.exitCode == 1, "\(mode)")
            }
            let validate = try await nclavCLI(["validate", builder.root.path], server: server)
            #expect(validate.exitCode == 1)
            #expect(
                validate.stdout.contains("app/web/config.yml:1:1: error: `app/web/config.yml` is a symbolic link to gone.yml, which does not exist"),
                "\(validate.stdout)")
            #expect(try await partitions(server) == ["api", "web"], "nothing torn down")
            #expect(try await resources(server, "web") == 1)
        }
    }

    @Test("a deep tree in a bundle is refused with 400, and the server stays up")
    func deepBundle() async throws {
        try await withServer { server async throws in
            let deep = (0..<2000).map { _ in "d" }.joined(separator: "/") + "/config.yml"
            let body = try JSONSerialization.data(withJSONObject: ["bundle": [["path": deep, "content": "aWQ6IHgK"]]])
            let answer = try await http(.POST, server.baseURL + "/reconcile/dry-run", auth: .bearer(server.token), body: body)
            #expect(answer.status == 400)
            #expect(answer.text.contains("is 2001 levels deep; a tree may be at most 32 deep"), "\(answer.text)")
            let shallow = (0..<40).map { _ in "d" }.joined(separator: "/") + "/config.yml"
            let second = try await http(
                .POST, server.baseURL + "/reconcile/dry-run", auth: .bearer(server.token),
                body: try JSONSerialization.data(withJSONObject: ["bundle": [["path": shallow, "content": "aWQ6IHgK"]]]))
            #expect(second.status == 400)
            #expect(try await http(.GET, server.baseURL + "/health").status == 200)
        }
    }

    @Test("bundles: duplicate paths, a file where a directory must be, bad base64, a bad parallelism are each a 400 that says so")
    func bundleEdges() async throws {
        try await withServer { server async throws in
            func post(_ object: [String: Any], to path: String = "/reconcile/dry-run") async throws -> Answer {
                try await http(.POST, server.baseURL + path, auth: .bearer(server.token), body: try JSONSerialization.data(withJSONObject: object))
            }
            let duplicate = try await post(["bundle": [["path": "a/config.yml", "content": "eA=="], ["path": "a/config.yml", "content": "eQ=="]]])
            #expect(duplicate.status == 400)
            #expect(duplicate.text.contains("`a/config.yml`: appears more than once in the bundle"), "\(duplicate.text)")
            let clash = try await post(["bundle": [["path": "a", "content": "eA=="], ["path": "a/config.yml", "content": "eQ=="]]])
            #expect(clash.status == 400)
            #expect(clash.text.contains("`a`: is sent as a file, but other paths in the bundle need it to be a directory"), "\(clash.text)")
            #expect(!clash.text.contains("nclav-bundles") && !clash.text.contains("NSCocoaErrorDomain"), "\(clash.text)")
            let base64 = try await post(["bundle": [["path": "a/config.yml", "content": "not base64!"]]])
            #expect(base64.status == 400)
            #expect(base64.text.contains("`a/config.yml`: its content is not valid base64"), "\(base64.text)")
            for parallelism in [0, -1] {
                let answer = try await post(["bundle": [["path": "a/config.yml", "content": "eA=="]], "parallelism": parallelism], to: "/reconcile")
                #expect(answer.status == 400)
                #expect(answer.text.contains("`parallelism` must be at least 1, got \(parallelism)"), "\(answer.text)")
            }
        }
    }

    @Test("malformed HTTP framing is a 400; a state naming `serial` twice is refused")
    func protocolEdges() async throws {
        try await withServer { server async throws in
            let connection = try RawConnection(port: server.port)
            connection.send(
                "POST /terraform/state/app/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(server.token)\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
            )
            let answer = try #require(connection.responses(1).first)
            #expect(answer.status == 400, "\(answer)")
            #expect(answer.body.contains("the request is not valid HTTP"), "\(answer.body)")

            let twice = Data(#"{"version":4,"serial":1,"serial":2,"lineage":"l"}"#.utf8)
            let refused = try await http(.POST, server.baseURL + "/terraform/state/app/x", auth: .bearer(server.token), body: twice)
            #expect(refused.status == 400)
            #expect(refused.text.contains("names the top-level key `serial` more than once"), "\(refused.text)")
            #expect(try await http(.GET, server.baseURL + "/terraform/state/app/x", auth: .bearer(server.token)).status == 204)
        }
    }

    @Test("a connection that sends nothing, or headers too slowly, is closed after the idle timeout")
    func idleTimeout() async throws {
        try await withServer(arguments: ["--idle-timeout", "1"]) { server async throws in
            let silent = try RawConnection(port: server.port)
            let slow = try RawConnection(port: server.port)
            slow.send("GET /health HTTP/1.1\r\nHost: x\r\n")
            let start = Date()
            #expect(silent.isClosedByServer())
            #expect(slow.isClosedByServer())
            #expect(Date().timeIntervalSince(start) < 10)
            // A connection in use is not cut: a request after a pause shorter than the timeout works.
            let used = try RawConnection(port: server.port)
            used.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(used.responses(1).first?.status == 200)
        }
    }

    @Test("uploaded trees left by a server that died are swept at the next start; a live server's are kept")
    func bundleSweep() async throws {
        let shared = URL(fileURLWithPath: "/dev/shm/nclav-bundles-\(getuid())")
        guard FileManager.default.isWritableFile(atPath: "/dev/shm") else { return }
        try FileManager.default.createDirectory(at: shared, withIntermediateDirectories: true)
        // A process id that is not running: a short-lived child's, after it exited.
        let child = try TestSupport.run("/bin/sh", ["-c", "echo $$"])
        let deadPID = try #require(Int(child.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        let dead = shared.appendingPathComponent("\(deadPID)-\(UUID().uuidString)")
        let live = shared.appendingPathComponent("\(getpid())-\(UUID().uuidString)")
        for directory in [dead, live] {
            try FileManager.default.createDirectory(at: directory.appendingPathComponent("app"), withIntermediateDirectories: true)
        }
        defer { try? FileManager.default.removeItem(at: live) }
        try await withServer { _ async throws in
            #expect(!FileManager.default.fileExists(atPath: dead.path))
            #expect(FileManager.default.fileExists(atPath: live.path))
        }
    }

    static var canMakeImmutable: Bool {
        let probe = FileManager.default.temporaryDirectory.appendingPathComponent("nclav-chattr-\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: probe.path, contents: Data()) else { return false }
        defer {
            _ = try? TestSupport.run("/usr/bin/chattr", ["-i", probe.path])
            try? FileManager.default.removeItem(at: probe)
        }
        return (try? TestSupport.run("/usr/bin/chattr", ["+i", probe.path]).exitCode) == 0
    }

    @Test("a store whose files cannot be written answers 503 and not ready, and the server lives on", .enabled(if: canMakeImmutable))
    func unwritableStore() async throws {
        try await withServer { server async throws in
            let url = server.baseURL + "/terraform/state/app/x"
            #expect(try await http(.POST, url, auth: .bearer(server.token), body: stateJSON(serial: 1)).status == 200)
            for file in ["state.db-shm", "state.db"] {
                let path = server.home.appendingPathComponent(file).path
                #expect(try TestSupport.run("/usr/bin/chattr", ["+i", path]).exitCode == 0)
                try await Task.sleep(for: .milliseconds(150))
                let write = try await http(.POST, url, auth: .bearer(server.token), body: stateJSON(serial: 2))
                #expect(write.status == 503, "\(file)")
                #expect(try await http(.GET, server.baseURL + "/ready").status == 503, "\(file)")
                #expect(try TestSupport.run("/usr/bin/chattr", ["-i", path]).exitCode == 0)
                try await Task.sleep(for: .milliseconds(150))
                #expect(try await http(.GET, server.baseURL + "/ready").status == 200, "\(file)")
            }
            #expect(try await http(.POST, url, auth: .bearer(server.token), body: stateJSON(serial: 2)).status == 200)
            #expect(server.process.isRunning)
        }
    }
}
