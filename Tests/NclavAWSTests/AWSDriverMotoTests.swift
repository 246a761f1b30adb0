import Foundation
import NclavCloudFakes
import NclavCore
import NclavDrivers
import NclavTestSupport
import Testing

@testable import NclavAWS

/// An organization in a fresh moto: the management account, its root and an OU for enclaves.
/// The driver reaches moto through `AWSRealismProxy` (real AWS's propagation delays, new-account
/// activation and throttling), unless a test asks for moto as it is.
struct MotoOrganization {
    let moto: TestMoto
    let proxy: AWSRealismProxy?
    let management: AWSClient
    let root: String
    let ou: String

    /// What the driver is configured with: moto's, through the proxy when there is one.
    var environment: [String: String] {
        var environment = moto.environment
        if let proxy { environment["AWS_ENDPOINT_URL"] = proxy.endpoint }
        return environment
    }

    static func make(realism: AWSRealismProxy.Realism? = .realistic) async throws -> MotoOrganization {
        let moto = try TestMoto.start()
        var proxy: AWSRealismProxy? = nil
        if let realism {
            proxy = AWSRealismProxy(upstream: moto.endpoint, realism: realism)
            try await proxy?.start()
        }
        let environment = moto.environment
        let chain = AWSCredentialChain.standard(environment: environment, home: "/nonexistent")
        let client = AWSClient(region: "us-east-1", endpoints: AWSEndpointResolver(environment: environment)) { try await chain.credentials() }
        func call(_ action: String, _ body: [String: Any]) async throws -> [String: Any] {
            try await client.json(.organizations, targetPrefix: "AWSOrganizationsV20161128", action: action, body)
        }
        _ = try await call("CreateOrganization", ["FeatureSet": "ALL"])
        let roots = try await call("ListRoots", [:])["Roots"] as? [[String: Any]]
        let root = try #require(roots?.first?["Id"] as? String)
        let unit = try await call("CreateOrganizationalUnit", ["ParentId": root, "Name": "enclaves"])["OrganizationalUnit"] as? [String: Any]
        return MotoOrganization(moto: moto, proxy: proxy, management: client, root: root, ou: try #require(unit?["Id"] as? String))
    }

    func driver(prefix: String? = "acme") -> AWSDriver {
        AWSDriver(
            configuration: AWSDriverConfiguration(
                orgUnitID: ou, emailDomain: "example.com", accountPrefix: prefix,
                backoff: CappedBackoff(
                    initial: .milliseconds(50), cap: .milliseconds(200), deadline: .seconds(20), propagation: .seconds(8), transient: .seconds(5))),
            chain: .standard(environment: environment, home: "/nonexistent"), endpoints: AWSEndpointResolver(environment: environment))
    }

    /// A client acting inside `account` as its OrganizationAccountAccessRole.
    func inside(_ account: String) async throws -> AWSClient {
        let assumed = try await STS(client: management).assumeRole("arn:aws:iam::\(account):role/OrganizationAccountAccessRole", sessionName: "test")
        return management.with { assumed.credentials }
    }
}

@Suite("AWS driver against moto")
struct AWSDriverMotoTests {
    let enclave = Enclave(
        id: "product-a-dev", name: "Product A", cloud: .aws, region: "eu-west-1",
        network: Network(vpcCIDR: "10.0.0.0/16", subnets: ["10.0.1.0/24", "10.0.2.0/24"]), dns: DNS(zone: "product-a.internal"))

