import Foundation
import NclavTestSupport
import Testing

/// `nclav plan`, approval and targets, as a user meets them: the real CLI against a real
/// server, real terraform, on and off a terminal.
@Suite("nclav plan, approval and targets (real terraform)", .serialized)
struct PlanCommandTests {
    func examplesCopy() throws -> (URL, () -> Void) {
        let scratch = try TestSupport.makeScratchDirectory("nclav-plan")
        let target = scratch.appendingPathComponent("local")
        try FileManager.default.copyItem(at: TestSupport.packageRoot.appendingPathComponent("examples/local"), to: target)
        return (target, { try? FileManager.default.removeItem(at: scratch) })
    }

    func edit(_ tree: URL, _ relative: String, _ change: (String) -> String) throws {
        let file = tree.appendingPathComponent(relative)
        try change(try String(contentsOf: file, encoding: .utf8)).write(to: file, atomically: true, encoding: .utf8)
    }

    /// The CLI on a pseudo-terminal (util-linux `script`), `answer` typed at its prompt.
    func onTerminal(_ arguments: [String], answer: String, server: ServerProcess) async throws -> TestSupport.ProcessResult {
        try await onTerminal(arguments, answers: [answer], server: server)
    }

    /// The CLI on a pseudo-terminal, each of `answers` typed at a prompt in turn.
    func onTerminal(
        _ arguments: [String], answers: [String], server: ServerProcess, environment extra: [String: String] = [:]
    ) async throws -> TestSupport.ProcessResult {
        let command = ([TestSupport.nclavBinary.path] + arguments).map { "'\($0)'" }.joined(separator: " ")
        var environment = ProcessInfo.processInfo.environment
        environment["NCLAV_HOME"] = server.home.path
        environment["NCLAV_URL"] = server.baseURL
        environment["NCLAV_TOKEN"] = nil
        environment["TERM"] = "xterm"
        environment["NO_COLOR"] = nil
        environment.merge(extra) { $1 }
        let script = try TestSupport.which("script")
        return try await TestSupport.runDetached(
            "/bin/sh", ["-c", "command=\"$1\"; shift; printf '%s\\n' \"$@\" | '\(script)' -qec \"$command\" /dev/null", "sh", command] + answers,
            environment: environment)
    }

    func runCount(_ server: ServerProcess, _ enclave: String, _ partition: String) async throws -> Int {
        try await nclavCLI(["iac", "runs", enclave, partition, "--output", "json"], server: server).stdout.components(separatedBy: "\"id\"").count - 1
    }

