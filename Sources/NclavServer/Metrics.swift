import Foundation
import Hummingbird
import NclavCore
import Orchestrator
import Synchronization
import TFBackend

/// This replica's Prometheus metrics, served at `/metrics` (behind the token) in the text
/// exposition format. Each replica counts its own work; Prometheus sums across replicas.
///
/// A lock, not an actor: every request records here, and a hop to an actor per request would
/// cost more than the counting.
final class ServerMetrics: ReconcileObserver, @unchecked Sendable {
    private let lock = NSLock()
    // Everything below is guarded by `lock`.
    private var requests: [Labels: Double] = [:]
    private var requestDuration = Histogram(buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30])
    private var runs: [Labels: Double] = [:]
    private var runDuration: [String: Histogram] = [:]
    private var reconcileDuration = Histogram(buckets: ServerMetrics.longBuckets)
    private var reconcileConflicts: Double = 0
    private var lockRequests: [Labels: Double] = [:]
    private var stateBytesReceived: Double = 0
    private var stateBytesServed: Double = 0
    private let started = Date()

    static let longBuckets: [Double] = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600]

    struct Labels: Hashable, Comparable {
        let pairs: [(String, String)]
        static func == (a: Labels, b: Labels) -> Bool { a.pairs.elementsEqual(b.pairs) { $0 == $1 } }
        func hash(into hasher: inout Hasher) {
            for (k, v) in pairs {
                hasher.combine(k)
                hasher.combine(v)
            }
        }
        static func < (a: Labels, b: Labels) -> Bool { a.text < b.text }
        var text: String {
            pairs.isEmpty ? "" : "{" + pairs.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
        }
        static func escape(_ value: String) -> String {
            value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(
                of: "\n", with: "\\n")
        }
    }

    struct Histogram {
        let buckets: [Double]
        var counts: [Double]
        var sum: Double = 0
        var count: Double = 0
        init(buckets: [Double]) {
            self.buckets = buckets
            counts = Array(repeating: 0, count: buckets.count)
        }
        mutating func observe(_ value: Double) {
            for (index, bound) in buckets.enumerated() where value <= bound { counts[index] += 1 }
            sum += value
            count += 1
        }
        func lines(_ name: String, _ labels: [(String, String)] = []) -> [String] {
            var lines: [String] = []
            for (index, bound) in buckets.enumerated() {
                lines.append("\(name)_bucket\(Labels(pairs: labels + [("le", Self.format(bound))]).text) \(Self.format(counts[index]))")
            }
            lines.append("\(name)_bucket\(Labels(pairs: labels + [("le", "+Inf")]).text) \(Self.format(count))")
            lines.append("\(name)_sum\(Labels(pairs: labels).text) \(Self.format(sum))")
            lines.append("\(name)_count\(Labels(pairs: labels).text) \(Self.format(count))")
            return lines
        }
        static func format(_ value: Double) -> String {
            value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        }
    }

    // MARK: Recording

    /// One finished HTTP request. The route is the matched template (`/enclaves/{enclave}`),
    /// never the concrete path, so label values stay few.
    func request(method: String, route: String, status: Int, seconds: Double, requestBytes: Int?, responseBytes: Int?) {
        let isState = route.hasPrefix("/terraform/state/")
        let isStateRoute = isState && StateRoutes.isLock(method: method, template: route)
        lock.withLock {
            requests[Labels(pairs: [("method", method), ("route", route), ("status", String(status))]), default: 0] += 1
            requestDuration.observe(seconds)
            if isStateRoute, status == 200 || status == 423 {
                lockRequests[Labels(pairs: [("outcome", status == 200 ? "acquired" : "conflict")]), default: 0] += 1
            }
            if route == "/terraform/state/{enclave}/{partition}" {
                if method == "POST", status == 200, let requestBytes { stateBytesReceived += Double(requestBytes) }
                if method == "GET", status == 200, let responseBytes { stateBytesServed += Double(responseBytes) }
            }
            if route.hasPrefix("/reconcile"), status == 409 { reconcileConflicts += 1 }
        }
    }

    func runFinished(operation: IacRun.Operation, status: IacRun.Status, seconds: Double) {
        lock.withLock {
            runs[Labels(pairs: [("operation", operation.rawValue), ("status", status.rawValue)]), default: 0] += 1
            runDuration[operation.rawValue, default: Histogram(buckets: Self.longBuckets)].observe(seconds)
        }
    }

    func reconcileFinished(seconds: Double) {
        lock.withLock { reconcileDuration.observe(seconds) }
    }

    // MARK: Exposition

    /// The agents' queue, read from the store on each scrape: what to scale an agent pool on.
    static func queueLines(queued: Int, oldest: Date?, now: Date = Date()) -> String {
        [
            "# HELP nclav_agent_jobs_queued Runs waiting for an agent.",
            "# TYPE nclav_agent_jobs_queued gauge",
            "nclav_agent_jobs_queued \(queued)",
            "# HELP nclav_agent_oldest_job_age_seconds How long the oldest waiting run has waited (0 when none waits).",
            "# TYPE nclav_agent_oldest_job_age_seconds gauge",
            "nclav_agent_oldest_job_age_seconds \(Histogram.format(oldest.map { max(0, now.timeIntervalSince($0)) } ?? 0))",
        ].joined(separator: "\n") + "\n"
    }

    func render() -> String {
        lock.withLock {
            var out: [String] = []
            func family(_ name: String, _ type: String, _ help: String) {
                out.append("# HELP \(name) \(help)")
                out.append("# TYPE \(name) \(type)")
            }
            family("nclav_build_info", "gauge", "Always 1; the labels say which nclav this is.")
            out.append("nclav_build_info{version=\"\(NclavServer.version)\"} 1")
            family("nclav_process_start_time_seconds", "gauge", "When this server started, in Unix seconds.")
            out.append("nclav_process_start_time_seconds \(Histogram.format(started.timeIntervalSince1970.rounded()))")
            family("nclav_http_requests_total", "counter", "HTTP requests by method, matched route and status.")
            for (labels, value) in requests.sorted(by: { $0.key < $1.key }) {
                out.append("nclav_http_requests_total\(labels.text) \(Histogram.format(value))")
            }
            family("nclav_http_request_duration_seconds", "histogram", "Time to answer an HTTP request.")
            out += requestDuration.lines("nclav_http_request_duration_seconds")
            family("nclav_iac_runs_total", "counter", "Finished IaC runs by operation and final status.")
            for (labels, value) in runs.sorted(by: { $0.key < $1.key }) {
                out.append("nclav_iac_runs_total\(labels.text) \(Histogram.format(value))")
            }
            family("nclav_iac_run_duration_seconds", "histogram", "Wall time of an IaC run (init and apply or destroy).")
            for operation in runDuration.keys.sorted() {
                out += runDuration[operation]!.lines("nclav_iac_run_duration_seconds", [("operation", operation)])
            }
            family("nclav_reconcile_duration_seconds", "histogram", "Wall time of a reconcile that held the lock.")
            out += reconcileDuration.lines("nclav_reconcile_duration_seconds")
            family("nclav_reconcile_conflicts_total", "counter", "Reconciles refused because another one was running (409).")
            out.append("nclav_reconcile_conflicts_total \(Histogram.format(reconcileConflicts))")
            family(
                "nclav_state_lock_requests_total", "counter",
                "Terraform state lock requests: acquired, or conflict (someone else holds it; terraform waits and retries).")
            for outcome in ["acquired", "conflict"] {
                let labels = Labels(pairs: [("outcome", outcome)])
                out.append("nclav_state_lock_requests_total\(labels.text) \(Histogram.format(lockRequests[labels] ?? 0))")
            }
            family("nclav_state_bytes_received_total", "counter", "Bytes of Terraform state accepted by POST.")
            out.append("nclav_state_bytes_received_total \(Histogram.format(stateBytesReceived))")
            family("nclav_state_bytes_served_total", "counter", "Bytes of Terraform state served by GET.")
            out.append("nclav_state_bytes_served_total \(Histogram.format(stateBytesServed))")
            return out.joined(separator: "\n") + "\n"
        }
    }
}