    @Test("provisioning creates the account in the organization, moves it to the OU, and builds the VPC, subnets and private zone inside it")
    func provision() async throws {
        let org = try await MotoOrganization.make()
        let driver = org.driver()
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        let account = try #require(context.values["account_id"])
        #expect(account.count == 12 && account != "123456789012")
        #expect(context.values["account_name"] == "acme-product-a-dev")
        #expect(context.values["account_email"] == "acme-product-a-dev@example.com")
        #expect(context.values["region"] == "eu-west-1")

        let organizations = Organizations(client: org.management)
        let accounts = try await organizations.listAccounts()
        #expect(accounts.filter { $0.email == "acme-product-a-dev@example.com" }.map(\.id) == [account])
        #expect(try await organizations.parent(of: account) == org.ou)

        let inside = try await org.inside(account)
        let ec2 = EC2(
            client: AWSClient(region: "eu-west-1", endpoints: inside.endpoints) {
                try await STS(client: org.management).assumeRole("arn:aws:iam::\(account):role/OrganizationAccountAccessRole", sessionName: "t")
                    .credentials
            })
        let vpc = try #require(context.values["vpc_id"])
        #expect(try await ec2.findVPC(cidr: "10.0.0.0/16", tags: ["nclav-managed": "true", "nclav-enclave": "product-a-dev"]) == vpc)
        let subnets = try await ec2.subnets(ofVPC: vpc).sorted()
        #expect(subnets == context.values["subnet_ids"]!.split(separator: ",").map(String.init).sorted())
        #expect(subnets.count == 2)
        // The management account's own region has no such VPC: it was made inside the enclave account.
        #expect(
            try await EC2(
                client: AWSClient(region: "eu-west-1", endpoints: org.management.endpoints) {
                    try await AWSCredentialChain.standard(environment: org.environment, home: "/x").credentials()
                }
            )
            .findVPC(cidr: "10.0.0.0/16", tags: ["nclav-enclave": "product-a-dev"]) == nil)
        let zone = try #require(context.values["dns_zone_id"])
        #expect(try await Route53(client: inside).findPrivateZone(name: "product-a.internal") == zone)
    }

    @Test(
        "eventual consistency: apply, apply again and destroy each succeed in one pass while a new organization, account and role propagate and calls are throttled"
    )
    func convergesUnderRealism() async throws {
        let org = try await MotoOrganization.make(realism: .realistic)
        defer { Task { await org.proxy?.stop() } }
        let driver = org.driver()
        let partition = Partition(id: "api", name: "API")
        let first = try await driver.provisionEnclave(enclave, previous: nil)
        let identity = try await driver.provisionPartition(enclave: enclave, context: first, partition: partition)
        let environment = try await driver.terraformEnvironment(enclave: enclave, context: first, partition: partition, identity: identity)
        #expect(environment.variables["AWS_SESSION_TOKEN"]?.isEmpty == false)
        #expect((environment.credentialsExpire ?? .distantPast) > Date())  // the session's Expiration
        let second = try await driver.provisionEnclave(enclave, previous: first)
        #expect(second == first)
        #expect(try await driver.provisionPartition(enclave: enclave, context: second, partition: partition) == identity)
        try await driver.teardownPartition(enclave: enclave, context: second, partition: partition, identity: identity)
        try await driver.teardownEnclave(enclave, context: second)
        let account = try #require(second.values["account_id"])
        #expect(try await Organizations(client: org.management).describeAccount(account).status != "ACTIVE")

        let refusals = try #require(await org.proxy?.refusals)
        for kind in ["role", "account-role", "opt-in", "pending-verification", "finalizing", "throttle"] {
            #expect((refusals[kind] ?? 0) > 0, "\(kind) was never met: \(refusals)")
        }
    }

    @Test("an AccessDenied on AssumeRole says the role may still be propagating, not that nclav lacks sts:AssumeRole")
    func assumeRoleHint() {
        let error = AWSError(
            service: .sts, action: "AssumeRole", status: 403, code: "AccessDenied",
            message:
                "User: arn:aws:sts::1:assumed-role/x/nclav is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::1:role/nclav-api")
        #expect(error.description.contains("may not have propagated through IAM") && !error.description.contains("iam_setup_commands"))
    }

