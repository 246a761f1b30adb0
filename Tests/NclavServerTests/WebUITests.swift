import Foundation
import NclavTestSupport
import Testing

/// The web UI in a real headless Chromium (Debian's package), driven through the DevTools
/// protocol by `Tests/Fixtures/ui/drive_ui.py`: load, log in, see the graph, open a running
/// run and watch its lines arrive.
@Suite("Web UI in headless Chromium (real terraform)", .serialized)
struct WebUITests {
    @Test("static files load without the token, with a strict CSP; anything else under /ui is 404")
    func staticFiles() async throws {
        try await withServer { server async throws in
            let page = try await http(.GET, server.baseURL + "/ui")
            #expect(page.status == 200)
            #expect(page.headers.first(name: "Content-Type") == "text/html; charset=utf-8")
            #expect(page.headers.first(name: "Content-Security-Policy")?.contains("script-src 'self'") == true)
            #expect(page.headers.first(name: "X-Content-Type-Options") == "nosniff")
            #expect(page.text.contains(#"<script src="/ui/app.js"></script>"#))
            #expect(try await http(.GET, server.baseURL + "/ui/app.js").status == 200)
            #expect(try await http(.GET, server.baseURL + "/ui/style.css").headers.first(name: "Content-Type") == "text/css; charset=utf-8")
            #expect(try await http(.GET, server.baseURL + "/ui/nope.js").status == 404)
            #expect(try await http(.GET, server.baseURL + "/ui/..%2Ftoken").status != 200)
            #expect(try await http(.GET, server.baseURL + "/ui/x/app.js").status == 401, "deeper paths are not UI files and need the token")
            #expect(!page.text.contains(server.token))
        }
    }

