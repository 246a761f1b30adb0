import Crypto
import Foundation
import NclavCore
import NclavDrivers

/// The `--azure-*` settings of `nclav serve`.
public struct AzureDriverConfiguration: Sendable {
    public var tenantID: String
    public var managementGroupID: String
    public var billingAccountName: String
    public var billingProfileName: String
    public var invoiceSectionName: String
    public var defaultLocation: String
    public var subscriptionPrefix: String?
    public var clientID: String?
    public var clientSecret: String?
    /// Role definitions (GUIDs) given to each partition's identity on its subscription; default Contributor.
    public var partitionRoleIDs: [String]
    /// When set, terraform acts as each partition's own identity through workload identity
    /// federation; without it, terraform uses nclav's own credentials.
    public var workloadIdentityIssuer: WorkloadIdentityIssuer?
    public var backoff: CappedBackoff

    public init(
        tenantID: String, managementGroupID: String, billingAccountName: String, billingProfileName: String, invoiceSectionName: String,
        defaultLocation: String = "eastus2", subscriptionPrefix: String? = nil, clientID: String? = nil, clientSecret: String? = nil,
        partitionRoleIDs: [String] = [AzureDriver.contributorRole], backoff: CappedBackoff = CappedBackoff()
    ) {
        self.tenantID = tenantID
        self.managementGroupID = managementGroupID
        self.billingAccountName = billingAccountName
        self.billingProfileName = billingProfileName
        self.invoiceSectionName = invoiceSectionName
        self.defaultLocation = defaultLocation
        self.subscriptionPrefix = subscriptionPrefix
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.partitionRoleIDs = partitionRoleIDs
        self.backoff = backoff
    }

    public var billingScope: String {
        "/providers/Microsoft.Billing/billingAccounts/\(billingAccountName)/billingProfiles/\(billingProfileName)/invoiceSections/\(invoiceSectionName)"
    }

    public func problems() -> [String] {
        var out: [String] = []
        let guid = #"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"#
        if tenantID.range(of: guid, options: .regularExpression) == nil {
            out.append("--azure-tenant-id `\(tenantID)` is not a GUID (the directory/tenant id)")
        }
        if managementGroupID.range(of: #"^[A-Za-z0-9._()-]{1,90}$"#, options: .regularExpression) == nil {
            out.append("--azure-management-group-id `\(managementGroupID)` is not a management group id (the name, not the display name)")
        }
        for (flag, value) in [
            ("--azure-billing-account-name", billingAccountName), ("--azure-billing-profile-name", billingProfileName),
            ("--azure-invoice-section-name", invoiceSectionName),
        ] where value.isEmpty || value.contains("/") {
            out.append("\(flag) `\(value)` must be the name (id) of the MCA billing object, without slashes")
        }
        if defaultLocation.range(of: #"^[a-z0-9]+$"#, options: .regularExpression) == nil {
            out.append("--azure-default-location `\(defaultLocation)` is not an Azure location name; expected e.g. eastus2")
        }
        if let prefix = subscriptionPrefix, prefix.range(of: #"^[a-z0-9][a-z0-9-]{0,30}$"#, options: .regularExpression) == nil {
            out.append("--azure-subscription-prefix `\(prefix)` must be 1-31 lowercase letters, digits or hyphens")
        }
        return out
    }
}

/// Azure enclaves: one subscription per enclave, created as a subscription alias under the
/// MCA invoice section and placed in the management group; inside it a resource group, an
/// enclave managed identity, a VNet with subnets and a private DNS zone linked to it when
/// declared; a user-assigned managed identity per partition with Contributor on the subscription.
public struct AzureDriver: Driver {
    public let cloud = CloudTarget.azure
    public let configuration: AzureDriverConfiguration
    let client: AzureClient

    public static let contributorRole = "b24988ac-6180-42a0-ab88-20f7382dd24c"
    static let resourcesAPI = "2021-04-01"
    /// What azurerm uses for `/subscriptions/{id}` (resources/2022-12-01/subscriptions).
    static let subscriptionsAPI = "2022-12-01"
    static let identityAPI = "2023-01-31"
    static let networkAPI = "2023-09-01"
    static let dnsAPI = "2020-06-01"
    static let aliasAPI = "2021-10-01"
    static let authorizationAPI = "2022-04-01"

    /// The server's environment (its own managed identity, endpoint overrides).
    let environment: [String: String]

