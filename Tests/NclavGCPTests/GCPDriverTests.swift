import Foundation
import NclavCloudFakes
import NclavCore
import NclavDrivers
import NclavTestSupport
import Testing

@testable import NclavGCP

/// A fake GCP, a key file for nclav's service account, and a driver wired to both.
struct GCPWorld {
    let fake: FakeGCP
    let home: URL
    let environment: [String: String]

    /// A fake GCP that behaves like the real one's eventual consistency (`realism`), unless a
    /// test needs it instant.
    static func make(keyKind: String = "service_account", realism: FakeGCP.Realism = .realistic) async throws -> GCPWorld {
        let fake = try FakeGCP()
        await fake.setRealism(realism)
        try await fake.start()
        let home = try TestSupport.makeScratchDirectory("gcp-home")
        let key = home.appendingPathComponent("key.json")
        try Data((keyKind == "service_account" ? await fake.serviceAccountKeyJSON : await fake.authorizedUserJSON).utf8).write(to: key)
        let environment = [
            "GOOGLE_APPLICATION_CREDENTIALS": key.path, "NCLAV_GCP_ENDPOINT": fake.endpointTemplate,
            "GCE_METADATA_HOST": "127.0.0.1:1",
        ]
        return GCPWorld(fake: fake, home: home, environment: environment)
    }

    func driver(prefix: String? = "acme") -> GCPDriver {
        GCPDriver(
            configuration: GCPDriverConfiguration(
                parent: "folders/123456", billingAccount: "billingAccounts/0A1B2C-3D4E5F-6A7B8C", projectPrefix: prefix,
                backoff: CappedBackoff(
                    initial: .milliseconds(10), cap: .milliseconds(50), deadline: .seconds(10), propagation: .seconds(5), transient: .seconds(5))),
            chain: .standard(environment: environment, home: home.path), endpoints: GCPEndpoints(environment: environment))
    }
}

@Suite("GCP credentials")
struct GCPCredentialTests {
    @Test("a service-account key: an RS256 JWT the token endpoint verifies; the token is cached; the member is the key's email")
    func serviceAccountKey() async throws {
        let world = try await GCPWorld.make()
        defer { Task { await world.fake.stop() } }
        let chain = GCPCredentialChain.standard(environment: world.environment, home: world.home.path)
        let token = try await chain.token()
        #expect(token.token.hasPrefix("ya29.") && !token.description.contains(token.token))
        #expect(await chain.currentSource == "GOOGLE_APPLICATION_CREDENTIALS")
        _ = try await chain.token()
        #expect(await world.fake.requests.filter { $0 == "POST /oauth2/token" }.count == 1)
        #expect(try await chain.member() == "serviceAccount:nclav-server@mgmt.iam.gserviceaccount.com")
    }

    @Test("gcloud ADC user credentials: the refresh-token grant; the member comes from tokeninfo")
    func userCredentials() async throws {
        let world = try await GCPWorld.make(keyKind: "authorized_user")
        defer { Task { await world.fake.stop() } }
        let gcloud = world.home.appendingPathComponent("gcloud")
        try FileManager.default.createDirectory(at: gcloud, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: world.home.appendingPathComponent("key.json"), to: gcloud.appendingPathComponent("application_default_credentials.json"))
        var environment = world.environment
        environment["GOOGLE_APPLICATION_CREDENTIALS"] = nil
        environment["CLOUDSDK_CONFIG"] = gcloud.path
        let chain = GCPCredentialChain.standard(environment: environment, home: world.home.path)
        _ = try await chain.token()
        #expect(await chain.currentSource == "gcloud application-default credentials")
        #expect(try await chain.member() == "user:ops@example.com")
    }