    @Test("log in, see the graph with status and import edges, open a running run and see its lines arrive live")
    func browser() async throws {
        let python = try TestSupport.which("python3")
        _ = try TestSupport.which("chromium")
        let scratch = try TestSupport.makeScratchDirectory("nclav-ui")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let tree = scratch.appendingPathComponent("local")
        try FileManager.default.copyItem(at: TestSupport.packageRoot.appendingPathComponent("examples/local"), to: tree)
        // data/cache ticks once a second when ticks.txt says so (and its change re-runs it).
        let cache = tree.appendingPathComponent("data/cache")
        try "0\n".write(to: cache.appendingPathComponent("ticks.txt"), atomically: true, encoding: .utf8)
        let mainTF = cache.appendingPathComponent("main.tf")
        try
            (try String(contentsOf: mainTF, encoding: .utf8) + """

                resource "terraform_data" "ticker" {
                  triggers_replace = [filemd5("${path.module}/ticks.txt")]
                  provisioner "local-exec" {
                    command = "n=$(cat ${path.module}/ticks.txt); i=1; while [ $i -le $n ]; do echo tick-$i; i=$((i+1)); sleep 1; done"
                  }
                }
                """).write(to: mainTF, atomically: true, encoding: .utf8)

        try await withServer { server async throws in
            let first = try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server)
            #expect(first.exitCode == 0, "\(first.stderr)")
            try "15\n".write(to: cache.appendingPathComponent("ticks.txt"), atomically: true, encoding: .utf8)
            async let second = nclavCLI(["apply", tree.path, "--auto-approve"], server: server)
            // Wait until the re-run of data/cache is running.
            var running = false
            for _ in 0..<200 where !running {
                let latest = try await http(.GET, server.baseURL + "/enclaves/data/partitions/cache/iac/runs/latest", auth: .bearer(server.token))
                let run = latest.status == 200 ? try latest.json() : [:]
                running = run["status"] as? String == "running"
                if !running { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(running)

            let driver = TestSupport.fixture("ui/drive_ui.py").path
            // Screenshots are kept as test artefacts (git ignores .build/).
            let shots = TestSupport.packageRoot.appendingPathComponent(".build/test-artifacts/web-ui")
            try? FileManager.default.removeItem(at: shots)
            let driven = try await TestSupport.runDetached(python, [driver, server.baseURL, server.token, "data/cache", shots.path])
            #expect(driven.exitCode == 0, "\(driven.stderr)")
            let seen = try #require(try JSONSerialization.jsonObject(with: Data(driven.stdout.utf8)) as? [String: Any], "\(driven.stdout)")
            #expect(seen["login_visible"] as? Bool == true)
            #expect(seen["app_visible_before_login"] as? Bool == false)
            #expect(seen["login_visible_after_login"] as? Bool == false)
            let partitions = (seen["partitions"] as? [[String]] ?? []).map { $0.joined(separator: " ") }
            #expect(partitions.contains("shop/web active") && partitions.contains("data/postgres active") && partitions.count == 5, "\(partitions)")
            #expect((seen["edges"] as? [String] ?? []).contains("shop/web->platform/network"))
            #expect(seen["token_in_url"] as? Bool == false)
            #expect(seen["token_in_session_storage"] as? Bool == true)
            #expect(seen["token_in_page"] as? Bool == false)
            #expect(seen["detail_title"] as? String == "data/cache")
            // Lines were on screen while the run was still going…
            #expect(seen["first_lines_while"] as? String == "streaming")
            let firstLines = seen["first_lines"] as? [String] ?? []
            #expect(!firstLines.isEmpty && firstLines.count < 15, "\(firstLines)")
            // …and at the end every line is there exactly once, in order.
            #expect(seen["final_state"] as? String == "succeeded")
            let finalLines = (seen["final_lines"] as? [String] ?? []).filter { !$0.contains("echo") }
            #expect(finalLines.map { $0.components(separatedBy: ": ").last ?? "" } == (1...15).map { "tick-\($0)" }, "\(finalLines)")
            #expect((seen["log_status"] as? String)?.hasPrefix("run succeeded") == true)
            #expect((seen["versions_rows"] as? Int ?? 0) >= 1)
            for name in ["1-login.png", "2-graph.png", "3-run-live.png", "4-run-finished.png"] {
                let png = try Data(contentsOf: shots.appendingPathComponent(name))
                #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 5_000, "\(name) is a real screenshot")
            }
            #expect(try await second.exitCode == 0)
        }
    }

    @Test("a saved plan is listed and shown: per partition terraform's resource changes, deferred ones marked, and the plan's own log")
    func planPage() async throws {
        let python = try TestSupport.which("python3")
        _ = try TestSupport.which("chromium")
        let scratch = try TestSupport.makeScratchDirectory("nclav-ui-plan")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let tree = scratch.appendingPathComponent("local")
        try FileManager.default.copyItem(at: TestSupport.packageRoot.appendingPathComponent("examples/local"), to: tree)
        try await withServer { server async throws in
            #expect(try await nclavCLI(["apply", tree.path, "--auto-approve"], server: server).exitCode == 0)
            let config = tree.appendingPathComponent("shop/api/config.yml")
            try (try String(contentsOf: config, encoding: .utf8)).replacingOccurrences(of: "service_name: \"shop-", with: "service_name: \"shop2-")
                .write(to: config, atomically: true, encoding: .utf8)
            let plan = try await nclavCLI(["plan", tree.path], server: server)
            let id = try #require(plan.stdoutLines.last { $0.hasPrefix("Apply exactly this plan: ") }?.split(separator: " ").last.map(String.init))
            let shots = TestSupport.packageRoot.appendingPathComponent(".build/test-artifacts/web-ui")
            let driven = try await TestSupport.runDetached(
                python, [TestSupport.fixture("ui/drive_ui.py").path, server.baseURL, server.token, "--plan", id, shots.path])
            #expect(driven.exitCode == 0, "\(driven.stderr)")
            let seen = try #require(try JSONSerialization.jsonObject(with: Data(driven.stdout.utf8)) as? [String: Any], "\(driven.stdout)")
            #expect(seen["plan_rows"] as? Int == 1)
            #expect(seen["list_summary"] as? String == "0 to add, 1 to change, 0 to destroy; 1 deferred")
            #expect(seen["title"] as? String == "Plan \(id)")
            let partitions = try #require(seen["partitions"] as? [[String: Any]])
            #expect(partitions.map { $0["partition"] as? String } == ["shop/api", "shop/web"])
            #expect(partitions[0]["changes"] as? [String] == ["~ module.partition.terraform_data.service"])
            #expect(partitions[0]["deferred"] as? Bool == false && partitions[1]["deferred"] as? Bool == true)
            #expect((partitions[1]["note"] as? String)?.hasPrefix("deferred: inputs from shop/api change") == true)
            #expect(seen["log_state"] as? String == "succeeded")
            #expect(seen["log_has_plan_line"] as? Bool == true)
        }
    }

    @Test("each apply is one page: every partition it ran, failed or skipped, with its operation, result, duration and log")
    func reconcilePage() async throws {
        let python = try TestSupport.which("python3")
        _ = try TestSupport.which("chromium")
        let scratch = try TestSupport.makeScratchDirectory("nclav-ui-reconcile")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let tree = scratch.appendingPathComponent("local")
        try FileManager.default.copyItem(at: TestSupport.packageRoot.appendingPathComponent("examples/local"), to: tree)
        let cache = tree.appendingPathComponent("data/cache/main.tf")
        try (try String(contentsOf: cache, encoding: .utf8) + "\nresource \"terraform_data\" \"broken\" {\n  input = no_such_function()\n}\n")
            .write(to: cache, atomically: true, encoding: .utf8)
        try await withServer { server async throws in
            let report = scratch.appendingPathComponent("report.json")
            let apply = try await nclavCLI(["apply", tree.path, "--auto-approve", "--report-file", report.path], server: server)
            #expect(apply.exitCode == 1)
            let written = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as? [String: Any])
            let id = try #require((written["reconcile_ids"] as? [String])?.first).lowercased()

            let page = try await http(.GET, server.baseURL + "/reconciles/\(id)", auth: .bearer(server.token)).json()
            #expect((page["reconcile"] as? [String: Any])?["result"] as? String == "1 error(s)", "\(page)")
            let shots = TestSupport.packageRoot.appendingPathComponent(".build/test-artifacts/web-ui")
            let driven = try await TestSupport.runDetached(
                python, [TestSupport.fixture("ui/drive_ui.py").path, server.baseURL, server.token, "--reconcile", id, shots.path])
            #expect(driven.exitCode == 0, "\(driven.stderr)")
            let seen = try #require(try JSONSerialization.jsonObject(with: Data(driven.stdout.utf8)) as? [String: Any], "\(driven.stdout)")
            #expect((seen["summary"] as? String)?.contains(" change(s): 1 error(s)") == true, "\(seen)")
            let rows = Dictionary(
                uniqueKeysWithValues: (seen["rows"] as? [[Any]] ?? []).map {
                    ($0[0] as? String ?? "", ($0[1] as? String ?? "", $0[2] as? String ?? ""))
                })
            #expect(rows["data/cache"]?.0 == "failed" && rows["data/cache"]?.1 == "provision", "\(rows)")
            #expect(rows["platform/network"]?.0 == "succeeded")
            #expect(rows["data/postgres"]?.0 == "skipped" && rows["shop/web"]?.0 == "skipped", "\(rows)")
            #expect(seen["log_state"] as? String != nil)
        }
    }

