import Foundation

/// Whether `terraform init` in a workspace may write to the shared plugin cache.
///
/// Terraform does not lock its plugin cache, so inits that install providers must not overlap
/// (`InitGate`). But serialising *every* init halves parallel applies for modules that use only
/// the built-in `terraform` provider (`terraform_data`), which never touch the cache. This scan
/// is conservative: anything it cannot rule out counts as "may install".
public enum ProviderScan {
    public static func mayInstallProviders(in workspace: URL) -> Bool {
        guard let walker = FileManager.default.enumerator(at: workspace, includingPropertiesForKeys: [.isDirectoryKey]) else { return true }
        for case let url as URL in walker {
            if url.lastPathComponent == ".terraform" {
                walker.skipDescendants()
                continue
            }
            let name = url.lastPathComponent
            if name.hasSuffix(".tf.json") { return true }
            guard name.hasSuffix(".tf") else { continue }
            guard let text = try? String(contentsOf: url, encoding: .utf8) else { return true }
            if needsProviders(text) { return true }
        }
        return false
    }

    /// True when the HCL names a provider other than the built-in one, or a module that is not
    /// a local path (its providers are unknown until it is downloaded).
    static func needsProviders(_ hcl: String) -> Bool {
        for line in hcl.split(separator: "\n") {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.hasPrefix("#") || text.hasPrefix("//") { continue }
            if text.hasPrefix("required_providers") || text.hasPrefix("provider ") || text.hasPrefix("provider\"") { return true }
            for keyword in ["resource", "data", "ephemeral"] where text.hasPrefix(keyword + " ") || text.hasPrefix(keyword + "\"") {
                let rest = text.dropFirst(keyword.count).trimmingCharacters(in: .whitespaces)
                guard rest.hasPrefix("\"") else { return true }
                let type = rest.dropFirst().prefix { $0 != "\"" }
                if !type.hasPrefix("terraform_") { return true }
            }
            if text.hasPrefix("source") && text.contains("=") {
                let value = text.split(separator: "=", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces)
                let unquoted = value.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                if !(unquoted.hasPrefix("./") || unquoted.hasPrefix("../")) { return true }
            }
        }
        return false
    }

    /// True when the workspace's configuration needs nothing `terraform init` would fetch: no
    /// provider but the built-in one and no `module` block (even a local module must be
    /// registered in `.terraform/modules`). Such a workspace's init only records the backend,
    /// which is the same for every nclav workspace, so it can be reused (`BackendInitCache`).
    /// One pass over the files answers both questions.
    public static func isSelfContained(_ workspace: URL) -> Bool {
        guard let walker = FileManager.default.enumerator(at: workspace, includingPropertiesForKeys: [.isDirectoryKey]) else { return false }
        for case let url as URL in walker {
            if url.lastPathComponent == ".terraform" {
                walker.skipDescendants()
                continue
            }
            let name = url.lastPathComponent
            if name.hasSuffix(".tf.json") { return false }
            guard name.hasSuffix(".tf") else { continue }
            guard let text = try? String(contentsOf: url, encoding: .utf8) else { return false }
            if needsProviders(text) || declaresModule(text) { return false }
        }
        return true
    }

    static func declaresModule(_ hcl: String) -> Bool {
        hcl.split(separator: "\n").contains { line in
            let text = line.trimmingCharacters(in: .whitespaces)
            return text.hasPrefix("module ") || text.hasPrefix("module\"")
        }
    }
}
