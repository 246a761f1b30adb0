import Foundation
import NclavTestSupport
import Testing

/// Package.swift is the module map: imports, layering rules and the arrows in docs/architecture.md follow it.
@Suite("Module graph")
struct ModuleGraphTests {
    @Test("every import is declared in Package.swift, the layering rules hold, and docs/architecture.md's arrows match")
    func importsMatchManifest() throws {
        let result = try TestSupport.run(
            try TestSupport.which("python3"), [TestSupport.packageRoot.appendingPathComponent("scripts/modules.py").path, "check"],
            in: TestSupport.packageRoot)
        #expect(result.exitCode == 0, "\(result.stdout)\(result.stderr)")
    }
}
