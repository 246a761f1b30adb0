import Foundation
import Hummingbird
import Logging
import NclavAPI
import NclavStore
import NclavTestSupport
import Testing
import Yams

@testable import NclavServer

/// The OpenAPI document cannot drift from the router, and /metrics counts real work.
@Suite("OpenAPI document and /metrics")
struct OpenAPIAndMetricsTests {
    static let document = TestSupport.packageRoot.appendingPathComponent("docs/openapi.yaml")

    /// "METHOD /path/{param}" for every operation the document describes.
    func documentedOperations() throws -> Set<String> {
        let text = try String(contentsOf: Self.document, encoding: .utf8)
        guard let root = try Yams.load(yaml: text) as? [String: Any], let paths = root["paths"] as? [String: Any] else {
            throw TestSupport.StartError("docs/openapi.yaml has no paths")
        }
        var operations: Set<String> = []
        for (path, item) in paths {
            guard let item = item as? [String: Any] else { continue }
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] where item[method] != nil {
                operations.insert("\(method.uppercased()) \(path)")
            }
            for method in (item["x-nclav-other-methods"] as? [String: Any] ?? [:]).keys {
                operations.insert("\(method) \(path)")
            }
        }
        return operations
    }

    func makeRouter(home: URL) -> Router<NclavRequestContext> {
        NclavServer.makeRouter(
            store: MemoryStore(), storeDescription: "memory", configuration: ServerConfiguration(home: home, store: .memory),
            token: String(repeating: "t", count: 32), logger: Logger(label: "test"))
    }

    func served(_ router: Router<NclavRequestContext>) -> Set<String> {
        Set(router.routes.map { "\($0.method.rawValue) \(MetricsMiddleware.template("\($0.path)"))" })
    }

    @Test("the Prometheus text check itself rejects malformed expositions")
    func prometheusCheckRejects() {
        #expect(PrometheusText.problems("# TYPE a counter\na 1\n") == [])
        #expect(PrometheusText.problems("a 1\n") == ["sample before its TYPE: a"])
        #expect(PrometheusText.problems("# TYPE a counter\na{x=1} 2\n") == ["not a sample line: a{x=1} 2"])
        #expect(PrometheusText.problems("# TYPE a counter\na 1") == ["the exposition must end with a newline"])
        #expect(
            PrometheusText.problems("# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n")
                == ["buckets not cumulative: h_bucket{le=\"+Inf\"} 2"])
    }

    @Test("the check notices a route added without documenting it")
    func undocumentedRouteIsCaught() throws {
        let home = try TestSupport.makeScratchDirectory("nclav-openapi")
        defer { try? FileManager.default.removeItem(at: home) }
        let router = makeRouter(home: home)
        router.get("/enclaves/:enclave/secret-new-thing") { _, _ in "x" }
        #expect(served(router).subtracting(try documentedOperations()) == ["GET /enclaves/{enclave}/secret-new-thing"])
    }

    @Test("every route the router serves is in docs/openapi.yaml, and every documented operation is served")
    func documentMatchesRouter() throws {
        let home = try TestSupport.makeScratchDirectory("nclav-openapi")
        defer { try? FileManager.default.removeItem(at: home) }
        let served = served(makeRouter(home: home))
        let documented = try documentedOperations()
        #expect(served.count > 30)
        #expect(served.subtracting(documented).sorted() == [], "served but not documented")
        #expect(documented.subtracting(served).sorted() == [], "documented but not served")
        // The document is valid YAML with the OpenAPI 3 header.
        let root = try #require(try Yams.load(yaml: String(contentsOf: Self.document, encoding: .utf8)) as? [String: Any])
        #expect((root["openapi"] as? String)?.hasPrefix("3.") == true)
    }

    /// The property names of a component schema.
    func schemaProperties(_ name: String) throws -> Set<String> {
        let root = try #require(try Yams.load(yaml: String(contentsOf: Self.document, encoding: .utf8)) as? [String: Any])
        let schemas = try #require((root["components"] as? [String: Any])?["schemas"] as? [String: Any])
        let schema = try #require(schemas[name] as? [String: Any], "no schema \(name)")
        return Set((schema["properties"] as? [String: Any] ?? [:]).keys)
    }

    /// The JSON keys a value of an NclavAPI type is written with (every optional filled in).
    func keys<T: Encodable>(_ value: T) throws -> Set<String> {
        Set((try JSONSerialization.jsonObject(with: try Wire.encoder().encode(value)) as? [String: Any] ?? [:]).keys)
    }

    @Test("the document's schemas name exactly the fields of the NclavAPI types the server sends and the client reads")
    func schemasMatchTypes() throws {
        let outcome = OutcomeLine(partition: "a/b", operation: "update", result: "failed", runID: "r", reason: "why", seconds: 1)
        let enclave = EnclaveOutcomeLine(enclave: "a", operation: "update", result: "succeeded", reason: "r")
        let report = try keys(
            ApplyEvent.report(ReconcileReportBody(reconcileID: "r", changes: [], outcomes: [outcome], enclaves: [enclave], errors: [])))
        #expect(report.subtracting(["type"]) == (try schemaProperties("Report")))
        #expect(
            try keys(DryRunAnswer(changes: [], entries: [], changeCount: 0, conditionalCount: 0, deletesEverything: false))
                == (try schemaProperties("DryRunAnswer")))
        #expect(try keys(DestroyRequest(enclaves: ["a"], partition: "p", forget: true)) == (try schemaProperties("DestroyRequest")))
        #expect(try keys(LogChunk(offset: 0, nextOffset: 1, text: "", status: "running", complete: false)) == (try schemaProperties("LogChunk")))
        #expect(
            try keys(DriftEntry(partition: "a/b", status: "drifted", summary: "", runID: "r", seconds: 1)) == (try schemaProperties("DriftEntry")))
        #expect(try keys(ForgetAnswer(forgotten: "a/b", resources: [], identity: [:], workspace: "/w")) == (try schemaProperties("Forgotten")))
        let plan = PlanBody(
            id: "p", createdAt: Date(), expiresAt: Date(), targets: TargetsBody(enclaves: [], partitions: []),
            partitions: [
                PlanBody.Partition(
                    partition: "a/b", operation: "update", changes: [.init(address: "x.y", action: "create")], summary: "", deferred: "d", error: "e",
                    runID: "r", changedOutputs: [])
            ], enclaves: [], lines: [], hasChanges: true, destructions: [], errors: [])
        #expect(try keys(plan) == (try schemaProperties("Plan")))
        #expect(
            try keys(ReconcileEntry(id: "r", startedAt: Date(), finishedAt: Date(), result: "succeeded", message: "m", kind: "apply", trigger: "t"))
                == (try schemaProperties("ReconcileEntry")))
        let nested = try #require(try JSONSerialization.jsonObject(with: try Wire.encoder().encode(outcome)) as? [String: Any])
        let root = try #require(try Yams.load(yaml: String(contentsOf: Self.document, encoding: .utf8)) as? [String: Any])
        let reportSchema = try #require(((root["components"] as? [String: Any])?["schemas"] as? [String: Any])?["Report"] as? [String: Any])
        let items = try #require(((reportSchema["properties"] as? [String: Any])?["outcomes"] as? [String: Any])?["items"] as? [String: Any])
        #expect(Set(nested.keys) == Set((items["properties"] as? [String: Any] ?? [:]).keys))
    }

    @Test("/openapi.yaml serves the repository's document; /metrics counts requests, runs, locks and state bytes; both need the token")
    func servedOverHTTP() async throws {
        let scratch = try TestSupport.makeScratchDirectory("nclav-metrics")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let partition = scratch.appendingPathComponent("tree/app/web")
        try FileManager.default.createDirectory(at: partition, withIntermediateDirectories: true)
        try "id: app\nname: App\ncloud: local\n".write(to: scratch.appendingPathComponent("tree/app/config.yml"), atomically: true, encoding: .utf8)
        try "id: web\nname: Web\n".write(to: partition.appendingPathComponent("config.yml"), atomically: true, encoding: .utf8)
        try #"resource "terraform_data" "x" { input = "1" }"#.write(
            to: partition.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)

        try await withServer { server async throws in
            #expect(try await http(.GET, server.baseURL + "/openapi.yaml").status == 401)
            #expect(try await http(.GET, server.baseURL + "/metrics").status == 401)
            let document = try await http(.GET, server.baseURL + "/openapi.yaml", auth: .bearer(server.token))
            #expect(document.status == 200)
            #expect(document.body == (try Data(contentsOf: Self.document)))

            let apply = try await nclavCLI(["apply", scratch.appendingPathComponent("tree").path], server: server)
            #expect(apply.exitCode == 0, "\(apply.stderr)")
            _ = try await http(.GET, server.baseURL + "/terraform/state/app/web", auth: .bearer(server.token))
            _ = try await http(.GET, server.baseURL + "/enclaves/nope", auth: .bearer(server.token))

            let metrics = try await http(.GET, server.baseURL + "/metrics", auth: .bearer(server.token))
            #expect(metrics.status == 200)
            #expect(metrics.headers.first(name: "Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
            let lines = metrics.text.split(separator: "\n").map(String.init)
            func value(_ series: String) -> Double? {
                lines.first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
            }
            #expect(value(#"nclav_iac_runs_total{operation="provision",status="succeeded"}"#) == 1)
            #expect(value(#"nclav_iac_run_duration_seconds_count{operation="provision"}"#) == 1)
            #expect(value("nclav_reconcile_duration_seconds_count") == 1)
            #expect((value(#"nclav_state_lock_requests_total{outcome="acquired"}"#) ?? 0) >= 1, "terraform locked through the backend")
            #expect((value("nclav_state_bytes_received_total") ?? 0) > 100)
            #expect((value("nclav_state_bytes_served_total") ?? 0) > 100)
            #expect(
                value(#"nclav_http_requests_total{method="GET",route="/enclaves/{enclave}",status="404"}"#) == 1,
                "routes are templates, never concrete paths")
            #expect(value(#"nclav_http_requests_total{method="POST",route="/reconcile",status="200"}"#) == 1)
            #expect(lines.contains("# TYPE nclav_iac_run_duration_seconds histogram"))
            #expect(PrometheusText.problems(metrics.text) == [], "the exposition parses as Prometheus text")
            #expect(!metrics.text.contains(server.token))
        }
    }
}

