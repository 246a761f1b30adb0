import Foundation
import NclavAWS
import NclavTestSupport
import Testing

/// A real `nclav serve` with the AWS driver enabled next to local, talking to a real moto over
/// loopback, driving the real terraform. Terraform's own AWS calls (from a `local-exec` using
/// boto3 with the environment nclav gave it) prove which identity a partition acts as.
@Suite("AWS enclaves end to end (moto + terraform)", .serialized)
struct AWSCloudTests {
    struct Organization {
        let moto: TestMoto
        let management: AWSClient
        let ou: String

        static func make() async throws -> Organization {
            let moto = try TestMoto.start()
            let chain = AWSCredentialChain.standard(environment: moto.environment, home: "/nonexistent")
            let client = AWSClient(region: "us-east-1", endpoints: AWSEndpointResolver(environment: moto.environment)) {
                try await chain.credentials()
            }
            func call(_ action: String, _ body: [String: Any]) async throws -> [String: Any] {
                try await client.json(.organizations, targetPrefix: "AWSOrganizationsV20161128", action: action, body)
            }
            _ = try await call("CreateOrganization", ["FeatureSet": "ALL"])
            let root = try #require((try await call("ListRoots", [:])["Roots"] as? [[String: Any]])?.first?["Id"] as? String)
            let unit = try await call("CreateOrganizationalUnit", ["ParentId": root, "Name": "enclaves"])["OrganizationalUnit"] as? [String: Any]
            return Organization(moto: moto, management: client, ou: try #require(unit?["Id"] as? String))
        }

        func inside(_ account: String, region: String) -> AWSClient {
            let management = self.management
            return AWSClient(region: region, endpoints: management.endpoints) {
                try await STS(client: management).assumeRole("arn:aws:iam::\(account):role/OrganizationAccountAccessRole", sessionName: "test")
                    .credentials
            }
        }
    }

    func write(_ text: String, _ path: String, in root: URL) throws {
        let url = root.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: url)
    }

