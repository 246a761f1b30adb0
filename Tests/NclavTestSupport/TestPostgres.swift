import Foundation

/// A real PostgreSQL server for the tests, started once per test process on a temporary data
/// directory and a free loopback port, with password (SCRAM) authentication like a hosted one.
///
/// The server is started by a small watchdog shell that stops it (and removes its data
/// directory) as soon as the test process is gone, however the test process ends — the test
/// runner has no global tear-down hook, and a leftover postgres would outlive CI's job.
public final class TestPostgres: Sendable {
    public let port: Int
    public let user = "nclav"
    public let password: String
    /// The CA that signed the server's TLS certificate (issued for 127.0.0.1), for sslrootcert.
    public let caCertificatePath: String
    private let binDirectory: String
    private let scratch: URL

    /// A URL for the maintenance database (used to create per-test databases).
    public func url(database: String, query: String = "sslmode=disable") -> String {
        "postgres://\(user):\(password)@127.0.0.1:\(port)/\(database)?\(query)"
    }

    /// The process-wide server, started on first use.
    public static func shared() async throws -> TestPostgres {
        try await Starter.shared.server()
    }

    /// A fresh, empty database on the shared server; returns its connection URL.
    public func createDatabase(_ label: String = "t") throws -> String {
        let name = "nclav_\(label)_\(UUID().uuidString.prefix(8).lowercased())"
        try psql("CREATE DATABASE \(name)")
        return url(database: name)
    }

    /// Runs one SQL statement as the superuser through `psql`.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") throws -> String {
        let psql = (try? TestSupport.which("psql")) ?? "\(binDirectory)/psql"
        let result = try TestSupport.run(
            psql,
            [
                "-h", "127.0.0.1", "-p", "\(port)", "-U", user, "-d", database,
                "-v", "ON_ERROR_STOP=1", "-At", "-c", sql,
            ],
            environment: ProcessInfo.processInfo.environment.merging(["PGPASSWORD": password]) { $1 })
        guard result.exitCode == 0 else {
            throw TestSupport.StartError("psql failed (\(result.exitCode)): \(result.stderr)")
        }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private init(port: Int, password: String, binDirectory: String, scratch: URL) {
        self.port = port
        self.password = password
        self.caCertificatePath = scratch.appendingPathComponent("tls/ca.pem").path
        self.binDirectory = binDirectory
        self.scratch = scratch
    }

    private actor Starter {
        static let shared = Starter()
        private var started: Task<TestPostgres, any Error>?

        func server() async throws -> TestPostgres {
            if let started { return try await started.value }
            let task = Task { try TestPostgres.start() }
            started = task
            return try await task.value
        }
    }

