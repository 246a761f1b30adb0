import Foundation
import NclavCloudFakes
import NclavTestSupport
import Testing

/// A real `nclav serve --cloud gcp` against the in-test fake GCP (real HTTP over loopback), with
/// the real terraform: the partition's terraform runs with a token minted for the partition's
/// own service account, which the fake's tokeninfo confirms from inside a `local-exec`.
@Suite("GCP enclaves end to end (fake GCP + terraform)", .serialized)
struct GCPCloudTests {
    @Test("apply creates the project and the partition's service account; terraform acts as it; destroy removes the account and deletes the project")
    func applyAndDestroy() async throws {
        let fake = try FakeGCP()
        try await fake.start()
        defer { Task { await fake.stop() } }
        let scratch = try TestSupport.makeScratchDirectory("nclav-gcp-e2e")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let key = scratch.appendingPathComponent("key.json")
        try Data(await fake.serviceAccountKeyJSON.utf8).write(to: key)
        let tree = scratch.appendingPathComponent("enclaves")
        let probe = scratch.appendingPathComponent("tokeninfo.json")
        func write(_ text: String, _ path: String) throws {
            let url = tree.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }
        try write(
            "id: data\nname: Data\ncloud: gcp\nregion: europe-west1\nnetwork:\n  vpc_cidr: \"10.1.0.0/16\"\n  subnets: [\"10.1.0.0/24\"]\n"
                + "exports:\n  - name: api\n    target_partition: etl\n    type: http\n    to: any_enclave\n    auth: token\n", "data/config.yml")
        // An importer in another GCP enclave: its partition may invoke the exporter's services.
        try write("id: app\nname: App\ncloud: gcp\nimports:\n  - from: data\n    export_name: api\n    alias: api\n", "app/config.yml")
        try write("id: web\nname: Web\ninputs:\n  upstream: \"{{ api.project }}\"\n", "app/web/config.yml")
        try write("variable \"upstream\" { type = string }\nresource \"terraform_data\" \"w\" { input = var.upstream }\n", "app/web/main.tf")
        try write(
            "id: etl\nname: ETL\nproduces: http\ninputs:\n  project: \"{{ nclav_project_id }}\"\n  sa: \"{{ nclav_service_account }}\"\ndeclared_outputs: [project, sa, hostname, port]\n",
            "data/etl/config.yml")
        try write(
            """
            variable "project" { type = string }
            variable "sa" { type = string }
            resource "terraform_data" "whoami" {
              input = var.sa
              provisioner "local-exec" {
                command = "curl -sf -d \\"access_token=$GOOGLE_OAUTH_ACCESS_TOKEN\\" \\"http://127.0.0.1:\(fake.port)/oauth2/tokeninfo\\" > \(probe.path) && test \\"$GOOGLE_PROJECT\\" = \\"${var.project}\\""
              }
            }
            output "project" { value = var.project }
            output "sa" { value = var.sa }
            output "hostname" { value = "etl.internal" }
            output "port" { value = 443 }
            """, "data/etl/main.tf")

        try await withServer(
            arguments: ["--cloud", "gcp", "--gcp-parent", "organizations/42", "--gcp-billing-account", "billingAccounts/0A1B2C-3D4E5F-6A7B8C"],
            environment: [
                "GOOGLE_APPLICATION_CREDENTIALS": key.path, "NCLAV_GCP_ENDPOINT": fake.endpointTemplate,
                "GCE_METADATA_HOST": "127.0.0.1:1",
            ]
        ) { server async throws in
            let applied = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server)
            #expect(applied.exitCode == 0, "\(applied.stdout)\(applied.stderr)")
            // No prefix: the enclave id padded with a stable hash to GCP's 6-character minimum.
            let project = try #require(await fake.projects["data-3a6e"])
            #expect(project.parent == "organizations/42" && project.subnetworks.count == 1 && project.labels["nclav-enclave"] == "data")
            let email = "nclav-etl@\(project.id).iam.gserviceaccount.com"
            #expect(project.serviceAccounts.contains(email))
            let info = try String(contentsOf: probe, encoding: .utf8)
            #expect(info.contains(email), "terraform's token must be the partition's: \(info)")
            // The importer's partition service account may invoke Cloud Run in the exporter's project.
            let webAccount = try #require(await fake.projects.values.first { $0.labels["nclav-enclave"] == "app" }).id
            #expect(
                try #require(await fake.projects["data-3a6e"]).bindings["roles/run.invoker"] == [
                    "serviceAccount:nclav-web@\(webAccount).iam.gserviceaccount.com"
                ])
            let logs = try await nclavCLI(["iac", "logs", "data", "etl"], server: server)
            #expect(!logs.stdout.contains("ya29."), "no access token in a run log")

            let removed = try await nclavCLI(["destroy", "app", "data", "-y"], server: server)
            #expect(removed.exitCode == 0, "\(removed.stdout)\(removed.stderr)")
            let after = try #require(await fake.projects[project.id])
            #expect(after.state == "DELETE_REQUESTED")
            #expect(!after.serviceAccounts.contains(email))
            #expect(after.bindings["roles/run.invoker"] == nil, "the importer's grant went with its partition")
        }
    }
}