    /// shop (aws, with network and DNS), home (local), and optionally lab (gcp, not enabled).
    func makeTree(_ root: URL, probe: URL, withLab: Bool, withShop: Bool = true) throws {
        try? FileManager.default.removeItem(at: root)
        if withShop {
            try write(
                """
                id: shop
                name: Shop
                cloud: aws
                region: eu-west-1
                network:
                  vpc_cidr: "10.0.0.0/16"
                  subnets: ["10.0.1.0/24", "10.0.2.0/24"]
                dns:
                  zone: shop.internal
                """, "shop/config.yml", in: root)
            try write(
                """
                id: api
                name: API
                inputs:
                  account: "{{ nclav_account_id }}"
                  role_arn: "{{ nclav_role_arn }}"
                  vpc_id: "{{ nclav_vpc_id }}"
                  region: "{{ nclav_region }}"
                declared_outputs: [account, vpc_id]
                """, "shop/api/config.yml", in: root)
            try write(
                """
                variable "account" { type = string }
                variable "role_arn" { type = string }
                variable "vpc_id" { type = string }
                variable "region" { type = string }
                resource "terraform_data" "whoami" {
                  input = var.role_arn
                  provisioner "local-exec" {
                    command = <<-EOT
                      python3 -c 'import boto3, json; i = boto3.client("sts").get_caller_identity(); print(json.dumps({"account": i["Account"], "arn": i["Arn"], "region": boto3.session.Session().region_name}))' > \(probe.path)
                    EOT
                  }
                }
                output "account" { value = var.account }
                output "vpc_id" { value = var.vpc_id }
                """, "shop/api/main.tf", in: root)
        }
        try write("id: home\nname: Home\ncloud: local\n", "home/config.yml", in: root)
        try write("id: web\nname: Web\n", "home/web/config.yml", in: root)
        try write(#"resource "terraform_data" "page" { input = "hello" }"# + "\n", "home/web/main.tf", in: root)
        if withLab {
            try write("id: lab\nname: Lab\ncloud: gcp\n", "lab/config.yml", in: root)
            try write("id: nb\nname: Notebook\n", "lab/nb/config.yml", in: root)
            try write(#"resource "terraform_data" "nb" { input = "x" }"# + "\n", "lab/nb/main.tf", in: root)
        }
    }

    @Test(
        "a mixed tree: the aws enclave gets its account, OU, network and a partition role terraform acts as; local works beside it; a gcp enclave fails alone; orphans; destroy closes the account"
    )
    func mixedTree() async throws {
        let org = try await Organization.make()
        let scratch = try TestSupport.makeScratchDirectory("nclav-aws-e2e")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let tree = scratch.appendingPathComponent("enclaves")
        let probe = scratch.appendingPathComponent("whoami.json")
        try makeTree(tree, probe: probe, withLab: true)

        try await withServer(
            arguments: [
                "--cloud", "local", "--enable-cloud", "aws", "--aws-org-unit-id", org.ou, "--aws-email-domain", "example.com",
                "--aws-account-prefix", "acme",
            ],
            environment: org.moto.environment
        ) { server async throws in
            let applied = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server)
            #expect(applied.exitCode == 1, "the gcp enclave cannot be provisioned here\n\(applied.stdout)\(applied.stderr)")
            let all = applied.stdout + applied.stderr
            #expect(all.contains("enclave lab: the gcp driver is not enabled on this server"), "\(all)")
            #expect(applied.stdout.contains("shop/api") && applied.stdout.contains("home/web"))
            #expect(applied.stdoutLines.contains { $0.hasPrefix("lab/nb") && $0.contains("skipped") }, "\(applied.stdout)")

            // The account: created with the prefix and email domain, moved into the OU.
            let organizations = Organizations(client: org.management)
            let account = try #require(try await organizations.listAccounts().first { $0.email == "acme-shop@example.com" })
            #expect(account.name == "acme-shop" && account.status == "ACTIVE")
            #expect(try await organizations.parent(of: account.id) == org.ou)
            // Terraform's AWS calls were made as the partition's own role inside that account.
            let apiLog = try await nclavCLI(["iac", "logs", "shop", "api"], server: server).stdout
            let whoami = try #require((try? JSONSerialization.jsonObject(with: Data(contentsOf: probe))) as? [String: String], "\(apiLog)")
            #expect(whoami["account"] == account.id)
            #expect(whoami["arn"]?.contains(":assumed-role/nclav-api/") == true, "\(whoami)")
            #expect(whoami["region"] == "eu-west-1")
            // Declared outputs carry the driver's tokens; the VPC exists in the account.
            let enclave = try await http(.GET, server.baseURL + "/enclaves/shop", auth: .bearer(server.token)).json()
            let text = String(data: try JSONSerialization.data(withJSONObject: enclave), encoding: .utf8) ?? ""
            #expect(text.contains(account.id))
            let inside = org.inside(account.id, region: "eu-west-1")
            let vpc = try #require(try await EC2(client: inside).findVPC(cidr: "10.0.0.0/16", tags: ["nclav-enclave": "shop"]))
            #expect(text.contains(vpc))
            #expect(try await IAM(client: inside).roleARN("nclav-api") == "arn:aws:iam::\(account.id):role/nclav-api")
            // No credential of any kind reached a run log.
            let logs = try await nclavCLI(["iac", "logs", "shop", "api"], server: server)
            #expect(logs.exitCode == 0)
            #expect(!logs.stdout.contains("management-secret") && !logs.stdout.contains(server.token))

            // Orphans: none, then a VPC tagged for a partition nclav does not know.
            let clean = try await nclavCLI(["orphans"], server: server)
            #expect(clean.exitCode == 0, "\(clean.stdout)\(clean.stderr)")
            #expect(clean.stdout.contains("No orphans in 2 enclave(s)."), "\(clean.stdout)")  // shop and home; lab never got provisioned
            let ghost = try await EC2(client: inside).createVPC(
                cidr: "10.50.0.0/16", tags: ["nclav-managed": "true", "nclav-enclave": "shop", "nclav-partition": "old-db"])
            let found = try await nclavCLI(["orphans", "--enclave", "shop"], server: server)
            #expect(found.exitCode == 1, "\(found.stdout)\(found.stderr)")
            #expect(found.stdoutLines.first == "ENCLAVE  PARTITION (not in state)  CLOUD  RESOURCE", "\(found.stdout)")
            #expect(found.stdoutLines.contains { $0.hasPrefix("shop     old-db") && $0.hasSuffix("vpc/\(ghost)") }, "\(found.stdout)")
            let json = try await nclavCLI(["orphans", "--output", "json"], server: server)
            let report = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect((report["orphans"] as? [[String: Any]])?.first?["partition"] as? String == "old-db")
            #expect(try await nclavCLI(["orphans", "--enclave", "Bad_Id"], server: server).exitCode != 0)
            try await EC2(client: inside).deleteVPC(ghost)

            // Re-apply without the gcp enclave: nothing changes for the others, no process starts.
            try makeTree(tree, probe: probe, withLab: false)
            let again = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server)
            #expect(again.exitCode == 0, "\(again.stdout)\(again.stderr)")

            // Remove the aws enclave: terraform destroys, the role goes, the account is closed.
            try makeTree(tree, probe: probe, withLab: false, withShop: false)
            let removed = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server)
            #expect(removed.exitCode == 0, "\(removed.stdout)\(removed.stderr)")
            #expect(try await IAM(client: inside).roleARN("nclav-api") == nil)
            #expect(try await EC2(client: inside).findVPC(cidr: "10.0.0.0/16", tags: ["nclav-enclave": "shop"]) == nil)
            #expect(try await organizations.describeAccount(account.id).status == "SUSPENDED")
            let enclaves = try await http(.GET, server.baseURL + "/enclaves", auth: .bearer(server.token))
            #expect(enclaves.status == 200)
            #expect(!(String(data: enclaves.body, encoding: .utf8) ?? "").contains("\"shop\""))
        }
    }

    @Test("serve --enable-cloud aws without its settings refuses to start and names every missing flag")
    func missingSettings() async throws {
        let result = try await TestSupport.runDetached(
            TestSupport.nclavBinary.path, ["serve", "--enable-cloud", "aws", "--ephemeral"],
            environment: ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("NCLAV_AWS") })
        #expect(result.exitCode != 0)
        #expect(result.stderr.contains("--aws-org-unit-id") && result.stderr.contains("--aws-email-domain"), "\(result.stderr)")
        let bad = try await TestSupport.runDetached(
            TestSupport.nclavBinary.path,
            [
                "serve", "--cloud", "aws", "--ephemeral", "--aws-org-unit-id", "r-123",
                "--aws-email-domain", "not a domain",
            ])
        #expect(bad.exitCode != 0)
        #expect(bad.stderr.contains("`r-123` is not an OU id") && bad.stderr.contains("`not a domain` is not a domain"), "\(bad.stderr)")
    }
}