    /// Debian keeps the server binaries under /usr/lib/postgresql/<major>/bin, off PATH.
    static func findBinDirectory() throws -> String {
        if let initdb = try? TestSupport.which("initdb") {
            return URL(fileURLWithPath: initdb).resolvingSymlinksInPath().deletingLastPathComponent().path
        }
        let root = "/usr/lib/postgresql"
        let majors = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).sorted { (Int($0) ?? 0) > (Int($1) ?? 0) }
        for major in majors where FileManager.default.isExecutableFile(atPath: "\(root)/\(major)/bin/initdb") {
            return "\(root)/\(major)/bin"
        }
        throw TestSupport.StartError(
            "PostgreSQL's initdb was not found on PATH or under /usr/lib/postgresql; run `make setup` (installs Debian's postgresql)")
    }

    private static func start() throws -> TestPostgres {
        let bin = try findBinDirectory()
        let scratch = try TestSupport.makeScratchDirectory("nclav-pg")
        let password = UUID().uuidString.replacingOccurrences(of: "-", with: "")
        let passwordFile = scratch.appendingPathComponent("pwfile")
        try Data(password.utf8).write(to: passwordFile)
        let data = scratch.appendingPathComponent("data").path
        let tls = try makeCertificates(in: scratch.appendingPathComponent("tls"))
        // initdb and postgres refuse to run as root; run them as the `postgres` user then.
        let asRoot = geteuid() == 0
        if asRoot {
            _ = try TestSupport.run("/bin/chown", ["-R", "postgres:postgres", scratch.path])
        }
        func command(_ shell: String) throws -> TestSupport.ProcessResult {
            asRoot
                ? try TestSupport.run("/usr/sbin/runuser", ["-u", "postgres", "--", "/bin/sh", "-c", shell])
                : try TestSupport.run("/bin/sh", ["-c", shell])
        }
        let initdb = try command(
            "'\(bin)/initdb' -D '\(data)' -U nclav --auth=scram-sha-256 --pwfile='\(passwordFile.path)' -E UTF8 --no-sync --no-instructions")
        guard initdb.exitCode == 0 else { throw TestSupport.StartError("initdb failed: \(initdb.stderr)\(initdb.stdout)") }

        for _ in 0..<5 {
            let port = try TestSupport.freePort()
            let log = scratch.appendingPathComponent("postgres-\(port).log").path
            // The watchdog: postgres runs while the test process (its pid) exists.
            let watchdog = """
                '\(bin)/postgres' -D '\(data)' -p \(port) -c listen_addresses=127.0.0.1 -c unix_socket_directories='\(scratch.path)' \
                -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
                -c ssl=on -c ssl_cert_file='\(tls.certificate)' -c ssl_key_file='\(tls.key)' >'\(log)' 2>&1 &
                pg=$!
                while [ -d /proc/\(getpid()) ] && kill -0 $pg 2>/dev/null; do sleep 0.5; done
                kill -INT $pg 2>/dev/null; wait $pg; rm -rf '\(scratch.path)'
                """
            let script = scratch.appendingPathComponent("watchdog-\(port).sh")
            try Data(watchdog.utf8).write(to: script)
            if asRoot { _ = try TestSupport.run("/bin/chown", ["postgres:postgres", script.path]) }
            let launcher = Process()
            launcher.executableURL = URL(fileURLWithPath: asRoot ? "/usr/sbin/runuser" : "/bin/sh")
            launcher.arguments = asRoot ? ["-u", "postgres", "--", "/bin/sh", script.path] : [script.path]
            launcher.standardInput = FileHandle.nullDevice
            launcher.standardOutput = FileHandle.nullDevice
            launcher.standardError = FileHandle.nullDevice
            try launcher.run()
            let server = TestPostgres(port: port, password: password, binDirectory: bin, scratch: scratch)
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline, launcher.isRunning {
                if (try? server.psql("SELECT 1")) == "1" { return server }
                Thread.sleep(forTimeInterval: 0.1)
            }
            launcher.terminate()
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if !text.contains("Address already in use") {
                throw TestSupport.StartError("postgres did not start on port \(port): \(text)")
            }
        }
        throw TestSupport.StartError("postgres could not find a free port")
    }
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it, so tests can check
/// `sslmode=verify-full` for real (and that a wrong CA is refused).
private func makeCertificates(in directory: URL) throws -> (certificate: String, key: String) {
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let openssl = try TestSupport.which("openssl")
    let path = { (name: String) in directory.appendingPathComponent(name).path }
    try Data("subjectAltName=IP:127.0.0.1,DNS:localhost\n".utf8).write(to: directory.appendingPathComponent("san.ext"))
    let steps: [[String]] = [
        [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=nclav test CA", "-keyout", path("ca.key"), "-out",
            path("ca.pem"),
        ],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", path("server.key"), "-out", path("server.csr")],
        [
            "x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"), "-CAcreateserial", "-days", "2",
            "-extfile", path("san.ext"), "-out", path("server.pem"),
        ],
    ]
    for arguments in steps {
        let result = try TestSupport.run(openssl, arguments)
        guard result.exitCode == 0 else { throw TestSupport.StartError("openssl \(arguments[0]) failed: \(result.stderr)") }
    }
    chmod(path("server.key"), 0o600)
    return (path("server.pem"), path("server.key"))
}

extension TestSupport {
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// A loopback port nobody listens on right now (bound, read, released).
    public static func freePort() throws -> Int {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw StartError("socket() failed") }
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) } }
        guard bound == 0 else { throw StartError("bind() failed") }
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        guard named == 0 else { throw StartError("getsockname() failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