    @Test("GOOGLE_APPLICATION_CREDENTIALS wins over gcloud's ADC file")
    func precedence() async throws {
        let world = try await GCPWorld.make()
        defer { Task { await world.fake.stop() } }
        let gcloud = world.home.appendingPathComponent("gcloud")
        try FileManager.default.createDirectory(at: gcloud, withIntermediateDirectories: true)
        try Data(await world.fake.authorizedUserJSON.utf8).write(to: gcloud.appendingPathComponent("application_default_credentials.json"))
        var environment = world.environment
        environment["CLOUDSDK_CONFIG"] = gcloud.path
        let chain = GCPCredentialChain.standard(environment: environment, home: world.home.path)
        _ = try await chain.token()
        #expect(await chain.currentSource == "GOOGLE_APPLICATION_CREDENTIALS")
        #expect(try await chain.member() == "serviceAccount:nclav-server@mgmt.iam.gserviceaccount.com")
    }

    @Test("the metadata server (GCE_METADATA_HOST), asked with Metadata-Flavor: Google")
    func metadata() async throws {
        let world = try await GCPWorld.make()
        defer { Task { await world.fake.stop() } }
        let environment = ["GCE_METADATA_HOST": world.fake.metadataHost, "NCLAV_GCP_ENDPOINT": world.fake.endpointTemplate]
        let chain = GCPCredentialChain.standard(environment: environment, home: "/nonexistent")
        _ = try await chain.token()
        #expect(await chain.currentSource == "metadata server")
        #expect(try await chain.member() == "serviceAccount:vm@mgmt.iam.gserviceaccount.com")
    }

    @Test("clear errors: a key file that is missing or of the wrong kind; nothing configured lists every source")
    func errors() async throws {
        let world = try await GCPWorld.make()
        defer { Task { await world.fake.stop() } }
        do {
            _ = try await GCPCredentialChain.standard(
                environment: ["GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/key.json", "GCE_METADATA_HOST": "127.0.0.1:1"], home: "/x"
            ).token()
            Issue.record("a missing key file was accepted")
        } catch { #expect(error.description.contains("cannot read /nonexistent/key.json")) }
        let odd = world.home.appendingPathComponent("odd.json")
        try Data(#"{"type":"external_account"}"#.utf8).write(to: odd)
        do {
            _ = try await GCPCredentialChain.standard(
                environment: ["GOOGLE_APPLICATION_CREDENTIALS": odd.path, "GCE_METADATA_HOST": "127.0.0.1:1"], home: "/x"
            ).token()
            Issue.record("an external_account file was accepted")
        } catch { #expect(error.description.contains("external_account are not supported")) }
        do {
            _ = try await GCPCredentialChain.standard(environment: ["GCE_METADATA_HOST": "127.0.0.1:1"], home: "/nonexistent").token()
            Issue.record("credentials appeared from nowhere")
        } catch {
            #expect(error.description.contains("GOOGLE_APPLICATION_CREDENTIALS, gcloud application-default credentials, metadata server"))
            #expect(error.description.contains("gcloud auth application-default login"))
        }
    }
}

@Suite("GCP driver against the fake GCP")
struct GCPDriverTests {
    let enclave = Enclave(
        id: "product-a-dev", name: "Product A", cloud: .gcp, region: "europe-west1",
        network: Network(vpcCIDR: "10.0.0.0/16", subnets: ["10.0.1.0/24", "10.0.2.0/24"]), dns: DNS(zone: "product-a.internal"))

    @Test("project ids: {prefix}-{enclave}, 6–30 characters, starting with a letter, stable hash when cut or padded")
    func projectIDs() {
        #expect(GCPDriver.projectID(prefix: "acme", enclave: "product-a-dev") == "acme-product-a-dev")
        let long = GCPDriver.projectID(prefix: "acme", enclave: "a-very-long-enclave-name-that-goes-on")
        #expect(
            long.count <= 30 && long.hasPrefix("acme-a-very-long-enclave")
                && long == GCPDriver.projectID(prefix: "acme", enclave: "a-very-long-enclave-name-that-goes-on"))
        let short = GCPDriver.projectID(prefix: nil, enclave: "ab")
        #expect(short.count >= 6 && short.hasPrefix("ab-"))
        #expect(GCPDriver.projectID(prefix: nil, enclave: "9lives").hasPrefix("p-9lives"))
        for id in [long, short, GCPDriver.projectID(prefix: "x", enclave: "y")] {
            #expect(id.range(of: #"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"#, options: .regularExpression) != nil, "\(id)")
        }
        #expect(GCPDriver.accountID(partition: "api") == "nclav-api")
        #expect(GCPDriver.accountID(partition: "a-partition-with-a-long-name-indeed").count <= 30)
    }

    @Test("provisioning: project under the parent with labels, billing, APIs, enclave service account, VPC, subnets, private zone; again is a no-op")
    func provision() async throws {
        let world = try await GCPWorld.make()
        defer { Task { await world.fake.stop() } }
        let driver = world.driver()
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        #expect(context.values["project_id"] == "acme-product-a-dev")
        let project = try #require(await world.fake.projects["acme-product-a-dev"])
        #expect(project.parent == "folders/123456")
        #expect(project.labels == ["nclav-managed": "true", "nclav-enclave": "product-a-dev"])
        #expect(project.billingAccount == "billingAccounts/0A1B2C-3D4E5F-6A7B8C")
        #expect(
            project.services.isSuperset(of: ["iam.googleapis.com", "iamcredentials.googleapis.com", "compute.googleapis.com", "dns.googleapis.com"]))
        #expect(project.serviceAccounts == ["nclav-enclave@acme-product-a-dev.iam.gserviceaccount.com"])
        #expect(project.bindings["roles/iam.serviceAccountTokenCreator"] == ["serviceAccount:nclav-server@mgmt.iam.gserviceaccount.com"])
        #expect(project.networks == ["nclav-vpc"])
        #expect(project.subnetworks == ["nclav-10-0-1-0-24": "10.0.1.0/24", "nclav-10-0-2-0-24": "10.0.2.0/24"])
        #expect(project.zones == ["nclav-zone": "product-a.internal."])
        #expect(context.values["project_number"] == project.number)
        #expect(context.values["vpc_id"] == "projects/acme-product-a-dev/global/networks/nclav-vpc")
        #expect(
            context.values["subnet_ids"]
                == "projects/acme-product-a-dev/regions/europe-west1/subnetworks/nclav-10-0-1-0-24,projects/acme-product-a-dev/regions/europe-west1/subnetworks/nclav-10-0-2-0-24"
        )

        // Everything already exists now: the 409s are success, nothing new is made.
        await world.fake.clearRequests()
        #expect(try await driver.provisionEnclave(enclave, previous: context) == context)
        #expect(try await driver.provisionEnclave(enclave, previous: nil) == context)
        let requests = await world.fake.requests
        #expect(!requests.contains("POST /cloudresourcemanager/v3/projects"))
        #expect(!requests.contains { $0.hasPrefix("PUT /cloudbilling") })
        #expect(await world.fake.projects.count == 1)
    }

