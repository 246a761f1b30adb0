import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// A loopback proxy in front of moto that makes it behave like real AWS where moto is
/// instantly consistent: it forwards every request unchanged and answers, in AWS's own wire
/// format, what a real first apply meets (each as terraform-provider-aws meets and retries it):
///
/// - `sts:AssumeRole` of a role created moments ago: 403 AccessDenied (IAM propagation; the
///   provider's `propagationTimeout` is 2 minutes);
/// - `sts:AssumeRole` of a new account's OrganizationAccountAccessRole: AccessDenied;
/// - EC2 in a new account: OptInRequired, then PendingVerification, while it activates;
/// - the first CreateAccount of a new organization: FinalizingOrganizationException;
/// - every n-th request: throttled (Throttling / TooManyRequestsException).
///
/// It learns accounts and roles from the traffic itself (CreateRole requests,
/// DescribeCreateAccountStatus and AssumeRole answers).
public actor AWSRealismProxy {
    /// A new account's windows are counted in requests, not time: moto answers at very
    /// different speeds on a loaded machine, and what matters to the driver is that it meets
    /// each answer and keeps going.
    public struct Realism: Sendable {
        public var rolePropagation: Duration
        /// AssumeRole of a new account's OrganizationAccountAccessRole refused this many times.
        public var accountRoleRefusals: Int
        /// EC2 in a new account answers OptInRequired this many times, then PendingVerification
        /// `pendingVerifications` times.
        public var optInRefusals: Int
        public var pendingVerifications: Int
        public var finalizingOrganization: Bool
        public var throttleEvery: Int?

        public init(
            rolePropagation: Duration = .zero, accountRoleRefusals: Int = 0, optInRefusals: Int = 0, pendingVerifications: Int = 0,
            finalizingOrganization: Bool = false, throttleEvery: Int? = nil
        ) {
            self.rolePropagation = rolePropagation
            self.accountRoleRefusals = accountRoleRefusals
            self.optInRefusals = optInRefusals
            self.pendingVerifications = pendingVerifications
            self.finalizingOrganization = finalizingOrganization
            self.throttleEvery = throttleEvery
        }

        public static let realistic = Realism(
            rolePropagation: .milliseconds(400), accountRoleRefusals: 2, optInRefusals: 2, pendingVerifications: 2, finalizingOrganization: true,
            throttleEvery: 9)
    }

    public let upstream: String
    public let realism: Realism
    public nonisolated var endpoint: String { "http://127.0.0.1:\(port)" }
    public nonisolated var port: Int { boundPort.withLock { $0 } }
    private nonisolated let boundPort = Mutex(0)
    private var task: Task<Void, any Error>?

    private var roleCreated: [String: ContinuousClock.Instant] = [:]  // role name -> when
    private var newAccounts: [String: (role: Int, optIn: Int, pending: Int)] = [:]  // account id -> refusals left
    private var accountOfKey: [String: String] = [:]  // access key id -> account id
    private var finalizingAnswered = false
    private var requestCount = 0
    /// How many requests each behaviour answered ("role", "account-role", "opt-in",
    /// "pending-verification", "finalizing", "throttle").
    public private(set) var refusals: [String: Int] = [:]

    public init(upstream: String, realism: Realism = .realistic) {
        self.upstream = upstream
        self.realism = realism
    }

    public func start() async throws {
        let proxy = self
        let router = Router()
        // AWS's query and JSON protocols POST to `/`, which `**` does not match.
        for method in [HTTPRequest.Method.get, .post, .put, .delete, .patch, .head] {
            for pattern in ["/", "**"] {
                router.on(RouterPath(pattern), method: method) { request, _ -> Response in
                    let body = Data(buffer: try await request.body.collect(upTo: 8 << 20))
                    let reply = await proxy.handle(
                        method: method.rawValue, path: request.uri.path, rawQuery: request.uri.query, headers: request.headers, body: body)
                    var headers = HTTPFields()
                    for (name, value) in reply.headers { if let field = HTTPField.Name(name) { headers[field] = value } }
                    return Response(status: .init(code: reply.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: reply.body)))
                }
            }
        }
        let started = try await LoopbackServer.run(router, label: "aws-realism-proxy")
        task = started.task
        boundPort.withLock { $0 = started.port }
    }

    public func stop() { task?.cancel() }

    struct Reply {
        var status: Int
        var body: Data
        var headers: [(String, String)]
    }

    /// Whether something made at `made` is still inside `window`. The first look at each thing
    /// (`key`) always is, however slowly a loaded machine got there, so every window is met at
    private var windows = PropagationWindows()

    private func refuse(_ kind: String) { refusals[kind, default: 0] += 1 }

    func handle(method: String, path: String, rawQuery: String?, headers: HTTPFields, body: Data) async -> Reply {
        let form = Self.form(body)
        let target = headers[HTTPField.Name("X-Amz-Target")!]
        let action = target.map { String($0.split(separator: ".").last ?? "") } ?? form["Action"] ?? ""
        let authorization = headers[.authorization] ?? ""
        let (accessKey, service) = Self.credentialScope(authorization)

        requestCount += 1
        if let every = realism.throttleEvery, requestCount % every == 0 {
            refuse("throttle")
            return target != nil
                ? Self.jsonError(400, "TooManyRequestsException", "Rate exceeded")
                : Self.queryError(400, "Throttling", "Rate exceeded", ec2: service == "ec2")
        }
        if action == "AssumeRole", let arn = form["RoleArn"] {
            let parts = arn.split(separator: ":", omittingEmptySubsequences: false)
            let account = parts.count > 4 ? String(parts[4]) : ""
            let role = String(arn.split(separator: "/").last ?? "")
            if windows.younger(roleCreated[role], than: realism.rolePropagation, key: "role|" + role) {
                refuse("role")
                return Self.queryError(
                    403, "AccessDenied",
                    "User: arn:aws:sts::\(account):assumed-role/OrganizationAccountAccessRole/nclav is not authorized to perform: sts:AssumeRole on resource: \(arn)",
                    ec2: false)
            }
            if role == "OrganizationAccountAccessRole", let left = newAccounts[account], left.role > 0 {
                newAccounts[account]?.role -= 1
                refuse("account-role")
                return Self.queryError(
                    403, "AccessDenied",
                    "User: arn:aws:iam::123456789012:user/nclav is not authorized to perform: sts:AssumeRole on resource: \(arn)",
                    ec2: false)
            }
        }
        if service == "ec2", let account = accountOfKey[accessKey], let left = newAccounts[account], left.optIn + left.pending > 0 {
            if left.optIn > 0 {
                newAccounts[account]?.optIn -= 1
                refuse("opt-in")
                return Self.queryError(
                    401, "OptInRequired", "You are not subscribed to this service. Please go to http://aws.amazon.com to subscribe.", ec2: true)
            }
            newAccounts[account]?.pending -= 1
            refuse("pending-verification")
            return Self.queryError(
                400, "PendingVerification",
                "Your request for accessing resources in this region is being validated, and you will not be able to launch additional resources in this region until the validation is complete. We will notify you by email once your request has been validated. While normally resolved within minutes, please allow up to 4 hours for this process to complete.",
                ec2: true)
        }
        if action == "CreateAccount", realism.finalizingOrganization, !finalizingAnswered {
            finalizingAnswered = true
            refuse("finalizing")
            return Self.jsonError(
                400, "FinalizingOrganizationException",
                "AWS Organizations can't complete your request because it conflicts with another attempt to modify the same entity. Try again later.")
        }

        let answer = await forward(method: method, path: path, rawQuery: rawQuery, headers: headers, body: body)
        if (200..<300).contains(answer.status) { learn(action: action, form: form, answer: answer.body) }
        return answer
    }

    /// Remembers what later answers depend on.
    private func learn(action: String, form: [String: String], answer: Data) {
        switch action {
        case "CreateRole":
            if let role = form["RoleName"] { roleCreated[role] = .now }
        case "DescribeCreateAccountStatus":
            if let object = (try? JSONSerialization.jsonObject(with: answer)) as? [String: Any],
                let status = object["CreateAccountStatus"] as? [String: Any], status["State"] as? String == "SUCCEEDED",
                let account = status["AccountId"] as? String, newAccounts[account] == nil
            {
                newAccounts[account] = (realism.accountRoleRefusals, realism.optInRefusals, realism.pendingVerifications)
            }
        case "AssumeRole":
            let text = String(decoding: answer, as: UTF8.self)
            if let key = Self.element("AccessKeyId", in: text), let arn = Self.element("Arn", in: text) {
                let parts = arn.split(separator: ":", omittingEmptySubsequences: false)
                if parts.count > 4 { accountOfKey[key] = String(parts[4]) }
            }
        default: break
        }
    }

    private func forward(method: String, path: String, rawQuery: String?, headers: HTTPFields, body: Data) async -> Reply {
        var request = HTTPClientRequest(url: upstream + path + (rawQuery.map { $0.isEmpty ? "" : "?" + $0 } ?? ""))
        request.method = .init(rawValue: method)
        for field in headers where field.name != .contentLength {
            request.headers.add(name: field.name.rawName, value: field.value)
        }
        if !body.isEmpty { request.body = .bytes(ByteBuffer(bytes: body)) }
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            let collected = try await response.body.collect(upTo: 32 << 20)
            return Reply(
                status: Int(response.status.code), body: Data(buffer: collected),
                headers: response.headers.filter { !["content-length", "transfer-encoding", "connection"].contains($0.name.lowercased()) }.map {
                    ($0.name, $0.value)
                })
        } catch {
            return Reply(status: 502, body: Data("proxy: \(error)".utf8), headers: [])
        }
    }

    // MARK: Wire format

    static func form(_ body: Data) -> [String: String] {
        var form: [String: String] = [:]
        for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0)
            }
            if parts.count == 2 { form[parts[0]] = parts[1] }
        }
        return form
    }

    /// The access key id and the service from a SigV4 `Authorization` header.
    static func credentialScope(_ authorization: String) -> (accessKey: String, service: String) {
        guard let start = authorization.range(of: "Credential=")?.upperBound else { return ("", "") }
        let scope = authorization[start...].prefix { $0 != "," }.split(separator: "/")
        return (scope.first.map(String.init) ?? "", scope.count > 3 ? String(scope[3]) : "")
    }

    static func element(_ name: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex) else {
            return nil
        }
        return String(xml[open.upperBound..<close.lowerBound])
    }

    /// The query protocol's error document (STS, IAM), or EC2's.
    static func queryError(_ status: Int, _ code: String, _ message: String, ec2: Bool) -> Reply {
        let id = UUID().uuidString.lowercased()
        let xml =
            ec2
            ? "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>\(code)</Code><Message>\(message)</Message></Error></Errors><RequestID>\(id)</RequestID></Response>"
            : "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>\(code)</Code><Message>\(message)</Message></Error><RequestId>\(id)</RequestId></ErrorResponse>"
        return Reply(status: status, body: Data(xml.utf8), headers: [("Content-Type", "text/xml"), ("x-amzn-RequestId", id)])
    }

    /// The JSON 1.1 protocol's error (Organizations).
    static func jsonError(_ status: Int, _ code: String, _ message: String) -> Reply {
        let body = (try? JSONSerialization.data(withJSONObject: ["__type": code, "Message": message])) ?? Data()
        return Reply(status: status, body: body, headers: [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)])
    }
}