    @Test(
        "import wiring: tcp -> endpoint-service permission, interface endpoint, CNAME; queue -> a queue-policy statement for the importer's role; http -> invoke policy; teardown undoes all"
    )
    func importWiring() async throws {
        let org = try await MotoOrganization.make(realism: .realistic)
        defer { Task { await org.proxy?.stop() } }
        let driver = org.driver()
        let exporter = Enclave(
            id: "shop", name: "Shop", cloud: .aws, region: "eu-west-1", network: Network(vpcCIDR: "10.1.0.0/16", subnets: ["10.1.1.0/24"]))
        let exporterContext = try await driver.provisionEnclave(exporter, previous: nil)
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        let exporterAccount = try #require(exporterContext.values["account_id"])
        let account = try #require(context.values["account_id"])

        // What the exporter's own terraform would have made: an NLB behind an endpoint service, and a queue.
        let made = try TestSupport.run(
            "/usr/bin/env",
            [
                "python3", "-c",
                """
                import boto3, json, sys
                kw = dict(endpoint_url=sys.argv[1], region_name="eu-west-1")
                creds = boto3.client("sts", aws_access_key_id="AKIAMANAGEMENT000001", aws_secret_access_key="x", **kw).assume_role(
                    RoleArn="arn:aws:iam::%s:role/OrganizationAccountAccessRole" % sys.argv[2], RoleSessionName="fixture")["Credentials"]
                kw.update(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
                nlb = boto3.client("elbv2", **kw).create_load_balancer(Name="db", Subnets=[sys.argv[3]], Type="network", Scheme="internal")
                service = boto3.client("ec2", **kw).create_vpc_endpoint_service_configuration(
                    NetworkLoadBalancerArns=[nlb["LoadBalancers"][0]["LoadBalancerArn"]], AcceptanceRequired=False)["ServiceConfiguration"]
                sqs = boto3.client("sqs", **kw)
                url = sqs.create_queue(QueueName="orders")["QueueUrl"]
                arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
                print(json.dumps({"service_name": service["ServiceName"], "service_id": service["ServiceId"], "queue_url": url, "queue_arn": arn}))
                """,
                org.moto.endpoint, exporterAccount, try #require(exporterContext.values["subnet_ids"]),
            ])
        #expect(made.exitCode == 0, "\(made.stderr)")
        let outputs = try #require(try JSONSerialization.jsonObject(with: Data(made.stdout.utf8)) as? [String: String])

        let partition = Partition(id: "frontend", name: "Frontend")
        let identity = try await driver.provisionPartition(enclave: enclave, context: context, partition: partition)
        func wiring(_ alias: String, _ type: ExportType, _ outputs: [String: String]) -> ImportWiring {
            ImportWiring(
                alias: alias, export: Export(name: alias, targetPartition: "backend", type: type, to: .anyEnclave), exporterEnclave: "shop",
                exporterCloud: .aws, exporterContext: exporterContext.values, exporterOutputs: outputs)
        }
        let imports = [
            wiring("db", .tcp, ["service_name": outputs["service_name"]!]),
            wiring("orders", .queue, ["queue_url": outputs["queue_url"]!, "queue_arn": outputs["queue_arn"]!]),
            wiring("api", .http, ["execute_api_arn": "arn:aws:execute-api:eu-west-1:\(exporterAccount):a1b2c3d4e5"]),
        ]
        let wired = try await driver.wireImports(enclave: enclave, context: context, partition: partition, identity: identity, imports: imports)
        #expect(wired.keys.filter { $0.hasPrefix("wired.") }.count == 5)  // permission, endpoint, record, queue statement, role policy
        #expect(try await driver.wireImports(enclave: enclave, context: context, partition: partition, identity: wired, imports: imports) == wired)

        let asExporter = try await org.inside(exporterAccount).with(region: "eu-west-1")
        let inside = try await org.inside(account)
        func allowed() async throws -> [String] {
            let xml = try await asExporter.query(
                .ec2, action: "DescribeVpcEndpointServicePermissions", version: "2016-11-15", [("ServiceId", outputs["service_id"]!)])
            return (xml.find("allowedPrincipals")?.all("item") ?? []).compactMap { $0["principal"]?.text }
        }
        #expect(try await allowed() == ["arn:aws:iam::\(account):root"])
        let endpoint = try #require(
            try await EC2(client: inside.with(region: "eu-west-1")).findInterfaceEndpoint(
                vpcID: context.values["vpc_id"]!, serviceName: outputs["service_name"]!))
        let zone = try #require(context.values["dns_zone_id"])
        let records = try await inside.restXML(
            .route53, action: "ListResourceRecordSets", method: "GET", path: "/2013-04-01/hostedzone/\(zone)/rrset")
        let cname = records?.find("ResourceRecordSets")?.all("ResourceRecordSet").first { $0["Name"]?.text == "db.product-a.internal." }
        #expect(cname?["Type"]?.text == "CNAME" && cname?.find("Value")?.text == endpoint.dnsName)
        let policy = try #require(try await SQS(client: asExporter.with(region: "eu-west-1")).policy(queueURL: outputs["queue_url"]!))
        #expect(policy.contains(identity["role_arn"]!) && policy.contains("sqs:ReceiveMessage") && !policy.contains(":root"))
        #expect(try await IAM(client: inside).rolePolicies("nclav-frontend") == ["nclav-import-api"])