    @Test("a pasted link #/enclave/partition/runs/<id> opens that run's log after the login; the log can be downloaded")
    func deepLink() async throws {
        let python = try TestSupport.which("python3")
        _ = try TestSupport.which("chromium")
        let builder = try TreeBuilder.scratch("nclav-ui-link")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        try builder.enclave("app")
        try builder.partition("app", "web", main: "resource \"terraform_data\" \"a\" { input = 1 }\n")
        try await withServer { server async throws in
            #expect(try await nclavCLI(["apply", builder.root.path, "--auto-approve"], server: server).exitCode == 0)
            let latest = try await http(.GET, server.baseURL + "/enclaves/app/partitions/web/iac/runs/latest", auth: .bearer(server.token)).json()
            let runID = try #require(latest["id"] as? String)
            let shots = TestSupport.packageRoot.appendingPathComponent(".build/test-artifacts/web-ui")
            let driven = try await TestSupport.runDetached(
                python, [TestSupport.fixture("ui/drive_ui.py").path, server.baseURL, server.token, "--link", "app/web/runs/\(runID)", shots.path])
            #expect(driven.exitCode == 0, "\(driven.stderr)")
            let seen = try #require(try JSONSerialization.jsonObject(with: Data(driven.stdout.utf8)) as? [String: Any], "\(driven.stdout)")
            #expect(seen["log_title"] as? String == "Run \(runID) of app/web")
            #expect(seen["hash"] as? String == "#/app/web/runs/\(runID)" && seen["log_link"] as? String == "#/app/web/runs/\(runID)")
            #expect(seen["download_file"] as? String == "app-web-\(runID).log")
            #expect(seen["log_has_text"] as? Bool == true)
        }
    }

