import Foundation
import NclavDrivers

/// Where each Google API lives: `https://<service>.googleapis.com`, or, when
/// `NCLAV_GCP_ENDPOINT` is set (tests, private access), that URL with `{service}` replaced,
/// e.g. `http://127.0.0.1:9000/{service}`.
public struct GCPEndpoints: Sendable {
    public let template: String?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        template = environment["NCLAV_GCP_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 }
    }

    public func base(_ service: String) -> String {
        guard let template else { return "https://\(service).googleapis.com" }
        var text = template.replacingOccurrences(of: "{service}", with: service)
        while text.hasSuffix("/") { text.removeLast() }
        return text
    }

    public func url(_ service: String, _ path: String, query: [(String, String)] = []) -> URL {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        var text = base(service) + path
        if !query.isEmpty {
            text += "?" + query.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }.joined(separator: "&")
        }
        return URL(string: text)!
    }

    /// Problems with the override, in words.
    public var problem: String? {
        guard let template else { return nil }
        guard let url = URL(string: template.replacingOccurrences(of: "{service}", with: "x")), let scheme = url.scheme,
            ["http", "https"].contains(scheme), url.host != nil
        else {
            return "NCLAV_GCP_ENDPOINT=\(template) is not an http(s) URL; expected e.g. http://127.0.0.1:9000/{service}"
        }
        return template.contains("{service}") ? nil : "NCLAV_GCP_ENDPOINT=\(template) must contain {service} (each Google API has its own host)"
    }
}

/// A Google API error (`{"error": {"code", "message", "status", "details": [ErrorInfo…]}}`),
/// with what to do about it.
public struct GCPError: Error, Sendable, CustomStringConvertible {
    public let call: String
    public let code: Int
    public let status: String
    public let message: String
    public let reason: String?
    /// ErrorInfo's metadata: `consumer` (`projects/123`) and `service` for SERVICE_DISABLED.
    public var metadata: [String: String] = [:]
    /// The `Retry-After` header, when the server sent one.
    public var retryAfter: String? = nil

    public var description: String {
        var text = "GCP \(call) failed (\(code) \(status)): \(message)"
        if let hint { text += ". \(hint)" }
        return text
    }

    public var hint: String? {
        if status == "PERMISSION_DENIED" || code == 403 {
            if message.lowercased().contains("billing") || reason == "BILLING_DISABLED" {
                return "Billing is the problem: check --gcp-billing-account and that nclav's identity has roles/billing.user on it"
            }
            if reason == "SERVICE_DISABLED" {
                let service = metadata["service"] ?? "that API"
                guard let consumer = metadata["consumer"] else { return "Enable \(service) in the project the call was billed to" }
                return
                    "Enable \(service) in \(consumer) (`gcloud services enable \(service) --project \(consumer.replacingOccurrences(of: "projects/", with: ""))`); an API enabled in the last minutes may still be propagating: apply again"
            }
            if message.contains("iam.serviceAccounts.getAccessToken") {
                return
                    "nclav needs roles/iam.serviceAccountTokenCreator in the enclave's project (it grants itself this when provisioning the enclave; a grant of the last minutes may still be propagating: apply again)"
            }
            return
                "nclav's identity lacks a permission; grant it on the parent folder/organization (bootstrap/gcp prints the grants as iam_setup_commands)"
        }
        if status == "RESOURCE_EXHAUSTED" || code == 429 {
            return "A quota or rate limit was hit and did not clear while nclav retried; request more quota in the console or apply again later"
        }
        if status == "UNAUTHENTICATED" || code == 401 { return "The credentials were rejected or expired; refresh them" }
        if status == "FAILED_PRECONDITION", message.lowercased().contains("billing") {
            return "Link a billing account that is open and that nclav may use"
        }
        return nil
    }

