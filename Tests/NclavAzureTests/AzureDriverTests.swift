import Foundation
import NclavCloudFakes
import NclavCore
import NclavDrivers
import NclavTestSupport
import Testing

@testable import NclavAzure

struct AzureWorld {
    let fake: FakeAzure
    let environment: [String: String]

    /// A fake Azure that behaves like the real one's eventual consistency (`realism`), unless a
    /// test needs it instant.
    static func make(realism: FakeAzure.Realism = .realistic) async throws -> AzureWorld {
        let fake = try FakeAzure()
        await fake.setRealism(realism)
        try await fake.start()
        return AzureWorld(
            fake: fake,
            environment: [
                "NCLAV_AZURE_RESOURCE_MANAGER": fake.armEndpoint, "AZURE_AUTHORITY_HOST": fake.authorityHost,
                "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:1", "PATH": "/nonexistent",
            ])
    }

    func driver(prefix: String? = "myorg", issuer: WorkloadIdentityIssuer? = nil) async -> AzureDriver {
        let tenant = fake.tenantID
        let settings = AzureDriverConfiguration(
            tenantID: tenant, managementGroupID: "mg-enclaves", billingAccountName: "1234:5678_2019-05-31",
            billingProfileName: "AW4F-xxxx", invoiceSectionName: "SH3V-xxxx", subscriptionPrefix: prefix,
            clientID: fake.clientID, clientSecret: fake.clientSecret,
            backoff: CappedBackoff(
                initial: .milliseconds(10), cap: .milliseconds(40), deadline: .seconds(10), propagation: .seconds(5), transient: .seconds(5)))
        var configured = settings
        configured.workloadIdentityIssuer = issuer
        let chain = AzureCredentialChain.standard(
            tenantID: tenant, clientID: settings.clientID, clientSecret: settings.clientSecret, environment: environment)
        return AzureDriver(configuration: configured, chain: chain, environment: environment)
    }
}

@Suite("Azure credentials")
struct AzureCredentialTests {
    @Test("a service principal: the client-credentials grant for the ARM scope; AADSTS errors explained; tokens cached")
    func servicePrincipal() async throws {
        let world = try await AzureWorld.make()
        defer { Task { await world.fake.stop() } }
        let tenant = world.fake.tenantID
        let chain = AzureCredentialChain.standard(
            tenantID: tenant, clientID: world.fake.clientID, clientSecret: world.fake.clientSecret, environment: world.environment)
        let token = try await chain.token()
        #expect(!token.description.contains(token.token))
        #expect(await chain.source(for: "https://management.azure.com/.default") == "service principal (client secret)")
        _ = try await chain.token()
        #expect(await world.fake.requests.filter { $0.hasSuffix("/oauth2/v2.0/token") }.count == 1)
        do {
            _ = try await AzureCredentialChain.standard(
                tenantID: tenant, clientID: world.fake.clientID, clientSecret: "wrong", environment: world.environment
            ).token()
            Issue.record("a wrong secret was accepted")
        } catch {
            #expect(
                error.description.contains("AADSTS7000215") && error.description.contains("secret is wrong or expired")
                    && !error.description.contains("wrong,"))
        }
        do {
            _ = try await AzureCredentialChain.standard(
                tenantID: tenant, clientID: world.fake.clientID, clientSecret: nil, environment: world.environment
            ).token()
            Issue.record("half a service principal was accepted")
        } catch { #expect(error.description.contains("--azure-client-secret is not")) }
    }

    @Test("a service principal wins over a managed identity that is also there")
    func precedence() async throws {
        let world = try await AzureWorld.make()
        defer { Task { await world.fake.stop() } }
        var environment = world.environment
        environment["IDENTITY_ENDPOINT"] = "http://127.0.0.1:\(world.fake.port)/msi/token"
        environment["IDENTITY_HEADER"] = "identity-header-secret"
        let chain = AzureCredentialChain.standard(
            tenantID: world.fake.tenantID, clientID: world.fake.clientID, clientSecret: world.fake.clientSecret, environment: environment)
        _ = try await chain.token()
        #expect(await chain.source(for: "https://management.azure.com/.default") == "service principal (client secret)")
        #expect(await !world.fake.requests.contains("GET /msi/token"))
    }

