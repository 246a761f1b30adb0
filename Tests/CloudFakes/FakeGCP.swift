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

    /// Known once `start` has bound the server.
    public nonisolated var port: Int { boundPort.withLock { $0 } }
    private nonisolated let boundPort = Mutex(0)
    public nonisolated var endpointTemplate: String { "http://127.0.0.1:\(port)/{service}" }
    public nonisolated var metadataHost: String { "127.0.0.1:\(port)" }
    public private(set) var projects: [String: Project] = [:]
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
    }

    static func json(_ status: Int, _ object: Any) -> Answer {
        Answer(status: status, body: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data())
    }

    static func error(_ status: Int, _ code: String, _ message: String, reason: String? = nil) -> Answer {
        var error: [String: Any] = ["code": status, "message": message, "status": code]
        if let reason {
            error["details"] = [["@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"]]
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
        if path == "/oauth2/v3/tokeninfo" {
            guard let token = query.first(where: { $0.0 == "access_token" })?.1, let member = tokens[token] else {
                return Self.json(400, ["error": "invalid_token"])
            }
            return Self.json(200, ["email": member.split(separator: ":", maxSplits: 1).last.map(String.init) ?? "", "expires_in": "3000"])
        }
        guard let bearer = headers[.authorization], bearer.hasPrefix("Bearer "), let caller = tokens[String(bearer.dropFirst(7))] else {
            return Self.error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token.")
        }
        return route(method: method, path: path, query: query, body: object, caller: caller)
    }

    func tokenEndpoint(_ body: Data) -> Answer {
        var form: [String: String] = [:]
        for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
            if parts.count == 2 { form[parts[0]] = parts[1] }
        }
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
        return ["kind": "compute#operation", "name": name, "status": "RUNNING", "selfLink": link, "progress": 0]
    }

    func requireService(_ project: Project, _ service: String) -> Answer? {
        project.services.contains(service)
            ? nil
            : Self.error(
                403, "PERMISSION_DENIED",
                "\(service.replacingOccurrences(of: ".googleapis.com", with: "")) API has not been used in project \(project.number) before or it is disabled.",
                reason: "SERVICE_DISABLED")
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
            guard let op = operations["operations/\(rest[2])"] else { return Self.error(404, "NOT_FOUND", "operation not found") }
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
            var bindings: [String: Set<String>] = [:]
            for binding in policy["bindings"] as? [[String: Any]] ?? [] {
                if let role = binding["role"] as? String { bindings[role, default: []].formUnion(binding["members"] as? [String] ?? []) }
            }
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
            let failure = takeOperationFailure("enable \(project.id)")
            if failure == nil {
                project.services.formUnion(body["serviceIds"] as? [String] ?? [])
                projects[project.id] = project
            }
            return Self.json(
                200,
                operation("acf", response: ["@type": "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse"], failWith: failure)
            )
        // IAM service accounts
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
            guard let project = projects.values.first(where: { $0.serviceAccounts.contains(email) }) else {
                return Self.error(404, "NOT_FOUND", "Service account \(email) not found")
            }
            guard project.bindings["roles/iam.serviceAccountTokenCreator"]?.contains(caller) == true else {
                return Self.error(
                    403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
                    reason: "IAM_PERMISSION_DENIED")
            }
            let expire = ISO8601DateFormatter().string(from: Date().addingTimeInterval(3600))
            return Self.json(200, ["accessToken": issue(for: "serviceAccount:\(email)"), "expireTime": expire])
        // Compute
        case ("GET", "compute", _) where rest.contains("operations"):
            let link = "https://compute.googleapis.com/compute/v1/" + rest.dropFirst(2).joined(separator: "/")
            guard let op = operations[link] else { return Self.computeError(404, reason: "notFound", "operation not found") }
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
        case ("POST", "pubsub", 5) where rest[1] == "projects" && rest[3] == "topics" && rest[4].contains(":"):
            let pieces = rest[4].split(separator: ":").map(String.init)
            let topic = "projects/\(rest[2])/topics/\(pieces[0])"
            let current = topicBindings[topic] ?? [:]
            let etag = "T\(current.values.map(\.count).reduce(0, +))"
            if pieces[1] == "getIamPolicy" {
                return Self.json(200, ["etag": etag, "bindings": current.keys.sorted().map { ["role": $0, "members": current[$0]!.sorted()] }])
            }
            let policy = body["policy"] as? [String: Any] ?? [:]
            guard policy["etag"] as? String == etag else { return Self.error(409, "ABORTED", "Concurrent policy changes.") }
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