    public init(configuration: AzureDriverConfiguration, chain: AzureCredentialChain, environment: [String: String]) {
        self.configuration = configuration
        self.environment = environment
        self.client = AzureClient(chain: chain, environment: environment, backoff: configuration.backoff)
    }

    func alias(_ enclave: Enclave) -> String { [configuration.subscriptionPrefix, enclave.id].compactMap { $0 }.joined(separator: "-") }
    func location(_ enclave: Enclave) -> String { enclave.region.flatMap { $0.isEmpty ? nil : $0 } ?? configuration.defaultLocation }
    static func resourceGroup(_ enclave: String) -> String { "nclav-\(enclave)" }
    func tags(_ enclave: Enclave, partition: String? = nil) -> [String: String] {
        var tags = ["nclav-managed": "true", "nclav-enclave": enclave.id]
        if let partition { tags["nclav-partition"] = partition }
        return tags
    }

    /// A stable GUID for a role assignment, so re-applying finds the same one.
    static func assignmentID(_ parts: String...) -> String {
        let bytes = Array(SHA256.hash(data: Data(parts.joined(separator: "|").utf8)).prefix(16))
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let i = hex.startIndex
        func slice(_ a: Int, _ b: Int) -> Substring { hex[hex.index(i, offsetBy: a)..<hex.index(i, offsetBy: b)] }
        return "\(slice(0, 8))-\(slice(8, 12))-\(slice(12, 16))-\(slice(16, 20))-\(slice(20, 32))"
    }

    // MARK: Enclaves

    public func provisionEnclave(_ enclave: Enclave, previous: EnclaveContext?) async throws -> EnclaveContext {
        if enclave.dns?.zone != nil, enclave.network?.vpcCIDR == nil { throw AzureDriverError.zoneNeedsVNet(enclave: enclave.id) }
        let aliasName = alias(enclave)
        let subscription = try await ensureSubscription(aliasName, enclave: enclave)
        // Placing it in the management group is idempotent; doing it every time repairs a move by hand.
        try await client.send(
            "PUT", "/providers/Microsoft.Management/managementGroups/\(configuration.managementGroupID)/subscriptions/\(subscription)",
            apiVersion: "2020-05-01")
        // Registered and waited for: a PUT of their types before registration finishes answers
        // 409 MissingSubscriptionRegistration.
        for provider in ["Microsoft.ManagedIdentity", "Microsoft.Network"] { try await client.register(provider, in: subscription) }
        let location = location(enclave)
        let group = Self.resourceGroup(enclave.id)
        let groupPath = "/subscriptions/\(subscription)/resourceGroups/\(group)"
        try await client.send("PUT", groupPath, apiVersion: Self.resourcesAPI, body: ["location": location, "tags": tags(enclave)])
        // A group just created can be unknown to the next PUT for a moment (azurerm's
        // resourceGroupCreatePoller reads it back).
        let identity = try await configuration.backoff.untilPropagated({ $0.azureAPI?.code == "ResourceGroupNotFound" }) {
            try await client.putAndWait(
                groupPath + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nclav-enclave", apiVersion: Self.identityAPI,
                body: ["location": location, "tags": tags(enclave)], what: "creating the enclave identity")
        }
        var values = [
            "subscription_id": subscription, "subscription_alias": aliasName, "tenant_id": configuration.tenantID, "resource_group": group,
            "region": location, "project_id": subscription, "identity_id": identity["id"] as? String ?? "",
            "identity_client_id": (identity["properties"] as? [String: Any])?["clientId"] as? String ?? "",
        ]
        if let network = enclave.network, let cidr = network.vpcCIDR {
            let vnetPath = groupPath + "/providers/Microsoft.Network/virtualNetworks/nclav-vnet"
            let subnets: [[String: Any]] = network.subnets.map { prefix in
                [
                    "name": "nclav-" + prefix.replacingOccurrences(of: ".", with: "-").replacingOccurrences(of: "/", with: "-"),
                    "properties": ["addressPrefix": prefix],
                ]
            }
            let vnet = try await client.putAndWait(
                vnetPath, apiVersion: Self.networkAPI,
                body: [
                    "location": location, "tags": tags(enclave), "properties": ["addressSpace": ["addressPrefixes": [cidr]], "subnets": subnets],
                ],
                what: "creating the VNet")
            values["vpc_id"] = vnet["id"] as? String ?? vnetPath
            values["subnet_ids"] = subnets.map { "\(vnetPath)/subnets/\($0["name"] as! String)" }.joined(separator: ",")
            if let zone = enclave.dns?.zone {
                let zonePath = groupPath + "/providers/Microsoft.Network/privateDnsZones/\(zone)"
                try await client.putAndWait(
                    zonePath, apiVersion: Self.dnsAPI, body: ["location": "global", "tags": tags(enclave)], what: "creating the private DNS zone")
                try await client.putAndWait(
                    zonePath + "/virtualNetworkLinks/nclav-vnet", apiVersion: Self.dnsAPI,
                    body: [
                        "location": "global", "tags": tags(enclave),
                        "properties": ["virtualNetwork": ["id": vnetPath], "registrationEnabled": false],
                    ],
                    what: "linking the DNS zone to the VNet")
                values["dns_zone_id"] = zonePath
            }
        }
        return EnclaveContext(values: values)
    }

