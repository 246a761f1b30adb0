import Foundation
import IacRunner
import NclavCore
import NclavStore
import NclavTestSupport
import Orchestrator
import TFBackend
import Testing

/// `nclav plan` and `apply --plan` against real terraform: the plan is terraform's own, read
/// back from the saved plan file; applying it applies exactly those files.
@Suite("Saved plans with real terraform", .serialized)
struct SavedPlanTests {
    /// shop/api (its `service_name` forces a replacement) exports its hostname; shop/web
    /// imports it into a resource that is replaced when it changes.
    static func shop(_ tree: TreeBuilder) throws {
        try tree.enclave(
            "shop",
            "exports:\n  - name: api\n    target_partition: api\n    type: http\n    to: any_enclave\n"
                + "imports:\n  - from: shop\n    export_name: api\n    alias: api\n")
        try tree.partition(
            "shop", "api", "produces: http\ndeclared_outputs: [hostname, port]\ninputs:\n  service_name: shop\n",
            main: """
                variable "service_name" { type = string }
                resource "terraform_data" "service" {
                  triggers_replace = [var.service_name]
                  input            = var.service_name
                }
                resource "terraform_data" "stable" { input = "x" }
                output "hostname" { value = "${terraform_data.service.output}.internal" }
                output "port" { value = 8080 }
                """)
        try tree.partition(
            "shop", "web", "inputs:\n  api_url: \"{{ api.hostname }}\"\n",
            main: """
                variable "api_url" { type = string }
                resource "terraform_data" "site" {
                  triggers_replace = [var.api_url]
                  input            = var.api_url
                }
                """)
    }

    func makePlan(_ harness: ReconcileHarness, _ options: ReconcileOptions = ReconcileOptions(parallelism: 2)) async throws -> SavedPlan {
        try await harness.reconciler.makePlan(try harness.load(), options: options, holding: try await harness.reconciler.acquire())
    }

    func applying(_ harness: ReconcileHarness, _ plan: SavedPlan) async throws -> ReconcileReport {
        try await harness.apply(ReconcileOptions(parallelism: 2, savedPlan: plan.id))
    }

    func resources(_ harness: ReconcileHarness, _ partition: String) async throws -> [String] {
        let key = try StateKey(enclave: "shop", partition: partition)
        let latest = try #require(try await harness.store.latestState(key))
        return try #require(StateDocument.resourceAddresses(latest.body)).sorted()
    }

    func recorded(_ harness: ReconcileHarness, _ id: UUID?) async throws -> (operation: IacRun.Operation, log: String) {
        let id = try #require(id)
        let run = try #require(try await harness.store.run(id))
        return (run.operation, run.log)
    }

    @Test(
        "an upstream input that forces a replacement: the plan shows terraform's -/+ with the address, defers the importer, and apply --plan applies it and re-plans the importer with the real value"
    )
    func replaceAndDeferred() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            try Self.shop(harness.builder)
            #expect(try await harness.apply().errors.isEmpty)
            try harness.edit("shop/api/config.yml") { $0.replacingOccurrences(of: "service_name: shop", with: "service_name: shop2") }

            let runsBefore = try await harness.runCount()
            let plan = try await makePlan(harness)
            let api = try #require(plan.partitions.first { $0.key.description == "shop/api" })
            #expect(api.operation == .update && api.deferred == nil && api.error == nil)
            #expect(api.changes == [PlanDocument.ResourceChange(address: "terraform_data.service", action: .replace)])
            #expect(api.changedOutputs == ["hostname"])
            #expect(api.summary == "0 to add, 0 to change, 1 to replace, 0 to destroy")
            let web = try #require(plan.partitions.first { $0.key.description == "shop/web" })
            #expect(web.deferred?.contains("inputs from shop/api change") == true, "\(web)")
            #expect(web.planFile == nil)
            #expect(plan.hasChanges && plan.errors.isEmpty)
            #expect(plan.destructions == ["shop/api: terraform_data.service replaced"])
            // Planning wrote runs (operation plan, their logs kept) and nothing else.
            #expect(try await harness.runCount() == runsBefore + 2)
            let apiRun = try await recorded(harness, api.runID)
            #expect(apiRun.operation == .plan && apiRun.log.contains("-out=") && apiRun.log.contains("== saved plan: 0 to add"))
            #expect(try await harness.outputs("shop", "api")["hostname"] == "shop.internal")