    @Test("managed identity: the App Service/Container Apps endpoint (IDENTITY_ENDPOINT + header), else IMDS with Metadata: true")
    func managedIdentity() async throws {
        let world = try await AzureWorld.make()
        defer { Task { await world.fake.stop() } }
        let tenant = world.fake.tenantID
        var environment = world.environment
        environment["IDENTITY_ENDPOINT"] = "http://127.0.0.1:\(world.fake.port)/msi/token"
        environment["IDENTITY_HEADER"] = "identity-header-secret"
        let appService = AzureCredentialChain.standard(tenantID: tenant, clientID: nil, clientSecret: nil, environment: environment)
        _ = try await appService.token()
        #expect(await appService.source(for: "https://management.azure.com/.default") == "managed identity")
        var vm = world.environment
        vm["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = world.fake.imdsHost
        let imds = AzureCredentialChain.standard(tenantID: tenant, clientID: nil, clientSecret: nil, environment: vm)
        _ = try await imds.token()
        #expect(await world.fake.requests.contains("GET /metadata/identity/oauth2/token"))
    }

    @Test("the Azure CLI fallback runs `az account get-access-token`; with nothing configured every source is listed")
    func azureCLI() async throws {
        let bin = try TestSupport.makeScratchDirectory("fake-az-bin")
        let script = bin.appendingPathComponent("az")
        let expires = Int(Date().timeIntervalSince1970) + 3600
        try Data(
            """
            #!/bin/sh
            [ "$1 $2" = "account get-access-token" ] || { echo "unexpected: $*" >&2; exit 2; }
            echo '{"accessToken": "cli-token", "expiresOn": "2026-11-22 12:00:00.000000", "expires_on": \(expires), "subscription": "x", "tenant": "t", "tokenType": "Bearer"}'
            """.utf8
        ).write(to: script)
        chmod(script.path, 0o755)
        let chain = AzureCredentialChain.standard(
            tenantID: "t", clientID: nil, clientSecret: nil,
            environment: ["PATH": bin.path, "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:1"])
        #expect(try await chain.token().token == "cli-token")
        #expect(await chain.source(for: "https://management.azure.com/.default") == "Azure CLI (az account get-access-token)")
        do {
            _ = try await AzureCredentialChain.standard(
                tenantID: "t", clientID: nil, clientSecret: nil,
                environment: ["PATH": "/nonexistent", "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:1"]
            ).token()
            Issue.record("credentials appeared from nowhere")
        } catch {
            #expect(error.description.contains("service principal (client secret), managed identity, Azure CLI"))
            #expect(error.description.contains("az login"))
        }
    }
}

@Suite("Azure driver against the fake ARM")
struct AzureDriverTests {
    let enclave = Enclave(
        id: "product-a-dev", name: "Product A", cloud: .azure, region: "westeurope",
        network: Network(vpcCIDR: "10.0.0.0/16", subnets: ["10.0.1.0/24"]), dns: DNS(zone: "product-a.internal"))

