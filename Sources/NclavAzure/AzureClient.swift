import Foundation
import NclavDrivers

/// An Azure Resource Manager error (`{"error": {"code", "message"}}`) with what to do next.
public struct AzureError: Error, Sendable, CustomStringConvertible {
    public let call: String
    public let status: Int
    public let code: String
    public let message: String

    public var description: String {
        var text = "Azure \(call) failed (\(status) \(code)): \(message)"
        if let hint { text += ". \(hint)" }
        return text
    }

    public var hint: String? {
        switch code {
        case "AuthorizationFailed", "LinkedAuthorizationFailed", "Forbidden":
            return "nclav's identity lacks that permission; grant it (bootstrap/azure prints the grants as iam_setup_commands)"
        case "InvalidAuthenticationToken", "ExpiredAuthenticationToken", "InvalidAuthenticationTokenTenant":
            return "The token was rejected; check --azure-tenant-id and nclav's credentials"
        case "BillingAccountNotFound", "InvalidBillingScope", "BillingProfileNotFound", "InvoiceSectionNotFound", "InvalidBillingAccount":
            return
                "Check --azure-billing-account-name, --azure-billing-profile-name and --azure-invoice-section-name (an MCA billing scope), and that nclav may create subscriptions under it (Azure subscription creator)"
        case "SubscriptionQuotaExceeded", "QuotaExceeded", "OperationNotAllowed":
            return message.lowercased().contains("quota") ? "A quota is exhausted; request an increase or cancel unused subscriptions" : nil
        case "ManagementGroupNotFound": return "Check --azure-management-group-id"
        default: return nil
        }
    }

    var isRetryable: Bool { status == 429 || status >= 500 || code == "PrincipalNotFound" || code == "RetryableError" }

    static func parse(_ response: CloudHTTP.Response, call: String) -> AzureError {
        let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any]
        let error = (object?["error"] as? [String: Any]) ?? object ?? [:]
        return AzureError(
            call: call, status: response.status, code: error["code"] as? String ?? "HTTP\(response.status)",
            message: error["message"] as? String ?? String(response.bodyText.prefix(300)))
    }
}

public enum AzureCallError: Error, Sendable, CustomStringConvertible {
    case credentials(AzureCredentialError)
    case transport(CloudHTTP.TransportError)
    case api(AzureError)
    case operationFailed(call: String, message: String)

    public var description: String {
        switch self {
        case .credentials(let error): return error.description
        case .transport(let error): return error.description
        case .api(let error): return error.description
        case .operationFailed(let call, let message): return "Azure \(call) failed while running: \(message)"
        }
    }

    public var api: AzureError? { if case .api(let error) = self { return error } else { return nil } }
}

/// Azure Resource Manager calls: bearer token, `api-version`, retries on throttling, and the
/// three ways ARM reports a long-running operation (`Azure-AsyncOperation`, `Location`,
/// `properties.provisioningState`). `NCLAV_AZURE_RESOURCE_MANAGER` moves the endpoint.
public struct AzureClient: Sendable {
    public let base: String
    let chain: AzureCredentialChain
    let backoff: CappedBackoff
    let http = CloudHTTP()

    public init(chain: AzureCredentialChain, environment: [String: String], backoff: CappedBackoff) {
        var base = environment["NCLAV_AZURE_RESOURCE_MANAGER"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://management.azure.com"
        while base.hasSuffix("/") { base.removeLast() }
        self.base = base
        self.chain = chain
        self.backoff = backoff
    }

    public struct Answer: Sendable {
        public let status: Int
        public let headers: [(String, String)]
        public let body: Data
        public var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    /// One call; `path` starts with `/`, `apiVersion` is required by ARM.
    @discardableResult
    public func send(_ method: String, _ path: String, apiVersion: String, body: [String: Any]? = nil) async throws(AzureCallError) -> Answer {
        let separator = path.contains("?") ? "&" : "?"
        guard let url = URL(string: base + path + separator + "api-version=" + apiVersion) ?? URL(string: path) else {
            throw .operationFailed(call: "\(method) \(path)", message: "bad URL")
        }
        return try await send(method, url: url, call: "\(method) \(path.split(separator: "?").first ?? "")", body: body)
    }

    func send(_ method: String, url: URL, call: String, body: [String: Any]?) async throws(AzureCallError) -> Answer {
        var delay = 0.2
        var attempt = 0
        while true {
            attempt += 1
            let token: AzureAccessToken
            do { token = try await chain.token() } catch { throw .credentials(error) }
            let payload = body.flatMap { try? JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]) }
            var headers = [("Authorization", "Bearer \(token.token)")]
            if payload != nil { headers.append(("Content-Type", "application/json")) }
            let response: CloudHTTP.Response
            do { response = try await http.send(method, url, headers: headers, body: payload) } catch {
                if attempt < 4 {
                    try? await Task.sleep(for: .seconds(delay))
                    delay = min(delay * 2, 5)
                    continue
                }
                throw .transport(error)
            }
            if (200..<300).contains(response.status) { return Answer(status: response.status, headers: response.headers, body: response.body) }
            let error = AzureError.parse(response, call: call)
            if error.isRetryable, attempt < 8 {
                let wait = response.header("Retry-After").flatMap(Double.init).map { min($0, 10) } ?? delay
                try? await Task.sleep(for: .seconds(wait))
                delay = min(delay * 2, 5)
                continue
            }
            throw .api(error)
        }
    }

    /// PUT (or POST) and wait until the operation finishes; returns the final resource.
    @discardableResult
    public func putAndWait(
        _ path: String, apiVersion: String, body: [String: Any], what: String, method: String = "PUT"
    ) async throws -> [String: Any] {
        let first = try await send(method, path, apiVersion: apiVersion, body: body)
        try await waitFor(first, what: what)
        if method == "PUT" { return try await send("GET", path, apiVersion: apiVersion).json }
        return first.json
    }

    /// Follows whatever the answer says about a long-running operation.
    public func waitFor(_ answer: Answer, what: String) async throws {
        if let async = answer.header("Azure-AsyncOperation"), let url = URL(string: async) {
            _ = try await backoff.poll(what) { () async throws -> Bool? in
                let status = try await send("GET", url: url, call: what, body: nil).json
                switch status["status"] as? String ?? "" {
                case "Succeeded": return true
                case "Failed", "Canceled":
                    let error = status["error"] as? [String: Any]
                    throw AzureCallError.operationFailed(
                        call: what, message: "\(error?["code"] as? String ?? "Failed"): \(error?["message"] as? String ?? "no details")")
                default: return nil
                }
            }
            return
        }
        if answer.status == 202, let location = answer.header("Location"), let url = URL(string: location) {
            _ = try await backoff.poll(what) { () async throws -> Bool? in
                try await send("GET", url: url, call: what, body: nil).status == 202 ? nil : true
            }
        }
    }
}
