import Foundation
import NclavCore
import NclavFiles

/// What a partition's workspace is made from: its directory, and values already resolved
/// (templates filled, module source made absolute) by the orchestrator.
public struct WorkspaceSpec: Sendable, Equatable {
    public var key: StateKey
    /// The partition directory to mirror (its `config.yml` is not copied).
    public var sourceDirectory: URL
    /// Module mode: the `source` for the generated `module` block; local paths absolute.
    public var moduleSource: String?
    /// Input name → resolved value.
    public var inputs: [String: String]
    public var declaredOutputs: [String]
    /// The enclaves directory: links are followed only inside it (nil: inside the partition).
    public var treeRoot: URL?

    public init(
        key: StateKey, sourceDirectory: URL, moduleSource: String? = nil, inputs: [String: String] = [:], declaredOutputs: [String] = [],
        treeRoot: URL? = nil
    ) {
        self.key = key
        self.treeRoot = treeRoot
        self.sourceDirectory = sourceDirectory
        self.moduleSource = moduleSource
        self.inputs = inputs
        self.declaredOutputs = declaredOutputs
    }
}

extension WorkspaceSpec {
    /// A partition of an enclaves tree: `directory` relative to `treeRoot`; a local module
    /// source (`./…`, `../…`) made absolute against the partition's directory, others as given.
    public static func partition(
        _ key: StateKey, directory: String, treeRoot: String, source: String?, inputs: [String: String], declaredOutputs: [String]
    ) -> WorkspaceSpec {
        let partitionDirectory = URL(fileURLWithPath: treeRoot).appendingPathComponent(directory)
        let moduleSource = source.map { localModulePath($0, partitionDirectory: partitionDirectory) ?? $0 }
        return WorkspaceSpec(
            key: key, sourceDirectory: partitionDirectory, moduleSource: moduleSource, inputs: inputs, declaredOutputs: declaredOutputs,
            treeRoot: URL(fileURLWithPath: treeRoot, isDirectory: true))
    }

    /// A local module source (`./…`, `../…`) as an absolute path against the partition's
    /// directory; nil for a registry or remote source.
    public static func localModulePath(_ source: String, partitionDirectory: URL) -> String? {
        guard source.hasPrefix("./") || source.hasPrefix("../") else { return nil }
        return partitionDirectory.appendingPathComponent(source).standardized.path
    }
}

/// The result of rendering: where the workspace is and what was left out.
public struct RenderedWorkspace: Sendable, Equatable {
    public let directory: URL
    /// Files copied from the partition directory, relative paths, sorted.
    public let mirrored: [String]
    /// Files nclav generated, sorted.
    public let generated: [String]
    /// Files in the partition directory left out on purpose (local state files), with the reason.
    public let skipped: [String: String]
}

public enum WorkspaceError: Error, Sendable, Equatable, CustomStringConvertible {
    case sourceMissing(String)
    case invalidName(String)
    case io(path: String, reason: String)
    /// Files of the partition that cannot be used; nothing is rendered without them.
    case unreadable([TreeFiles.Problem])

    public var description: String {
        switch self {
        case .sourceMissing(let path): return "the partition directory \(path) does not exist"
        case .unreadable(let problems):
            return "its files cannot all be read, so nothing was rendered: " + problems.map(\.description).joined(separator: "; ")
        case .invalidName(let name): return "`\(name)` cannot be written as a Terraform name"
        case .io(let path, let reason): return "cannot write the workspace at \(path): \(reason)"
        }
    }
}

/// Renders `<root>/<enclave>/<partition>/`: a mirror of the partition directory plus the
/// files nclav generates. Re-rendering updates changed files, removes files deleted upstream,
/// and keeps terraform's own `.terraform/` directory so providers and modules are not fetched
/// again.
public struct WorkspaceRenderer: Sendable {
    public static let backendFile = GeneratedNames.backendFile
    public static let contextFile = GeneratedNames.contextFile
    public static let moduleFile = GeneratedNames.moduleFile
    public static let outputsFile = GeneratedNames.outputsFile
    /// A local module (`terraform.source` is a path) is copied here, so the workspace alone is
    /// enough to destroy the partition after its directory and module are gone.
    public static let vendoredModuleDirectory = GeneratedNames.vendoredModuleDirectory
    /// Terraform's working data in a workspace: never mirrored over, never deleted.
    static let terraformOwned: Set<String> = [".terraform", ".terraform.lock.hcl", ".terraform.tfstate.lock.info", "errored.tfstate"]

