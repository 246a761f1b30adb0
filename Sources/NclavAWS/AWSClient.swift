import Foundation
import NIOCore
import NclavDrivers

/// A failed AWS call, phrased so the reader knows what to fix. Never carries credentials.
public struct AWSError: Error, Sendable, CustomStringConvertible {
    public let service: AWSService
    public let action: String
    public let status: Int
    public let code: String
    public let message: String

    public var description: String {
        var text = "AWS \(service.signingName):\(action) failed (\(status) \(code)): \(message)"
        if let hint { text += ". \(hint)" }
        return text
    }

    /// What to do about the common failures.
    public var hint: String? {
        switch code {
        case "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess":
            if service == .sts, action == "AssumeRole" {
                return
                    "The role's trust policy does not (yet) let the caller assume it. A role created in the last minutes may not have propagated through IAM: apply again. Otherwise check the role's trust policy names the caller"
            }
            return
                "The identity nclav runs as lacks `\(service.signingName):\(action)`; grant it (bootstrap/aws prints the grants as iam_setup_commands)"
        case "AWSOrganizationsNotInUseException":
            return
                "This account is not part of an AWS organization; run nclav with credentials of the organization's management account (or a delegated administrator)"
        case "InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException", "IncompleteSignature":
            return "AWS rejected the credentials; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile nclav uses"
        case "ExpiredToken", "ExpiredTokenException", "RequestExpired":
            return "The credentials have expired; refresh them (or check this machine's clock)"
        case "ConstraintViolationException":
            if message.contains("ACCOUNT_NUMBER_LIMIT_EXCEEDED") {
                return "The organization's account quota is reached; request an increase in Service Quotas or close unused accounts"
            }
            if message.contains("CLOSE_ACCOUNT_QUOTA_EXCEEDED") || message.contains("CLOSE_ACCOUNT_REQUESTS_LIMIT_EXCEEDED") {
                return "AWS limits how many accounts may be closed per month; the enclave stays in state and the next destroy retries"
            }
            return nil
        case "OptInRequired", "PendingVerification":
            return
                "A new AWS account can take minutes (rarely hours) to activate its services: apply again later. If it persists, the region is an opt-in region not enabled for the account: enable it (AWS Account Management) or pick another region"
        default: return nil
        }
    }

    /// Throttling and server-side trouble are worth another try.
    var isRetryable: Bool {
        status >= 500
            || [
                "Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
                "ConcurrentModificationException", "PriorRequestNotComplete", "ServiceUnavailable",
            ].contains(code)
    }
}

/// Errors before an answer: no credentials, bad endpoint override, transport, unreadable reply.
public enum AWSCallError: Error, Sendable, CustomStringConvertible {
    case credentials(String)
    case endpoint(AWSEndpointResolver.ResolveError)
    case transport(CloudHTTP.TransportError)
    case api(AWSError)
    case unreadable(service: AWSService, action: String, reason: String)

    public var description: String {
        switch self {
        case .credentials(let reason): return reason
        case .endpoint(let error): return error.description
        case .transport(let error): return error.description
        case .api(let error): return error.description
        case .unreadable(let service, let action, let reason):
            return "AWS \(service.signingName):\(action) answered something nclav cannot read: \(reason)"
        }
    }

    /// The AWS error code, if AWS answered with one.
    public var code: String? { if case .api(let error) = self { return error.code } else { return nil } }
}

extension Error {
    /// The AWS error code inside, if this is an AWS answer, also when it reached us through
    /// an assumed role's credential provider (whose message carries AWS's "(403 AccessDenied)").
    var awsCode: String? {
        if let code = (self as? AWSCallError)?.code { return code }
        let text = "\(self)"
        guard let match = text.range(of: #"failed \(\d{3} [A-Za-z.]+\)"#, options: .regularExpression) else { return nil }
        return text[match].split(separator: " ").last.map { String($0.dropLast()) }
    }
}

/// Signs and sends AWS API calls in the three protocols nclav needs: JSON 1.1
/// (Organizations, Resource Groups Tagging), query (STS, IAM, EC2) and REST-XML (Route 53).
public struct AWSClient: Sendable {
    public typealias CredentialProvider = @Sendable () async throws -> AWSCredentials
    public let region: String
    public let endpoints: AWSEndpointResolver
    let credentials: CredentialProvider
    /// `transient` bounds the retries of throttled and failing calls.
    let backoff: CappedBackoff
    let http = CloudHTTP()

    public init(
        region: String, endpoints: AWSEndpointResolver, backoff: CappedBackoff = CappedBackoff(), credentials: @escaping CredentialProvider
    ) {
        self.region = region
        self.endpoints = endpoints
        self.backoff = backoff
        self.credentials = credentials
    }

    /// The same endpoints and region, acting with other credentials (an assumed role).
    public func with(credentials: @escaping CredentialProvider) -> AWSClient {
        AWSClient(region: region, endpoints: endpoints, backoff: backoff, credentials: credentials)
    }

    /// The same identity and endpoints in another region.
    public func with(region: String) -> AWSClient {
        AWSClient(region: region, endpoints: endpoints, backoff: backoff, credentials: credentials)
    }

    // MARK: Protocols

