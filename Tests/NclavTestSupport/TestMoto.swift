import Foundation

/// A real moto server (the AWS API emulator from PyPI, `python3 -m moto.server`) on a free
/// loopback port, one per test so accounts and resources never leak between tests. A watchdog
/// shell stops it when the test process exits, however that happens. AWS managed policies
/// (AdministratorAccess…) are loaded, as they exist in every real account.
public final class TestMoto: Sendable {
    public let port: Int
    public var endpoint: String { "http://127.0.0.1:\(port)" }
    private let pid: Int32

    init(port: Int, pid: Int32) {
        self.port = port
        self.pid = pid
    }

    // SIGKILL: moto (Python) inherits the test process's blocked signal mask, so a SIGTERM
    // would stay pending forever (seen: 135 leaked servers after a few test runs).
    deinit { kill(pid, SIGKILL) }

    /// Environment that points every AWS client at this server with throwaway credentials.
    public var environment: [String: String] {
        [
            "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "AKIAMANAGEMENT000001", "AWS_SECRET_ACCESS_KEY": "management-secret",
            "AWS_EC2_METADATA_DISABLED": "true",
        ]
    }

    public static func start() throws -> TestMoto {
        guard (try? TestSupport.run("/usr/bin/env", ["python3", "-c", "import moto.server"]))?.exitCode == 0 else {
            throw TestSupport.StartError("moto is not installed for python3; `bash scripts/setup.sh` installs it (pip install 'moto[server]')")
        }
        let scratch = try TestSupport.makeScratchDirectory("nclav-moto")
        for _ in 0..<5 {
            let port = try TestSupport.freePort()
            let log = scratch.appendingPathComponent("moto-\(port).log").path
            let pidFile = scratch.appendingPathComponent("moto-\(port).pid").path
            let watchdog = """
                MOTO_IAM_LOAD_MANAGED_POLICIES=true python3 -m moto.server -H 127.0.0.1 -p \(port) >'\(log)' 2>&1 &
                moto=$!
                echo $moto > '\(pidFile)'
                while [ -d /proc/\(getpid()) ] && kill -0 $moto 2>/dev/null; do sleep 0.5; done
                kill -9 $moto 2>/dev/null; wait $moto
                """
            let launcher = Process()
            launcher.executableURL = URL(fileURLWithPath: "/bin/sh")
            launcher.arguments = ["-c", watchdog]
            launcher.standardInput = FileHandle.nullDevice
            launcher.standardOutput = FileHandle.nullDevice
            launcher.standardError = FileHandle.nullDevice
            try launcher.run()
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline, launcher.isRunning {
                if let pidText = try? String(contentsOfFile: pidFile, encoding: .utf8),
                    let pid = Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)),
                    (try? TestSupport.run("/usr/bin/env", ["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:\(port)/moto-api/"]))?.exitCode == 0
                {
                    return TestMoto(port: port, pid: pid)
                }
                Thread.sleep(forTimeInterval: 0.1)
            }
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if !text.contains("Address already in use") { throw TestSupport.StartError("moto did not start on port \(port): \(text)") }
        }
        throw TestSupport.StartError("moto could not find a free port")
    }
}
