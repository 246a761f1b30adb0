import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization
import _CryptoExtras

/// An in-test stand-in for Entra ID and Azure Resource Manager, answering in their wire
/// format: the client-credentials token endpoint (`/login/{tenant}/oauth2/v2.0/token`, AADSTS
/// errors), IMDS and the App Service identity endpoint, subscription aliases (201 Accepted,
/// then Succeeded on the next GET), management-group placement, provider registration,
/// resource groups, user-assigned identities, VNets and private DNS zones (201 with an
/// `Azure-AsyncOperation` URL that reports InProgress, then Succeeded), role assignments
/// (PrincipalNotFound right after an identity is made, RoleAssignmentExists; any scope),
/// private endpoints (a network interface with an address in the subnet; a Pending manual
/// connection on the Private Link service, listed after a moment, approved by PUT), DNS
/// record sets, subscription cancel and Resource Graph queries. Errors: `{"error": {"code", "message"}}`.
public actor FakeAzure {
    public struct Resource: Sendable {
        public var id: String
        public var type: String
        public var tags: [String: String]
        public var properties: [String: String]
        /// The `properties` object as last PUT (JSON), under the flat `properties` above.
        public var document: String = "{}"
    }

    /// A private endpoint's connection as its Private Link service sees it.
    public struct Connection: Sendable {
        public var name: String
        public var endpoint: String
        public var status: String
        public var made: ContinuousClock.Instant
    }

    public struct Failure: Sendable {
        public var match: String
        public var status: Int
        public var code: String
        public var message: String
        public var times: Int
        public init(match: String, status: Int = 403, code: String = "AuthorizationFailed", message: String, times: Int = 1) {
            self.match = match
            self.status = status
            self.code = code
            self.message = message
            self.times = times
        }
    }

    /// How far the fake behaves like Azure's eventual consistency (as azurerm meets and waits
    /// for it; see docs/cloud-api-calls.md).
    public struct Realism: Sendable {
        /// A subscription whose alias has just succeeded answers 404 SubscriptionNotFound this long.
        public var subscriptionPropagation: Duration
        /// A namespace whose registration was requested reads `Registering` for this many GETs
        /// (each counted as a "registration" refusal);
        /// until `Registered`, PUTs of its types answer 409 MissingSubscriptionRegistration.
        public var registrationPolls: Int
        /// A new identity is unknown to role assignments (PrincipalNotFound) this long.
        public var principalPropagation: Duration
        /// A resource group this young is not found by PUTs of resources inside it.
        public var resourceGroupPropagation: Duration
        /// Every n-th ARM request answers 429 TooManyRequests with `Retry-After`.
        public var rateLimitEvery: Int?
        /// After a cancel the subscription reads Enabled this many more GETs.
        public var cancelPolls: Int
        /// A cancel is refused while the subscription holds resources
        /// (400 ResourcesExistingOnSubscription), as Azure does.
        public var cancelNeedsEmptySubscription: Bool
        /// A new private endpoint's connection is missing from its service's list this long.
        public var connectionPropagation: Duration

        public init(
            subscriptionPropagation: Duration = .zero, registrationPolls: Int = 0, principalPropagation: Duration = .zero,
            resourceGroupPropagation: Duration = .zero, rateLimitEvery: Int? = nil, cancelPolls: Int = 0, cancelNeedsEmptySubscription: Bool = false,
            connectionPropagation: Duration = .zero
        ) {
            self.connectionPropagation = connectionPropagation
            self.subscriptionPropagation = subscriptionPropagation
            self.registrationPolls = registrationPolls
            self.principalPropagation = principalPropagation
            self.resourceGroupPropagation = resourceGroupPropagation
            self.rateLimitEvery = rateLimitEvery
            self.cancelPolls = cancelPolls
            self.cancelNeedsEmptySubscription = cancelNeedsEmptySubscription
        }

        public static let instant = Realism()
        public static let realistic = Realism(
            subscriptionPropagation: .milliseconds(150), registrationPolls: 2, principalPropagation: .milliseconds(150),
            resourceGroupPropagation: .milliseconds(60), rateLimitEvery: 13, cancelPolls: 2, cancelNeedsEmptySubscription: true,
            connectionPropagation: .milliseconds(60))
    }

    public private(set) var realism = Realism.instant
    public func setRealism(_ realism: Realism) { self.realism = realism }
    private var subscriptionReady: [String: ContinuousClock.Instant] = [:]
    private var registrationLeft: [String: Int] = [:]  // "subscription/namespace" -> GETs before Registered
    private var principalMade: [String: ContinuousClock.Instant] = [:]
    private var groupMade: [String: ContinuousClock.Instant] = [:]
    private var cancelLeft: [String: Int] = [:]
    private var armRequests = 0
    /// How many 429s the rate limit has answered.
    public private(set) var throttled = 0
    /// How many requests each realism window refused ("subscription", "registration",
    /// "principal", "group", "cancel"), so a test can show it met every one.
    public private(set) var refusals: [String: Int] = [:]

    /// Whether something made at `made` is still inside `window`. The first look at each
    /// thing (`key`) always is, however slowly the test machine got there, so every window is
    private var windows = PropagationWindows()

    /// Known once `start` has bound the server.
    public nonisolated var port: Int { boundPort.withLock { $0 } }
    private nonisolated let boundPort = Mutex(0)
    public nonisolated var armEndpoint: String { "http://127.0.0.1:\(port)/arm" }
    public nonisolated var authorityHost: String { "http://127.0.0.1:\(port)/login" }
    public nonisolated var imdsHost: String { "http://127.0.0.1:\(port)" }
    public nonisolated let tenantID = "11111111-2222-3333-4444-555555555555"
    public nonisolated let clientID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    public nonisolated let clientSecret = "sp-secret-\(UUID().uuidString.prefix(8))"

    public private(set) var aliases: [String: String] = [:]  // alias -> subscription id
    public private(set) var subscriptions: [String: (state: String, managementGroup: String?, billingScope: String)] = [:]
    public private(set) var resources: [String: Resource] = [:]  // lowercased id -> resource
    public private(set) var roleAssignments: [String: (principal: String, role: String)] = [:]
    /// Each role assignment's scope, by assignment name.
    public private(set) var assignmentScopes: [String: String] = [:]
    /// Private endpoint connections by the lowercased id of their Private Link service.
    public private(set) var connections: [String: [Connection]] = [:]
    public private(set) var registered: Set<String> = []
    public private(set) var requests: [String] = []
    public var failAliasProvisioning = false
    /// The next Network async operation ends `Failed` with this error code, once.
    public var failNextAsyncOperation: String?
    /// The first role assignment for a fresh principal gets PrincipalNotFound, as Entra
    /// replication delays cause in real Azure.
    public var principalReplicationDelay = true
    private var seenPrincipals: Set<String> = []
    private var failures: [Failure] = []
    private var operations: [String: Int] = [:]  // operation id -> polls left before Succeeded
    private var failedOperations: [String: String] = [:]
    private var pendingAliases: Set<String> = []
    private var tokens: Set<String> = []
    /// Tokens issued for a managed identity through federation: token -> identity client id.
    public private(set) var federatedTokens: [String: String] = [:]
    /// JWKS "published" at an issuer URL (what Entra would fetch from the issuer).
    private var publishedJWKS: [String: Data] = [:]
    private var counter = 0
    private var task: Task<Void, any Error>?

    public init() throws {}

    public func inject(_ failure: Failure) { failures.append(failure) }
    public func publish(issuer: String, jwks: Data) { publishedJWKS[issuer] = jwks }
    public func setAliasFailure(_ fail: Bool) { failAliasProvisioning = fail }
    public func failNextOperation(_ code: String) { failNextAsyncOperation = code }
    public func setPrincipalDelay(_ on: Bool) { principalReplicationDelay = on }
    public func clearAssignments() { roleAssignments = [:] }
    /// A role assignment made outside nclav (another name, same principal and role).
    public func addForeignRoleAssignment(principal: String, role: String) { roleAssignments[UUID().uuidString.lowercased()] = (principal, role) }
    public func principal(ofIdentity id: String) -> String? { resources[id.lowercased()]?.properties["principalId"] }
    public func addResource(id: String, type: String, tags: [String: String]) {
        resources[id.lowercased()] = Resource(id: id, type: type, tags: tags, properties: [:])
    }
    public func resource(_ id: String) -> Resource? { resources[id.lowercased()] }

    public func start() async throws {
        let fake = self
        let started = try await LoopbackServer.start(label: "fake-azure") { method, path, query, headers, body in
            let answer = await fake.handle(method: method, path: path, query: query, headers: headers, body: body)
            return LoopbackServer.Reply(
                status: answer.status, body: answer.body, headers: [("Content-Type", "application/json; charset=utf-8")] + answer.headers)
        }
        task = started.task
        boundPort.withLock { $0 = started.port }
    }

    public func stop() { task?.cancel() }

    struct Answer {
        var status: Int
        var body: Data
        var headers: [(String, String)] = []
    }

    static func json(_ status: Int, _ object: Any, headers: [(String, String)] = []) -> Answer {
        Answer(status: status, body: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data(), headers: headers)
    }

    static func error(_ status: Int, _ code: String, _ message: String, target: String? = nil) -> Answer {
        var error: [String: Any] = ["code": code, "message": message]
        if let target { error["details"] = [["code": code, "target": target, "message": message]] }
        return json(status, ["error": error])
    }

    func next() -> Int {
        counter += 1
        return counter
    }

    func guid() -> String {
        let n = next()
        return String(format: "%08x-0000-4000-8000-%012x", n, n * 7919)
    }

    func issue() -> String {
        let token = "eyJ0eXAiOiJKV1QifQ.fake-\(next()).\(UUID().uuidString.prefix(6))"
        tokens.insert(token)
        return token
    }

    func handle(method: String, path: String, query: [(String, String)], headers: HTTPFields, body: Data) -> Answer {
        requests.append("\(method) \(path)")
        if let index = failures.firstIndex(where: { "\(method) \(path)".contains($0.match) }) {
            let failure = failures[index]
            failures[index].times -= 1
            if failures[index].times <= 0 { failures.remove(at: index) }
            return Self.error(failure.status, failure.code, failure.message)
        }
        let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
        if path == "/login/\(tenantID)/oauth2/v2.0/token" {
            var form: [String: String] = [:]
            for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
                if parts.count == 2 { form[parts[0]] = parts[1] }
            }
            if form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" { return federated(form) }
            guard form["grant_type"] == "client_credentials", form["scope"] == "https://management.azure.com/.default" else {
                return Self.json(
                    400,
                    [
                        "error": "invalid_request",
                        "error_description": "AADSTS900144: The request body must contain the following parameter: 'grant_type'.",
                    ])
            }
            guard form["client_id"] == clientID else {
                return Self.json(
                    400,
                    [
                        "error": "unauthorized_client",
                        "error_description": "AADSTS700016: Application with identifier '\(form["client_id"] ?? "")' was not found in the directory.",
                    ])
            }
            guard form["client_secret"] == clientSecret else {
                return Self.json(
                    401,
                    [
                        "error": "invalid_client",
                        "error_description":
                            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.",
                    ])
            }
            return Self.json(200, ["token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": issue()])
        }
        if path.hasPrefix("/login/") { return Self.json(400, ["error": "invalid_request", "error_description": "AADSTS90002: Tenant not found."]) }
        if path == "/metadata/identity/oauth2/token" {
            guard headers[HTTPField.Name("Metadata")!] == "true" else {
                return Self.json(400, ["error": "invalid_request", "error_description": "Required metadata header not specified"])
            }
            let expires = String(Int(Date().timeIntervalSince1970) + 3600)
            return Self.json(
                200, ["access_token": issue(), "expires_on": expires, "resource": "https://management.azure.com/", "token_type": "Bearer"])
        }
        if path == "/msi/token" {
            guard headers[HTTPField.Name("X-IDENTITY-HEADER")!] == "identity-header-secret" else { return Self.json(401, ["error": "unauthorized"]) }
            return Self.json(
                200,
                [
                    "access_token": issue(), "expires_on": Int(Date().timeIntervalSince1970) + 3600, "resource": "https://management.azure.com/",
                    "token_type": "Bearer",
                ])
        }
        guard path.hasPrefix("/arm/") else { return Self.error(404, "NotFound", "no such endpoint") }
        guard query.contains(where: { $0.0 == "api-version" }) else {
            return Self.error(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
        }
        guard let bearer = headers[.authorization], bearer.hasPrefix("Bearer "), tokens.contains(String(bearer.dropFirst(7))) else {
            return Self.error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        }
        armRequests += 1
        if let every = realism.rateLimitEvery, armRequests % every == 0 {
            requests.removeLast()
            throttled += 1
            return Self.json(
                429,
                [
                    "error": [
                        "code": "TooManyRequests",
                        "message":
                            "The request is being throttled as the limit has been reached for operation type - Write_ObservationWindow_00:05:00. For more information, see - https://aka.ms/srpthrottlinglimits",
                    ]
                ], headers: [("Retry-After", "0")])
        }
        return arm(method: method, path: String(path.dropFirst(4)), body: object)
    }

    /// The client-credentials grant with a federated assertion, as azurerm sends it for
    /// `ARM_USE_OIDC`: the identity's federated credential must match the token's issuer,
    /// subject and audience, and the signature must verify against the issuer's published JWKS.
    func federated(_ form: [String: String]) -> Answer {
        func refuse(_ code: String, _ text: String) -> Answer {
            Self.json(400, ["error": "invalid_client", "error_description": "\(code): \(text)"])
        }
        guard let clientID = form["client_id"], let identity = resources.values.first(where: { $0.properties["clientId"] == clientID }) else {
            return Self.json(
                400,
                [
                    "error": "unauthorized_client",
                    "error_description": "AADSTS700016: Application with identifier '\(form["client_id"] ?? "")' was not found in the directory.",
                ])
        }
        let pieces = (form["client_assertion"] ?? "").split(separator: ".").map(String.init)
        func decode(_ text: String) -> Data? {
            var base = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while base.count % 4 != 0 { base += "=" }
            return Data(base64Encoded: base)
        }
        guard pieces.count == 3, let claimsData = decode(pieces[1]),
            let claims = (try? JSONSerialization.jsonObject(with: claimsData)) as? [String: Any],
            let signature = decode(pieces[2])
        else { return refuse("AADSTS50027", "JWT token is invalid or malformed.") }
        let prefix = identity.id.lowercased() + "/federatedidentitycredentials/"
        let credentials = resources.filter { $0.key.hasPrefix(prefix) }.map(\.value)
        guard let credential = credentials.first(where: { $0.properties["issuer"] == claims["iss"] as? String }) else {
            return refuse("AADSTS700211", "No matching federated identity record found for presented assertion issuer '\(claims["iss"] ?? "")'.")
        }
        guard credential.properties["subject"] == claims["sub"] as? String, credential.properties["audience"] == claims["aud"] as? String else {
            return refuse(
                "AADSTS70021",
                "No matching federated identity record found for presented assertion. Assertion Issuer: '\(claims["iss"] ?? "")'. Assertion Subject: '\(claims["sub"] ?? "")'."
            )
        }
        guard let exp = claims["exp"] as? Int, exp > Int(Date().timeIntervalSince1970) else {
            return refuse("AADSTS700024", "Client assertion is not within its valid time range.")
        }
        guard let jwks = publishedJWKS[credential.properties["issuer"] ?? ""],
            let keys = ((try? JSONSerialization.jsonObject(with: jwks)) as? [String: Any])?["keys"] as? [[String: String]],
            let jwk = keys.first, let n = jwk["n"].flatMap(decode), let e = jwk["e"].flatMap(decode),
            let key = try? _RSA.Signing.PublicKey(n: n, e: e),
            key.isValidSignature(
                _RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA256.hash(data: Data("\(pieces[0]).\(pieces[1])".utf8)),
                padding: .insecurePKCS1v1_5)
        else { return refuse("AADSTS50013", "Assertion failed signature validation.") }
        let token = issue()
        federatedTokens[token] = clientID
        return Self.json(200, ["token_type": "Bearer", "expires_in": 3599, "access_token": token])
    }

    func asyncOperation(_ subscription: String) -> [(String, String)] {
        let id = "op-\(next())"
        operations[id] = 1
        if let code = failNextAsyncOperation {
            failNextAsyncOperation = nil
            failedOperations[id] = code
        }
        return [
            (
                "Azure-AsyncOperation",
                "\(armEndpoint)/subscriptions/\(subscription)/providers/Microsoft.Network/locations/eastus2/operations/\(id)?api-version=2023-09-01"
            )
        ]
    }

    func arm(method: String, path: String, body: [String: Any]) -> Answer {
        let parts = path.split(separator: "/").map(String.init)
        let lower = path.lowercased()
        // Subscription aliases
        if lower.hasPrefix("/providers/microsoft.subscription/aliases/"), parts.count == 4 {
            let alias = parts[3]
            switch method {
            case "PUT":
                if let subscription = aliases[alias] {
                    return Self.json(
                        200, ["id": path, "name": alias, "properties": ["provisioningState": "Succeeded", "subscriptionId": subscription]])
                }
                let properties = body["properties"] as? [String: Any] ?? [:]
                guard let scope = properties["billingScope"] as? String, scope.hasPrefix("/providers/Microsoft.Billing/billingAccounts/") else {
                    return Self.error(400, "InvalidBillingScope", "The billing scope is invalid.")
                }
                let subscription = guid()
                let group = ((properties["additionalProperties"] as? [String: Any])?["managementGroupId"] as? String)?.split(separator: "/").last.map(
                    String.init)
                aliases[alias] = subscription
                subscriptions[subscription] = ("Enabled", group, scope)
                pendingAliases.insert(alias)
                return Self.json(201, ["id": path, "name": alias, "properties": ["provisioningState": "Accepted"]])
            case "GET":
                guard let subscription = aliases[alias] else { return Self.error(404, "NotFound", "alias \(alias) not found") }
                if pendingAliases.remove(alias) != nil {
                    return Self.json(200, ["id": path, "name": alias, "properties": ["provisioningState": "Running"]])
                }
                if failAliasProvisioning { return Self.json(200, ["id": path, "name": alias, "properties": ["provisioningState": "Failed"]]) }
                if subscriptionReady[subscription] == nil { subscriptionReady[subscription] = .now }
                return Self.json(200, ["id": path, "name": alias, "properties": ["provisioningState": "Succeeded", "subscriptionId": subscription]])
            case "DELETE":
                guard aliases.removeValue(forKey: alias) != nil else { return Self.error(404, "NotFound", "alias \(alias) not found") }
                return Self.json(200, [:])
            default: break
            }
        }
        if lower.hasPrefix("/providers/microsoft.management/managementgroups/"), parts.count == 6, method == "PUT" {
            guard var subscription = subscriptions[parts[5]] else {
                return Self.error(404, "SubscriptionNotFound", "The subscription '\(parts[5])' could not be found.")
            }
            subscription.managementGroup = parts[3]
            subscriptions[parts[5]] = subscription
            return Self.json(200, ["id": path, "name": parts[5]])
        }
        if lower == "/providers/microsoft.resourcegraph/resources", method == "POST" {
            let wanted = Set(body["subscriptions"] as? [String] ?? [])
            let queryText = body["query"] as? String ?? ""
            let enclave = queryText.range(of: #"tags\['nclav-enclave'\] == '([^']*)'"#, options: .regularExpression).map {
                String(queryText[$0]).split(separator: "'")[3]
            }
            let rows = resources.values.filter { resource in
                let subscription = resource.id.split(separator: "/").dropFirst().first.map(String.init) ?? ""
                return wanted.contains(subscription) && resource.tags["nclav-managed"] == "true"
                    && (enclave == nil || resource.tags["nclav-enclave"] == String(enclave!))
            }.sorted { $0.id < $1.id }
            return Self.json(
                200,
                [
                    "totalRecords": rows.count, "count": rows.count, "resultTruncated": "false",
                    "data": rows.map {
                        ["id": $0.id, "name": $0.id.split(separator: "/").last.map(String.init) ?? "", "type": $0.type, "tags": $0.tags]
                    },
                ])
        }
        guard parts.count >= 2, parts[0] == "subscriptions", let subscription = subscriptions[parts[1]] else {
            return Self.error(404, "SubscriptionNotFound", "The subscription '\(parts.count > 1 ? parts[1] : "")' could not be found.")
        }
        let subscriptionID = parts[1]
        if windows.younger(subscriptionReady[subscriptionID], than: realism.subscriptionPropagation, key: "subscriptionReady|" + subscriptionID) {
            refusals["subscription", default: 0] += 1
            return Self.error(404, "SubscriptionNotFound", "The subscription '\(subscriptionID)' could not be found.")
        }
        if parts.count == 2, method == "GET" {
            if subscription.state == "Enabled", let left = cancelLeft[subscriptionID] {
                if left > 0 {
                    cancelLeft[subscriptionID] = left - 1
                    refusals["cancel", default: 0] += 1
                } else {
                    cancelLeft[subscriptionID] = nil
                    subscriptions[subscriptionID]?.state = "Disabled"
                }
            }
            let subscription = subscriptions[subscriptionID] ?? subscription
            return Self.json(
                200,
                [
                    "id": "/subscriptions/\(subscriptionID)", "subscriptionId": subscriptionID, "state": subscription.state,
                    "displayName": subscriptionID,
                ])
        }
        if lower.hasSuffix("/providers/microsoft.subscription/cancel"), method == "POST" {
            let prefix = "/subscriptions/\(subscriptionID)/".lowercased()
            if realism.cancelNeedsEmptySubscription, resources.keys.contains(where: { $0.hasPrefix(prefix) }) {
                return Self.error(
                    400, "ResourcesExistingOnSubscription",
                    "There are existing resources associated with subscription. Delete them before cancelling the subscription.")
            }
            if realism.cancelPolls > 0 { cancelLeft[subscriptionID] = realism.cancelPolls } else { subscriptions[subscriptionID]?.state = "Disabled" }
            return Self.json(200, ["subscriptionId": subscriptionID])
        }
        if parts.count == 5, parts[2] == "providers", parts[4] == "register", method == "POST" {
            let key = "\(subscriptionID)/\(parts[3])".lowercased()
            if !registered.contains(key), registrationLeft[key] == nil {
                if realism.registrationPolls > 0 { registrationLeft[key] = realism.registrationPolls } else { registered.insert(key) }
            }
            return Self.json(200, ["namespace": parts[3], "registrationState": registered.contains(key) ? "Registered" : "Registering"])
        }
        if parts.count == 4, parts[2] == "providers", method == "GET" {
            let key = "\(subscriptionID)/\(parts[3])".lowercased()
            if let left = registrationLeft[key] {
                if left > 0 {
                    registrationLeft[key] = left - 1
                    refusals["registration", default: 0] += 1
                } else {
                    registrationLeft[key] = nil
                    registered.insert(key)
                }
            }
            let state = registered.contains(key) ? "Registered" : registrationLeft[key] != nil ? "Registering" : "NotRegistered"
            return Self.json(200, ["id": path, "namespace": parts[3], "registrationState": state])
        }
        if parts.count == 3, parts[2].lowercased() == "resourcegroups", method == "GET" {
            let groups = resources.values.filter {
                $0.type == "Microsoft.Resources/resourceGroups" && $0.id.lowercased().hasPrefix(path.lowercased() + "/")
            }
            return Self.json(
                200,
                [
                    "value": groups.sorted { $0.id < $1.id }.map {
                        ["id": $0.id, "name": $0.id.split(separator: "/").last.map(String.init) ?? "", "location": "eastus2", "tags": $0.tags]
                    }
                ])
        }
        if parts.count == 4, parts[2] == "operationresults", method == "GET" {
            guard let left = operations[parts[3]] else { return Self.error(404, "NotFound", "operation not found") }
            if left > 0 {
                operations[parts[3]] = left - 1
                return Answer(status: 202, body: Data(), headers: [("Location", "\(armEndpoint)\(path)?api-version=2021-04-01")])
            }
            return Answer(status: 200, body: Data())
        }
        if parts.count == 8, parts[2] == "providers", parts[4] == "locations", parts[6] == "operations" {
            guard let left = operations[parts[7]] else { return Self.error(404, "NotFound", "operation not found") }
            if left > 0 {
                operations[parts[7]] = left - 1
                return Self.json(200, ["status": "InProgress"])
            }
            if let code = failedOperations[parts[7]] {
                return Self.json(
                    200,
                    ["status": "Failed", "error": ["code": code, "message": "Address space 10.0.0.0/16 overlaps with a peered virtual network."]])
            }
            return Self.json(200, ["status": "Succeeded"])
        }
        guard subscription.state == "Enabled" || method == "GET" else {
            return Self.error(
                409, "ReadOnlyDisabledSubscription", "The subscription '\(subscriptionID)' is disabled and therefore marked as read only.")
        }
        // Role assignments
        if lower.contains("/providers/microsoft.authorization/roleassignments/") {
            let name = parts.last ?? ""
            switch method {
            case "PUT":
                let properties = body["properties"] as? [String: Any] ?? [:]
                let principal = properties["principalId"] as? String ?? ""
                let role = properties["roleDefinitionId"] as? String ?? ""
                guard resources.values.contains(where: { $0.properties["principalId"] == principal }) else {
                    return Self.error(400, "PrincipalNotFound", "Principal \(principal) does not exist in the directory \(tenantID).")
                }
                let propagating = windows.younger(principalMade[principal], than: realism.principalPropagation, key: "principalMade|" + principal)
                if propagating { refusals["principal", default: 0] += 1 }
                if propagating || (principalReplicationDelay && !seenPrincipals.contains(principal)) {
                    seenPrincipals.insert(principal)
                    return Self.error(
                        400, "PrincipalNotFound",
                        "Principal \(principal) does not exist in the directory \(tenantID). Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay."
                    )
                }
                if let existing = roleAssignments.first(where: { $0.value.principal == principal && $0.value.role == role }), existing.key != name {
                    return Self.error(409, "RoleAssignmentExists", "The role assignment already exists.")
                }
                roleAssignments[name] = (principal, role)
                assignmentScopes[name] = String(
                    path[..<(path.range(of: "/providers/Microsoft.Authorization/", options: .caseInsensitive)!.lowerBound)])
                return Self.json(201, ["id": path, "name": name, "properties": properties])
            case "DELETE":
                guard roleAssignments.removeValue(forKey: name) != nil else { return Answer(status: 204, body: Data()) }
                assignmentScopes[name] = nil
                return Self.json(200, ["id": path, "name": name])
            case "GET":
                guard let assignment = roleAssignments[name] else {
                    return Self.error(404, "RoleAssignmentNotFound", "The role assignment '\(name)' is not found.")
                }
                return Self.json(
                    200, ["id": path, "name": name, "properties": ["principalId": assignment.principal, "roleDefinitionId": assignment.role]])
            default: return Self.error(405, "MethodNotAllowed", method)
            }
        }
        if let index = parts.firstIndex(where: { $0.lowercased() == "privateendpointconnections" }), index == 8 {
            return privateEndpointConnection(method: method, service: "/" + parts[0..<8].joined(separator: "/"), parts: parts, body: body)
        }
        // Generic resources (resource groups, identities, VNets, zones, links)
        let key = path.lowercased()
        switch method {
        case "PUT":
            let type = Self.type(of: parts)
            if let namespace = type.split(separator: "/").first, namespace.lowercased() != "microsoft.resources", realism.registrationPolls > 0,
                !registered.contains("\(subscriptionID)/\(namespace)".lowercased())
            {
                refusals["registration", default: 0] += 1
                return Self.error(
                    409, "MissingSubscriptionRegistration",
                    "The subscription is not registered to use namespace '\(namespace)'. See https://aka.ms/rps-not-found for how to register subscriptions.",
                    target: String(namespace))
            }
            if parts.count > 4, parts[2].lowercased() == "resourcegroups",
                windows.younger(
                    groupMade["/subscriptions/\(subscriptionID)/resourcegroups/\(parts[3])".lowercased()], than: realism.resourceGroupPropagation,
                    key: "groupMade|" + "/subscriptions/\(subscriptionID)/resourcegroups/\(parts[3])".lowercased())
            {
                refusals["group", default: 0] += 1
                return Self.error(404, "ResourceGroupNotFound", "Resource group '\(parts[3])' could not be found.")
            }
            let existed = resources[key] != nil
            var resource = resources[key] ?? Resource(id: path, type: type, tags: [:], properties: [:])
            resource.tags = body["tags"] as? [String: String] ?? resource.tags
            if resource.type == "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials" {
                let properties = body["properties"] as? [String: Any] ?? [:]
                let parent = parts.prefix(8).joined(separator: "/").lowercased()
                guard resources["/" + parent] != nil else { return Self.error(404, "ResourceNotFound", "The identity was not found.") }
                resource.properties = [
                    "issuer": properties["issuer"] as? String ?? "", "subject": properties["subject"] as? String ?? "",
                    "audience": (properties["audiences"] as? [String])?.first ?? "",
                ]
            }
            if resource.type == "Microsoft.ManagedIdentity/userAssignedIdentities", resource.properties["principalId"] == nil {
                resource.properties = ["principalId": guid(), "clientId": guid(), "tenantId": tenantID]
                principalMade[resource.properties["principalId"]!] = .now
            }
            if resource.type == "Microsoft.Resources/resourceGroups", !existed { groupMade[key] = .now }
            if resource.type.hasPrefix("Microsoft.Network/virtualNetworks") || resource.type.hasPrefix("Microsoft.Network/privateDnsZones") {
                // Parent must exist (a link needs its zone; everything needs its resource group).
                let groupKey = "/subscriptions/\(subscriptionID)/resourcegroups/\(parts[3].lowercased())"
                guard resources[groupKey] != nil else {
                    return Self.error(404, "ResourceGroupNotFound", "Resource group '\(parts[3])' could not be found.")
                }
            }
            if var properties = body["properties"] as? [String: Any] {
                // Read-only properties (an endpoint's network interfaces) survive a PUT.
                let before = (try? JSONSerialization.jsonObject(with: Data(resource.document.utf8))) as? [String: Any] ?? [:]
                if let interfaces = before["networkInterfaces"] { properties["networkInterfaces"] = interfaces }
                resource.document = Self.text(properties)
            }
            if resource.type == "Microsoft.Network/privateEndpoints", !existed {
                if let refusal = connect(&resource, body: body) { return refusal }
            }
            resources[key] = resource
            let headers = resource.type.hasPrefix("Microsoft.Network") ? asyncOperation(subscriptionID) : []
            return Self.json(
                existed ? 200 : 201, representation(resource, provisioning: headers.isEmpty ? "Succeeded" : "Updating"), headers: headers)
        case "GET":
            guard let resource = resources[key] else { return Self.error(404, "ResourceNotFound", "The Resource '\(path)' was not found.") }
            return Self.json(200, representation(resource, provisioning: "Succeeded"))
        case "DELETE":
            guard let removed = resources.removeValue(forKey: key) else { return Answer(status: 204, body: Data()) }
            if removed.type == "Microsoft.Network/privateEndpoints" {
                for service in connections.keys { connections[service]?.removeAll { $0.endpoint.lowercased() == key } }
                if let nic = removed.properties["nic"] { resources[nic.lowercased()] = nil }
            }
            if removed.type == "Microsoft.Resources/resourceGroups" {
                // Everything inside goes with it, asynchronously: 202 and a Location to poll.
                for inside in resources.keys where inside.hasPrefix(key + "/") { resources[inside] = nil }
                let id = "op-\(next())"
                operations[id] = 1
                return Answer(
                    status: 202, body: Data(),
                    headers: [("Location", "\(armEndpoint)/subscriptions/\(subscriptionID)/operationresults/\(id)?api-version=2021-04-01")])
            }
            return Self.json(200, [:])
        default:
            return Self.error(405, "MethodNotAllowed", method)
        }
    }

    /// A new private endpoint: its subnet's VNet and the Private Link service must exist; it
    /// gets a network interface with an address in the subnet, and the service a Pending
    /// connection (a manual request) that shows in its list after `connectionPropagation`.
    func connect(_ endpoint: inout Resource, body: [String: Any]) -> Answer? {
        let properties = body["properties"] as? [String: Any] ?? [:]
        let subnet = (properties["subnet"] as? [String: Any])?["id"] as? String ?? ""
        let vnet = subnet.components(separatedBy: "/subnets/").first ?? ""
        guard subnet.contains("/subnets/"), resources[vnet.lowercased()] != nil else {
            return Self.error(400, "InvalidResourceReference", "Resource \(subnet) referenced by resource \(endpoint.id) was not found.")
        }
        let requests =
            (properties["manualPrivateLinkServiceConnections"] as? [[String: Any]] ?? [])
            + (properties["privateLinkServiceConnections"] as? [[String: Any]] ?? [])
        guard let request = requests.first, let service = (request["properties"] as? [String: Any])?["privateLinkServiceId"] as? String,
            resources[service.lowercased()]?.type == "Microsoft.Network/privateLinkServices"
        else {
            return Self.error(400, "PrivateLinkServiceNotFound", "The private link service referenced by \(endpoint.id) was not found.")
        }
        let manual = !(properties["manualPrivateLinkServiceConnections"] as? [[String: Any]] ?? []).isEmpty
        let name = endpoint.id.split(separator: "/").last.map(String.init) ?? "pe"
        let nic =
            (endpoint.id.components(separatedBy: "/providers/").first ?? "") + "/providers/Microsoft.Network/networkInterfaces/\(name).nic.\(guid())"
        let prefix = (subnet.split(separator: "/").last ?? "").split(separator: "-").dropFirst().prefix(3).joined(separator: ".")
        let address = "\(prefix.isEmpty ? "10.0.0" : prefix).\(4 + next() % 250)"
        let configuration: [String: Any] = ["name": "ipconfig", "properties": ["privateIPAddress": address, "subnet": ["id": subnet]]]
        var nicResource = Resource(id: nic, type: "Microsoft.Network/networkInterfaces", tags: [:], properties: [:])
        nicResource.document = Self.text(["ipConfigurations": [configuration]])
        resources[nic.lowercased()] = nicResource
        endpoint.properties["nic"] = nic
        var document = (try? JSONSerialization.jsonObject(with: Data(endpoint.document.utf8))) as? [String: Any] ?? [:]
        document["networkInterfaces"] = [["id": nic]]
        endpoint.document = Self.text(document)
        connections[service.lowercased(), default: []].append(
            Connection(name: "\(name).\(guid())", endpoint: endpoint.id, status: manual ? "Pending" : "Approved", made: .now))
        return nil
    }

    /// `GET {service}/privateEndpointConnections` and `PUT …/{name}` (approve or reject).
    func privateEndpointConnection(method: String, service: String, parts: [String], body: [String: Any]) -> Answer {
        let key = service.lowercased()
        guard resources[key] != nil else { return Self.error(404, "ResourceNotFound", "The Resource '\(service)' was not found.") }
        func representation(_ connection: Connection) -> [String: Any] {
            [
                "id": "\(service)/privateEndpointConnections/\(connection.name)", "name": connection.name,
                "properties": [
                    "privateEndpoint": ["id": connection.endpoint],
                    "privateLinkServiceConnectionState": ["status": connection.status, "description": "", "actionsRequired": "None"],
                ],
            ]
        }
        switch (method, parts.count) {
        case ("GET", 9):
            let visible = (connections[key] ?? []).filter { connection in
                let hidden = windows.younger(connection.made, than: realism.connectionPropagation, key: "connection|" + connection.name)
                if hidden { refusals["connection", default: 0] += 1 }
                return !hidden
            }
            return Self.json(200, ["value": visible.map(representation)])
        case ("GET", 10):
            guard let connection = connections[key]?.first(where: { $0.name == parts[9] }) else {
                return Self.error(404, "PrivateEndpointConnectionNotFound", "Private endpoint connection \(parts[9]) was not found.")
            }
            return Self.json(200, representation(connection))
        case ("PUT", 10):
            guard let index = connections[key]?.firstIndex(where: { $0.name == parts[9] }) else {
                return Self.error(404, "PrivateEndpointConnectionNotFound", "Private endpoint connection \(parts[9]) was not found.")
            }
            let state = (body["properties"] as? [String: Any])?["privateLinkServiceConnectionState"] as? [String: Any]
            connections[key]![index].status = state?["status"] as? String ?? connections[key]![index].status
            return Self.json(200, representation(connections[key]![index]))
        default:
            return Self.error(405, "MethodNotAllowed", method)
        }
    }

    static func text(_ object: Any) -> String {
        String(decoding: (try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// Adds a Private Link service (what an exporter's terraform would make).
    public func addPrivateLinkService(id: String) {
        resources[id.lowercased()] = Resource(id: id, type: "Microsoft.Network/privateLinkServices", tags: [:], properties: [:])
    }

    func representation(_ resource: Resource, provisioning: String) -> [String: Any] {
        var properties = (try? JSONSerialization.jsonObject(with: Data(resource.document.utf8))) as? [String: Any] ?? [:]
        for (name, value) in resource.properties { properties[name] = value }
        properties["provisioningState"] = provisioning
        return [
            "id": resource.id, "name": resource.id.split(separator: "/").last.map(String.init) ?? "", "type": resource.type, "tags": resource.tags,
            "location": "eastus2", "properties": properties,
        ]
    }

    static func type(of parts: [String]) -> String {
        if parts.count == 4, parts[2].lowercased() == "resourcegroups" { return "Microsoft.Resources/resourceGroups" }
        guard let providers = parts.firstIndex(where: { $0.lowercased() == "providers" }), providers + 2 < parts.count else { return "unknown" }
        var segments = [parts[providers + 1], parts[providers + 2]]
        var index = providers + 4
        while index < parts.count {
            segments.append(parts[index])
            index += 2
        }
        return segments[0] + "/" + segments.dropFirst().joined(separator: "/")
    }
}