    /// JSON 1.1: POST /, `X-Amz-Target: <prefix>.<Action>`.
    public func json(_ service: AWSService, targetPrefix: String, action: String, _ body: [String: Any]) async throws(AWSCallError) -> [String: Any] {
        let payload = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data("{}".utf8)
        let response = try await send(
            service, action: action, method: "POST", path: "/", query: [], body: payload,
            extraHeaders: [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", "\(targetPrefix).\(action)")])
        if response.body.isEmpty { return [:] }
        guard let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] else {
            throw .unreadable(service: service, action: action, reason: "not a JSON object")
        }
        return object
    }

    /// Query protocol: a form-encoded POST with Action and Version.
    public func query(_ service: AWSService, action: String, version: String, _ parameters: [(String, String)]) async throws(AWSCallError) -> AWSXML {
        let form = ([("Action", action), ("Version", version)] + parameters).map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(
            separator: "&")
        let response = try await send(
            service, action: action, method: "POST", path: "/", query: [], body: Data(form.utf8),
            extraHeaders: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")])
        return try Self.xml(response.body, service: service, action: action)
    }

    /// REST-XML: the path names the resource; bodies are XML documents.
    public func restXML(
        _ service: AWSService, action: String, method: String, path: String, query: [(String, String)] = [],
        body: String? = nil
    ) async throws(AWSCallError) -> AWSXML? {
        let response = try await send(
            service, action: action, method: method, path: path, query: query, body: Data((body ?? "").utf8),
            extraHeaders: body == nil ? [] : [("Content-Type", "application/xml")])
        if response.body.isEmpty { return nil }
        return try Self.xml(response.body, service: service, action: action)
    }

    static func xml(_ body: Data, service: AWSService, action: String) throws(AWSCallError) -> AWSXML {
        do { return try AWSXML(parsing: body) } catch { throw .unreadable(service: service, action: action, reason: error.description) }
    }

    // MARK: Transport

    func send(
        _ service: AWSService, action: String, method: String, path: String, query: [(String, String)], body: Data,
        extraHeaders: [(String, String)]
    ) async throws(AWSCallError) -> CloudHTTP.Response {
        let endpoint: AWSEndpointResolver.Endpoint
        do { endpoint = try endpoints.endpoint(for: service, region: region) } catch { throw .endpoint(error) }
        let clock = ContinuousClock()
        let start = clock.now
        var attempt = 0
        while true {
            attempt += 1
            let creds: AWSCredentials
            do { creds = try await credentials() } catch { throw .credentials("\(error)") }
            let url = Self.url(endpoint.url, path: path, query: query)
            let host = endpoint.url.port.map { "\(endpoint.url.host!):\($0)" } ?? endpoint.url.host!
            let amzDate = SigV4.amzDate(Date())
            let payloadHash = SigV4.payloadHash(body)
            var headers: [(String, String)] = [("host", host), ("x-amz-date", amzDate), ("x-amz-content-sha256", payloadHash)] + extraHeaders
            if let token = creds.sessionToken { headers.append(("x-amz-security-token", token)) }
            let basePath = endpoint.url.path.hasSuffix("/") ? String(endpoint.url.path.dropLast()) : endpoint.url.path
            let signed = SigV4.sign(
                method: method, path: basePath + path, query: query, headers: headers, payloadHash: payloadHash,
                credentials: creds, region: endpoint.signingRegion, service: service.signingName, amzDate: amzDate)
            headers.append(("Authorization", signed.authorization))
            headers.removeAll { $0.0 == "host" }
            let response: CloudHTTP.Response
            do { response = try await http.send(method, url, headers: headers, body: method == "GET" || method == "DELETE" ? nil : body) } catch {
                let delay = backoff.transientDelay(attempt: attempt, retryAfter: nil)
                guard clock.now - start + delay <= backoff.transient else { throw .transport(error) }
                try? await Task.sleep(for: delay)
                continue
            }
            if (200..<300).contains(response.status) { return response }
            let error = Self.error(from: response, service: service, action: action)
            let delay = backoff.transientDelay(attempt: attempt, retryAfter: response.header("Retry-After"))
            guard error.isRetryable, clock.now - start + delay <= backoff.transient else { throw .api(error) }
            try? await Task.sleep(for: delay)
        }
    }

    static func url(_ base: URL, path: String, query: [(String, String)]) -> URL {
        var text = base.absoluteString
        while text.hasSuffix("/") { text.removeLast() }
        text += path
        if !query.isEmpty { text += "?" + query.map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&") }
        return URL(string: text)!
    }

    /// Every AWS error shape: JSON `__type`/`message`, query `<ErrorResponse><Error>`, EC2
    /// `<Response><Errors><Error>`, REST-XML `<ErrorResponse><Error>` or a bare `<Error>`.
    static func error(from response: CloudHTTP.Response, service: AWSService, action: String) -> AWSError {
        var code = response.header("x-amzn-ErrorType").map { String($0.split(separator: ":").first ?? "") } ?? ""
        var message = ""
        if let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] {
            if let type = object["__type"] as? String { code = String(type.split(separator: "#").last ?? Substring(type)) }
            if let text = (object["message"] ?? object["Message"]) as? String { message = text }
        } else if let xml = try? AWSXML(parsing: response.body) {
            if let value = xml.value("Code") { code = value }
            if let value = xml.value("Message") { message = value }
        }
        if code.isEmpty { code = "HTTP\(response.status)" }
        if message.isEmpty { message = String(response.bodyText.prefix(300)) }
        return AWSError(service: service, action: action, status: response.status, code: code, message: message)
    }
}
