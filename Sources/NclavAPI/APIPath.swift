import Foundation
import NclavCore

/// Every route of the HTTP API, as the client calls it. The server registers the same
/// templates (`APIPath.Template`); a test holds both against the OpenAPI document.
public enum APIPath {
    public static let health = "/health"
    public static let ready = "/ready"
    public static let status = "/status"
    public static let enclaves = "/enclaves"
    public static let events = "/events"
    public static let graph = "/graph"
    public static let reconcile = "/reconcile"
    public static let dryRun = "/reconcile/dry-run"
    public static let drift = "/drift"
    public static let destroy = "/destroy"
    public static let orphansBase = "/orphans"
    public static let metrics = "/metrics"
    public static let openAPI = "/openapi.yaml"
    public static let plans = "/plans"
    public static let reconciles = "/reconciles"
    public static let agentClaim = "/agent/claim"
    public static let agentTokens = "/agent-tokens"
    public static let jobs = "/jobs"

    public static func agentJob(_ id: String) -> String { "/agent/jobs/\(id)" }
    public static func agentHeartbeat(_ id: String) -> String { agentJob(id) + "/heartbeat" }
    public static func agentLog(_ id: String) -> String { agentJob(id) + "/log" }
    public static func agentOutcome(_ id: String) -> String { agentJob(id) + "/outcome" }
    public static func agentToken(_ id: String) -> String { "\(agentTokens)/\(id)" }
    public static func jobs(_ key: StateKey) -> String { "\(jobs)?enclave=\(key.enclave)&partition=\(key.partition)" }

    public static func enclave(_ id: String) -> String { "/enclaves/\(id)" }
    public static func enclaveGraph(_ id: String) -> String { "/enclaves/\(id)/graph" }
    public static func partition(_ key: StateKey) -> String { "/enclaves/\(key.enclave)/partitions/\(key.partition)" }
    public static func forget(_ key: StateKey) -> String { partition(key) + "?forget=true" }
    public static func plan(_ id: String) -> String { "\(plans)/\(id)" }
    public static func reconcilePage(_ id: String) -> String { "\(reconciles)/\(id)" }
    public static func orphans(enclave: String?) -> String { enclave.map { "\(orphansBase)?enclave=\($0)" } ?? orphansBase }

    public static func runs(_ key: StateKey) -> String { partition(key) + "/iac/runs" }
    public static func latestRun(_ key: StateKey) -> String { runs(key) + "/latest" }
    public static func run(_ key: StateKey, _ id: String) -> String { runs(key) + "/\(id)" }
    public static func runLog(_ key: StateKey, _ id: String, offset: Int) -> String { run(key, id) + "/log?offset=\(offset)" }
    public static func runStream(_ key: StateKey, _ id: String) -> String { run(key, id) + "/stream" }

    public static func state(_ key: StateKey) -> String { "/terraform/state/\(key.enclave)/\(key.partition)" }
    public static func stateLock(_ key: StateKey) -> String { state(key) + "/lock" }
    public static func stateVersions(_ key: StateKey) -> String { state(key) + "/versions" }
    public static func stateVersion(_ key: StateKey, _ version: Int64) -> String { stateVersions(key) + "/\(version)" }
    public static func stateRestore(_ key: StateKey, _ version: Int64) -> String { stateVersion(key, version) + "/restore" }

    /// Route templates (`:name` for a path parameter), for the server's router.
    public enum Template {
        public static let agentJob = "/agent/jobs/:job"
        public static let agentHeartbeat = agentJob + "/heartbeat"
        public static let agentLog = agentJob + "/log"
        public static let agentOutcome = agentJob + "/outcome"
        public static let agentToken = "/agent-tokens/:token"
        public static let enclave = "/enclaves/:enclave"
        public static let plan = "/plans/:plan"
        public static let reconcile = "/reconciles/:reconcile"
        public static let enclaveGraph = "/enclaves/:enclave/graph"
        public static let partition = "/enclaves/:enclave/partitions/:partition"
        public static let runs = partition + "/iac/runs"
        public static let latestRun = runs + "/latest"
        public static let run = runs + "/:run"
        public static let runLog = run + "/log"
        public static let runStream = run + "/stream"
        public static let state = "/terraform/state/:enclave/:partition"
        public static let stateLock = state + "/lock"
        public static let stateVersions = state + "/versions"
        public static let stateVersion = stateVersions + "/:version"
        public static let stateRestore = stateVersion + "/restore"
    }
}

/// Where nclav keeps its files on this machine: `NCLAV_HOME`, else `~/.nclav`. The server
/// writes its token there and the client reads it from there.
public enum NclavHome {
    public static func directory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let home = environment["NCLAV_HOME"], !home.isEmpty { return URL(fileURLWithPath: home, isDirectory: true) }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".nclav", isDirectory: true)
    }

    public static func tokenFile(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        directory(environment: environment).appendingPathComponent("token")
    }
}