    @Test("a partition that failed before terraform could start shows why on its detail")
    func failureWithoutRun() async throws {
        let python = try TestSupport.which("python3")
        _ = try TestSupport.which("chromium")
        let builder = try TreeBuilder.scratch("nclav-ui-failed")
        defer { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }
        try builder.enclave("app")
        try builder.partition("app", "ok", main: "resource \"terraform_data\" \"a\" { input = 1 }\n")
        try builder.partition(
            "app", "notool", "terraform:\n  tool: /nonexistent/terraform\n", main: "resource \"terraform_data\" \"b\" { input = 2 }\n")
        try await withServer { server async throws in
            let apply = try await nclavCLI(["apply", builder.root.path, "--auto-approve"], server: server)
            #expect(apply.exitCode == 1)
            #expect(
                apply.stdoutLines.contains { $0.contains("! app/notool provision failed after") && $0.contains("no IaC tool found") },
                "\(apply.stdout)")
            let shots = TestSupport.packageRoot.appendingPathComponent(".build/test-artifacts/web-ui")
            let driven = try await TestSupport.runDetached(
                python,
                [
                    TestSupport.fixture("ui/drive_ui.py").path, server.baseURL, server.token,
                    "--failed", "app/notool", shots.path,
                ])
            #expect(driven.exitCode == 0, "\(driven.stderr)")
            let seen = try #require(try JSONSerialization.jsonObject(with: Data(driven.stdout.utf8)) as? [String: Any], "\(driven.stdout)")
            #expect(seen["status"] as? String == "failed")
            #expect(
                (seen["detail_error"] as? String)?.hasPrefix("Last apply failed: no IaC tool found: tried `/nonexistent/terraform`") == true,
                "\(seen)")
            #expect(seen["runs_rows"] as? Int == 0, "no process started, so no run")
        }
    }

    @Test(
        "review pages: a layered graph whose edges never cross a box, a live running mark, runs with id, duration, trigger and drift, who started each reconcile, a state diff, a coloured log"
    )
    func reviewPages() async throws {
        let python = try TestSupport.which("python3")
        _ = try TestSupport.which("chromium")
        let builder = try TreeBuilder.scratch("nclav-ui-review")
        let scratch = builder.root.deletingLastPathComponent()
        defer { try? FileManager.default.removeItem(at: scratch) }
        let world = scratch.appendingPathComponent("world.txt")
        try "blue\n".write(to: world, atomically: true, encoding: .utf8)
        let export = { (name: String) in "  - name: \(name)\n    target_partition: \(name)\n    type: http\n    to: any_enclave\n" }
        let importing = { (from: String, name: String) in "  - from: \(from)\n    export_name: \(name)\n    alias: \(name)\n" }
        try builder.enclave("app", "exports:\n" + export("base") + export("mid") + "imports:\n" + importing("app", "base") + importing("app", "mid"))
        try builder.enclave("ops", "imports:\n" + importing("app", "base"))
        let http = "produces: http\ndeclared_outputs: [hostname, port]\n"
        let served = { (name: String) in
            "variable \"upstream\" {\n  type    = string\n  default = \"\"\n}\nresource \"terraform_data\" \"\(name)\" { input = var.upstream }\n"
                + "output \"hostname\" { value = \"\(name).internal\" }\noutput \"port\" { value = 443 }\n"
        }
        // base ticks for as long as ticks.txt says, so a test can look while it runs.
        try builder.file("app/base/ticks.txt", "0\n")
        try builder.partition(
            "app", "base", http,
            main: served("base") + """
                resource "terraform_data" "ticker" {
                  triggers_replace = [filemd5("${path.module}/ticks.txt")]
                  provisioner "local-exec" {
                    command = "n=$(cat ${path.module}/ticks.txt); i=1; while [ $i -le $n ]; do echo tick-$i; i=$((i+1)); sleep 1; done"
                  }
                }

                """)
        try builder.partition("app", "mid", http + "inputs:\n  upstream: \"{{ base.hostname }}\"\n", main: served("mid"))
        let topInputs = { (label: String) in "inputs:\n  upstream: \"{{ mid.hostname }} {{ base.hostname }} \(label)\"\n" }
        try builder.partition("app", "top", topInputs("v1"), main: served("top"))
        try builder.partition("app", "side", main: "resource \"terraform_data\" \"probe\" { input = trimspace(file(\"\(world.path)\")) }\n")
        try builder.partition("ops", "watch", "inputs:\n  upstream: \"{{ base.hostname }}\"\n", main: served("watch"))

        try await withServer { server async throws in
            #expect(try await nclavCLI(["apply", builder.root.path, "--auto-approve"], server: server).exitCode == 0)
            try builder.file("app/top/config.yml", "id: top\nname: top\n" + topInputs("v2"))
            #expect(try await nclavCLI(["apply", builder.root.path, "--auto-approve"], server: server).exitCode == 0)
            try "green\n".write(to: world, atomically: true, encoding: .utf8)
            #expect(try await nclavCLI(["drift"], server: server).exitCode == 2)
            try builder.file("app/base/ticks.txt", "8\n")
            async let running = nclavCLI(["apply", builder.root.path, "--auto-approve"], server: server)

            let shots = TestSupport.packageRoot.appendingPathComponent(".build/test-artifacts/web-ui")
            let driven = try await TestSupport.runDetached(
                python,
                [TestSupport.fixture("ui/drive_ui.py").path, server.baseURL, server.token, "--review", "app/base,app/side,app/top", shots.path])
            #expect(driven.exitCode == 0, "\(driven.stderr)")
            let seen = try #require(try JSONSerialization.jsonObject(with: Data(driven.stdout.utf8)) as? [String: Any], "\(driven.stdout)")

            // The graph: three layers (base and side; mid and watch; top), every edge pointing
            // right, none through a box, and the running partition marked while it runs.
            #expect(seen["layers"] as? String == "3")
            let boxes = try #require(seen["boxes"] as? [String: [Double]])
            #expect(boxes["app/base"]?[0] == boxes["app/side"]?[0] && boxes["app/mid"]?[0] == boxes["ops/watch"]?[0], "\(boxes)")
            #expect((boxes["app/mid"]?[0] ?? 0) > (boxes["app/base"]?[0] ?? 0) && (boxes["app/top"]?[0] ?? 0) > (boxes["app/mid"]?[0] ?? 0))
            #expect(seen["edge_count"] as? Int == 4)
            #expect(seen["edges_rightward"] as? Bool == true)
            #expect(seen["crossings"] as? [String] == [], "\(seen["crossings"] ?? "")")
            #expect(seen["running_mark"] as? String == "update")
            #expect(seen["running_note"] as? String == "app · update running…")
            #expect((seen["labels"] as? [String] ?? []).contains("watch / ops · active"), "\(seen["labels"] ?? "")")

            // Who started each reconcile, and the drift check as a page of its own.
            let reconciles = seen["reconciles"] as? [[String]] ?? []
            #expect(reconciles.contains { $0[1] == "drift" && $0[4] == "4 in sync, 1 drifted, 0 error(s)" }, "\(reconciles)")
            #expect(
                reconciles.contains {
                    $0[1] == "apply"
                        && $0[3].range(
                            of: #"^`nclav apply` \(nclav-cli/\d+\.\d+\.\d+\) with the admin token from 127\.0\.0\.1$"#, options: .regularExpression)
                            != nil
                },
                "\(reconciles)")
            #expect((seen["drift_page_trigger"] as? String)?.hasPrefix("Started by `nclav drift` (nclav-cli/") == true, "\(seen)")
            #expect((seen["drift_page_summary"] as? String)?.hasPrefix("drift · drift check of every enclave: ") == true, "\(seen)")
            let driftRows = (seen["drift_page_rows"] as? [[String]] ?? []).map { $0.joined(separator: " ") }
            #expect(
                driftRows.contains("app/side drifted plan") && driftRows.contains("app/base in-sync plan") && driftRows.count == 5, "\(driftRows)")

            // The drifted partition's runs: id, duration, the drift check shown as drifted and
            // linked to the check that ran it.
            #expect(seen["runs_header"] as? [String] == ["run", "started", "operation", "result", "duration", "exit", "trigger"])
            let runs = seen["runs"] as? [[String]] ?? []
            let drift = try #require(runs.first { $0[3] == "drifted" }, "\(runs)")
            #expect(drift[2] == "plan" && drift[5] == "2" && drift[6] == "drift: drift check of every enclave", "\(drift)")
            #expect(drift[0].count == 8 && drift[4].hasSuffix(" s"), "\(drift)")
            #expect((seen["run_id_title"] as? String)?.count == 36)

            // The state diff between top's two versions names the attribute that changed.
            let diff = (seen["state_diff"] as? [[String]] ?? []).map { $0.joined(separator: " ") }
            #expect(diff.contains("update ~ terraform_data.top"), "\(diff)")
            #expect(
                diff.contains {
                    $0.hasPrefix("attribute     input: ") && $0.contains("base.internal v1") && $0.contains("→ ") && $0.contains("base.internal v2")
                }, "\(diff)")

            // Terraform's own colours in the log, the text itself plain.
            let colours = (seen["log_colours"] as? [[String]] ?? []).map { $0.joined(separator: " ") }
            #expect(colours.contains { $0.hasPrefix("tf-done Apply complete! Resources:") }, "\(colours)")
            #expect(seen["log_download_text_plain"] as? Bool == true)

            // After the apply, each partition's result in it is marked (as its reconcile page says).
            let marked = try #require(seen["last_results"] as? [String: String])
            #expect(marked["app/base"] == "succeeded", "\(marked)")
            #expect(marked["app/mid"] == "unchanged" && marked["ops/watch"] == "unchanged", "base's outputs did not change: \(marked)")
            for name in [
                "9-graph-running.png", "10-drift-check.png", "11-runs.png", "12-state-diff.png", "13-log-coloured.png", "14-graph-after.png",
            ] {
                let png = try Data(contentsOf: shots.appendingPathComponent(name))
                #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 5_000, "\(name) is a real screenshot")
            }
            #expect(try await running.exitCode == 0)
        }
    }
}