    public let root: URL

    public init(root: URL) { self.root = root }

    public func directory(for key: StateKey) -> URL {
        // Both parts are validated ids, so they are single, safe path components.
        root.appendingPathComponent(key.enclave, isDirectory: true).appendingPathComponent(key.partition, isDirectory: true)
    }

    public func render(_ spec: WorkspaceSpec) throws(WorkspaceError) -> RenderedWorkspace {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        guard manager.fileExists(atPath: spec.sourceDirectory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .sourceMissing(spec.sourceDirectory.path)
        }
        for name in Array(spec.inputs.keys) + spec.declaredOutputs where !HCL.isIdentifier(name) { throw .invalidName(name) }

        let workspace = directory(for: spec.key)
        let files = PartitionFiles.list(spec.sourceDirectory, treeRoot: spec.treeRoot)
        guard files.problems.isEmpty else { throw .unreadable(files.problems) }
        do {
            try manager.createDirectory(at: workspace, withIntermediateDirectories: true)
            for file in files.files {
                let target = workspace.appendingPathComponent(file.path)
                try manager.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                // A link inside the tree is copied as the file it points to.
                let source = try Data(contentsOf: URL(fileURLWithPath: file.source))
                if (try? Data(contentsOf: target)) != source { try source.write(to: target, options: .atomic) }
            }
        } catch {
            throw .io(path: workspace.path, reason: error.localizedDescription)
        }
        let mirrored = files.files.map(\.path)

        var generated: [String: String] = [:]
        generated[Self.backendFile] =
            "# Generated by nclav: state lives in nclav's HTTP backend, configured through TF_HTTP_* variables.\nterraform {\n  backend \"http\" {}\n}\n"
        // Terraform warns about every value for a variable the module does not declare, so the
        // enclave and partition ids go in only where they are declared (module mode declares them).
        let declared = spec.moduleSource != nil ? Set(Self.contextVariables) : Self.declaredContextVariables(in: workspace, files: mirrored)
        var context = "# Generated by nclav.\n"
        if declared.contains("nclav_enclave") { context += "nclav_enclave = \(HCL.quoted(spec.key.enclave))\n" }
        if declared.contains("nclav_partition") { context += "nclav_partition = \(HCL.quoted(spec.key.partition))\n" }
        for name in spec.inputs.keys.sorted() { context += "\(name) = \(HCL.quoted(spec.inputs[name]!))\n" }
        generated[Self.contextFile] = context
        var vendored = false
        if let source = spec.moduleSource, source.hasPrefix("/") {
            let target = workspace.appendingPathComponent(Self.vendoredModuleDirectory)
            let module = PartitionFiles.list(URL(fileURLWithPath: source, isDirectory: true), treeRoot: spec.treeRoot, keepConfig: true)
            guard module.problems.isEmpty else { throw .unreadable(module.problems) }
            do {
                try? manager.removeItem(at: target)
                for file in module.files {
                    let destination = target.appendingPathComponent(file.path)
                    try manager.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
                    try Data(contentsOf: URL(fileURLWithPath: file.source)).write(to: destination, options: .atomic)
                }
                vendored = true
            } catch {
                throw .io(path: target.path, reason: error.localizedDescription)
            }
        }
        if let source = spec.moduleSource.map({ vendored ? "./\(Self.vendoredModuleDirectory)" : $0 }) {
            var module =
                "# Generated by nclav: module mode.\nvariable \"nclav_enclave\" {\n  type = string\n}\n\nvariable \"nclav_partition\" {\n  type = string\n}\n"
            for name in spec.inputs.keys.sorted() { module += "\nvariable \"\(name)\" {}\n" }
            module += "\nmodule \"partition\" {\n  source = \(HCL.quoted(source))\n"
            for name in spec.inputs.keys.sorted() { module += "  \(name) = var.\(name)\n" }
            module += "}\n"
            generated[Self.moduleFile] = module
            generated[Self.outputsFile] =
                "# Generated by nclav: the module's declared outputs.\n"
                + spec.declaredOutputs.map {
                    "output \"\($0)\" {\n  value = module.partition.\($0)\n}\n"
                }.joined(separator: "\n")
        }
        do {
            for (name, text) in generated {
                let target = workspace.appendingPathComponent(name)
                if (try? String(contentsOf: target, encoding: .utf8)) != text { try Data(text.utf8).write(to: target, options: .atomic) }
            }
            try removeStale(
                in: workspace, keeping: Set(mirrored), generated: Set(generated.keys).union(vendored ? [Self.vendoredModuleDirectory] : []))
        } catch {
            throw .io(path: workspace.path, reason: error.localizedDescription)
        }
        return RenderedWorkspace(directory: workspace, mirrored: mirrored, generated: generated.keys.sorted(), skipped: files.ignored)
    }