    @Test(
        "eventual consistency: apply, apply again and destroy each succeed in one pass while every propagation window, throttle and slow operation is met"
    )
    func convergesUnderRealism() async throws {
        let world = try await GCPWorld.make(realism: .realistic)
        defer { Task { await world.fake.stop() } }
        let driver = world.driver()
        let exporter = Enclave(id: "shop", name: "Shop", cloud: .gcp, region: "europe-west1")
        let partition = Partition(id: "frontend", name: "Frontend")

        func applyOnce(previous: (EnclaveContext, EnclaveContext)?) async throws -> (EnclaveContext, EnclaveContext, PartitionIdentity) {
            let exporterContext = try await driver.provisionEnclave(exporter, previous: previous?.0)
            let context = try await driver.provisionEnclave(enclave, previous: previous?.1)
            var identity = try await driver.provisionPartition(enclave: enclave, context: context, partition: partition)
            let imports = [
                ImportWiring(
                    alias: "api", export: Export(name: "api", targetPartition: "backend", type: .http, to: .anyEnclave, auth: .none),
                    exporterEnclave: "shop", exporterCloud: .gcp, exporterContext: exporterContext.values, exporterOutputs: [:]),
                ImportWiring(
                    alias: "orders", export: Export(name: "orders", targetPartition: "backend", type: .queue, to: .anyEnclave),
                    exporterEnclave: "shop", exporterCloud: .gcp, exporterContext: exporterContext.values,
                    exporterOutputs: ["topic": "projects/acme-shop/topics/orders"]),
            ]
            identity = try await driver.wireImports(enclave: enclave, context: context, partition: partition, identity: identity, imports: imports)
            let environment = try await driver.terraformEnvironment(enclave: enclave, context: context, partition: partition, identity: identity)
            #expect(environment.variables["GOOGLE_OAUTH_ACCESS_TOKEN"]?.hasPrefix("ya29.") == true)
            return (exporterContext, context, identity)
        }

        let first = try await applyOnce(previous: nil)
        let second = try await applyOnce(previous: (first.0, first.1))
        #expect(second.1 == first.1 && second.2 == first.2)
        try await driver.teardownPartition(enclave: enclave, context: second.1, partition: partition, identity: second.2)
        try await driver.teardownEnclave(enclave, context: second.1)
        try await driver.teardownEnclave(exporter, context: second.0)
        #expect(await world.fake.projects.values.allSatisfy { $0.state == "DELETE_REQUESTED" })
        #expect(await world.fake.projects["acme-product-a-dev"]?.subscriptions.isEmpty == true)

        // Each kind of inconsistency was really met (and survived) on the way.
        let refusals = await world.fake.refusals
        for kind in ["account", "grant", "service", "billing", "network", "operation"] {
            #expect((refusals[kind] ?? 0) > 0, "the \(kind) window was never met: \(refusals)")
        }
        #expect(await world.fake.throttled > 0)
    }

