import Foundation
import NclavCore
import NclavTestSupport
import Testing

@testable import NclavConfig

/// docs/yaml.md must describe every key the loader accepts and every value it allows, so the
/// reference cannot fall behind the code.
@Suite("YAML reference (docs/yaml.md)")
struct ReferenceDocsTests {
    let text = (try? String(contentsOf: TestSupport.packageRoot.appendingPathComponent("docs/yaml.md"), encoding: .utf8)) ?? ""

    func row(_ key: String) -> Bool { text.contains("| `\(key)` |") }

    @Test("every accepted key has a row")
    func everyKey() {
        var missing: [String] = []
        for key in TreeLoader.enclaveKeys + TreeLoader.exportKeys + TreeLoader.importKeys where !row(key) { missing.append(key) }
        for key in TreeLoader.partitionKeys where key != "terraform" && !row(key) { missing.append(key) }
        for key in TreeLoader.networkKeys where !row("network.\(key)") { missing.append("network.\(key)") }
        for key in TreeLoader.dnsKeys where !row("dns.\(key)") { missing.append("dns.\(key)") }
        for key in TreeLoader.terraformKeys where !row("terraform.\(key)") { missing.append("terraform.\(key)") }
        #expect(missing == [], "keys the loader accepts but docs/yaml.md does not describe")
    }

    @Test("every allowed value and context token is named")
    func everyValue() {
        let values =
            CloudTarget.allCases.map(\.rawValue) + ExportType.allCases.map(\.rawValue) + AuthType.allCases.map(\.rawValue)
            + IacBackend.allCases.map(\.rawValue) + ["public", "any_enclave", "vpn"]
        #expect(values.filter { !text.contains("`\($0)`") } == [])
        let tokens = ContextTokens.common + CloudTarget.allCases.flatMap { ContextTokens.specific(to: $0) }
        #expect(Set(tokens).filter { !text.contains("{{ \($0) }}") }.sorted() == [])
    }

    @Test("the reference documents exist and the README links them")
    func linked() throws {
        let readme = try String(contentsOf: TestSupport.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        for name in ["yaml.md", "cli.md", "api.md", "openapi.yaml", "state-backend.md", "operations.md", "troubleshooting.md", "architecture.md"] {
            #expect(FileManager.default.fileExists(atPath: TestSupport.packageRoot.appendingPathComponent("docs/\(name)").path), "\(name)")
            #expect(readme.contains("docs/\(name)"), "README links docs/\(name)")
        }
    }
}
