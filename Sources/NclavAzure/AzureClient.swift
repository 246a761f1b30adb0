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

    /// Throttling and server trouble, retried for `CappedBackoff.transient` (honouring
    /// `Retry-After`, as go-azure-sdk does).
    var isRetryable: Bool { status == 429 || status >= 500 || code == "RetryableError" }

    /// A new identity not yet known to Entra when a role is assigned to it (azurerm's
    /// `retryRoleAssignmentsClient` retries this for the whole create timeout).
    public var isPrincipalPropagating: Bool { code == "PrincipalNotFound" }

    /// A resource provider namespace not (yet) registered in the subscription.
    public var isMissingRegistration: Bool { code == "MissingSubscriptionRegistration" }

    /// The namespace a `MissingSubscriptionRegistration` names (`details[0].target`, else the
    /// message's "namespace 'X'").
    public var unregisteredNamespace: String? {
        if let target, !target.isEmpty { return target }
        guard let start = message.range(of: "namespace '")?.upperBound, let end = message[start...].firstIndex(of: "'") else { return nil }
        return String(message[start..<end])
    }

    public var target: String? = nil
    public var retryAfter: String? = nil

    static func parse(_ response: CloudHTTP.Response, call: String) -> AzureError {
        let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any]
        let error = (object?["error"] as? [String: Any]) ?? object ?? [:]
        let target = ((error["details"] as? [[String: Any]])?.first?["target"] as? String) ?? (error["target"] as? String)
        return AzureError(
            call: call, status: response.status, code: error["code"] as? String ?? "HTTP\(response.status)",
            message: error["message"] as? String ?? String(response.bodyText.prefix(300)), target: target,
            retryAfter: response.header("Retry-After"))
    }
}

extension Error {
    /// The Azure Resource Manager error inside, if this is one.
    var azureAPI: AzureError? { (self as? AzureCallError)?.api }
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
        let clock = ContinuousClock()
        let start = clock.now
        var attempt = 0
        var registered: Set<String> = []
        while true {
            attempt += 1
            let token: AzureAccessToken
            do { token = try await chain.token() } catch { throw .credentials(error) }
            let payload = body.flatMap { try? JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]) }
            var headers = [("Authorization", "Bearer \(token.token)")]
            if payload != nil { headers.append(("Content-Type", "application/json")) }
            let response: CloudHTTP.Response
            do { response = try await http.send(method, url, headers: headers, body: payload) } catch {
                let delay = backoff.transientDelay(attempt: attempt, retryAfter: nil)
                guard clock.now - start + delay <= backoff.transient else { throw .transport(error) }
                try? await Task.sleep(for: delay)
                continue
            }
            if (200..<300).contains(response.status) { return Answer(status: response.status, headers: response.headers, body: response.body) }
            let error = AzureError.parse(response, call: call)
            // As go-autorest's DoRetryWithRegistration: register the namespace the error names,
            // wait until it is registered, and send again (once per namespace).
            if error.isMissingRegistration, let namespace = error.unregisteredNamespace, !registered.contains(namespace),
                let subscription = Self.subscription(in: url.path)
            {
                registered.insert(namespace)
                try await register(namespace, in: subscription)
                continue
            }
            let delay = backoff.transientDelay(attempt: attempt, retryAfter: error.retryAfter)
            guard error.isRetryable, clock.now - start + delay <= backoff.transient else { throw .api(error) }
            try? await Task.sleep(for: delay)
        }
    }

    static func subscription(in path: String) -> String? {
        let parts = path.split(separator: "/")
        guard let index = parts.firstIndex(where: { $0.lowercased() == "subscriptions" }), index + 1 < parts.count else { return nil }
        return String(parts[index + 1])
    }

    /// Registers a resource provider namespace in a subscription and waits until its
    /// `registrationState` is `Registered` (azurerm's `ResourceProviderRegistrationPoller`).
    /// Registering takes minutes on a new subscription; until then PUTs of its resource types
    /// answer 409 MissingSubscriptionRegistration.
    public func register(_ namespace: String, in subscription: String) async throws(AzureCallError) {
        let path = "/subscriptions/\(subscription)/providers/\(namespace)"
        func state() async throws(AzureCallError) -> String {
            try await send("GET", path, apiVersion: "2021-04-01").json["registrationState"] as? String ?? ""
        }
        if try await state() == "Registered" { return }
        try await send("POST", path + "/register", apiVersion: "2021-04-01")
        do {
            _ = try await backoff.poll("registering \(namespace) in subscription \(subscription)") { () async throws -> Bool? in
                try await state() == "Registered" ? true : nil
            }
        } catch let error as AzureCallError {
            throw error
        } catch {
            throw .operationFailed(call: "registering \(namespace)", message: "\(error)")
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