    /// The alias's subscription: PUT is idempotent (an existing alias answers with its
    /// subscription), then polled until provisioning finishes.
    func ensureSubscription(_ aliasName: String, enclave: Enclave) async throws -> String {
        let path = "/providers/Microsoft.Subscription/aliases/\(aliasName)"
        let body: [String: Any] = [
            "properties": [
                "displayName": aliasName, "billingScope": configuration.billingScope, "workload": "Production",
                "additionalProperties": [
                    "managementGroupId": "/providers/Microsoft.Management/managementGroups/\(configuration.managementGroupID)",
                    "subscriptionTenantId": configuration.tenantID, "tags": tags(enclave),
                ],
            ]
        ]
        try await client.send("PUT", path, apiVersion: Self.aliasAPI, body: body)
        let properties = try await configuration.backoff.poll("creating subscription \(aliasName)") { () async throws -> [String: Any]? in
            let alias = try await client.send("GET", path, apiVersion: Self.aliasAPI).json
            let properties = alias["properties"] as? [String: Any] ?? [:]
            switch properties["provisioningState"] as? String ?? "" {
            case "Succeeded": return properties
            case "Failed", "Canceled":
                throw AzureDriverError.subscriptionFailed(
                    enclave: enclave.id, alias: aliasName, state: properties["provisioningState"] as? String ?? "Failed")
            default: return nil
            }
        }
        guard let subscription = properties["subscriptionId"] as? String, !subscription.isEmpty else {
            throw AzureDriverError.subscriptionFailed(enclave: enclave.id, alias: aliasName, state: "Succeeded without a subscription id")
        }
        // A subscription the alias has just made is unknown to ARM for a while (404, or 403
        // while RBAC catches up, or no state yet); azurerm's waitForSubscriptionStateToSettle
        // waits for several consecutive Enabled reads.
        var state = ""
        try await configuration.backoff.untilConsistent("subscription \(subscription) becoming available", times: 3) {
            do {
                state =
                    try await client.send("GET", "/subscriptions/\(subscription)", apiVersion: Self.subscriptionsAPI).json["state"] as? String ?? ""
            } catch let error where error.azureAPI.map({ $0.status == 404 || $0.status == 403 }) == true {
                state = ""
                return false
            }
            return state != ""
        }
        guard state == "Enabled" else { throw AzureDriverError.subscriptionNotEnabled(enclave: enclave.id, subscription: subscription, state: state) }
        return subscription
    }