    /// The variables nclav sets for every partition that declares them.
    public static let contextVariables = ["nclav_enclave", "nclav_partition"]

    /// Which of `contextVariables` the root module's own files (the `.tf` and `.tf.json` files
    /// at the top of the workspace) declare.
    static func declaredContextVariables(in workspace: URL, files: [String]) -> Set<String> {
        var found: Set<String> = []
        for name in files where !name.contains("/") && (name.hasSuffix(".tf") || name.hasSuffix(".tf.json")) {
            guard let text = try? String(contentsOf: workspace.appendingPathComponent(name), encoding: .utf8) else { continue }
            for variable in contextVariables where !found.contains(variable) {
                let pattern = name.hasSuffix(".json") ? "\"\(variable)\"\\s*:" : "variable\\s+\"?\(variable)\"?\\s*\\{"
                if text.range(of: pattern, options: .regularExpression) != nil { found.insert(variable) }
            }
        }
        return found
    }

    /// Deletes what the partition directory no longer has, leaving terraform's own data.
    private func removeStale(in workspace: URL, keeping mirrored: Set<String>, generated: Set<String>) throws {
        let manager = FileManager.default
        func walk(_ relative: String) throws -> Bool {
            let url = relative.isEmpty ? workspace : workspace.appendingPathComponent(relative)
            var keepDirectory = relative.isEmpty
            for name in (try manager.contentsOfDirectory(atPath: url.path)).sorted() {
                let path = relative.isEmpty ? name : "\(relative)/\(name)"
                if relative.isEmpty && (Self.terraformOwned.contains(name) || generated.contains(name)) {
                    keepDirectory = true
                    continue
                }
                var isDirectory: ObjCBool = false
                _ = manager.fileExists(atPath: url.appendingPathComponent(name).path, isDirectory: &isDirectory)
                if isDirectory.boolValue {
                    if try walk(path) { keepDirectory = true } else { try manager.removeItem(at: url.appendingPathComponent(name)) }
                } else if mirrored.contains(path) {
                    keepDirectory = true
                } else {
                    try manager.removeItem(at: url.appendingPathComponent(name))
                }
            }
            return keepDirectory
        }
        _ = try walk("")
    }
}

/// The files of a partition directory that make up its Terraform code: everything but the
/// top-level `config.yml`, under `TreeFiles`' rules (links inside the tree count as their
/// targets; hidden names and local state files are left out; anything unreadable is a problem,
/// and so is a file with a name nclav generates).
public enum PartitionFiles {
    public static func list(_ directory: URL, treeRoot: URL? = nil, keepConfig: Bool = false) -> TreeFiles.Listing {
        list(path: directory.path, treeRoot: treeRoot?.path, keepConfig: keepConfig)
    }

    public static func list(path given: String, treeRoot: String?, keepConfig: Bool = false) -> TreeFiles.Listing {
        // Both absolute and normalised, so a relative root and an absolute directory compare.
        let directory = URL(fileURLWithPath: given).standardized.path
        let root = treeRoot.map { URL(fileURLWithPath: $0).standardized.path }
        let files: TreeFiles
        let relative: String
        if let root, directory == root || directory.hasPrefix(root + "/") {
            files = TreeFiles(root: root)
            relative = directory == root ? "" : String(directory.dropFirst(root.count + 1))
        } else {
            files = TreeFiles(root: directory)
            relative = ""
        }
        var listing = files.files(below: relative, skip: keepConfig ? [] : ["config.yml"])
        if !keepConfig {
            for file in listing.files where GeneratedNames.all.contains(String(file.path.split(separator: "/").first ?? "")) {
                listing.problems.append(
                    TreeFiles.Problem(path: TreeFiles.join(relative, file.path), message: "has a name nclav generates in every workspace; rename it"))
            }
        }
        return listing
    }
}