    /// Throttling and server trouble, retried for `CappedBackoff.transient` as
    /// terraform-provider-google's default transport does (`isCommonRetryableErrorCode`: every
    /// 429 and 5xx; `is403QuotaExceededPerMinuteError`; `is403ConcurrentOperationsQuotaError`;
    /// `isNetworkUnreadyError`/`isSubnetworkUnreadyError`).
    var isRetryable: Bool {
        if code == 429 || code >= 500 || status == "UNAVAILABLE" { return true }
        if code == 403, message.contains("Quota exceeded for quota metric"), message.contains("per minute") { return true }
        if code == 403, reason == "CONCURRENT_OPERATIONS_QUOTA_EXCEEDED" { return true }
        if code == 400, reason == "resourceNotReady" { return true }
        return false
    }

    // What GCP answers while something made moments ago propagates (each retried by the call
    // that meets it, for `CappedBackoff.propagation`).

    /// A call into an API enabled moments ago (`services:batchEnable` finished).
    public var isServiceJustEnabled: Bool { code == 403 && reason == "SERVICE_DISABLED" }
    /// A new service account named in a policy before IAM knows it (`IamServiceAccountNotFound`
    /// in the provider: 400 "Service account … does not exist").
    public var isAccountPropagating: Bool {
        code == 400 && message.contains("does not exist") && message.lowercased().contains("service account")
    }
    /// Minting a token with a Token Creator grant or for an account made moments ago.
    public var isTokenGrantPropagating: Bool {
        (code == 403 && message.contains("iam.serviceAccounts.getAccessToken")) || code == 404
    }
    /// Enabling billable APIs right after the billing link (`handleServiceUsageRetryablePreconditionError`).
    public var isBillingPropagating: Bool { (code == 400 || code == 412) && message.contains("Precondition check failed") }
    /// Pub/Sub's "project not ready" (`PubsubTopicProjectNotReady`).
    public var isPubSubNotReady: Bool { code == 400 && message.contains("retry this operation") }

    static func parse(_ response: CloudHTTP.Response, call: String) -> GCPError {
        let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any]
        let error = object?["error"] as? [String: Any]
        var reason: String? = nil
        var metadata: [String: String] = [:]
        for detail in error?["details"] as? [[String: Any]] ?? [] where (detail["@type"] as? String)?.hasSuffix("google.rpc.ErrorInfo") == true {
            reason = detail["reason"] as? String
            metadata = detail["metadata"] as? [String: String] ?? [:]
        }
        // Compute's legacy shape: {"error": {"errors": [{"reason": "alreadyExists", "message"}], "code", "message"}}
        if reason == nil, let first = (error?["errors"] as? [[String: Any]])?.first { reason = first["reason"] as? String }
        return GCPError(
            call: call, code: error?["code"] as? Int ?? response.status, status: error?["status"] as? String ?? "HTTP_\(response.status)",
            message: error?["message"] as? String ?? String(response.bodyText.prefix(300)), reason: reason, metadata: metadata,
            retryAfter: response.header("Retry-After"))
    }

    public var isAlreadyExists: Bool { code == 409 || status == "ALREADY_EXISTS" || reason == "alreadyExists" }
    public var isNotFound: Bool { code == 404 || status == "NOT_FOUND" || reason == "notFound" }
}

extension Error {
    /// The Google API error inside, if this is one.
    var gcpAPI: GCPError? { (self as? GCPCallError)?.api }
}

public enum GCPCallError: Error, Sendable, CustomStringConvertible {
    case credentials(GCPCredentialError)
    case transport(CloudHTTP.TransportError)
    case api(GCPError)
    case operationFailed(call: String, message: String)
    case unreadable(call: String)
    /// A Compute operation that ended in `RESOURCE_NOT_READY` (a network or subnetwork made
    /// moments ago); the insert is sent again.
    case resourceNotReady(call: String)

    public var description: String {
        switch self {
        case .credentials(let error): return error.description
        case .transport(let error): return error.description
        case .api(let error): return error.description
        case .operationFailed(let call, let message): return "GCP \(call) failed while running: \(message)"
        case .unreadable(let call): return "GCP \(call) answered something nclav cannot read"
        case .resourceNotReady(let call): return "GCP \(call) failed: a resource it needs was not ready yet (RESOURCE_NOT_READY); apply again"
        }
    }

    public var api: GCPError? { if case .api(let error) = self { return error } else { return nil } }
}