/// Records every request in `ServerMetrics`, after routing so the matched route is known.
struct MetricsMiddleware: RouterMiddleware {
    typealias Context = NclavRequestContext
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response: Response
        do {
            response = try await next(request, context)
        } catch {
            let status = APIError.from(error).status.code
            record(request, context, status: status, start: start, responseBytes: nil)
            throw error
        }
        record(request, context, status: response.status.code, start: start, responseBytes: response.headers.declaredLength)
        return response
    }

    private func record(_ request: Request, _ context: Context, status: Int, start: ContinuousClock.Instant, responseBytes: Int?) {
        let elapsed = ContinuousClock.now - start
        let seconds = elapsed.inSeconds
        let route = context.endpointPath.map(Self.template) ?? "unmatched"
        metrics.request(
            method: request.method.rawValue, route: route, status: status, seconds: seconds,
            requestBytes: request.headers.declaredLength, responseBytes: responseBytes)
    }

    /// Hummingbird writes captures as `:name` (or `{name}`); the metrics and the OpenAPI
    /// document use `{name}`.
    static func template(_ path: String) -> String {
        if let known = templates.withLock({ $0[path] }) { return known }
        let result = path.split(separator: "/", omittingEmptySubsequences: false).map { part in
            part.hasPrefix(":") ? "{\(part.dropFirst())}" : String(part)
        }.joined(separator: "/")
        templates.withLock { $0[path] = result }
        return result
    }

    /// Route patterns are few and fixed: each is converted once.
    private static let templates = Mutex<[String: String]>([:])
}
