import Foundation
import NclavTestSupport
import Testing

/// The README's five-minute tutorial, run as written: its files are taken from the README
/// itself (each block that starts with `# tutorial/<path>`), so the tutorial cannot drift
/// from what nclav does.
@Suite("README tutorial (real terraform)", .serialized)
struct TutorialTests {
    /// The tutorial's files: path → content, from the README's code blocks.
    static func files() throws -> [String: String] {
        let readme = try String(contentsOf: TestSupport.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let start = try #require(readme.range(of: "## Five-minute tutorial"))
        let section = readme[start.upperBound...].components(separatedBy: "\n## ").first ?? ""
        var files: [String: String] = [:]
        for block in section.components(separatedBy: "```").enumerated().filter({ $0.offset % 2 == 1 }).map(\.element) {
            var lines = block.split(separator: "\n", omittingEmptySubsequences: false).dropFirst()  // the language tag
            guard let first = lines.first, first.hasPrefix("# tutorial/") else { continue }
            lines.removeFirst()
            files[String(first.dropFirst("# ".count))] = lines.joined(separator: "\n")
        }
        return files
    }

    @Test("validate, diff, apply, change, plan, apply, logs, destroy: each says what the README says it says")
    func tutorial() async throws {
        let files = try Self.files()
        #expect(
            files.keys.sorted() == [
                "tutorial/app/api/config.yml", "tutorial/app/api/main.tf", "tutorial/app/config.yml", "tutorial/app/web/config.yml",
                "tutorial/app/web/main.tf",
            ])
        let scratch = try TestSupport.makeScratchDirectory("nclav-tutorial")
        defer { try? FileManager.default.removeItem(at: scratch) }
        for (path, content) in files {
            let url = scratch.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try content.write(to: url, atomically: true, encoding: .utf8)
        }
        let tree = scratch.appendingPathComponent("tutorial").path
        let validate = try TestSupport.run(TestSupport.nclavBinary.path, ["validate", tree])
        #expect(validate.exitCode == 0 && validate.stdout.contains("valid: 1 enclave, 2 partitions"), "\(validate.stdout)\(validate.stderr)")
        try await withServer { server async throws in
            let diff = try await nclavCLI(["diff", tree], server: server)
            #expect(["+ enclave app", "+ partition app/api", "+ partition app/web"].allSatisfy(diff.stdoutLines.contains), "\(diff.stdout)")
            let apply = try await nclavCLI(["apply", tree], server: server)
            #expect(apply.exitCode == 0, "\(apply.stdout)\(apply.stderr)")
            #expect(apply.stdout.contains("app/web deferred: inputs from app/api change"), "\(apply.stdout)")
            let config = scratch.appendingPathComponent("tutorial/app/api/config.yml")
            try (try String(contentsOf: config, encoding: .utf8)).replacingOccurrences(of: "api-v1", with: "api-v2")
                .write(to: config, atomically: true, encoding: .utf8)
            let plan = try await nclavCLI(["plan", tree], server: server)
            #expect(plan.exitCode == 2)
            #expect(plan.stdoutLines.contains("    ~   terraform_data.api") && plan.stdout.contains("~ app/web (update) deferred"), "\(plan.stdout)")
            let second = try await nclavCLI(["apply", tree], server: server)
            #expect(second.exitCode == 0 && second.stdout.contains("Apply complete: 2 succeeded"), "\(second.stdout)\(second.stderr)")
            let logs = try await nclavCLI(["iac", "logs", "app", "web"], server: server)
            #expect(logs.stdout.contains("api-v2.internal:8443"), "web was updated with api's new hostname: \(logs.stdout)")
            let destroy = try await nclavCLI(["destroy", "app", "--yes"], server: server)
            #expect(destroy.exitCode == 0 && destroy.stdout.contains("destroyed enclave app"), "\(destroy.stdout)\(destroy.stderr)")
        }
    }
}