    /// Cancels the enclave's subscription. Azure refuses to cancel one that still holds
    /// resources (400 ResourcesExistingOnSubscription), so nclav first deletes the resource
    /// groups it made (`nclav-<enclave>`: the enclave identity, VNet, zone) and the
    /// `NetworkWatcherRG` Azure adds beside a VNet; anything else left there (resources
    /// terraform did not destroy) is named in the error. Then it waits until the subscription
    /// reads Disabled or Warned, as azurerm's `resourceSubscriptionDelete` does.
    public func teardownEnclave(_ enclave: Enclave, context: EnclaveContext) async throws {
        guard let subscription = context.values["subscription_id"], !subscription.isEmpty else { return }
        var state: String? = nil
        do {
            state = try await client.send("GET", "/subscriptions/\(subscription)", apiVersion: Self.subscriptionsAPI).json["state"] as? String
        } catch {
            guard error.api?.status == 404 else { throw error }  // gone already
        }
        if state == "Enabled" {
            let groups = try await client.send("GET", "/subscriptions/\(subscription)/resourcegroups", apiVersion: Self.resourcesAPI).json
            var remaining: [String] = []
            for group in groups["value"] as? [[String: Any]] ?? [] {
                guard let name = group["name"] as? String else { continue }
                let tags = group["tags"] as? [String: String] ?? [:]
                guard name == Self.resourceGroup(enclave.id) || name == "NetworkWatcherRG" || tags["nclav-enclave"] == enclave.id else {
                    remaining.append(name)
                    continue
                }
                do {
                    let answer = try await client.send(
                        "DELETE", "/subscriptions/\(subscription)/resourcegroups/\(name)", apiVersion: Self.resourcesAPI)
                    try await client.waitFor(answer, what: "deleting resource group \(name)")
                } catch let error where error.azureAPI?.status == 404 {}
            }
            do {
                try await configuration.backoff.untilPropagated({ $0.azureAPI?.code == "ResourcesExistingOnSubscription" }) {
                    try await client.send(
                        "POST", "/subscriptions/\(subscription)/providers/Microsoft.Subscription/cancel", apiVersion: Self.aliasAPI)
                }
            } catch let error where error.azureAPI?.code == "ResourcesExistingOnSubscription" {
                throw AzureDriverError.subscriptionNotEmpty(enclave: enclave.id, subscription: subscription, groups: remaining)
            }
            try await configuration.backoff.untilConsistent("subscription \(subscription) being cancelled", times: 1) {
                let now = try await client.send("GET", "/subscriptions/\(subscription)", apiVersion: Self.subscriptionsAPI).json["state"] as? String
                return now == "Disabled" || now == "Warned"
            }
        }
        if let alias = context.values["subscription_alias"] {
            do { try await client.send("DELETE", "/providers/Microsoft.Subscription/aliases/\(alias)", apiVersion: Self.aliasAPI) } catch {
                guard error.api?.status == 404 else { throw error }
            }
        }
    }

    // MARK: Partitions

    /// Assigns `role` (a role definition GUID) at `scope` to a principal under the assignment
    /// `name`, waiting out Entra's replication of a new principal, and reads it back until ARM
    /// answers for it. Returns the assignment's path and whether nclav made it (false when the
    /// same grant already exists under another name, made by hand: nclav must not remove it).
    func assign(role: String, at scope: String, to principal: String, name: String) async throws -> (path: String, ours: Bool) {
        let path = "\(scope)/providers/Microsoft.Authorization/roleAssignments/\(name)"
        // A built-in role's id under the scope's subscription, or the tenant-wide form for a
        // scope above subscriptions (a management group).
        let definition = AzureClient.subscription(in: scope).map { "/subscriptions/\($0)" } ?? ""
        let body: [String: Any] = [
            "properties": [
                "roleDefinitionId": "\(definition)/providers/Microsoft.Authorization/roleDefinitions/\(role)",
                "principalId": principal, "principalType": "ServicePrincipal",
            ]
        ]
        // A new identity is unknown to Entra for a while (PrincipalNotFound).
        let ours = try await configuration.backoff.untilPropagated({ $0.azureAPI?.isPrincipalPropagating == true }) { () async throws -> Bool in
            do { try await client.send("PUT", path, apiVersion: Self.authorizationAPI, body: body) } catch {
                guard error.azureAPI?.code == "RoleAssignmentExists" else { throw error }
                return false
            }
            return true
        }
        guard ours else { return (path, false) }
        // Read back until ARM answers for it consistently (azurerm reads it 5 times in a row).
        try await configuration.backoff.untilConsistent("role assignment \(name)", times: 2) {
            do {
                try await client.send("GET", path, apiVersion: Self.authorizationAPI)
                return true
            } catch let error where error.azureAPI?.status == 404 { return false }
        }
        return (path, true)
    }

    public func contextTokens(enclave: Enclave, context: EnclaveContext, partition: Partition) -> [String: String] {
        let subscription = context.values["subscription_id"] ?? ""
        return [
            "nclav_enclave_id": enclave.id, "nclav_partition_id": partition.id, "nclav_project_id": subscription,
            "nclav_region": context.values["region"] ?? location(enclave), "nclav_subscription_id": subscription,
            "nclav_tenant_id": configuration.tenantID, "nclav_resource_group": context.values["resource_group"] ?? Self.resourceGroup(enclave.id),
            "nclav_vpc_id": context.values["vpc_id"] ?? "", "nclav_subnet_ids": context.values["subnet_ids"] ?? "",
            "nclav_dns_zone_id": context.values["dns_zone_id"] ?? "",
        ]
    }