/// Authorized JSON calls to Google APIs, with retries on transient failures and polling of
/// long-running operations (both the `google.longrunning.Operation` and Compute shapes).
public struct GCPClient: Sendable {
    public let endpoints: GCPEndpoints
    let chain: GCPCredentialChain
    let backoff: CappedBackoff
    let http = CloudHTTP()

    public init(chain: GCPCredentialChain, endpoints: GCPEndpoints, backoff: CappedBackoff) {
        self.chain = chain
        self.endpoints = endpoints
        self.backoff = backoff
    }

    @discardableResult
    public func call(
        _ method: String, _ service: String, _ path: String, query: [(String, String)] = [], body: [String: Any]? = nil,
        token: String? = nil
    ) async throws(GCPCallError) -> [String: Any] {
        let name = "\(service) \(method) \(path)"
        let clock = ContinuousClock()
        let start = clock.now
        var attempt = 0
        while true {
            attempt += 1
            let bearer: String
            if let token {
                bearer = token
            } else {
                do { bearer = try await chain.token().token } catch { throw .credentials(error) }
            }
            let payload = body.flatMap { try? JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]) }
            var headers = [("Authorization", "Bearer \(bearer)")]
            if payload != nil { headers.append(("Content-Type", "application/json")) }
            let response: CloudHTTP.Response
            do { response = try await http.send(method, endpoints.url(service, path, query: query), headers: headers, body: payload) } catch {
                let delay = backoff.transientDelay(attempt: attempt, retryAfter: nil)
                guard clock.now - start + delay <= backoff.transient else { throw .transport(error) }
                try? await Task.sleep(for: delay)
                continue
            }
            if (200..<300).contains(response.status) {
                if response.body.isEmpty { return [:] }
                guard let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] else { throw .unreadable(call: name) }
                return object
            }
            let error = GCPError.parse(response, call: name)
            let delay = backoff.transientDelay(attempt: attempt, retryAfter: error.retryAfter)
            guard error.isRetryable, clock.now - start + delay <= backoff.transient else { throw .api(error) }
            try? await Task.sleep(for: delay)
        }
    }

    /// Polls a `google.longrunning.Operation` (`{"name", "done", "error", "response"}`) at
    /// `service`'s `/<version>/<name>` until done; returns its `response`.
    public func wait(operation: [String: Any], service: String, version: String, what: String) async throws -> [String: Any] {
        var current = operation
        return try await backoff.poll(what) { () async throws -> [String: Any]? in
            if current["done"] as? Bool == true {
                if let error = current["error"] as? [String: Any] {
                    throw GCPCallError.operationFailed(
                        call: what, message: "\(error["message"] as? String ?? "unknown error") (code \(error["code"] as? Int ?? 0))")
                }
                return current["response"] as? [String: Any] ?? [:]
            }
            guard let name = current["name"] as? String else { throw GCPCallError.unreadable(call: what) }
            current = try await call("GET", service, "/\(version)/\(name)")
            return nil
        }
    }

    /// Polls a Compute operation (`status` PENDING/RUNNING/DONE, `error.errors[]`) via its selfLink path.
    public func waitCompute(operation: [String: Any], what: String) async throws {
        var current = operation
        _ = try await backoff.poll(what) { () async throws -> Bool? in
            if current["status"] as? String == "DONE" {
                if let errors = (current["error"] as? [String: Any])?["errors"] as? [[String: Any]], let first = errors.first {
                    if first["code"] as? String == "RESOURCE_ALREADY_EXISTS" { return true }
                    if first["code"] as? String == "RESOURCE_NOT_READY" { throw GCPCallError.resourceNotReady(call: what) }
                    throw GCPCallError.operationFailed(
                        call: what, message: "\(first["message"] as? String ?? "unknown") (\(first["code"] as? String ?? ""))")
                }
                return true
            }
            guard let link = current["selfLink"] as? String, let range = link.range(of: "/compute/v1/") else {
                throw GCPCallError.unreadable(call: what)
            }
            current = try await call("GET", "compute", "/compute/v1/" + link[range.upperBound...])
            return nil
        }
    }
}