    @Test(
        "nclav plan shows terraform's resource changes per partition with a deferred importer, exits 2, and apply --plan applies exactly it"
    )
    func planThenApply() async throws {
        let (tree, cleanup) = try examplesCopy()
        defer { cleanup() }
        try await withServer { server async throws in
            #expect(try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server).exitCode == 0)
            try edit(tree, "shop/api/config.yml") { $0.replacingOccurrences(of: "service_name: \"shop-", with: "service_name: \"shop2-") }
            let plan = try await nclavCLI(["plan", tree.path], server: server)
            #expect(plan.exitCode == 2, "\(plan.stdout)\(plan.stderr)")
            #expect(plan.stdoutLines.contains { $0.hasPrefix("~ shop/api (update): ") }, "\(plan.stdout)")
            #expect(plan.stdoutLines.contains("    ~   module.partition.terraform_data.service"), "\(plan.stdout)")
            #expect(plan.stdoutLines.contains { $0.hasPrefix("~ shop/web (update) deferred: inputs from shop/api change") }, "\(plan.stdout)")
            let id = try #require(plan.stdoutLines.last { $0.hasPrefix("Apply exactly this plan: ") }?.split(separator: " ").last.map(String.init))

            // Plan and reconcile ids are UUIDs in paths, whatever character they start with.
            #expect(try await http(.GET, server.baseURL + "/plans/\(id)", auth: .bearer(server.token)).status == 200)
            for path in ["/plans/", "/reconciles/"] {
                #expect(
                    try await http(.GET, server.baseURL + path + "00000000-0000-4000-8000-000000000000", auth: .bearer(server.token)).status == 404)
                #expect(try await http(.GET, server.baseURL + path + "nope", auth: .bearer(server.token)).status == 400)
                #expect(try await http(.GET, server.baseURL + path + "00000000-0000-4000-8000-000000000000").status == 401)
            }
            let unknown = try await nclavCLI(["iac", "runs", "shop", "nope"], server: server)
            #expect(unknown.exitCode == 1 && unknown.stderr.contains("partition shop/nope is not in state and has no runs"), "\(unknown.stderr)")
            let json = try await nclavCLI(["plan", tree.path, "-o", "json"], server: server)
            let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect(document["has_changes"] as? Bool == true)
            #expect((document["partitions"] as? [[String: Any]])?.map { $0["partition"] as? String } == ["shop/api", "shop/web"])

            // shop/web's site is replaced when the API's url changes: planned after shop/api
            // applied, that replacement was never shown, so it is not applied.
            let held = try await nclavCLI(["apply", tree.path, "--plan", id], server: server)
            #expect(held.exitCode == 1, "\(held.stdout)\(held.stderr)")
            #expect(held.stdoutLines.contains { $0.hasPrefix("shop/api") && $0.contains("succeeded") }, "\(held.stdout)")
            #expect(
                held.stderr.contains(
                    "shop/web: not applied: planned after its upstreams, it destroys what was not approved (terraform_data.site replaced)"),
                "\(held.stderr)")
            // Planned again it is in plain sight; applying that plan by its id is the approval.
            let shown = try await nclavCLI(["plan", tree.path], server: server)
            #expect(shown.stdoutLines.contains("    -/+ terraform_data.site"), "\(shown.stdout)")
            let second = try #require(
                shown.stdoutLines.last { $0.hasPrefix("Apply exactly this plan: ") }?.split(separator: " ").last.map(String.init))
            let applied = try await nclavCLI(["apply", tree.path, "--plan", second], server: server)
            #expect(applied.exitCode == 0, "\(applied.stdout)\(applied.stderr)")
            #expect(applied.stdout.contains("Apply complete: 1 succeeded"), "\(applied.stdout)")
            let again = try await nclavCLI(["apply", tree.path, "--plan", id], server: server)
            #expect(again.exitCode == 1)
            #expect(again.stderr.contains("plan \(id.lowercased()) does not exist") || again.stderr.contains("does not exist"), "\(again.stderr)")
            #expect(try await nclavCLI(["plan", tree.path], server: server).stdout == "No changes.\n")
        }
    }

    @Test("on a terminal apply shows the plan and asks; `no` changes nothing, `yes` applies exactly what was shown")
    func terminalApproval() async throws {
        let (tree, cleanup) = try examplesCopy()
        defer { cleanup() }
        try await withServer { server async throws in
            #expect(try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server).exitCode == 0)
            try edit(tree, "platform/network/config.yml") { $0.replacingOccurrences(of: "region: \"{{ nclav_region }}\"", with: "region: moon-1") }
            let applies = try await runCount(server, "platform", "network")

            let declined = try await onTerminal(["apply", tree.path], answer: "no", server: server)
            #expect(declined.exitCode == 1, "\(declined.stdout)\(declined.stderr)")
            #expect(declined.stdout.contains("Apply plan ") && declined.stdout.contains("Only `yes` is accepted"), "\(declined.stdout)")
            #expect(declined.stdout.contains("apply declined; nothing changed"), "\(declined.stdout)")
            // Only the plan ran: the network's state is as it was.
            #expect(try await runCount(server, "platform", "network") == applies + 1)
            let stillOld = try await nclavCLI(["diff", tree.path, "--detailed-exitcode"], server: server)
            #expect(stillOld.exitCode == 2)

            let accepted = try await onTerminal(["apply", tree.path], answer: "yes", server: server)
            #expect(accepted.exitCode == 0, "\(accepted.stdout)\(accepted.stderr)")
            #expect(accepted.stdout.contains("Apply complete:"), "\(accepted.stdout)")
            #expect(try await nclavCLI(["diff", tree.path, "--detailed-exitcode"], server: server).exitCode == 0)
        }
    }

    @Test(
        "on a terminal, a deferred partition whose new plan destroys something is shown and asked about in a second round, and the tree converges"
    )
    func terminalSecondRound() async throws {
        let (tree, cleanup) = try examplesCopy()
        defer { cleanup() }
        try await withServer { server async throws in
            #expect(try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server).exitCode == 0)
            try edit(tree, "shop/api/config.yml") { $0.replacingOccurrences(of: "service_name: \"shop-", with: "service_name: \"shop2-") }
            let result = try await onTerminal(["apply", tree.path], answers: ["yes", "yes"], server: server)
            #expect(result.exitCode == 0, "\(result.stdout)\(result.stderr)")
            #expect(
                result.stdout.contains("1 partition(s) planned after their upstreams would destroy something not shown before"), "\(result.stdout)")
            #expect(result.stdout.contains("-/+ terraform_data.site"), "the replacement is shown before the second yes: \(result.stdout)")
            #expect(result.stdout.components(separatedBy: "Only `yes` is accepted").count == 3, "asked twice")
            #expect(try await nclavCLI(["diff", tree.path, "--detailed-exitcode"], server: server).exitCode == 0)
        }
    }

    @Test("off a terminal, an apply that tears something down is refused without --auto-approve and changes nothing; a plain change goes on")
    func offTerminalTeardown() async throws {
        let (tree, cleanup) = try examplesCopy()
        defer { cleanup() }
        try await withServer { server async throws in
            #expect(try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server).exitCode == 0)
            try FileManager.default.removeItem(at: tree.appendingPathComponent("shop"))
            let refused = try await nclavCLI(["apply", tree.path], server: server)
            #expect(refused.exitCode == 1)
            #expect(refused.stderr.contains("refusing to apply off a terminal without --auto-approve"), "\(refused.stderr)")
            #expect(refused.stderr.contains("partition shop/web torn down"), "\(refused.stderr)")
            #expect(refused.stderr.contains("enclave shop torn down"), "\(refused.stderr)")
            let enclave = try await http(.GET, server.baseURL + "/enclaves/shop", auth: .bearer(server.token)).text
            #expect(enclave.contains("\"partition_id\":\"web\""), "shop/web is still there")

            let forced = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server)
            #expect(forced.exitCode == 0, "\(forced.stdout)\(forced.stderr)")
            #expect(try await http(.GET, server.baseURL + "/enclaves/shop", auth: .bearer(server.token)).status == 404)
        }
    }

    @Test("targets: --partition runs only it and what it reads; dependents out of date are listed, not run; --enclave likewise")
    func targets() async throws {
        let (tree, cleanup) = try examplesCopy()
        defer { cleanup() }
        try await withServer { server async throws in
            #expect(try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server).exitCode == 0)
            // Changes everywhere.
            try edit(tree, "platform/network/config.yml") { $0.replacingOccurrences(of: "region: \"{{ nclav_region }}\"", with: "region: moon-1") }
            try edit(tree, "data/cache/main.tf") { $0 + "\nresource \"terraform_data\" \"extra\" { input = 1 }\n" }
            try edit(tree, "shop/api/config.yml") { $0.replacingOccurrences(of: "service_name: \"shop-", with: "service_name: \"shop3-") }
            try edit(tree, "shop/web/main.tf") { $0 + "\nresource \"terraform_data\" \"extra\" { input = 2 }\n" }

            let diff = try await nclavCLI(["diff", tree.path, "--enclave", "platform"], server: server)
            #expect(diff.stdoutLines.first == "~ partition platform/network (changed)")
            #expect(!diff.stdout.contains("shop/"), "\(diff.stdout)")

            let api = try await nclavCLI(["apply", tree.path, "--partition", "shop/api"], server: server)
            #expect(api.exitCode == 0, "\(api.stdout)\(api.stderr)")
            // shop/api reads data/postgres (which reads data/cache); the edge hostname only shop/web reads.
            for ran in ["data/cache", "shop/api"] {
                #expect(api.stdoutLines.contains { $0.hasPrefix(ran) && $0.contains("succeeded") }, "\(ran): \(api.stdout)")
            }
            for listed in ["platform/network", "shop/web"] {
                #expect(
                    api.stdoutLines.contains { $0.hasPrefix(listed) && $0.contains("skipped") && $0.contains("not targeted, and out of date") },
                    "\(listed): \(api.stdout)")
            }
            let web = try await nclavCLI(["diff", tree.path, "--partition", "shop/web"], server: server)
            #expect(
                web.stdoutLines == ["~ partition platform/network (changed)", "~ partition shop/web (changed)", "2 change(s) would be applied."],
                "\(web.stdout)")

            let bad = try await nclavCLI(["apply", tree.path, "--partition", "shop/nope", "--auto-approve"], server: server)
            #expect(bad.exitCode == 1)
            #expect(bad.stderr.contains("the target partition `shop/nope` is neither in the tree nor in state"), "\(bad.stderr)")
            // The storefront is replaced when the API's address changes: off a terminal that needs approval.
            let refused = try await nclavCLI(["apply", tree.path, "--partition", "shop/web"], server: server)
            #expect(refused.exitCode == 1 && refused.stderr.contains("shop/web: terraform_data.site replaced"), "\(refused.stderr)")
            let rest = try await nclavCLI(["apply", tree.path, "--partition", "shop/web", "--auto-approve"], server: server)
            #expect(rest.exitCode == 0, "\(rest.stdout)\(rest.stderr)")
            #expect(try await nclavCLI(["diff", tree.path, "--detailed-exitcode"], server: server).exitCode == 0)
        }
    }

    @Test("-o json: apply, drift, destroy and iac logs write only JSON on stdout (NDJSON events, then the run report)")
    func jsonOutput() async throws {
        let (tree, cleanup) = try examplesCopy()
        defer { cleanup() }
        func lines(_ result: TestSupport.ProcessResult) throws -> [[String: Any]] {
            try result.stdoutLines.filter { !$0.isEmpty }.map { line in
                try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
            }
        }
        try await withServer { server async throws in
            let apply = try await nclavCLI(["apply", tree.path, "-o", "json"], server: server)
            #expect(apply.exitCode == 0, "\(apply.stderr)")
            let applied = try lines(apply)
            let types = applied.map { $0["type"] as? String ?? "?" }
            #expect(types.contains("plan") && types.contains("progress") && types.contains("report"), "\(types)")
            #expect(types.last == "run_report")
            #expect(((applied.last?["report"] as? [String: Any])?["summary"] as? [String: Int])?["succeeded"] == 5)
            #expect(!apply.stdout.contains("\\/"), "no escaped slashes")

            let drift = try await nclavCLI(["drift", "-o", "json"], server: server)
            #expect(drift.exitCode == 0)
            #expect(try lines(drift).map { $0["type"] as? String ?? "?" }.suffix(2) == ["drift", "run_report"])

            let log = try await nclavCLI(["iac", "logs", "shop", "web", "-o", "json"], server: server)
            let run = try #require(try JSONSerialization.jsonObject(with: Data(log.stdout.utf8)) as? [String: Any])
            // Without a run id: the last apply, not the drift check's plan that ran after it.
            #expect((run["log"] as? String)?.contains("Apply complete!") == true && run["operation"] as? String == "provision", "\(run)")

            let destroy = try await nclavCLI(["destroy", "shop", "--yes", "-o", "json"], server: server)
            #expect(destroy.exitCode == 0, "\(destroy.stderr)")
            let destroyed = try lines(destroy)
            #expect(destroyed.map { $0["type"] as? String ?? "?" }.suffix(2) == ["report", "run_report"])
        }
    }

    @Test("on a terminal + is green, ~ yellow and - red; with NO_COLOR, or off a terminal, no colour at all")
    func colour() async throws {
        let (tree, cleanup) = try examplesCopy()
        defer { cleanup() }
        try await withServer { server async throws in
            let coloured = try await onTerminal(["diff", tree.path], answers: [], server: server)
            #expect(coloured.stdout.contains("\u{1B}[32m+ enclave data"), "\(coloured.stdout.debugDescription)")
            let plain = try await onTerminal(["diff", tree.path], answers: [], server: server, environment: ["NO_COLOR": "1"])
            #expect(plain.stdout.contains("+ enclave data") && !plain.stdout.contains("\u{1B}["), "\(plain.stdout.debugDescription)")
            let piped = try await nclavCLI(["diff", tree.path], server: server)
            #expect(!piped.stdout.contains("\u{1B}["))
            #expect(try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server).exitCode == 0)
            try FileManager.default.removeItem(at: tree.appendingPathComponent("shop"))
            let removal = try await onTerminal(["diff", tree.path], answers: [], server: server)
            #expect(removal.stdout.contains("\u{1B}[31m- partition shop/web"), "\(removal.stdout.debugDescription)")
        }
    }
}