        // The tcp and http imports removed from the YAML: the next apply undoes what they had.
        let narrowed = try await driver.wireImports(
            enclave: enclave, context: context, partition: partition, identity: wired, imports: [imports[1]])
        #expect(narrowed.keys.filter { $0.hasPrefix("wired.") }.count == 1)
        #expect(try await allowed().isEmpty)
        #expect(try await IAM(client: inside).rolePolicies("nclav-frontend").isEmpty)
        #expect(
            try await SQS(client: asExporter).policy(queueURL: outputs["queue_url"]!).map { $0.contains(identity["role_arn"]!) } == true)

        try await driver.teardownPartition(enclave: enclave, context: context, partition: partition, identity: narrowed)
        #expect(try await allowed().isEmpty)
        #expect(
            try await EC2(client: inside.with(region: "eu-west-1")).findInterfaceEndpoint(
                vpcID: context.values["vpc_id"]!, serviceName: outputs["service_name"]!) == nil)
        let after = try await inside.restXML(.route53, action: "ListResourceRecordSets", method: "GET", path: "/2013-04-01/hostedzone/\(zone)/rrset")
        #expect(after?.find("ResourceRecordSets")?.all("ResourceRecordSet").contains { $0["Name"]?.text == "db.product-a.internal." } == false)
        #expect(
            try await SQS(client: asExporter.with(region: "eu-west-1")).policy(queueURL: outputs["queue_url"]!).map { $0.contains("nclav") } != true)
        #expect(try await IAM(client: inside).roleARN("nclav-frontend") == nil)
    }

    @Test("provisioning again — with the context, or after a crash lost it — reuses the same account, VPC and zone")
    func idempotentAndResumable() async throws {
        let org = try await MotoOrganization.make()
        let driver = org.driver()
        let first = try await driver.provisionEnclave(enclave, previous: nil)
        let again = try await driver.provisionEnclave(enclave, previous: first)
        // An apply that died after CreateAccount has no context: the account is found by its email.
        let resumed = try await driver.provisionEnclave(enclave, previous: nil)
        #expect(again == first)
        #expect(resumed == first)
        let accounts = try await Organizations(client: org.management).listAccounts()
        #expect(accounts.count == 2)  // the management account and this enclave's
    }

    @Test("a partition gets its own IAM role; terraform's credentials act as that role; teardown removes it")
    func partitionIdentity() async throws {
        let org = try await MotoOrganization.make()
        let driver = org.driver()
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        let account = context.values["account_id"]!
        let partition = Partition(id: "api", name: "API")
        let identity = try await driver.provisionPartition(enclave: enclave, context: context, partition: partition)
        #expect(identity["role_arn"] == "arn:aws:iam::\(account):role/nclav-api")
        #expect(try await driver.provisionPartition(enclave: enclave, context: context, partition: partition) == identity)
        let iam = IAM(client: try await org.inside(account))
        #expect(try await iam.attachedPolicies("nclav-api") == ["arn:aws:iam::aws:policy/AdministratorAccess"])

        let environment = try await driver.terraformEnvironment(enclave: enclave, context: context, partition: partition, identity: identity)
        #expect(environment.variables["AWS_REGION"] == "eu-west-1")
        #expect(environment.variables["AWS_ENDPOINT_URL"] == org.environment["AWS_ENDPOINT_URL"])
        #expect(environment.secretNames.isSuperset(of: ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]))
        let key = try #require(environment.variables["AWS_ACCESS_KEY_ID"])
        let secret = try #require(environment.variables["AWS_SECRET_ACCESS_KEY"])
        let token = try #require(environment.variables["AWS_SESSION_TOKEN"])
        #expect(!token.isEmpty && key != "AKIAMANAGEMENT000001")
        // Those credentials are the partition's role in the enclave's account.
        let asPartition = org.management.with { AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token) }
        #expect(try await STS(client: asPartition).callerAccount() == account)

        let tokens = driver.contextTokens(enclave: enclave, context: context, partition: partition)
        #expect(tokens["nclav_account_id"] == account && tokens["nclav_project_id"] == account)
        #expect(tokens["nclav_role_arn"] == identity["role_arn"])
        #expect(tokens["nclav_vpc_id"] == context.values["vpc_id"])
        #expect(Set(tokens.keys) == Set(ContextTokens.available(for: .aws)))

        try await driver.teardownPartition(enclave: enclave, context: context, partition: partition, identity: identity)
        #expect(try await iam.roleARN("nclav-api") == nil)
        try await driver.teardownPartition(enclave: enclave, context: context, partition: partition, identity: identity)  // already gone: fine
    }

    @Test("orphans: resources tagged for this enclave whose partition is not in state, found with the Tagging API")
    func orphans() async throws {
        let org = try await MotoOrganization.make()
        let driver = org.driver()
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        let account = context.values["account_id"]!
        let inside = AWSClient(region: "eu-west-1", endpoints: org.management.endpoints) {
            try await STS(client: org.management).assumeRole("arn:aws:iam::\(account):role/OrganizationAccountAccessRole", sessionName: "t")
                .credentials
        }
        let ec2 = EC2(client: inside)
        let ghost = try await ec2.createVPC(
            cidr: "10.9.0.0/16", tags: ["nclav-managed": "true", "nclav-enclave": "product-a-dev", "nclav-partition": "ghost"])
        _ = try await ec2.createVPC(cidr: "10.8.0.0/16", tags: ["nclav-managed": "true", "nclav-enclave": "product-a-dev", "nclav-partition": "api"])
        _ = try await ec2.createVPC(cidr: "10.7.0.0/16", tags: ["nclav-managed": "true", "nclav-enclave": "someone-else", "nclav-partition": "x"])
        let state = EnclaveState(id: enclave.id, desired: enclave, resolvedCloud: .aws, context: context.values)
        let found = try await driver.orphans(enclave: state, knownPartitions: ["api"])
        #expect(found.map(\.partition) == ["ghost"])
        #expect(found.first?.resource.hasSuffix("vpc/\(ghost)") == true)
        #expect(found.first?.resource.contains(":\(account):") == true)
        #expect(try await driver.orphans(enclave: state, knownPartitions: ["api", "ghost"]).isEmpty)
    }

    @Test("teardown deletes the zone, subnets and VPC and closes the account; a second teardown is a no-op")
    func teardown() async throws {
        let org = try await MotoOrganization.make()
        let driver = org.driver()
        let context = try await driver.provisionEnclave(enclave, previous: nil)
        let account = context.values["account_id"]!
        try await driver.teardownEnclave(enclave, context: context)
        let organizations = Organizations(client: org.management)
        #expect(try await organizations.describeAccount(account).status == "SUSPENDED")
        try await driver.teardownEnclave(enclave, context: context)
        // A closed account is not silently reused: provisioning says what happened.
        await #expect(throws: AWSDriverError.self) { try await driver.provisionEnclave(enclave, previous: context) }
        do { _ = try await driver.provisionEnclave(enclave, previous: context) } catch { #expect("\(error)".contains("SUSPENDED")) }
    }

    @Test("AWS error bodies become messages that say what to fix, without secrets")
    func errors() async throws {
        let org = try await MotoOrganization.make()
        let organizations = Organizations(client: org.management)
        do {
            try await organizations.moveAccount("000000000000", from: org.root, to: org.ou)
            Issue.record("moving an unknown account succeeded")
        } catch {
            #expect(error.code == "AccountNotFoundException")
            #expect(error.description.contains("organizations:MoveAccount"))
            #expect(!error.description.contains("management-secret"))
        }
        let denied = AWSError(service: .organizations, action: "CreateAccount", status: 400, code: "AccessDeniedException", message: "not allowed")
        #expect(denied.description.contains("lacks `organizations:CreateAccount`"))
        let quota = AWSError(
            service: .organizations, action: "CreateAccount", status: 400, code: "ConstraintViolationException",
            message: "You have exceeded the allowed number of AWS accounts. Reason: ACCOUNT_NUMBER_LIMIT_EXCEEDED")
        #expect(quota.description.contains("Service Quotas"))
        #expect(AWSDriverError.zoneNeedsVPC(enclave: "x").description.contains("network.vpc_cidr"))
        let noVPC = Enclave(id: "z", name: "Z", cloud: .aws, dns: DNS(zone: "z.internal"))
        await #expect(throws: AWSDriverError.self) { try await org.driver().provisionEnclave(noVPC, previous: nil) }
    }
}
