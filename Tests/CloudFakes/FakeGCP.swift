import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization
import _CryptoExtras

/// An in-test stand-in for the Google APIs the GCP driver calls, answering with their real
/// wire format: OAuth token endpoint (RS256 JWT bearer grant verified against the key's public
/// half; refresh-token grant), the metadata server, Resource Manager v3 (projects, operations,
/// IAM policy with etags), Cloud Billing, Service Usage (batchEnable + operations), IAM
/// (service accounts), IAM Credentials (generateAccessToken, allowed only with Token Creator),
/// Compute (networks/subnetworks with compute operations), Cloud DNS and Cloud Asset search.
/// Errors use Google's `{"error": {"code", "message", "status", "details"}}` shape. Each
/// service lives under `/<service>`, matching `NCLAV_GCP_ENDPOINT=http://host:port/{service}`.
public actor FakeGCP {
    public struct Project: Sendable {
        public var id: String
        public var number: String
        public var parent: String
        public var labels: [String: String]
        public var state: String
        public var billingAccount: String?
        public var services: Set<String> = []
        public var serviceAccounts: Set<String> = []
        public var bindings: [String: Set<String>] = [:]
        public var etag = 1
        public var networks: Set<String> = []
        public var subnetworks: [String: String] = [:]  // name -> cidr
        public var zones: [String: String] = [:]  // name -> dnsName
        public var addresses: [String: String] = [:]  // name -> ip
        public var forwardingRules: [String: String] = [:]  // name -> target
        public var records: [String: [String]] = [:]  // "name A" -> rrdatas
        public var subscriptions: [String: String] = [:]  // name -> topic
    }

    public struct Asset: Sendable {
        public let name: String
        public let project: String
        public let labels: [String: String]
        public init(name: String, project: String, labels: [String: String]) {
            self.name = name
            self.project = project
            self.labels = labels
        }
    }

    /// A failure to inject: the first `times` requests whose "METHOD path" contains `match`
    /// get `status` with a Google error body (or, for `operationError`, an operation that ends in error).
    public struct Failure: Sendable {
        public var match: String
        public var status: Int
        public var code: String
        public var message: String
        public var reason: String?
        public var times: Int
        public var operationError: Bool
        public init(
            match: String, status: Int = 403, code: String = "PERMISSION_DENIED", message: String, reason: String? = nil, times: Int = 1,
            operationError: Bool = false
        ) {
            self.match = match
            self.status = status
            self.code = code
            self.message = message
            self.reason = reason
            self.times = times
            self.operationError = operationError
        }
    }

    /// How far the fake behaves like Google's eventually consistent APIs (each window as
    /// terraform-provider-google meets and retries it; see docs/cloud-api-calls.md):
    public struct Realism: Sendable {
        /// A service account younger than this is unknown to IAM: GET answers 404, a policy
        /// naming it 400 "Service account … does not exist.", generateAccessToken 404.
        public var accountPropagation: Duration
        /// A Token Creator grant younger than this is not honoured (403 getAccessToken denied).
        public var grantPropagation: Duration
        /// An API enabled less than this long ago answers 403 SERVICE_DISABLED.
        public var servicePropagation: Duration
        /// Billable APIs cannot be enabled until this long after the billing link (400
        /// "Precondition check failed.").
        public var billingPropagation: Duration
        /// A subnetwork inserted this soon after its network ends in RESOURCE_NOT_READY.
        public var networkReadiness: Duration
        /// Every n-th authorised request answers 429 RESOURCE_EXHAUSTED (RATE_LIMIT_EXCEEDED).
        public var rateLimitEvery: Int?
        /// Long-running operations answer `done: false` (Compute: RUNNING) this many polls.
        public var operationPolls: Int

        public init(
            accountPropagation: Duration = .zero, grantPropagation: Duration = .zero, servicePropagation: Duration = .zero,
            billingPropagation: Duration = .zero, networkReadiness: Duration = .zero, rateLimitEvery: Int? = nil, operationPolls: Int = 0
        ) {
            self.accountPropagation = accountPropagation
            self.grantPropagation = grantPropagation
            self.servicePropagation = servicePropagation
            self.billingPropagation = billingPropagation
            self.networkReadiness = networkReadiness
            self.rateLimitEvery = rateLimitEvery
            self.operationPolls = operationPolls
        }

        /// Everything consistent at once (what the fake did before it had this mode).
        public static let instant = Realism()
        /// Short windows of every kind, for the driver suites.
        public static let realistic = Realism(
            accountPropagation: .milliseconds(150), grantPropagation: .milliseconds(1200), servicePropagation: .milliseconds(150),
            billingPropagation: .milliseconds(100), networkReadiness: .milliseconds(300), rateLimitEvery: 11, operationPolls: 2)
    }

    public private(set) var realism = Realism.instant
    public func setRealism(_ realism: Realism) { self.realism = realism }
    /// When things were made, for the propagation windows.
    private var accountCreated: [String: ContinuousClock.Instant] = [:]
    private var grantMade: [String: ContinuousClock.Instant] = [:]  // "project|member" for Token Creator
    private var serviceEnabled: [String: ContinuousClock.Instant] = [:]  // "project|service"
    private var billingLinked: [String: ContinuousClock.Instant] = [:]
    private var networkMade: [String: ContinuousClock.Instant] = [:]  // "project|network"
    private var pendingPolls: [String: Int] = [:]
    private var authorisedRequests = 0
    /// How many 429s the rate limit has answered.
    public private(set) var throttled = 0
    /// How many requests each window refused ("account", "grant", "service", "billing",
    /// "network", "operation"), so a test can show it met every one.
    public private(set) var refusals: [String: Int] = [:]

    /// Whether something made at `made` is still inside `window`. The first look at each
    /// thing (`key`) always is, however slowly the test machine got there, so every window is
    private var windows = PropagationWindows()

    /// Known once `start` has bound the server.
    public nonisolated var port: Int { boundPort.withLock { $0 } }
    private nonisolated let boundPort = Mutex(0)
    public nonisolated var endpointTemplate: String { "http://127.0.0.1:\(port)/{service}" }
    public nonisolated var metadataHost: String { "127.0.0.1:\(port)" }
    public private(set) var projects: [String: Project] = [:]
    /// Every request that reached an API ("METHOD /path"); throttled ones are counted in
    /// `throttled` instead.
    public private(set) var requests: [String] = []
    /// Pub/Sub topic IAM policies: topic path -> role -> members.
    public private(set) var topicBindings: [String: [String: Set<String>]] = [:]
    public var assets: [Asset] = []
    private var failures: [Failure] = []
    private var operations: [String: [String: Any]] = [:]
    /// token -> IAM member
    private var tokens: [String: String] = [:]
    private var counter = 0
    private var task: Task<Void, any Error>?

    public let serviceAccountEmail = "nclav-server@mgmt.iam.gserviceaccount.com"
    public let serviceAccountKey = try! _RSA.Signing.PrivateKey(keySize: .bits2048)
    public let userRefreshToken = "refresh-\(UUID().uuidString)"
    public let userEmail = "ops@example.com"

    public init() throws {}

    /// The service-account key file a real console download looks like, pointing its
    /// `token_uri` at this fake.
    public var serviceAccountKeyJSON: String {
        let object: [String: String] = [
            "type": "service_account", "project_id": "mgmt", "private_key_id": "k1", "private_key": serviceAccountKey.pemRepresentation,
            "client_email": serviceAccountEmail, "client_id": "1", "token_uri": "http://127.0.0.1:\(port)/oauth2/token",
        ]
        return String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
    }

    public var authorizedUserJSON: String {
        #"{"type":"authorized_user","client_id":"cid.apps.googleusercontent.com","client_secret":"csecret","refresh_token":"\#(userRefreshToken)"}"#
    }

    public func inject(_ failure: Failure) { failures.append(failure) }
    public func addAsset(_ asset: Asset) { assets.append(asset) }
    public func clearRequests() { requests = [] }

    public func start() async throws {
        let fake = self
        let started = try await LoopbackServer.start(label: "fake-gcp") { method, path, query, headers, body in
            let answer = await fake.handle(method: method, path: path, query: query, headers: headers, body: body)
            var replyHeaders = [("Content-Type", answer.contentType)]
            if answer.metadataFlavor { replyHeaders.append(("Metadata-Flavor", "Google")) }
            if let retryAfter = answer.retryAfter { replyHeaders.append(("Retry-After", retryAfter)) }
            return LoopbackServer.Reply(status: answer.status, body: answer.body, headers: replyHeaders)
        }
        task = started.task
        boundPort.withLock { $0 = started.port }
    }

    public func stop() { task?.cancel() }

    struct Answer {
        var status: Int
        var body: Data
        var contentType = "application/json; charset=UTF-8"
        var metadataFlavor = false
        var retryAfter: String? = nil
    }

    static func json(_ status: Int, _ object: Any) -> Answer {
        Answer(status: status, body: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
    }

    static func error(_ status: Int, _ code: String, _ message: String, reason: String? = nil, metadata: [String: String] = [:]) -> Answer {
        var error: [String: Any] = ["code": status, "message": message, "status": code]
        if let reason {
            var info: [String: Any] = ["@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"]
            if !metadata.isEmpty { info["metadata"] = metadata }
            error["details"] = [info]
        }
        return json(status, ["error": error])
    }

    /// Compute's own error shape.
    static func computeError(_ status: Int, reason: String, _ message: String) -> Answer {
        json(status, ["error": ["code": status, "message": message, "errors": [["domain": "global", "reason": reason, "message": message]]]])
    }

    func next() -> Int {
        counter += 1
        return counter
    }

    func issue(for member: String) -> String {
        let token = "ya29.fake-\(next())-\(UUID().uuidString.prefix(8))"
        tokens[token] = member
        return token
    }

    func handle(method: String, path: String, query: [(String, String)], headers: HTTPFields, body: Data) -> Answer {
        requests.append("\(method) \(path)")
        if let index = failures.firstIndex(where: { !$0.operationError && "\(method) \(path)".contains($0.match) }) {
            let failure = failures[index]
            failures[index].times -= 1
            if failures[index].times <= 0 { failures.remove(at: index) }
            return Self.error(failure.status, failure.code, failure.message, reason: failure.reason)
        }
        let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
        // Metadata server: no OAuth, but the Metadata-Flavor header is required.
        if path.hasPrefix("/computeMetadata/v1/") {
            guard headers[HTTPField.Name("Metadata-Flavor")!] == "Google" else {
                return Answer(status: 403, body: Data("Missing Metadata-Flavor:Google header.".utf8), contentType: "text/html")
            }
            if path.hasSuffix("/service-accounts/default/token") {
                var answer = Self.json(
                    200, ["access_token": issue(for: "serviceAccount:vm@mgmt.iam.gserviceaccount.com"), "expires_in": 3599, "token_type": "Bearer"])
                answer.metadataFlavor = true
                return answer
            }
            if path.hasSuffix("/service-accounts/default/email") {
                return Answer(status: 200, body: Data("vm@mgmt.iam.gserviceaccount.com".utf8), contentType: "application/text", metadataFlavor: true)
            }
            return Answer(status: 404, body: Data("not found".utf8), contentType: "text/html", metadataFlavor: true)
        }
        if path == "/oauth2/token" { return tokenEndpoint(body) }
        if path == "/oauth2/tokeninfo" {
            // As Google's: `access_token` in a POST form (or the query string).
            let form = Self.form(body)
            guard let token = form["access_token"] ?? query.first(where: { $0.0 == "access_token" })?.1, let member = tokens[token] else {
                return Self.json(400, ["error": "invalid_token"])
            }
            return Self.json(200, ["email": member.split(separator: ":", maxSplits: 1).last.map(String.init) ?? "", "expires_in": "3000"])
        }
        guard let bearer = headers[.authorization], bearer.hasPrefix("Bearer "), let caller = tokens[String(bearer.dropFirst(7))] else {
            return Self.error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token.")
        }
        authorisedRequests += 1
        if let every = realism.rateLimitEvery, authorisedRequests % every == 0 {
            // `requests` lists what reached the API; a throttled request changed nothing.
            requests.removeLast()
            throttled += 1
            let service = path.split(separator: "/").first.map(String.init) ?? "api"
            var answer = Self.error(
                429, "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of service '\(service).googleapis.com' for consumer 'project_number:1'.",
                reason: "RATE_LIMIT_EXCEEDED")
            answer.retryAfter = "0"
            return answer
        }
        return route(method: method, path: path, query: query, body: object, caller: caller)
    }

    static func form(_ body: Data) -> [String: String] {
        var form: [String: String] = [:]
        for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
            if parts.count == 2 { form[parts[0]] = parts[1] }
        }
        return form
    }

    func tokenEndpoint(_ body: Data) -> Answer {
        let form = Self.form(body)
        switch form["grant_type"] {
        case "urn:ietf:params:oauth:grant-type:jwt-bearer":
            let pieces = (form["assertion"] ?? "").split(separator: ".").map(String.init)
            guard pieces.count == 3, let signature = Self.base64URLDecode(pieces[2]), let claimsData = Self.base64URLDecode(pieces[1]),
                let claims = (try? JSONSerialization.jsonObject(with: claimsData)) as? [String: Any]
            else {
                return Self.json(400, ["error": "invalid_grant", "error_description": "Invalid JWT."])
            }
            let valid = serviceAccountKey.publicKey.isValidSignature(
                _RSA.Signing.RSASignature(rawRepresentation: signature),
                for: SHA256.hash(data: Data("\(pieces[0]).\(pieces[1])".utf8)), padding: .insecurePKCS1v1_5)
            guard valid else { return Self.json(400, ["error": "invalid_grant", "error_description": "Invalid JWT Signature."]) }
            guard claims["iss"] as? String == serviceAccountEmail, claims["aud"] as? String == "http://127.0.0.1:\(port)/oauth2/token",
                let exp = claims["exp"] as? Int, exp > Int(Date().timeIntervalSince1970)
            else {
                return Self.json(
                    400,
                    ["error": "invalid_grant", "error_description": "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."])
            }
            return Self.json(200, ["access_token": issue(for: "serviceAccount:\(serviceAccountEmail)"), "expires_in": 3599, "token_type": "Bearer"])
        case "refresh_token":
            guard form["refresh_token"] == userRefreshToken, form["client_secret"] == "csecret" else {
                return Self.json(400, ["error": "invalid_grant", "error_description": "Token has been expired or revoked."])
            }
            return Self.json(
                200,
                [
                    "access_token": issue(for: "user:\(userEmail)"), "expires_in": 3599, "token_type": "Bearer",
                    "scope": "https://www.googleapis.com/auth/cloud-platform",
                ])
        default:
            return Self.json(400, ["error": "unsupported_grant_type", "error_description": "Invalid grant_type: \(form["grant_type"] ?? "")"])
        }
    }

    static func base64URLDecode(_ text: String) -> Data? {
        var base = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base.count % 4 != 0 { base += "=" }
        return Data(base64Encoded: base)
    }

    func operation(_ prefix: String, response: [String: Any], failWith failure: Failure?) -> [String: Any] {
        let name = "operations/\(prefix).\(next())"
        var finished: [String: Any] = ["name": name, "done": true]
        if let failure { finished["error"] = ["code": 9, "message": failure.message] } else { finished["response"] = response }
        operations[name] = finished
        pendingPolls[name] = realism.operationPolls
        return ["name": name, "done": false]
    }

    func takeOperationFailure(_ match: String) -> Failure? {
        guard let index = failures.firstIndex(where: { $0.operationError && match.contains($0.match) }) else { return nil }
        let failure = failures[index]
        failures[index].times -= 1
        if failures[index].times <= 0 { failures.remove(at: index) }
        return failure
    }

    func projectJSON(_ project: Project) -> [String: Any] {
        [
            "@type": "type.googleapis.com/google.cloud.resourcemanager.v3.Project", "name": "projects/\(project.number)", "projectId": project.id,
            "parent": project.parent, "labels": project.labels, "state": project.state, "displayName": project.id,
        ]
    }

    func policyJSON(_ project: Project) -> [String: Any] {
        [
            "version": 1, "etag": "BwX\(project.etag)",
            "bindings": project.bindings.keys.sorted().map { ["role": $0, "members": project.bindings[$0]!.sorted()] },
        ]
    }

    func computeOperation(_ project: String, region: String?) -> [String: Any] {
        let name = "operation-\(next())"
        let scope = region.map { "regions/\($0)" } ?? "global"
        let link = "https://compute.googleapis.com/compute/v1/projects/\(project)/\(scope)/operations/\(name)"
        operations[link] = ["kind": "compute#operation", "name": name, "status": "DONE", "selfLink": link, "progress": 100]
        pendingPolls[link] = realism.operationPolls
        return ["kind": "compute#operation", "name": name, "status": "RUNNING", "selfLink": link, "progress": 0]
    }

    /// An operation as a poll sees it: not finished for `operationPolls` polls.
    func poll(_ key: String) -> [String: Any]? {
        guard var op = operations[key] else { return nil }
        if let left = pendingPolls[key], left > 0 {
            pendingPolls[key] = left - 1
            refusals["operation", default: 0] += 1
            if op["status"] != nil { op["status"] = "RUNNING" } else { op = ["name": op["name"] ?? key, "done": false] }
        }
        return op
    }

    /// Google's answer for an API that is not enabled, or was enabled moments ago.
    func requireService(_ project: Project, _ service: String) -> Answer? {
        if project.services.contains(service) {
            if !windows.younger(
                serviceEnabled["\(project.id)|\(service)"], than: realism.servicePropagation, key: "serviceEnabled|" + "\(project.id)|\(service)")
            {
                return nil
            }
            refusals["service", default: 0] += 1
        }
        let name = service.replacingOccurrences(of: ".googleapis.com", with: "")
        return Self.error(
            403, "PERMISSION_DENIED",
            "\(name) API has not been used in project \(project.number) before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/\(service)/overview?project=\(project.number) then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry.",
            reason: "SERVICE_DISABLED", metadata: ["consumer": "projects/\(project.number)", "service": service])
    }

    /// IAM's answer for a policy naming a service account it does not know (yet): one of the
    /// fake's projects' accounts that does not exist or is younger than the window.
    func unknownMember(in policy: [String: Any]) -> Answer? {
        for binding in policy["bindings"] as? [[String: Any]] ?? [] {
            for member in binding["members"] as? [String] ?? [] where member.hasPrefix("serviceAccount:") {
                let email = String(member.dropFirst("serviceAccount:".count))
                guard let project = email.split(separator: "@").last?.split(separator: ".").first.map(String.init), projects[project] != nil
                else { continue }
                if projects[project]?.serviceAccounts.contains(email) != true
                    || windows.younger(accountCreated[email], than: realism.accountPropagation, key: "accountCreated|" + email)
                {
                    refusals["account", default: 0] += 1
                    return Self.error(400, "INVALID_ARGUMENT", "Service account \(email) does not exist.")
                }
            }
        }
        return nil
    }

    /// Records when Token Creator was granted to whom, for `grantPropagation`.
    func noteGrants(project: String, old: [String: Set<String>], new: [String: Set<String>]) {
        let role = "roles/iam.serviceAccountTokenCreator"
        for member in (new[role] ?? []).subtracting(old[role] ?? []) { grantMade["\(project)|\(member)"] = .now }
    }

    func route(method: String, path: String, query: [(String, String)], body: [String: Any], caller: String) -> Answer {
        let parts = path.split(separator: "/").map(String.init)
        guard let service = parts.first else { return Self.error(404, "NOT_FOUND", "no service") }
        let rest = Array(parts.dropFirst())
        switch (method, service, rest.count) {
        // Resource Manager v3
        case ("POST", "cloudresourcemanager", 2) where rest == ["v3", "projects"]:
            guard let id = body["projectId"] as? String, let parent = body["parent"] as? String else {
                return Self.error(400, "INVALID_ARGUMENT", "projectId and parent are required")
            }
            if projects[id] != nil { return Self.error(409, "ALREADY_EXISTS", "Requested entity already exists") }
            let failure = takeOperationFailure("create project \(id)")
            let project = Project(
                id: id, number: String(100000000000 + next()), parent: parent, labels: body["labels"] as? [String: String] ?? [:], state: "ACTIVE",
                bindings: ["roles/owner": [caller]])
            if failure == nil { projects[id] = project }
            return Self.json(200, operation("cp", response: projectJSON(project), failWith: failure))
        case ("GET", "cloudresourcemanager", 3) where rest[0] == "v3" && rest[1] == "projects":
            guard let project = projects[rest[2]] else { return Self.error(403, "PERMISSION_DENIED", "The caller does not have permission") }
            return Self.json(200, projectJSON(project))
        case ("DELETE", "cloudresourcemanager", 3) where rest[0] == "v3" && rest[1] == "projects":
            guard var project = projects[rest[2]] else { return Self.error(403, "PERMISSION_DENIED", "The caller does not have permission") }
            project.state = "DELETE_REQUESTED"
            projects[project.id] = project
            return Self.json(200, operation("dp", response: projectJSON(project), failWith: nil))
        case ("GET", _, 3) where rest[0].hasPrefix("v") && rest[1] == "operations":
            guard let op = poll("operations/\(rest[2])") else { return Self.error(404, "NOT_FOUND", "operation not found") }
            return Self.json(200, op)
        case ("POST", "cloudresourcemanager", 3) where rest[0] == "v3" && rest[1] == "projects" && rest[2].contains(":"):
            let pieces = rest[2].split(separator: ":").map(String.init)
            guard var project = projects[pieces[0]] else { return Self.error(403, "PERMISSION_DENIED", "The caller does not have permission") }
            if pieces[1] == "getIamPolicy" { return Self.json(200, policyJSON(project)) }
            guard pieces[1] == "setIamPolicy", let policy = body["policy"] as? [String: Any] else {
                return Self.error(400, "INVALID_ARGUMENT", "unknown method")
            }
            guard policy["etag"] as? String == "BwX\(project.etag)" else {
                return Self.error(
                    409, "ABORTED", "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.")
            }
            if let unknown = unknownMember(in: policy) { return unknown }
            var bindings: [String: Set<String>] = [:]
            for binding in policy["bindings"] as? [[String: Any]] ?? [] {
                if let role = binding["role"] as? String { bindings[role, default: []].formUnion(binding["members"] as? [String] ?? []) }
            }
            noteGrants(project: project.id, old: project.bindings, new: bindings)
            project.bindings = bindings
            project.etag += 1
            projects[project.id] = project
            return Self.json(200, policyJSON(project))
        // Cloud Billing
        case (_, "cloudbilling", 4) where rest[1] == "projects" && rest[3] == "billingInfo":
            guard var project = projects[rest[2]] else { return Self.error(403, "PERMISSION_DENIED", "The caller does not have permission") }
            if method == "PUT" {
                project.billingAccount = body["billingAccountName"] as? String
                projects[project.id] = project
                billingLinked[project.id] = .now
            }
            return Self.json(
                200,
                [
                    "name": "projects/\(project.id)/billingInfo", "projectId": project.id,
                    "billingAccountName": project.billingAccount ?? "", "billingEnabled": project.billingAccount != nil,
                ])
        // Service Usage
        case ("POST", "serviceusage", 4) where rest[1] == "projects" && rest[3] == "services:batchEnable":
            guard var project = projects[rest[2]] else { return Self.error(403, "PERMISSION_DENIED", "The caller does not have permission") }
            let requested = body["serviceIds"] as? [String] ?? []
            let billable: Set<String> = ["compute.googleapis.com", "dns.googleapis.com", "pubsub.googleapis.com"]
            if requested.contains(where: billable.contains),
                windows.younger(billingLinked[project.id], than: realism.billingPropagation, key: "billingLinked|" + project.id)
            {
                refusals["billing", default: 0] += 1
                return Self.error(400, "FAILED_PRECONDITION", "Precondition check failed.")
            }
            let failure = takeOperationFailure("enable \(project.id)")
            if failure == nil {
                for service in requested where !project.services.contains(service) { serviceEnabled["\(project.id)|\(service)"] = .now }
                project.services.formUnion(requested)
                projects[project.id] = project
            }
            return Self.json(
                200,
                operation("acf", response: ["@type": "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse"], failWith: failure)
            )
        case ("GET", "serviceusage", 4) where rest[1] == "projects" && rest[3] == "services":
            guard let project = projects[rest[2]] else { return Self.error(403, "PERMISSION_DENIED", "The caller does not have permission") }
            let filter = query.first { $0.0 == "filter" }?.1
            guard filter == nil || filter == "state:ENABLED" else { return Self.error(400, "INVALID_ARGUMENT", "unsupported filter") }
            return Self.json(
                200,
                [
                    "services": project.services.sorted().map {
                        [
                            "name": "projects/\(project.number)/services/\($0)", "config": ["name": $0], "state": "ENABLED",
                            "parent": "projects/\(project.number)",
                        ]
                    }
                ])
        // IAM service accounts
        case ("GET", "iam", 5) where rest[1] == "projects" && rest[3] == "serviceAccounts":
            guard let project = projects[rest[2]], project.serviceAccounts.contains(rest[4]),
                !windows.younger(accountCreated[rest[4]], than: realism.accountPropagation, key: "accountCreated|" + rest[4])
            else {
                if accountCreated[rest[4]] != nil { refusals["account", default: 0] += 1 }
                return Self.error(404, "NOT_FOUND", "Unknown service account")
            }
            return Self.json(200, ["name": "projects/\(project.id)/serviceAccounts/\(rest[4])", "projectId": project.id, "email": rest[4]])
        case ("POST", "iam", 4) where rest[1] == "projects" && rest[3] == "serviceAccounts":
            guard var project = projects[rest[2]] else { return Self.error(403, "PERMISSION_DENIED", "The caller does not have permission") }
            if let denied = requireService(project, "iam.googleapis.com") { return denied }
            let email = "\(body["accountId"] as? String ?? "")@\(project.id).iam.gserviceaccount.com"
            if project.serviceAccounts.contains(email) {
                return Self.error(
                    409, "ALREADY_EXISTS", "Service account \(body["accountId"] ?? "") already exists within project projects/\(project.id).")
            }
            project.serviceAccounts.insert(email)
            projects[project.id] = project
            accountCreated[email] = .now
            return Self.json(
                200, ["name": "projects/\(project.id)/serviceAccounts/\(email)", "projectId": project.id, "email": email, "uniqueId": String(next())])
        case ("DELETE", "iam", 5) where rest[1] == "projects" && rest[3] == "serviceAccounts":
            guard var project = projects[rest[2]], project.serviceAccounts.contains(rest[4]) else {
                return Self.error(404, "NOT_FOUND", "Service account \(rest[4]) does not exist.")
            }
            project.serviceAccounts.remove(rest[4])
            projects[project.id] = project
            return Self.json(200, [:])
        // IAM Credentials
        case ("POST", "iamcredentials", 5) where rest[2] == "-" && rest[3] == "serviceAccounts":
            let email = String(rest[4].split(separator: ":").first ?? "")
            guard let project = projects.values.first(where: { $0.serviceAccounts.contains(email) }),
                !windows.younger(accountCreated[email], than: realism.accountPropagation, key: "accountCreated|" + email)
            else {
                return Self.error(404, "NOT_FOUND", "Requested entity was not found.")
            }
            guard project.bindings["roles/iam.serviceAccountTokenCreator"]?.contains(caller) == true,
                !windows.younger(grantMade["\(project.id)|\(caller)"], than: realism.grantPropagation, key: "grantMade|" + "\(project.id)|\(caller)")
            else {
                if project.bindings["roles/iam.serviceAccountTokenCreator"]?.contains(caller) == true { refusals["grant", default: 0] += 1 }
                return Self.error(
                    403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
                    reason: "IAM_PERMISSION_DENIED")
            }
            let expire = ISO8601DateFormatter().string(from: Date().addingTimeInterval(3600))
            return Self.json(200, ["accessToken": issue(for: "serviceAccount:\(email)"), "expireTime": expire])
        // Compute
        case ("GET", "compute", _) where rest.contains("operations"):
            let link = "https://compute.googleapis.com/compute/v1/" + rest.dropFirst(2).joined(separator: "/")
            guard let op = poll(link) else { return Self.computeError(404, reason: "notFound", "operation not found") }
            return Self.json(200, op)
        case ("POST", "compute", 6) where rest[4] == "global" && rest[5] == "networks":
            guard var project = projects[rest[3]] else { return Self.computeError(404, reason: "notFound", "project not found") }
            if let denied = requireService(project, "compute.googleapis.com") { return denied }
            let name = body["name"] as? String ?? ""
            if project.networks.contains(name) {
                return Self.computeError(409, reason: "alreadyExists", "The resource 'projects/\(project.id)/global/networks/\(name)' already exists")
            }
            project.networks.insert(name)
            projects[project.id] = project
            networkMade["\(project.id)|\(name)"] = .now
            return Self.json(200, computeOperation(project.id, region: nil))
        case ("POST", "compute", 7) where rest[4] == "regions" && rest[6] == "subnetworks":
            guard var project = projects[rest[3]] else { return Self.computeError(404, reason: "notFound", "project not found") }
            let name = body["name"] as? String ?? ""
            guard let network = (body["network"] as? String)?.split(separator: "/").last.map(String.init), project.networks.contains(network) else {
                return Self.computeError(400, reason: "invalid", "Invalid value for field 'resource.network'")
            }
            if project.subnetworks[name] != nil {
                return Self.computeError(
                    409, reason: "alreadyExists", "The resource 'projects/\(project.id)/regions/\(rest[5])/subnetworks/\(name)' already exists")
            }
            if windows.younger(
                networkMade["\(project.id)|\(network)"], than: realism.networkReadiness, key: "networkMade|" + "\(project.id)|\(network)")
            {
                refusals["network", default: 0] += 1
                // Compute accepts the insert and fails the operation.
                var op = computeOperation(project.id, region: rest[5])
                let link = op["selfLink"] as! String
                operations[link]?["error"] = [
                    "errors": [
                        ["code": "RESOURCE_NOT_READY", "message": "The resource 'projects/\(project.id)/global/networks/\(network)' is not ready"]
                    ]
                ]
                op["status"] = "RUNNING"
                return Self.json(200, op)
            }
            project.subnetworks[name] = body["ipCidrRange"] as? String ?? ""
            projects[project.id] = project
            return Self.json(200, computeOperation(project.id, region: rest[5]))
        // Compute: PSC addresses and forwarding rules
        case ("POST", "compute", 7) where rest[4] == "regions" && (rest[6] == "addresses" || rest[6] == "forwardingRules"):
            guard var project = projects[rest[3]] else { return Self.computeError(404, reason: "notFound", "project not found") }
            let name = body["name"] as? String ?? ""
            if rest[6] == "addresses" {
                if project.addresses[name] != nil {
                    return Self.computeError(
                        409, reason: "alreadyExists", "The resource 'projects/\(project.id)/regions/\(rest[5])/addresses/\(name)' already exists")
                }
                project.addresses[name] = "10.0.1.\(10 + project.addresses.count)"
            } else {
                if project.forwardingRules[name] != nil {
                    return Self.computeError(
                        409, reason: "alreadyExists",
                        "The resource 'projects/\(project.id)/regions/\(rest[5])/forwardingRules/\(name)' already exists")
                }
                guard let target = body["target"] as? String, target.contains("/serviceAttachments/") else {
                    return Self.computeError(400, reason: "invalid", "Invalid value for field 'resource.target': a service attachment is required")
                }
                project.forwardingRules[name] = target
            }
            projects[project.id] = project
            return Self.json(200, computeOperation(project.id, region: rest[5]))
        case (_, "compute", 8) where rest[4] == "regions" && (rest[6] == "addresses" || rest[6] == "forwardingRules"):
            guard var project = projects[rest[3]] else { return Self.computeError(404, reason: "notFound", "project not found") }
            let name = rest[7]
            let exists = rest[6] == "addresses" ? project.addresses[name] != nil : project.forwardingRules[name] != nil
            guard exists else { return Self.computeError(404, reason: "notFound", "The resource '\(name)' was not found") }
            if method == "GET" {
                return Self.json(200, ["name": name, "address": project.addresses[name] ?? "", "addressType": "INTERNAL", "status": "IN_USE"])
            }
            if rest[6] == "addresses" { project.addresses[name] = nil } else { project.forwardingRules[name] = nil }
            projects[project.id] = project
            return Self.json(200, computeOperation(project.id, region: rest[5]))
        // Cloud DNS records
        case ("POST", "dns", 7) where rest[2] == "projects" && rest[4] == "managedZones" && rest[6] == "rrsets":
            guard var project = projects[rest[3]], project.zones[rest[5]] != nil else { return Self.error(404, "NOT_FOUND", "zone not found") }
            let key = "\(body["name"] as? String ?? "") \(body["type"] as? String ?? "")"
            if project.records[key] != nil {
                return Self.computeError(409, reason: "alreadyExists", "The resource 'entity.change.additions[\(key)]' named '\(key)' already exists")
            }
            project.records[key] = body["rrdatas"] as? [String] ?? []
            projects[project.id] = project
            return Self.json(200, body)
        case ("DELETE", "dns", 9) where rest[2] == "projects" && rest[4] == "managedZones" && rest[6] == "rrsets":
            guard var project = projects[rest[3]], project.records.removeValue(forKey: "\(rest[7]) \(rest[8])") != nil else {
                return Self.error(404, "NOT_FOUND", "record not found")
            }
            projects[project.id] = project
            return Self.json(200, [:])
        // Pub/Sub
        case (_, "pubsub", 5) where rest[1] == "projects" && rest[3] == "subscriptions":
            guard var project = projects[rest[2]] else { return Self.error(404, "NOT_FOUND", "project not found") }
            if method == "DELETE" {
                guard project.subscriptions.removeValue(forKey: rest[4]) != nil else {
                    return Self.error(404, "NOT_FOUND", "Resource not found (resource=\(rest[4])).")
                }
                projects[project.id] = project
                return Self.json(200, [:])
            }
            if let denied = requireService(project, "pubsub.googleapis.com") { return denied }
            if project.subscriptions[rest[4]] != nil {
                return Self.error(409, "ALREADY_EXISTS", "Resource already exists in the project (resource=\(rest[4])).")
            }
            guard let topic = body["topic"] as? String, let topicProject = topic.split(separator: "/").dropFirst().first.map(String.init),
                projects[topicProject] != nil
            else {
                return Self.error(404, "NOT_FOUND", "Resource not found (resource=topic).")
            }
            project.subscriptions[rest[4]] = topic
            projects[project.id] = project
            return Self.json(200, ["name": "projects/\(project.id)/subscriptions/\(rest[4])", "topic": topic])
        case (_, "pubsub", 5) where rest[1] == "projects" && rest[3] == "topics" && rest[4].contains(":"):
            let pieces = rest[4].split(separator: ":").map(String.init)
            let topic = "projects/\(rest[2])/topics/\(pieces[0])"
            let current = topicBindings[topic] ?? [:]
            let etag = "T\(current.values.map(\.count).reduce(0, +))"
            // Pub/Sub reads a policy with GET and writes it with POST (its REST reference;
            // Resource Manager, unlike it, POSTs both). Another method matches no route.
            guard method == (pieces[1] == "getIamPolicy" ? "GET" : "POST") else {
                return Self.error(404, "NOT_FOUND", "The requested URL /v1/\(topic):\(pieces[1]) was not found on this server.")
            }
            if pieces[1] == "getIamPolicy" {
                return Self.json(200, ["etag": etag, "bindings": current.keys.sorted().map { ["role": $0, "members": current[$0]!.sorted()] }])
            }
            let policy = body["policy"] as? [String: Any] ?? [:]
            guard policy["etag"] as? String == etag else { return Self.error(409, "ABORTED", "Concurrent policy changes.") }
            if let unknown = unknownMember(in: policy) { return unknown }
            var bindings: [String: Set<String>] = [:]
            for binding in policy["bindings"] as? [[String: Any]] ?? [] {
                if let role = binding["role"] as? String { bindings[role, default: []].formUnion(binding["members"] as? [String] ?? []) }
            }
            topicBindings[topic] = bindings
            return Self.json(200, policy)
        // Cloud DNS
        case ("POST", "dns", 5) where rest[2] == "projects" && rest[4] == "managedZones":
            guard var project = projects[rest[3]] else { return Self.error(404, "NOT_FOUND", "project not found") }
            if let denied = requireService(project, "dns.googleapis.com") { return denied }
            let name = body["name"] as? String ?? ""
            if project.zones[name] != nil { return Self.computeError(409, reason: "alreadyExists", "The resource named '\(name)' already exists") }
            project.zones[name] = body["dnsName"] as? String ?? ""
            projects[project.id] = project
            return Self.json(
                200, ["kind": "dns#managedZone", "name": name, "dnsName": body["dnsName"] ?? "", "visibility": "private", "id": String(next())])
        // Cloud Asset
        case ("GET", "cloudasset", 3) where rest[1] == "projects" && rest[2].hasSuffix(":searchAllResources"):
            let project = String(rest[2].split(separator: ":").first ?? "")
            let queryText = query.first { $0.0 == "query" }?.1 ?? ""
            let results = assets.filter {
                $0.project == project && (!queryText.contains("labels.nclav-managed:true") || $0.labels["nclav-managed"] == "true")
            }
            return Self.json(
                200,
                [
                    "results": results.map {
                        ["name": $0.name, "assetType": "storage.googleapis.com/Bucket", "project": "projects/\($0.project)", "labels": $0.labels]
                    }
                ])
        default:
            return Self.error(404, "NOT_FOUND", "the fake does not know \(method) \(path)")
        }
    }
}
