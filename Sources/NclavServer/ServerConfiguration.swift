import Foundation
import NclavAPI
import NclavAuth
import NclavCore
import NclavDrivers
import Orchestrator

/// Everything `nclav serve` needs to start, resolved from flags and environment.
public struct ServerConfiguration: Sendable {
    public enum StoreKind: Sendable, Equatable {
        case sqlite(path: String)
        case memory
        /// A PostgreSQL URL; it may hold a password, so it is shown only through `PostgresURL.redacted`.
        case postgres(url: String)
    }

    public var bindHost: String
    public var port: Int
    public var home: URL
    public var store: StoreKind
    public var defaultCloud: CloudTarget
    public var enabledClouds: [CloudTarget]
    /// Largest request body accepted on state routes (a Terraform state or lock).
    public var maxStateBytes: Int
    /// State versions kept per partition.
    public var retainedStateVersions: Int
    public var rotateToken: Bool
    /// How long one terraform command may run, and how long it gets after SIGINT before SIGKILL.
    /// Run a drift check of everything this often (`--drift-interval`); nil: never on its own.
    public var driftInterval: Duration? = nil
    public var runTimeout: Duration = .seconds(30 * 60)
    /// How long a saved plan may be applied (`--plan-lifetime`).
    public var planLifetime: Duration = .seconds(24 * 3600)
    /// A connection that sends no complete request part (head, body chunk, end) for this long
    /// while no answer is being written is closed: a slow or stalled client cannot hold one.
    public var idleTimeout: Duration = .seconds(60)
    public var runGracePeriod: Duration = .seconds(60)
    /// With the PostgreSQL store every run is a job in its queue. This replica works the queue
    /// with this many workers of its own, beside any agents (`nclav agent`); none with
    /// `agentsOnly`.
    public var replicaWorkers = 8
    /// Runs go to agents only: this replica runs no terraform itself.
    public var agentsOnly = false
    /// How long an agent holds a job without a heartbeat before it counts as lost.
    public var agentLease: Duration = .seconds(60)
    /// Agent tokens made elsewhere (`<id>:<sha256 of the secret>`), accepted from the start:
    /// what lets a deployment create its agents' token in the same apply as the server.
    public var agentTokenRegistrations: [String] = []
    /// Cloud drivers for the enabled clouds other than `local` (which is always there).
    public var drivers: [any Driver] = []

    public init(
        bindHost: String = "127.0.0.1", port: Int = 8080, home: URL, store: StoreKind, defaultCloud: CloudTarget = .local,
        enabledClouds: [CloudTarget] = [], maxStateBytes: Int = 256 * 1024 * 1024, retainedStateVersions: Int = 100,
        rotateToken: Bool = false
    ) {
        self.bindHost = bindHost
        self.port = port
        self.home = home
        self.store = store
        self.defaultCloud = defaultCloud
        self.enabledClouds = enabledClouds
        self.maxStateBytes = maxStateBytes
        self.retainedStateVersions = retainedStateVersions
        self.rotateToken = rotateToken
    }

    /// The default cloud first, then the other enabled ones, without repeats. `local` is
    /// always available: it makes no cloud calls.
    public var activeClouds: [CloudTarget] {
        var result: [CloudTarget] = [defaultCloud]
        for cloud in enabledClouds + [.local] where !result.contains(cloud) { result.append(cloud) }
        return result
    }

    /// `$NCLAV_HOME`, else `~/.nclav`.
    public static func home(environment: [String: String]) -> URL { NclavHome.directory(environment: environment) }
}

extension ServerConfiguration {
    /// `90s`, `30m`, `6h`, `1d`, or sums like `1h30m`; at least one second.
    public static func parseInterval(_ text: String) -> Duration? { DurationText.parse(text) }

    /// True for `<12 hex id>:<64 hex sha256>`, an agent token registration.
    public static func isAgentTokenRegistration(_ text: String) -> Bool { AgentTokenSecret.parseRegistration(text) != nil }
}
