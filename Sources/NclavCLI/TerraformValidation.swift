import Foundation
import IacRunner
import NclavAPI
import NclavConfig
import NclavCore

/// `validate --terraform`: terraform's own `init` and `validate` for every partition, in a
/// workspace rendered as an apply renders it (without a backend or values), so what terraform
/// would reject in the middle of an apply is reported now, against the file that has it.
///
/// Providers come from a plugin cache shared by every run (`$NCLAV_HOME/plugin-cache`), so
/// only the first check of a provider version needs the registry (or the mirrors the terraform
/// CLI configuration names).
struct TerraformValidation: Sendable {
    let result: ValidationResult
    let parallelism: Int
    let pluginCache: URL
    var runner: any ProcessRunner = SubprocessRunner()

    func diagnostics() async throws -> [Diagnostic] {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("nclav-validate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: pluginCache, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let partitions = result.tree.enclaves.flatMap { enclave in enclave.partitions.map { (enclave.enclave.id, $0) } }
        return await withTaskGroup(of: [Diagnostic].self) { group in
            var next = partitions.makeIterator()
            var found: [Diagnostic] = []
            func start() -> Bool {
                guard let (enclave, partition) = next.next() else { return false }
                group.addTask { await check(partition, enclave: enclave, scratch: scratch) }
                return true
            }
            for _ in 0..<max(1, parallelism) where start() {}
            while let diagnostics = await group.next() {
                found += diagnostics
                _ = start()
            }
            return found
        }
    }

    func check(_ loaded: LoadedPartition, enclave: String, scratch: URL) async -> [Diagnostic] {
        let config = SourceLocation.start(of: "\(loaded.directory)/config.yml")
        let partition = loaded.partition
        let tool: String
        do {
            tool = try ToolResolver.resolve(
                explicit: partition.terraform.tool, backend: partition.backend, path: ProcessInfo.processInfo.environment["PATH"] ?? "")
        } catch { return [.error(config, "\(error)")] }
        let spec: WorkspaceSpec
        let rendered: RenderedWorkspace
        do {
            let key = try StateKey(enclave: enclave, partition: partition.id)
            // Values are not needed to validate; the inputs' names are.
            spec = WorkspaceSpec.partition(
                key, directory: loaded.directory, treeRoot: result.tree.root, source: partition.terraform.source,
                inputs: partition.inputs.mapValues { _ in "" }, declaredOutputs: partition.declaredOutputs)
            rendered = try WorkspaceRenderer(root: scratch).render(spec)
        } catch { return [.error(config, "the workspace could not be rendered for terraform validate: \(error)")] }

        var environment = ProcessInfo.processInfo.environment
        environment["TF_PLUGIN_CACHE_DIR"] = pluginCache.path
        environment["TF_IN_AUTOMATION"] = "1"
        environment["TF_INPUT"] = "0"
        let name = URL(fileURLWithPath: tool).lastPathComponent
        let lines = LineCollector()
        let initialised = try? await runner.run(
            ProcessSpec(
                executable: tool, arguments: ["init", "-backend=false", "-input=false", "-no-color"], environment: environment,
                workingDirectory: rendered.directory.path),
            policy: StopPolicy(timeout: .seconds(600), gracePeriod: .seconds(10))
        ) { await lines.append($0) }
        guard initialised?.succeeded == true else {
            let reason = Self.firstError(await lines.all) ?? "exit status \(initialised?.exitCode.map(String.init) ?? "unknown")"
            return [
                .error(
                    config,
                    "\(name) init failed, so \(name) validate could not run: \(reason) (providers come from the registry, the mirrors in the terraform CLI configuration, or \(pluginCache.path))"
                )
            ]
        }
        // The JSON goes to a file: terraform's warnings go to stderr, which the runner merges.
        let report = rendered.directory.appendingPathComponent(".nclav-validate.json")
        let validated = try? await runner.run(
            ProcessSpec(
                executable: "/bin/sh", arguments: ["-c", "exec \"$0\" validate -json -no-color > \"$1\"", tool, report.path],
                environment: environment, workingDirectory: rendered.directory.path),
            policy: StopPolicy(timeout: .seconds(600), gracePeriod: .seconds(10))
        ) { _ in }
        guard let data = try? Data(contentsOf: report), let answer = try? JSONDecoder().decode(ValidateAnswer.self, from: data) else {
            return [.error(config, "\(name) validate gave no report (exit status \(validated?.exitCode.map(String.init) ?? "unknown"))")]
        }
        return answer.diagnostics.map { found in
            let location = treeLocation(found.range, loaded: loaded, spec: spec, mirrored: Set(rendered.mirrored)) ?? config
            let detail = found.detail.map { $0.split(separator: "\n").first.map { ": \($0)" } ?? "" } ?? ""
            let message = "\(name) validate: \(found.summary)\(detail)"
            return found.severity == "warning" ? .warning(location, message) : .error(location, message)
        }
    }

    /// Where a terraform diagnostic points in the enclaves tree: a partition file, or a file of
    /// its local module (vendored into the workspace as `nclav_module_source/`); nil for the
    /// files nclav generates.
    func treeLocation(_ range: ValidateAnswer.Range?, loaded: LoadedPartition, spec: WorkspaceSpec, mirrored: Set<String>) -> SourceLocation? {
        guard let range else { return nil }
        let vendored = WorkspaceRenderer.vendoredModuleDirectory + "/"
        let root = URL(fileURLWithPath: result.tree.root).standardized.path
        var file: String?
        if mirrored.contains(range.filename) {
            file = "\(loaded.directory)/\(range.filename)"
        } else if range.filename.hasPrefix(vendored), let module = spec.moduleSource, module.hasPrefix(root + "/") {
            file = "\(module.dropFirst(root.count + 1))/\(range.filename.dropFirst(vendored.count))"
        }
        return file.map { SourceLocation(file: $0, line: range.start.line, column: range.start.column) }
    }

    /// The first `Error: …` terraform printed.
    static func firstError(_ lines: [String]) -> String? {
        lines.lazy.map { $0.hasPrefix("│ ") ? String($0.dropFirst(2)) : $0 }.first { $0.hasPrefix("Error: ") }.map { String($0.dropFirst(7)) }
    }

    /// `terraform validate -json`.
    struct ValidateAnswer: Decodable {
        struct Position: Decodable { let line: Int, column: Int }
        struct Range: Decodable {
            let filename: String
            let start: Position
        }
        struct Found: Decodable {
            let severity: String
            let summary: String
            let detail: String?
            let range: Range?
        }
        let diagnostics: [Found]
    }
}

actor LineCollector {
    private(set) var all: [String] = []
    func append(_ line: String) { all.append(line) }
}