/// A strict reader of the Prometheus text exposition format (0.0.4): every sample line is
/// `name{label="value",…} number`, every family has one `# TYPE` before its samples, sample
/// names belong to their family, and histogram buckets are cumulative and end at `+Inf`.
enum PrometheusText {
    static func problems(_ text: String) -> [String] {
        var problems: [String] = []
        var types: [String: String] = [:]
        var buckets: [String: [Double]] = [:]
        let sample =
            #"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? (-?[0-9.]+([eE][-+]?[0-9]+)?|NaN|[+-]Inf)$"#
        guard text.hasSuffix("\n") else { return ["the exposition must end with a newline"] }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init) {
            if line.hasPrefix("# HELP ") { continue }
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                    problems.append("bad TYPE line: \(line)")
                    continue
                }
                if types[String(parts[2])] != nil { problems.append("TYPE given twice: \(parts[2])") }
                types[String(parts[2])] = String(parts[3])
                continue
            }
            guard line.range(of: sample, options: .regularExpression) != nil else {
                problems.append("not a sample line: \(line)")
                continue
            }
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            let family = types.keys.first { name == $0 || (types[$0] == "histogram" && [$0 + "_bucket", $0 + "_sum", $0 + "_count"].contains(name)) }
            guard let family else {
                problems.append("sample before its TYPE: \(name)")
                continue
            }
            if name == family + "_bucket" {
                let series = line.replacingOccurrences(of: #",?le="[^"]*""#, with: "", options: .regularExpression)
                    .components(separatedBy: " ")[0]
                let value = Double(line.split(separator: " ").last!) ?? -1
                if let previous = buckets[series]?.last, value < previous { problems.append("buckets not cumulative: \(line)") }
                buckets[series, default: []].append(value)
            }
        }
        for (family, type) in types where type == "histogram" {
            if !text.contains("\(family)_bucket") { continue }
            if !text.contains(#"le="+Inf""#) { problems.append("histogram \(family) has no +Inf bucket") }
        }
        return problems
    }
}
