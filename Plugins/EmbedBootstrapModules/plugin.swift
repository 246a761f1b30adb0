import Foundation
import PackagePlugin

/// Embeds repository files into a target at build time, so the binary carries them (no
/// resource bundle to lose when the binary is copied alone) and they can never drift from the
/// files in the repository:
/// - PlatformTemplates: the `bootstrap/<cloud>` modules (`EmbeddedModules`);
/// - NclavServer: `docs/openapi.yaml` and the web UI under `ui/` (`EmbeddedAssets`).
@main
struct EmbedBootstrapModules: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) async throws -> [Command] {
        let package = context.package.directoryURL
        let typeName: String
        let root: URL
        let files: [String]
        switch target.name {
        case "PlatformTemplates":
            typeName = "EmbeddedModules"
            root = package.appending(path: "bootstrap")
            files = try Self.moduleFiles(under: root)
        default:
            typeName = "EmbeddedAssets"
            root = package
            files = ["docs/openapi.yaml"] + (try Self.moduleFiles(under: package.appending(path: "ui"))).map { "ui/\($0)" }
        }
        let output = context.pluginWorkDirectoryURL.appending(path: "Generated\(typeName).swift")
        return [
            .buildCommand(
                displayName: "Embedding \(files.count) files into \(target.name)",
                executable: try context.tool(named: "embed-templates").url,
                arguments: [output.path(percentEncoded: false), typeName, root.path(percentEncoded: false)] + files,
                inputFiles: files.map { root.appending(path: $0) },
                outputFiles: [output])
        ]
    }

    /// Relative paths of the files a module ships: never a user's tfvars, state or .terraform.
    static func moduleFiles(under root: URL) throws -> [String] {
        guard FileManager.default.fileExists(atPath: root.path(percentEncoded: false)),
            let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey])
        else { return [] }
        var files: [String] = []
        let rootPath = root.standardizedFileURL.path(percentEncoded: false)
        for case let url as URL in walker {
            let path = url.standardizedFileURL.path(percentEncoded: false)
            let relative = String(path.dropFirst(rootPath.count)).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            let name = url.lastPathComponent
            if name == ".terraform" {
                walker.skipDescendants()
                continue
            }
            guard (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true else { continue }
            if name == "terraform.tfvars" || name.hasSuffix(".auto.tfvars") || name.hasSuffix(".auto.tfvars.json")
                || name.contains(".tfstate") || name == ".terraform.lock.hcl" || name.hasPrefix(".")
            {
                continue
            }
            files.append(relative)
        }
        return files.sorted()
    }
}