    @Test(
        "provisioning: a subscription alias under the billing scope in the management group, resource group, identity, VNet, private zone + link; again is a no-op"
    )
    func provision() async throws {
        let world = try await AzureWorld.make()
        defer { Task { await world.fake.stop() } }
        let driver = await world.driver()
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        let subscription = try #require(context.values["subscription_id"])
        #expect(await world.fake.aliases["myorg-product-a-dev"] == subscription)
        let record = try #require(await world.fake.subscriptions[subscription])
        #expect(record.managementGroup == "mg-enclaves")
        #expect(
            record.billingScope
                == "/providers/Microsoft.Billing/billingAccounts/1234:5678_2019-05-31/billingProfiles/AW4F-xxxx/invoiceSections/SH3V-xxxx")
        #expect(
            await world.fake.registered == [
                "\(subscription)/Microsoft.ManagedIdentity".lowercased(), "\(subscription)/Microsoft.Network".lowercased(),
            ])
        let group = "/subscriptions/\(subscription)/resourceGroups/nclav-product-a-dev"
        #expect(await world.fake.resource(group)?.tags == ["nclav-managed": "true", "nclav-enclave": "product-a-dev"])
        #expect(await world.fake.resource(group + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nclav-enclave") != nil)
        #expect(context.values["vpc_id"] == group + "/providers/Microsoft.Network/virtualNetworks/nclav-vnet")
        #expect(context.values["subnet_ids"] == group + "/providers/Microsoft.Network/virtualNetworks/nclav-vnet/subnets/nclav-10-0-1-0-24")
        #expect(
            await world.fake.resource(group + "/providers/Microsoft.Network/privateDnsZones/product-a.internal/virtualNetworkLinks/nclav-vnet") != nil
        )
        // The VNet's Azure-AsyncOperation was followed until it said Succeeded.
        #expect(await world.fake.requests.contains { $0.contains("/providers/Microsoft.Network/locations/eastus2/operations/") })

        #expect(try await driver.provisionEnclave(enclave, previous: context) == context)
        #expect(await world.fake.aliases.count == 1)
        #expect(await world.fake.subscriptions.count == 1)
    }

    @Test(
        "eventual consistency: apply, apply again and destroy each succeed in one pass while registration, a new subscription, a new principal, throttling and the cancel precondition are met"
    )
    func convergesUnderRealism() async throws {
        let world = try await AzureWorld.make(realism: .realistic)
        defer { Task { await world.fake.stop() } }
        let driver = await world.driver()
        let partition = Partition(id: "api", name: "API")
        let first = try await driver.provisionEnclave(enclave, previous: nil)
        let identity = try await driver.provisionPartition(enclave: enclave, context: first, partition: partition)
        _ = try await driver.terraformEnvironment(enclave: enclave, context: first, partition: partition, identity: identity)
        let second = try await driver.provisionEnclave(enclave, previous: first)
        #expect(second == first)
        #expect(try await driver.provisionPartition(enclave: enclave, context: second, partition: partition) == identity)
        try await driver.teardownPartition(enclave: enclave, context: second, partition: partition, identity: identity)
        try await driver.teardownEnclave(enclave, context: second)
        let subscription = try #require(second.values["subscription_id"])
        #expect(await world.fake.subscriptions[subscription]?.state == "Disabled")
        #expect(await world.fake.aliases.isEmpty)

        let refusals = await world.fake.refusals
        for kind in ["subscription", "registration", "principal", "group", "cancel"] {
            #expect((refusals[kind] ?? 0) > 0, "the \(kind) window was never met: \(refusals)")
        }
        #expect(await world.fake.throttled > 0)
    }

    @Test(
        "import wiring: tcp -> a private endpoint whose connection nclav approves and an A record to its address; queue -> Service Bus Data Receiver on the queue; http -> the exporter's named role; teardown undoes all"
    )
    func importWiring() async throws {
        let world = try await AzureWorld.make(realism: .realistic)
        defer { Task { await world.fake.stop() } }
        let driver = await world.driver()
        let exporter = Enclave(
            id: "shop", name: "Shop", cloud: .azure, region: "westeurope", network: Network(vpcCIDR: "10.1.0.0/16", subnets: ["10.1.1.0/24"]))
        let exporterContext = try await driver.provisionEnclave(exporter, previous: nil)
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        // What the exporter's own terraform would have made.
        let shop = "/subscriptions/\(exporterContext.values["subscription_id"]!)/resourceGroups/nclav-shop/providers"
        let service = shop + "/Microsoft.Network/privateLinkServices/db"
        let queue = shop + "/Microsoft.ServiceBus/namespaces/shop/queues/orders"
        let site = shop + "/Microsoft.Web/sites/shop-api"
        await world.fake.addPrivateLinkService(id: service)
        await world.fake.addResource(id: queue, type: "Microsoft.ServiceBus/namespaces/queues", tags: [:])

        let partition = Partition(id: "frontend", name: "Frontend")
        let identity = try await driver.provisionPartition(enclave: enclave, context: context, partition: partition)
        func wiring(_ alias: String, _ type: ExportType, _ outputs: [String: String]) -> ImportWiring {
            ImportWiring(
                alias: alias, export: Export(name: alias, targetPartition: "backend", type: type, to: .anyEnclave), exporterEnclave: "shop",
                exporterCloud: .azure, exporterContext: exporterContext.values, exporterOutputs: outputs)
        }
        let websiteContributor = "de139f84-1756-47ae-9be6-808fbbe84772"
        let imports = [
            wiring("db", .tcp, ["private_link_service_id": service]),
            wiring("orders", .queue, ["queue_id": queue]),
            wiring(
                "api", .http, ["role_scope": site, "role_definition_id": "/providers/Microsoft.Authorization/roleDefinitions/" + websiteContributor]),
        ]
        let wired = try await driver.wireImports(enclave: enclave, context: context, partition: partition, identity: identity, imports: imports)
        #expect(wired.keys.filter { $0.hasPrefix("wired.") }.count == 4)  // endpoint, record, two role assignments
        #expect(try await driver.wireImports(enclave: enclave, context: context, partition: partition, identity: wired, imports: imports) == wired)

        let connections = await world.fake.connections[service.lowercased()] ?? []
        #expect(connections.count == 1 && connections.first?.status == "Approved")
        let endpoint = try #require(await world.fake.resource(connections.first?.endpoint ?? ""))
        let nic = try #require(await world.fake.resource(endpoint.properties["nic"] ?? ""))
        let address = try #require(nic.document.firstMatch(of: /"privateIPAddress":"([0-9.]+)"/)?.1)
        #expect(address.hasPrefix("10.0.1."))  // in the importer's subnet
        let record = try #require(await world.fake.resource(context.values["dns_zone_id"]! + "/A/db"))
        #expect(record.document.contains("\"ipv4Address\":\"\(address)\""))
        let assignments = await world.fake.roleAssignments.filter { $0.value.principal == identity["principal_id"] }
        let scopes = await world.fake.assignmentScopes
        let byScope = Dictionary(uniqueKeysWithValues: assignments.map { (scopes[$0.key] ?? "", $0.value.role) })
        let exporterRoles = "/subscriptions/\(exporterContext.values["subscription_id"]!)/providers/Microsoft.Authorization/roleDefinitions/"
        #expect(byScope[queue] == exporterRoles + AzureDriver.serviceBusReceiverRole)
        #expect(byScope[site] == exporterRoles + websiteContributor)
        #expect((await world.fake.refusals["connection"] ?? 0) > 0, "the connection's propagation was never met")

        // The tcp and http imports removed from the YAML: the next apply undoes what they had.
        let narrowed = try await driver.wireImports(
            enclave: enclave, context: context, partition: partition, identity: wired, imports: [imports[1]])
        #expect(narrowed.keys.filter { $0.hasPrefix("wired.") }.count == 1)
        #expect(await world.fake.resource(connections.first?.endpoint ?? "") == nil)
        #expect(await world.fake.resource(record.id) == nil)
        let left = await world.fake.assignmentScopes
        #expect(left.values.contains(queue) && !left.values.contains(site), "the queue's grant is left, the site's gone: \(left)")

        try await driver.teardownPartition(enclave: enclave, context: context, partition: partition, identity: narrowed)
        #expect(await world.fake.resource(connections.first?.endpoint ?? "") == nil)
        #expect(await world.fake.resource(nic.id) == nil)
        #expect(await world.fake.connections[service.lowercased()]?.isEmpty == true)
        #expect(await world.fake.resource(record.id) == nil)
        #expect(await world.fake.roleAssignments.isEmpty)

        let unwired = identity.merging(["wired.0": "psc|nonsense"]) { $1 }
        await #expect(throws: ImportWiringError.unreadableRecord(cloud: .azure, key: "wired.0", value: "psc|nonsense")) {
            try await driver.teardownPartition(enclave: enclave, context: context, partition: partition, identity: unwired)
        }
    }

    @Test("a subscription that still holds resources nclav did not make is not cancelled; the error names them")
    func cancelRefusedWhileNotEmpty() async throws {
        let world = try await AzureWorld.make(realism: .realistic)
        defer { Task { await world.fake.stop() } }
        let driver = await world.driver()
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        let subscription = try #require(context.values["subscription_id"])
        // Someone's resource group beside nclav's (terraform of a partition made it and was not destroyed).
        await world.fake.addResource(
            id: "/subscriptions/\(subscription)/resourceGroups/app-data", type: "Microsoft.Resources/resourceGroups", tags: [:])
        do {
            try await driver.teardownEnclave(enclave, context: context)
            Issue.record("a subscription with resources was cancelled")
        } catch {
            #expect("\(error)".contains("still holds the resource groups app-data") && "\(error)".contains("then destroy again"), "\(error)")
        }
        #expect(await world.fake.subscriptions[subscription]?.state == "Enabled")
    }

    @Test("nclav's own managed identity (no OIDC issuer): terraform gets the endpoint, its API version and the client id azurerm needs")
    func managedIdentityEnvironment() async throws {
        let world = try await AzureWorld.make(realism: .instant)
        defer { Task { await world.fake.stop() } }
        var environment = world.environment
        environment["IDENTITY_ENDPOINT"] = "http://127.0.0.1:\(world.fake.port)/msi/token"
        environment["IDENTITY_HEADER"] = "identity-header-secret"
        environment["AZURE_CLIENT_ID"] = "0000aaaa-0000-0000-0000-000000000001"
        let settings = AzureDriverConfiguration(
            tenantID: world.fake.tenantID, managementGroupID: "mg", billingAccountName: "a", billingProfileName: "b", invoiceSectionName: "c")
        let driver = AzureDriver(
            configuration: settings, chain: .standard(tenantID: world.fake.tenantID, clientID: nil, clientSecret: nil, environment: environment),
            environment: environment)
        let context = EnclaveContext(values: ["subscription_id": "s1"])
        let terraform = try await driver.terraformEnvironment(
            enclave: enclave, context: context, partition: Partition(id: "api", name: "API"), identity: [:])
        #expect(terraform.variables["ARM_USE_MSI"] == "true" && terraform.variables["ARM_MSI_API_VERSION"] == "2019-08-01")
        #expect(terraform.variables["ARM_MSI_ENDPOINT"] == environment["IDENTITY_ENDPOINT"])
        #expect(terraform.variables["ARM_CLIENT_ID"] == "0000aaaa-0000-0000-0000-000000000001")
        // azurerm reads IDENTITY_HEADER itself on Container Apps: it stays.
        #expect(terraform.clearedPrefixes == ["ARM_"])
    }

    @Test("a failed alias says what to check; permission denied on the resource group explains it; the next apply resumes")
    func failuresAndResume() async throws {
        let world = try await AzureWorld.make()
        defer { Task { await world.fake.stop() } }
        let driver = await world.driver()
        await world.fake.setAliasFailure(true)
        do {
            _ = try await driver.provisionEnclave(enclave, previous: nil)
            Issue.record("a failed alias was taken for success")
        } catch { #expect("\(error)".contains("ended Failed") && "\(error)".contains("billing scope"), "\(error)") }
        await world.fake.setAliasFailure(false)
        await world.fake.inject(
            .init(
                match: "PUT /arm/subscriptions/",
                message: "The client 'x' does not have authorization to perform action 'Microsoft.Resources/subscriptions/resourcegroups/write'"))
        do {
            _ = try await driver.provisionEnclave(enclave, previous: nil)
            Issue.record("a denied resource group was ignored")
        } catch { #expect("\(error)".contains("403 AuthorizationFailed") && "\(error)".contains("lacks that permission"), "\(error)") }
        // A long-running operation that ends Failed is reported with Azure's error.
        await world.fake.failNextOperation("NetcfgInvalidSubnet")
        do {
            _ = try await driver.provisionEnclave(enclave, previous: nil)
            Issue.record("a failed VNet operation was taken for success")
        } catch { #expect("\(error)".contains("creating the VNet failed while running: NetcfgInvalidSubnet"), "\(error)") }
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        #expect(context.values["resource_group"] == "nclav-product-a-dev")
        #expect(await world.fake.aliases.count == 1)
    }

    @Test("a Contributor assignment someone already made by hand (RoleAssignmentExists) counts as done")
    func roleAssignmentExists() async throws {
        let world = try await AzureWorld.make()
        defer { Task { await world.fake.stop() } }
        let driver = await world.driver()
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        let subscription = context.values["subscription_id"]!
        let partition = Partition(id: "api", name: "API")
        let first = try await driver.provisionPartition(enclave: enclave, context: context, partition: partition)
        try await driver.teardownPartition(enclave: enclave, context: context, partition: partition, identity: first)
        // The identity is made again; someone assigns Contributor to it before nclav does.
        await world.fake.setPrincipalDelay(false)
        let identityID = first["identity_id"]!
        _ = try await driver.provisionPartition(enclave: enclave, context: context, partition: partition)
        let principal = try #require(await world.fake.principal(ofIdentity: identityID))
        await world.fake.clearAssignments()
        await world.fake.addForeignRoleAssignment(
            principal: principal,
            role: "/subscriptions/\(subscription)/providers/Microsoft.Authorization/roleDefinitions/\(AzureDriver.contributorRole)")
        let identity = try await driver.provisionPartition(enclave: enclave, context: context, partition: partition)
        #expect(identity["principal_id"] == principal)
        #expect(await world.fake.roleAssignments.count == 1)
    }

    @Test("a partition's managed identity with Contributor (retrying PrincipalNotFound while Entra replicates); teardown removes both")
    func partitionIdentity() async throws {
        let world = try await AzureWorld.make()
        defer { Task { await world.fake.stop() } }
        let driver = await world.driver()
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        let partition = Partition(id: "api", name: "API")
        let identity = try await driver.provisionPartition(enclave: enclave, context: context, partition: partition)
        let subscription = context.values["subscription_id"]!
        #expect(identity["identity_id"]?.hasSuffix("/userAssignedIdentities/nclav-api") == true)
        let assignments = await world.fake.roleAssignments
        #expect(assignments.count == 1)
        #expect(
            assignments.values.first?.role
                == "/subscriptions/\(subscription)/providers/Microsoft.Authorization/roleDefinitions/\(AzureDriver.contributorRole)")
        #expect(assignments.values.first?.principal == identity["principal_id"])
        #expect(try await driver.provisionPartition(enclave: enclave, context: context, partition: partition) == identity)
        #expect(await world.fake.roleAssignments.count == 1)

        let environment = try await driver.terraformEnvironment(enclave: enclave, context: context, partition: partition, identity: identity)
        let tenant = world.fake.tenantID
        #expect(environment.variables["ARM_SUBSCRIPTION_ID"] == subscription && environment.variables["ARM_TENANT_ID"] == tenant)
        #expect(environment.secretNames == ["ARM_CLIENT_SECRET"])
        #expect(environment.credentialsExpire == nil)  // azurerm renews tokens from a client secret itself
        // Terraform never sees nclav's own managed identity, whatever else the server has.
        #expect(Set(environment.clearedPrefixes) == ["ARM_", "IDENTITY_", "MSI_", "AZURE_"])
        let tokens = driver.contextTokens(enclave: enclave, context: context, partition: partition)
        #expect(Set(tokens.keys) == Set(ContextTokens.available(for: .azure)))
        #expect(tokens["nclav_subscription_id"] == subscription && tokens["nclav_resource_group"] == "nclav-product-a-dev")

        try await driver.teardownPartition(enclave: enclave, context: context, partition: partition, identity: identity)
        #expect(await world.fake.roleAssignments.isEmpty)
        #expect(await world.fake.resource(identity["identity_id"]!) == nil)
        try await driver.teardownPartition(enclave: enclave, context: context, partition: partition, identity: identity)
    }

    @Test("orphans via Resource Graph; teardown cancels the subscription and removes the alias")
    func orphansAndTeardown() async throws {
        let world = try await AzureWorld.make()
        defer { Task { await world.fake.stop() } }
        let driver = await world.driver()
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        let subscription = context.values["subscription_id"]!
        await world.fake.addResource(
            id: "/subscriptions/\(subscription)/resourceGroups/nclav-product-a-dev/providers/Microsoft.Storage/storageAccounts/oldlogs",
            type: "Microsoft.Storage/storageAccounts", tags: ["nclav-managed": "true", "nclav-enclave": "product-a-dev", "nclav-partition": "logs"])
        let state = EnclaveState(id: enclave.id, desired: enclave, resolvedCloud: .azure, context: context.values)
        let found = try await driver.orphans(enclave: state, knownPartitions: ["api"])
        #expect(found.map(\.partition) == ["logs"])
        #expect(found.first?.resource.hasSuffix("storageAccounts/oldlogs") == true)

        try await driver.teardownEnclave(enclave, context: context)
        #expect(await world.fake.subscriptions[subscription]?.state == "Disabled")
        #expect(await world.fake.aliases.isEmpty)
        try await driver.teardownEnclave(enclave, context: context)
    }

    @Test(
        "workload identity federation: the partition identity trusts nclav's issuer; the ARM_OIDC_TOKEN terraform gets is exchanged by Entra for that identity"
    )
    func federation() async throws {
        let world = try await AzureWorld.make()
        defer { Task { await world.fake.stop() } }
        let home = try TestSupport.makeScratchDirectory("azure-oidc")
        let keyFile = home.appendingPathComponent("azure-oidc-key.pem")
        let issuerURL = "https://nclavoidc.blob.core.windows.net/oidc"
        let issuer = try WorkloadIdentityIssuer.load(issuer: issuerURL, environment: [:], file: keyFile)
        let attributes = try FileManager.default.attributesOfItem(atPath: keyFile.path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try WorkloadIdentityIssuer.load(issuer: issuerURL, environment: [:], file: keyFile).keyID == issuer.keyID)  // reused, not regenerated
        // The operator publishes the documents at the issuer; Entra (the fake) reads the JWKS there.
        let published = home.appendingPathComponent("site")
        try issuer.writeDocuments(to: published)
        let configuration = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: published.appendingPathComponent(".well-known/openid-configuration")))
                as? [String: Any])
        #expect(configuration["issuer"] as? String == issuerURL && configuration["jwks_uri"] as? String == issuerURL + "/openid/v1/jwks")
        await world.fake.publish(issuer: issuerURL, jwks: try Data(contentsOf: published.appendingPathComponent("openid/v1/jwks")))

        let driver = await world.driver(issuer: issuer)
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        let partition = Partition(id: "api", name: "API")
        let identity = try await driver.provisionPartition(enclave: enclave, context: context, partition: partition)
        #expect(identity["federated_subject"] == "nclav:product-a-dev:api")
        let environment = try await driver.terraformEnvironment(enclave: enclave, context: context, partition: partition, identity: identity)
        #expect(environment.variables["ARM_USE_OIDC"] == "true" && environment.variables["ARM_CLIENT_ID"] == identity["client_id"])
        #expect(environment.variables["ARM_CLIENT_SECRET"] == nil && environment.secretNames == ["ARM_OIDC_TOKEN"])
        #expect(abs((environment.credentialsExpire ?? .distantPast).timeIntervalSinceNow - 3600) < 120)  // the assertion's lifetime
        let assertion = try #require(environment.variables["ARM_OIDC_TOKEN"])

        // What azurerm does with ARM_USE_OIDC: the client-credentials grant with the assertion.
        func exchange(_ assertion: String, clientID: String) async throws -> CloudHTTP.Response {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            let form = [
                ("client_id", clientID), ("scope", "https://management.azure.com/.default"), ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"), ("client_assertion", assertion),
            ]
            .map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&")
            return try await CloudHTTP().send(
                "POST", URL(string: "\(world.fake.authorityHost)/\(world.fake.tenantID)/oauth2/v2.0/token")!,
                headers: [("Content-Type", "application/x-www-form-urlencoded")], body: Data(form.utf8))
        }
        let answer = try await exchange(assertion, clientID: identity["client_id"]!)
        #expect(answer.status == 200, "\(answer.bodyText)")
        #expect(await world.fake.federatedTokens.values.contains(identity["client_id"]!))
        // Another partition's subject, or a key Entra does not know, is refused.
        let wrongSubject = try issuer.token(subject: "nclav:product-a-dev:other")
        #expect(try await exchange(wrongSubject, clientID: identity["client_id"]!).bodyText.contains("AADSTS70021"))
        let stranger = try WorkloadIdentityIssuer.load(issuer: issuerURL, environment: [:], file: home.appendingPathComponent("other-key.pem"))
        #expect(
            try await exchange(try stranger.token(subject: "nclav:product-a-dev:api"), clientID: identity["client_id"]!).bodyText.contains(
                "AADSTS50013"))
        #expect(throws: WorkloadIdentityIssuer.IssuerError.self) {
            try WorkloadIdentityIssuer.load(issuer: "http://example.com/x/", environment: [:], file: keyFile)
        }
    }
}
