import Foundation
import PackagePlugin

/// Embeds the repository's `bootstrap/<cloud>` modules into the PlatformTemplates target at
/// build time, so the binary carries them (no resource bundle to lose when the binary is
/// copied alone) and they can never drift from the files in the repository.
@main
struct EmbedBootstrapModules: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) async throws -> [Command] {
        let root = context.package.directoryURL.appending(path: "bootstrap")
        let files = try Self.moduleFiles(under: root)
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedModules.swift")
        return [.buildCommand(
            displayName: "Embedding \(files.count) bootstrap module files",
            executable: try context.tool(named: "embed-templates").url,
            arguments: [output.path(percentEncoded: false), root.path(percentEncoded: false)] + files,
            inputFiles: files.map { root.appending(path: $0) },
            outputFiles: [output])]
    }

    /// Relative paths of the files a module ships: never a user's tfvars, state or .terraform.
    static func moduleFiles(under root: URL) throws -> [String] {
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { return [] }
        var files: [String] = []
        let rootPath = root.standardizedFileURL.path(percentEncoded: false)
        for case let url as URL in walker {
            let path = url.standardizedFileURL.path(percentEncoded: false)
            let relative = String(path.dropFirst(rootPath.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            let name = url.lastPathComponent
            if name == ".terraform" { walker.skipDescendants(); continue }
            guard (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true else { continue }
            if name == "terraform.tfvars" || name.hasSuffix(".auto.tfvars") || name.hasSuffix(".auto.tfvars.json")
                || name.contains(".tfstate") || name == ".terraform.lock.hcl" || name.hasPrefix(".") { continue }
            files.append(relative)
        }
        return files.sorted()
    }
}