    func identityPath(_ context: EnclaveContext, enclave: Enclave, partition: String) throws -> (subscription: String, path: String) {
        guard let subscription = context.values["subscription_id"], !subscription.isEmpty else {
            throw AzureDriverError.noSubscription(enclave: enclave.id)
        }
        let group = context.values["resource_group"] ?? Self.resourceGroup(enclave.id)
        return (
            subscription,
            "/subscriptions/\(subscription)/resourceGroups/\(group)/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nclav-\(partition)"
        )
    }

    public func provisionPartition(enclave: Enclave, context: EnclaveContext, partition: Partition) async throws -> PartitionIdentity {
        let (subscription, path) = try identityPath(context, enclave: enclave, partition: partition.id)
        let identity = try await client.putAndWait(
            path, apiVersion: Self.identityAPI,
            body: ["location": context.values["region"] ?? location(enclave), "tags": tags(enclave, partition: partition.id)],
            what: "creating the identity of partition \(partition.id)")
        let properties = identity["properties"] as? [String: Any] ?? [:]
        guard let principal = properties["principalId"] as? String, let clientID = properties["clientId"] as? String else {
            throw AzureCallError.operationFailed(call: "PUT \(path)", message: "the identity has no principalId/clientId")
        }
        var assignments: [String] = []
        for role in configuration.partitionRoleIDs {
            let scope = "/subscriptions/\(subscription)"
            let (assignmentPath, _) = try await assign(
                role: role, at: scope, to: principal, name: Self.assignmentID(subscription, partition.id, role))
            assignments.append(assignmentPath)
        }
        var result = [
            "identity_id": identity["id"] as? String ?? path, "client_id": clientID, "principal_id": principal,
            "role_assignments": assignments.joined(separator: ","),
        ]
        if let issuer = configuration.workloadIdentityIssuer {
            let subject = WorkloadIdentityIssuer.subject(enclave: enclave.id, partition: partition.id)
            try await client.send(
                "PUT", path + "/federatedIdentityCredentials/nclav", apiVersion: Self.identityAPI,
                body: ["properties": ["issuer": issuer.issuer, "subject": subject, "audiences": [WorkloadIdentityIssuer.audience]]])
            result["federated_subject"] = subject
        }
        return result
    }

    public func teardownPartition(enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity) async throws {
        try await unwire(identity)
        for assignment in (identity["role_assignments"] ?? "").split(separator: ",") {
            do { try await client.send("DELETE", String(assignment), apiVersion: Self.authorizationAPI) } catch {
                guard error.api?.status == 404 else { throw error }
            }
        }
        let path = try identity["identity_id"] ?? identityPath(context, enclave: enclave, partition: partition.id).path
        do { try await client.send("DELETE", path, apiVersion: Self.identityAPI) } catch { guard error.api?.status == 404 else { throw error } }
    }

    /// `ARM_*` for the azurerm/azapi providers: the enclave's subscription and tenant, and the
    /// partition's own identity through a federated token when an OIDC issuer is configured;
    /// otherwise terraform authenticates the way nclav itself does (service principal, managed
    /// identity, or the Azure CLI on the same host).
    public func terraformEnvironment(
        enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity
    ) async throws -> TerraformEnvironment {
        var variables = ["ARM_SUBSCRIPTION_ID": context.values["subscription_id"] ?? "", "ARM_TENANT_ID": configuration.tenantID]
        var secrets: Set<String> = []
        var expires: Date?
        if let issuer = configuration.workloadIdentityIssuer, let clientID = identity["client_id"], let subject = identity["federated_subject"] {
            variables["ARM_USE_OIDC"] = "true"
            variables["ARM_CLIENT_ID"] = clientID
            // azurerm exchanges the assertion again whenever its access token runs out, so the
            // run's credentials last as long as the assertion.
            let lifetime: TimeInterval = 3600
            variables["ARM_OIDC_TOKEN"] = try issuer.token(subject: subject, lifetime: lifetime)
            expires = Date().addingTimeInterval(lifetime)
            secrets.insert("ARM_OIDC_TOKEN")
        } else if let id = configuration.clientID, let secret = configuration.clientSecret {
            variables["ARM_CLIENT_ID"] = id
            variables["ARM_CLIENT_SECRET"] = secret
            secrets.insert("ARM_CLIENT_SECRET")
        } else if let endpoint = environment["IDENTITY_ENDPOINT"] {
            // nclav's own managed identity (no OIDC issuer configured): terraform acts as
            // nclav itself. azurerm needs the identity's client id and, outside a VM, the
            // endpoint and its API version (its managed_service_identity guide).
            variables["ARM_USE_MSI"] = "true"
            variables["ARM_MSI_ENDPOINT"] = endpoint
            variables["ARM_MSI_API_VERSION"] = "2019-08-01"
            if let clientID = environment["AZURE_CLIENT_ID"] { variables["ARM_CLIENT_ID"] = clientID }
            return TerraformEnvironment(variables: variables, secretNames: secrets, clearedPrefixes: ["ARM_"])
        } else {
            variables["ARM_USE_CLI"] = "true"
        }
        if let base = environment["NCLAV_AZURE_RESOURCE_MANAGER"] {
            variables["ARM_METADATA_HOSTNAME"] = URL(string: base)?.host ?? ""
        }
        // Terraform acting as the partition (or as nclav's service principal) must not reach
        // nclav's own managed identity; the Azure CLI keeps its AZURE_CONFIG_DIR.
        let cleared = variables["ARM_USE_CLI"] != nil ? ["ARM_"] : ["ARM_", "IDENTITY_", "MSI_", "AZURE_"]
        return TerraformEnvironment(variables: variables, secretNames: secrets, clearedPrefixes: cleared, credentialsExpire: expires)
    }

