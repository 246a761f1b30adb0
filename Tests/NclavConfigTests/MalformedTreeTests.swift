import Foundation
import NclavConfig
import NclavTestSupport
import Testing

/// Each directory under `Tests/Fixtures/invalid/` is one malformed enclaves tree (`tree/`)
/// and the exact diagnostics it must produce (`expected.txt`, one `file:line:col: severity:
/// message` per line, file relative to the tree).
enum InvalidFixtures {
    static let directory = TestSupport.fixture("invalid")

    static let names: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted()
    }()

    static func tree(_ name: String) -> String { directory.appendingPathComponent(name).appendingPathComponent("tree").path }

    static func expected(_ name: String) throws -> [String] {
        let text = try String(contentsOf: directory.appendingPathComponent(name).appendingPathComponent("expected.txt"), encoding: .utf8)
        return text.split(separator: "\n").map(String.init)
    }
}

@Suite("Malformed trees give exact, positioned diagnostics")
struct MalformedTreeTests {
    @Test("there are at least 40 malformed cases")
    func enoughCases() {
        #expect(InvalidFixtures.names.count >= 40)
    }

    @Test("each case reports exactly its expected diagnostics", arguments: InvalidFixtures.names)
    func reportsExpectedDiagnostics(_ name: String) throws {
        let result = try ValidationResult.check(directory: InvalidFixtures.tree(name))
        let actual = result.diagnostics.map(\.description)
        #expect(actual == (try InvalidFixtures.expected(name)))
    }

    @Test("every diagnostic names a file of the tree and a real line", arguments: InvalidFixtures.names)
    func diagnosticsPointIntoTheTree(_ name: String) throws {
        let root = InvalidFixtures.tree(name)
        let result = try ValidationResult.check(directory: root)
        #expect(!result.diagnostics.isEmpty)
        for diagnostic in result.diagnostics {
            let path = diagnostic.location.file.isEmpty ? root : "\(root)/\(diagnostic.location.file)"
            #expect(FileManager.default.fileExists(atPath: path), "\(diagnostic) names a missing file")
            let lines =
                diagnostic.location.file.isEmpty
                ? 1 : ((try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n", omittingEmptySubsequences: false).count ?? 1)
            #expect((1...max(lines, 1)).contains(diagnostic.location.line), "\(diagnostic) points past the end of the file")
            #expect(diagnostic.location.column >= 1)
        }
    }

    @Test("a tree with only a warning is still valid")
    func warningsDoNotInvalidate() throws {
        let result = try ValidationResult.check(directory: InvalidFixtures.tree("audience-enclave-undeclared-warning"))
        #expect(result.isValid)
        #expect(result.warnings.count == 1)
    }

    @Test("two independent mistakes in different files are both reported")
    func independentMistakes() throws {
        let result = try ValidationResult.check(directory: InvalidFixtures.tree("two-independent-mistakes"))
        #expect(Set(result.errors.map(\.location.file)) == ["app/api/config.yml", "data/db/config.yml"])
    }

    @Test("a directory that does not exist is a load error, not a diagnostic")
    func missingDirectory() {
        #expect(throws: TreeLoadError.notFound("/nonexistent/enclaves")) {
            try ValidationResult.check(directory: "/nonexistent/enclaves")
        }
        let file = TestSupport.fixture("valid/minimal/app/config.yml").path
        #expect(throws: TreeLoadError.notADirectory(file)) { try ValidationResult.check(directory: file) }
    }
}