    @Test("a project creation operation that fails says so; the next apply creates it")
    func operationFailure() async throws {
        let world = try await GCPWorld.make()
        defer { Task { await world.fake.stop() } }
        await world.fake.inject(
            .init(
                match: "create project acme-product-a-dev", message: "Project creation failed: the parent folder is being deleted",
                operationError: true))
        let driver = world.driver()
        do {
            _ = try await driver.provisionEnclave(enclave, previous: nil)
            Issue.record("a failed operation was taken for success")
        } catch {
            #expect("\(error)".contains("creating project acme-product-a-dev failed while running: Project creation failed"), "\(error)")
        }
        #expect(try await driver.provisionEnclave(enclave, previous: nil).values["project_id"] == "acme-product-a-dev")
    }

    @Test("permission denied on the billing link explains billing; after a half-done apply the next one resumes without a second project")
    func permissionDeniedAndResume() async throws {
        let world = try await GCPWorld.make()
        defer { Task { await world.fake.stop() } }
        await world.fake.inject(
            .init(
                match: "PUT /cloudbilling/v1/projects/acme-product-a-dev/billingInfo",
                message: "The caller does not have permission to use billing account billingAccounts/0A1B2C-3D4E5F-6A7B8C",
                reason: "IAM_PERMISSION_DENIED"))
        await world.fake.inject(
            .init(
                match: "POST /compute/compute/v1/projects/acme-product-a-dev/regions/europe-west1/subnetworks", status: 403,
                message:
                    "Required 'compute.subnetworks.create' permission for 'projects/acme-product-a-dev/regions/europe-west1/subnetworks/nclav-10-0-1-0-24'"
            ))
        let driver = world.driver()
        do {
            _ = try await driver.provisionEnclave(enclave, previous: nil)
            Issue.record("billing denial was ignored")
        } catch {
            #expect(
                "\(error)".contains("403 PERMISSION_DENIED") && "\(error)".contains("--gcp-billing-account")
                    && "\(error)".contains("roles/billing.user"), "\(error)")
        }
        do {
            _ = try await driver.provisionEnclave(enclave, previous: nil)
            Issue.record("subnetwork denial was ignored")
        } catch {
            #expect("\(error)".contains("compute.subnetworks.create") && "\(error)".contains("lacks a permission"), "\(error)")
        }
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        #expect(context.values["subnet_ids"]?.split(separator: ",").count == 2)
        #expect(await world.fake.requests.filter { $0 == "POST /cloudresourcemanager/v3/projects" }.count == 1)
    }

    @Test("a project with the id that is not labelled for this enclave is not taken over")
    func notOurs() async throws {
        let world = try await GCPWorld.make()
        defer { Task { await world.fake.stop() } }
        _ = try await world.driver().provisionEnclave(Enclave(id: "product-a-dev", name: "x", cloud: .gcp), previous: nil)
        let other = world.driver(prefix: "acme-product")
        do {
            _ = try await other.provisionEnclave(Enclave(id: "a-dev", name: "y", cloud: .gcp), previous: nil)
            Issue.record("someone else's project was taken over")
        } catch { #expect("\(error)".contains("not labelled nclav-enclave=a-dev")) }
    }

    @Test("a partition's service account: created, granted its roles, impersonated with a minted token; teardown removes grant and account")
    func partitionIdentity() async throws {
        let world = try await GCPWorld.make()
        defer { Task { await world.fake.stop() } }
        let driver = world.driver()
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        let partition = Partition(id: "api", name: "API")
        let identity = try await driver.provisionPartition(enclave: enclave, context: context, partition: partition)
        let email = "nclav-api@acme-product-a-dev.iam.gserviceaccount.com"
        #expect(identity["service_account"] == email)
        #expect(try await driver.provisionPartition(enclave: enclave, context: context, partition: partition) == identity)
        #expect(await world.fake.projects["acme-product-a-dev"]?.bindings["roles/owner"]?.contains("serviceAccount:\(email)") == true)

        let environment = try await driver.terraformEnvironment(enclave: enclave, context: context, partition: partition, identity: identity)
        let token = try #require(environment.variables["GOOGLE_OAUTH_ACCESS_TOKEN"])
        #expect(environment.variables["GOOGLE_PROJECT"] == "acme-product-a-dev" && environment.variables["GOOGLE_REGION"] == "europe-west1")
        #expect(environment.secretNames.contains("GOOGLE_OAUTH_ACCESS_TOKEN") && environment.clearedPrefixes.contains("GOOGLE_"))
        // The token's expireTime, so that the run's log can warn before it runs out.
        let expires = try #require(environment.credentialsExpire)
        #expect(abs(expires.timeIntervalSinceNow - 3600) < 120)
        // The token belongs to the partition's service account, not to nclav's.
        let info = try await CloudHTTP().send(
            "POST", URL(string: "http://127.0.0.1:\(world.fake.port)/oauth2/tokeninfo")!, body: FormEncoding.encode([("access_token", token)]))
        #expect(info.bodyText.contains(email))

        let tokens = driver.contextTokens(enclave: enclave, context: context, partition: partition)
        #expect(tokens["nclav_service_account"] == email && tokens["nclav_project_id"] == "acme-product-a-dev")
        #expect(Set(tokens.keys) == Set(ContextTokens.available(for: .gcp)))

        try await driver.teardownPartition(enclave: enclave, context: context, partition: partition, identity: identity)
        let project = try #require(await world.fake.projects["acme-product-a-dev"])
        #expect(!project.serviceAccounts.contains(email))
        #expect(!project.bindings.values.contains { $0.contains("serviceAccount:\(email)") })
        try await driver.teardownPartition(enclave: enclave, context: context, partition: partition, identity: identity)  // gone already: fine
    }

    @Test("orphans from Cloud Asset search; teardown deletes the project")
    func orphansAndTeardown() async throws {
        let world = try await GCPWorld.make()
        defer { Task { await world.fake.stop() } }
        let driver = world.driver()
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        await world.fake.addAsset(
            .init(
                name: "//storage.googleapis.com/old-bucket", project: "acme-product-a-dev",
                labels: ["nclav-managed": "true", "nclav-enclave": "product-a-dev", "nclav-partition": "old"]))
        await world.fake.addAsset(
            .init(
                name: "//storage.googleapis.com/api-bucket", project: "acme-product-a-dev",
                labels: ["nclav-managed": "true", "nclav-enclave": "product-a-dev", "nclav-partition": "api"]))
        let state = EnclaveState(id: enclave.id, desired: enclave, resolvedCloud: .gcp, context: context.values)
        let found = try await driver.orphans(enclave: state, knownPartitions: ["api"])
        #expect(found.map(\.resource) == ["//storage.googleapis.com/old-bucket"])
        #expect(found.first?.partition == "old" && found.first?.cloud == "gcp")

        try await driver.teardownEnclave(enclave, context: context)
        #expect(await world.fake.projects["acme-product-a-dev"]?.state == "DELETE_REQUESTED")
        // Re-provisioning a project in deletion says how to get it back.
        do {
            _ = try await driver.provisionEnclave(enclave, previous: context)
            Issue.record("a project in deletion was reused")
        } catch { #expect("\(error)".contains("gcloud projects undelete acme-product-a-dev")) }
    }

    @Test(
        "import wiring: http -> run.invoker in the exporter's project; tcp -> PSC endpoint + A record; queue -> subscription + subscriber on the topic; teardown undoes all"
    )
    func importWiring() async throws {
        let world = try await GCPWorld.make()
        defer { Task { await world.fake.stop() } }
        let driver = world.driver()
        let exporter = Enclave(id: "shop", name: "Shop", cloud: .gcp, exports: [])
        let exporterContext = try await driver.provisionEnclave(exporter, previous: nil)
        let importer = Enclave(
            id: "web", name: "Web", cloud: .gcp, region: "europe-west1",
            network: Network(vpcCIDR: "10.0.0.0/16", subnets: ["10.0.1.0/24"]), dns: DNS(zone: "web.internal"))
        let context = try await driver.provisionEnclave(importer, previous: nil)
        let partition = Partition(id: "frontend", name: "Frontend")
        let identity = try await driver.provisionPartition(enclave: importer, context: context, partition: partition)
        let member = "serviceAccount:nclav-frontend@acme-web.iam.gserviceaccount.com"
        func wiring(_ alias: String, _ type: ExportType, outputs: [String: String]) -> ImportWiring {
            ImportWiring(
                alias: alias, export: Export(name: alias + "-export", targetPartition: "backend", type: type, to: .anyEnclave, auth: .none),
                exporterEnclave: "shop", exporterCloud: .gcp, exporterContext: exporterContext.values, exporterOutputs: outputs)
        }
        let attachment = "projects/acme-shop/regions/europe-west1/serviceAttachments/db"
        let imports = [
            wiring("api", .http, outputs: [:]), wiring("db", .tcp, outputs: ["service_attachment": attachment]),
            wiring("orders", .queue, outputs: ["topic": "projects/acme-shop/topics/orders"]),
            ImportWiring(
                alias: "aws-thing", export: Export(name: "x", targetPartition: "y", type: .http, to: .anyEnclave), exporterEnclave: "elsewhere",
                exporterCloud: .aws, exporterContext: [:], exporterOutputs: [:]),
        ]
        let wired = try await driver.wireImports(enclave: importer, context: context, partition: partition, identity: identity, imports: imports)
        #expect(wired.keys.filter { $0.hasPrefix("wired.") }.count == 4)  // invoker, psc, dns, subscription; the aws import is left alone
        #expect(await world.fake.projects["acme-shop"]?.bindings["roles/run.invoker"] == [member])
        let web = try #require(await world.fake.projects["acme-web"])
        #expect(web.forwardingRules == ["nclav-psc-frontend-db": attachment])
        let ip = try #require(web.addresses["nclav-psc-frontend-db"])
        #expect(web.records == ["db.web.internal. A": [ip]])
        #expect(web.subscriptions == ["nclav-frontend-orders": "projects/acme-shop/topics/orders"])
        #expect(await world.fake.topicBindings["projects/acme-shop/topics/orders"]?["roles/pubsub.subscriber"] == [member])
        // Wiring again changes nothing.
        #expect(try await driver.wireImports(enclave: importer, context: context, partition: partition, identity: wired, imports: imports) == wired)

        try await driver.teardownPartition(enclave: importer, context: context, partition: partition, identity: wired)
        let after = try #require(await world.fake.projects["acme-web"])
        #expect(after.forwardingRules.isEmpty && after.addresses.isEmpty && after.records.isEmpty && after.subscriptions.isEmpty)
        #expect(await world.fake.projects["acme-shop"]?.bindings["roles/run.invoker"] == nil)
        #expect(await world.fake.topicBindings["projects/acme-shop/topics/orders"]?["roles/pubsub.subscriber"] == nil)

        // A tcp export whose partition does not produce `service_attachment` says so.
        let again = try await driver.provisionPartition(enclave: importer, context: context, partition: partition)
        do {
            _ = try await driver.wireImports(
                enclave: importer, context: context, partition: partition, identity: again, imports: [wiring("db", .tcp, outputs: [:])])
            Issue.record("a tcp import without a service attachment was wired")
        } catch { #expect("\(error)".contains("must declare and produce the output `service_attachment`")) }
    }

    @Test(
        "wiring records: typed and stored as JSON; records in the older `kind|…` form are still torn down; an unreadable one stops teardown and says what to do"
    )
    func wiringRecords() async throws {
        let resources: [GCPWiredResource] = [
            .invoker(project: "acme-shop", member: "serviceAccount:a@b.iam.gserviceaccount.com"),
            .pscEndpoint(project: "acme-web", region: "europe-west1", name: "nclav-psc-frontend-db"),
            .dnsRecord(project: "acme-web", zone: "nclav-zone", name: "db.web.internal."),
            .subscription(name: "projects/acme-web/subscriptions/s", topic: "projects/acme-shop/topics/t", member: "serviceAccount:a@b"),
        ]
        for resource in resources {
            #expect(resource.stored.hasPrefix("{"))
            #expect(GCPWiredResource(stored: resource.stored) == resource)
        }
        #expect(GCPWiredResource(stored: "psc|acme-web|europe-west1|nclav-psc-frontend-db") == resources[1])
        #expect(
            GCPWiredResource(stored: "subscription|projects/acme-web/subscriptions/s|projects/acme-shop/topics/t|serviceAccount:a@b") == resources[3])
        for unreadable in ["psc|too|few", "nonsense", "{\"psc\":1}", ""] { #expect(GCPWiredResource(stored: unreadable) == nil, "\(unreadable)") }

        // A partition wired by an earlier version: its `|` records are undone like JSON ones.
        let world = try await GCPWorld.make()
        defer { Task { await world.fake.stop() } }
        let driver = world.driver()
        let exporter = Enclave(id: "shop", name: "Shop", cloud: .gcp, exports: [])
        let exporterContext = try await driver.provisionEnclave(exporter, previous: nil)
        let importer = Enclave(id: "web", name: "Web", cloud: .gcp, region: "europe-west1")
        let context = try await driver.provisionEnclave(importer, previous: nil)
        let partition = Partition(id: "frontend", name: "Frontend")
        let identity = try await driver.provisionPartition(enclave: importer, context: context, partition: partition)
        let http = ImportWiring(
            alias: "api", export: Export(name: "api", targetPartition: "backend", type: .http, to: .anyEnclave, auth: .none),
            exporterEnclave: "shop", exporterCloud: .gcp, exporterContext: exporterContext.values, exporterOutputs: [:])
        var wired = try await driver.wireImports(enclave: importer, context: context, partition: partition, identity: identity, imports: [http])
        let member = try #require(GCPWiredResource(stored: wired["wired.0"] ?? "")).legacyMember
        wired["wired.0"] = "invoker|acme-shop|\(member)"
        #expect(await world.fake.projects["acme-shop"]?.bindings["roles/run.invoker"] == [member])
        try await driver.teardownPartition(enclave: importer, context: context, partition: partition, identity: wired)
        #expect(await world.fake.projects["acme-shop"]?.bindings["roles/run.invoker"] == nil)

        do {
            try await driver.teardownPartition(
                enclave: importer, context: context, partition: partition, identity: identity.merging(["wired.0": "psc|too|few"]) { $1 })
            Issue.record("an unreadable wiring record was skipped")
        } catch { #expect("\(error)".contains("`wired.0` = `psc|too|few`") && "\(error)".contains("nclav forget")) }
    }
}

extension GCPWiredResource {
    fileprivate var legacyMember: String {
        if case .invoker(_, let member) = self { return member }
        return ""
    }
}