            let report = try await harness.apply(ReconcileOptions(parallelism: 2, savedPlan: plan.id, autoApprove: true))
            #expect(report.errors.isEmpty, "\(report.errors)")
            let outcomes = Dictionary(uniqueKeysWithValues: report.outcomes.map { ($0.key.description, $0) })
            #expect(outcomes["shop/api"]?.result == .succeeded)
            #expect(outcomes["shop/web"]?.result == .succeeded)
            #expect(outcomes["shop/web"]?.reason?.hasPrefix("deferred in the plan") == true)
            // api applied the saved plan file; web planned and applied with the real value.
            let apiLog = try await recorded(harness, outcomes["shop/api"]?.runID).log
            #expect(apiLog.contains("apply -input=false -no-color") && apiLog.contains(".tfplan"), "\(apiLog)")
            let webState = try #require(try await harness.store.latestState(try StateKey(enclave: "shop", partition: "web")))
            #expect(String(decoding: webState.body, as: UTF8.self).contains("shop2.internal"))
            // A plan applies once.
            #expect(throws: SavedPlanError.notFound(plan.id)) { try harness.reconciler.environment.plans.load(plan.id) }

            // Without --auto-approve, a deferred partition whose plan (made once its upstream
            // applied) replaces something nobody saw is not applied, and says what it would destroy.
            try harness.edit("shop/api/config.yml") { $0.replacingOccurrences(of: "service_name: shop2", with: "service_name: shop3") }
            let next = try await makePlan(harness)
            let held = try await applying(harness, next)
            let webOutcome = try #require(held.outcomes.first { $0.key.description == "shop/web" })
            #expect(webOutcome.result == .failed, "\(held.outcomes)")
            #expect(
                webOutcome.reason?.contains("terraform_data.site replaced") == true && webOutcome.reason?.contains("nothing of it changed") == true)
            let kept = try #require(try await harness.store.latestState(try StateKey(enclave: "shop", partition: "web")))
            #expect(String(decoding: kept.body, as: UTF8.self).contains("shop2.internal"), "shop/web kept what it had")
            // Planned again, the replacement is in plain sight, and applying that plan is approval.
            let shown = try await makePlan(harness)
            #expect(shown.partitions.first { $0.key.description == "shop/web" }?.changes == [.init(address: "terraform_data.site", action: .replace)])
            #expect(try await applying(harness, shown).errors.isEmpty)
        }
    }

    @Test(
        "apply --plan applies that plan and nothing else: an edit after planning makes it refuse; a state written behind its back makes it refuse; neither runs anything"
    )
    func staleness() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            try Self.shop(harness.builder)
            #expect(try await harness.apply().errors.isEmpty)
            try harness.edit("shop/web/main.tf") { $0 + "\nresource \"terraform_data\" \"extra\" { input = 1 }\n" }
            let plan = try await makePlan(harness)
            #expect(plan.partitions.map(\.key.description) == ["shop/web"])
            #expect(plan.partitions.first?.changes == [PlanDocument.ResourceChange(address: "terraform_data.extra", action: .create)])

            // An edit made after the plan: refused.
            try harness.edit("shop/web/main.tf") { $0 + "\nresource \"terraform_data\" \"later\" { input = 2 }\n" }
            let runs = try await harness.runCount()
            await #expect(throws: SavedPlanError.treeChanged(plan.id)) { _ = try await applying(harness, plan) }
            #expect(try await harness.runCount() == runs)
            // Back to what was planned: applied, and exactly what it said.
            try harness.edit("shop/web/main.tf") { $0.replacingOccurrences(of: "\nresource \"terraform_data\" \"later\" { input = 2 }\n", with: "") }
            let second = try await makePlan(harness)
            let web = try StateKey(enclave: "shop", partition: "web")
            // The state changes behind the plan's back (a `terraform apply` by hand): refused.
            let latest = try #require(try await harness.store.latestState(web))
            var document = try #require(try JSONSerialization.jsonObject(with: latest.body) as? [String: Any])
            document["serial"] = latest.info.serial + 1
            let bumped = try JSONSerialization.data(withJSONObject: document)
            let written = try await harness.store.writeState(
                web,
                StateWrite(
                    body: bumped, serial: latest.info.serial + 1, lineage: latest.info.lineage, sha256: Digest.sha256Hex(bumped),
                    md5: Digest.md5Base64(bumped), lockID: nil))
            guard case .stored = written else { throw TestSupport.StartError("the bumped state was refused: \(written)") }
            await #expect(throws: SavedPlanError.stateChanged(second.id, partition: web, planned: latest.info.serial, now: latest.info.serial + 1)) {
                _ = try await applying(harness, second)
            }
            #expect(try await harness.runCount() == runs + 1)  // the second plan's run only

            let third = try await makePlan(harness)
            #expect(try await applying(harness, third).errors.isEmpty)
            #expect(try await resources(harness, "web") == ["terraform_data.extra", "terraform_data.site"])
        }
    }

    @Test("a plan expires after its lifetime: refused, then removed with its plan files; the sweep removes the expired")
    func expiry() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            try Self.shop(harness.builder)
            let plans = harness.reconciler.environment.plans
            let first = try await makePlan(harness)
            let second = try await makePlan(harness)
            let folder = plans.folder(first.id)
            #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("shop.api.tfplan").path))
            let later = Date().addingTimeInterval(plans.lifetime + 60)
            do {
                _ = try plans.load(first.id, now: later)
                Issue.record("an expired plan was loaded")
            } catch {
                guard case SavedPlanError.expired(let id, let at) = error else { throw error }
                #expect(id == first.id && abs(at.timeIntervalSince(first.expiresAt)) < 1)
            }
            #expect(!FileManager.default.fileExists(atPath: folder.path))
            #expect(plans.sweep(now: later) == 1)
            #expect(plans.list(now: Date()).isEmpty)
            #expect(throws: SavedPlanError.notFound(second.id)) { try plans.load(second.id) }
        }
    }

    @Test("a removed partition is planned with -destroy and torn down by applying that plan")
    func plannedTeardown() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            try Self.shop(harness.builder)
            #expect(try await harness.apply().errors.isEmpty)
            try harness.builder.remove("shop/web")
            let plan = try await makePlan(harness)
            let web = try #require(plan.partitions.first)
            #expect(web.operation == .teardown && web.planFile != nil)
            #expect(web.changes == [PlanDocument.ResourceChange(address: "terraform_data.site", action: .delete)])
            #expect(plan.destructions == ["partition shop/web torn down", "shop/web: terraform_data.site destroyed"])
            let report = try await applying(harness, plan)
            #expect(report.errors.isEmpty, "\(report.errors)")
            #expect(try await harness.partition("shop", "web") == nil)
            let log = try await recorded(harness, report.outcomes.first?.runID).log
            #expect(log.contains("== terraform apply -input=false -no-color") && log.contains(".tfplan"), "\(log)")
            #expect(log.contains("1 destroyed"), "\(log)")
        }
    }

    @Test("targets: only the targeted partition and what it reads run; an out-of-date partition not targeted is listed, not run")
    func targeting() async throws {
        try await ReconcileHarness.with(fixture: nil) { harness in
            let tree = harness.builder
            try Self.shop(tree)
            try tree.partition(
                "shop", "admin", "inputs:\n  level: \"1\"\n",
                main: "variable \"level\" { type = string }\nresource \"terraform_data\" \"a\" { input = var.level }\n")
            #expect(try await harness.apply().errors.isEmpty)
            let adminRun = try await harness.partition("shop", "admin")?.lastRunID
            try harness.edit("shop/api/config.yml") { $0.replacingOccurrences(of: "service_name: shop", with: "service_name: shop3") }
            try harness.edit("shop/admin/config.yml") { $0.replacingOccurrences(of: "level: \"1\"", with: "level: \"2\"") }

            let targets = Targets(partitions: [try StateKey(enclave: "shop", partition: "web")])
            let plan = try await makePlan(harness, ReconcileOptions(parallelism: 2, targets: targets))
            #expect(Set(plan.partitions.map(\.key.description)) == ["shop/api", "shop/web"])
            let report = try await harness.apply(ReconcileOptions(parallelism: 2, targets: targets))
            let results = Dictionary(uniqueKeysWithValues: report.outcomes.map { ($0.key.description, $0.result) })
            #expect(results == ["shop/api": .succeeded, "shop/web": .succeeded, "shop/admin": .skipped], "\(report.outcomes)")
            #expect(report.outcomes.first { $0.key.description == "shop/admin" }?.reason?.contains("not targeted") == true)
            #expect(try await resources(harness, "admin") == ["terraform_data.a"])
            #expect(try await harness.partition("shop", "admin")?.lastRunID == adminRun)

            await #expect(throws: TargetError.self) {
                _ = try await harness.apply(ReconcileOptions(parallelism: 2, targets: Targets(enclaves: ["nope"])))
            }
            // Without targets the rest follows.
            let rest = try await harness.apply()
            #expect(rest.outcomes.map(\.key.description) == ["shop/admin"])
        }
    }
}