    // MARK: Orphans

    public func orphans(enclave: EnclaveState, knownPartitions: Set<String>) async throws -> [Orphan] {
        guard let subscription = enclave.context["subscription_id"] else { return [] }
        var found: [Orphan] = []
        var skipToken: String? = nil
        repeat {
            var options: [String: Any] = ["resultFormat": "objectArray"]
            if let skipToken { options["$skipToken"] = skipToken }
            let query =
                "Resources | where tags['nclav-managed'] =~ 'true' and tags['nclav-enclave'] == '\(enclave.id)' | project id, name, type, tags"
            let page = try await client.send(
                "POST", "/providers/Microsoft.ResourceGraph/resources", apiVersion: "2021-03-01",
                body: ["subscriptions": [subscription], "query": query, "options": options]
            ).json
            for row in page["data"] as? [[String: Any]] ?? [] {
                let tags = row["tags"] as? [String: String] ?? [:]
                guard let partition = tags["nclav-partition"], !knownPartitions.contains(partition) else { continue }
                found.append(Orphan(enclaveID: enclave.id, cloud: "azure", resource: row["id"] as? String ?? "?", partition: partition, tags: tags))
            }
            skipToken = page["$skipToken"] as? String
        } while skipToken != nil
        return found.sorted { $0.resource < $1.resource }
    }
}

public enum AzureDriverError: Error, Sendable, CustomStringConvertible {
    case noSubscription(enclave: String)
    case subscriptionFailed(enclave: String, alias: String, state: String)
    case subscriptionNotEnabled(enclave: String, subscription: String, state: String)
    case zoneNeedsVNet(enclave: String)
    case subscriptionNotEmpty(enclave: String, subscription: String, groups: [String])
    case connectionNotFound(service: String, endpoint: String)

    var isConnectionNotFound: Bool {
        if case .connectionNotFound = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .noSubscription(let enclave): return "enclave \(enclave) has no Azure subscription recorded yet; apply it first"
        case .subscriptionFailed(let enclave, let alias, let state):
            return
                "creating the subscription alias \(alias) for enclave \(enclave) ended \(state); check the billing scope and that nclav may create subscriptions in it, then apply again"
        case .subscriptionNotEnabled(let enclave, let subscription, let state):
            return
                "the subscription \(subscription) of enclave \(enclave) is \(state); reactivate it in the Azure portal (possible for 90 days after cancelling) or give the enclave another id"
        case .subscriptionNotEmpty(let enclave, let subscription, let groups):
            let named = groups.isEmpty ? "resources nclav did not make" : "the resource groups \(groups.joined(separator: ", "))"
            return
                "the subscription \(subscription) of enclave \(enclave) still holds \(named), so Azure will not cancel it; destroy or move them (they were not made by nclav, or terraform did not destroy them), then destroy again"
        case .connectionNotFound(let service, let endpoint):
            return
                "the private endpoint \(endpoint) never showed as a connection on \(service); check that the service's visibility includes the importer's subscription (or `*`), then apply again"
        case .zoneNeedsVNet(let enclave):
            return
                "enclave \(enclave) declares dns.zone but no network.vpc_cidr; a private DNS zone is linked to the enclave's VNet, so declare network.vpc_cidr too"
        }
    }
}
