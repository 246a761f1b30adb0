import Foundation
import NclavCore
import NclavFiles

/// Whole-tree validation (spec §2). Collects every problem rather than stopping at the
/// first, and points each at the value that causes it.
public enum TreeValidator {
    public static let reservedInputKeys = ["nclav_enclave", "nclav_partition"]

    public static func validate(_ tree: LoadedTree) -> [Diagnostic] {
        analyze(tree).diagnostics
    }

    /// Diagnostics and the partition dependency graph from one pass over the tree.
    public static func analyze(_ tree: LoadedTree) -> (diagnostics: [Diagnostic], graph: Digraph<PartitionRef>) {
        var pass = Pass(tree: tree)
        pass.run()
        return (pass.sink.items, pass.graph)
    }

    /// A partition as a node of the dependency graph: `enclave/partition`.
    public struct PartitionRef: Hashable, Comparable, Sendable, CustomStringConvertible {
        public let enclave: String
        public let partition: String
        public init(_ enclave: String, _ partition: String) {
            self.enclave = enclave
            self.partition = partition
        }
        public var description: String { "\(enclave)/\(partition)" }
        public static func < (a: PartitionRef, b: PartitionRef) -> Bool { (a.enclave, a.partition) < (b.enclave, b.partition) }
    }

    /// Builds the partition dependency graph of a tree: an importer depends on the partition
    /// behind each export it imports at partition level, and on the partition behind each
    /// enclave-level import whose alias its inputs use. Unresolvable references add no edge.
    public static func dependencyGraph(of tree: LoadedTree) -> Digraph<PartitionRef> {
        var pass = Pass(tree: tree)
        pass.collectEdgesOnly = true
        pass.run()
        return pass.graph
    }

    private struct ResolvedExport {
        let enclave: LoadedEnclave
        let export: Export
        var partition: LoadedPartition? { enclave.partitions.first { $0.partition.id == export.targetPartition } }
    }

    private struct Pass {
        let tree: LoadedTree
        let sink = DiagnosticSink()
        var collectEdgesOnly = false
        var graph = Digraph<PartitionRef>()
        var edgeLocations: [String: SourceLocation] = [:]
        let enclavesByID: [String: LoadedEnclave]

        init(tree: LoadedTree) {
            self.tree = tree
            var byID: [String: LoadedEnclave] = [:]
            for enclave in tree.enclaves where byID[enclave.enclave.id] == nil { byID[enclave.enclave.id] = enclave }
            enclavesByID = byID
        }

        func error(_ location: SourceLocation, _ message: String) { if !collectEdgesOnly { sink.error(location, message) } }
        func warning(_ location: SourceLocation, _ message: String) { if !collectEdgesOnly { sink.warning(location, message) } }

        mutating func run() {
            checkEnclaveIDs()
            for enclave in tree.enclaves {
                for partition in enclave.partitions { graph.addNode(PartitionRef(enclave.enclave.id, partition.partition.id)) }
            }
            for enclave in tree.enclaves { checkEnclave(enclave) }
            checkCycles()
        }

        // MARK: Ids and duplicates

        func checkID(_ id: String, kind: String, at location: SourceLocation) {
            guard let problem = Identifier.problem(with: id) else { return }
            error(location, "\(kind) `\(id)` is not valid: \(problem) (ids become file paths and URLs)")
        }

        func checkEnclaveIDs() {
            var seen: [String: [LoadedEnclave]] = [:]
            for enclave in tree.enclaves {
                checkID(enclave.enclave.id, kind: "enclave id", at: enclave.source["id"])
                seen[enclave.enclave.id, default: []].append(enclave)
            }
            for (id, group) in seen where group.count > 1 {
                for enclave in group {
                    let others = group.filter { $0.configFile != enclave.configFile }.map { $0.source["id"].description }
                    error(enclave.source["id"], "enclave id `\(id)` is declared more than once: also in \(others.plainList)")
                }
            }
        }

        /// Reports every name that appears more than once, at each occurrence.
        func reportDuplicates(_ items: [(name: String, location: SourceLocation)], describe: (String) -> String) {
            let groups = Dictionary(grouping: items, by: \.name)
            for (name, group) in groups where group.count > 1 {
                for item in group {
                    let others = group.filter { $0.location != item.location }.map(\.location.description)
                    error(item.location, "\(describe(name)) is declared more than once: also at \(others.plainList)")
                }
            }
        }

        // MARK: Enclave

        mutating func checkEnclave(_ loaded: LoadedEnclave) {
            let enclave = loaded.enclave
            let partitionIDs = loaded.partitions.map(\.partition.id)

            reportDuplicates(loaded.partitions.map { ($0.partition.id, $0.source["id"]) }) {
                "partition id `\($0)` in enclave `\(enclave.id)`"
            }
            checkNetwork(loaded)

            for (export, path) in zip(enclave.exports, loaded.exportPaths) {
                checkID(export.name, kind: "export name", at: loaded.source["\(path).name"])
                checkExport(export, path: path, in: loaded, partitionIDs: partitionIDs)
            }
            reportDuplicates(zip(enclave.exports, loaded.exportPaths).map { ($0.name, loaded.source["\($1).name"]) }) {
                "export name `\($0)` in enclave `\(enclave.id)`"
            }

            var enclaveScope: [String: (resolved: ResolvedExport?, location: SourceLocation)] = [:]
            for (entry, path) in zip(enclave.imports, loaded.importPaths) {
                checkID(entry.alias, kind: "import alias", at: loaded.source["\(path).alias"])
                let resolved = resolve(entry, path: path, source: loaded.source, importer: loaded, partition: nil)
                if enclaveScope[entry.alias] == nil { enclaveScope[entry.alias] = (resolved, loaded.source["\(path).alias"]) }
            }
            reportDuplicates(zip(enclave.imports, loaded.importPaths).map { ($0.alias, loaded.source["\($1).alias"]) }) {
                "import alias `\($0)` in enclave `\(enclave.id)`"
            }

            for partition in loaded.partitions {
                checkPartition(partition, in: loaded, enclaveScope: enclaveScope)
            }
        }

        func checkExport(_ export: Export, path: String, in loaded: LoadedEnclave, partitionIDs: [String]) {
            let enclave = loaded.enclave
            if !export.type.allowedAuth.contains(export.auth) {
                error(
                    loaded.source["\(path).auth"],
                    "export `\(export.name)` has auth `\(export.auth.rawValue)`, which type \(export.type.rawValue) does not support (accepted for \(export.type.rawValue): \(export.type.allowedAuth.map(\.rawValue).plainList))"
                )
            }
            switch export.to {
            case .partition(let id) where !partitionIDs.contains(id) && !loaded.unreadablePartitionIDs.contains(id):
                error(
                    loaded.source["\(path).to"],
                    "export `\(export.name)` is restricted to partition `\(id)`, which enclave `\(enclave.id)` does not have\(Suggestions.didYouMean(id, among: partitionIDs)) (partitions: \(partitionIDs.plainList))"
                )
            case .enclave(let id) where enclavesByID[id] == nil && !tree.unreadableEnclaveIDs.contains(id):
                warning(
                    loaded.source["\(path).to"],
                    "export `\(export.name)` is restricted to enclave `\(id)`, which is not declared in this tree, so nothing can import it yet")
            default: break
            }

            guard let target = loaded.partitions.first(where: { $0.partition.id == export.targetPartition }) else {
                if !loaded.unreadablePartitionIDs.contains(export.targetPartition) {
                    error(
                        loaded.source["\(path).target_partition"],
                        "export `\(export.name)` targets partition `\(export.targetPartition)`, which enclave `\(enclave.id)` does not have\(Suggestions.didYouMean(export.targetPartition, among: partitionIDs)) (partitions: \(partitionIDs.plainList))"
                    )
                }
                return
            }
            guard let produces = target.partition.produces else {
                if target.misspelledKeys.contains("produces") { return }
                error(
                    loaded.source["\(path).target_partition"],
                    "export `\(export.name)` (type \(export.type.rawValue)) is backed by partition `\(target.partition.id)`, which declares no `produces`; add `produces: \(export.type.rawValue)` to \(target.configFile)"
                )
                return
            }
            if produces != export.type {
                error(
                    loaded.source["\(path).type"],
                    "export `\(export.name)` has type \(export.type.rawValue), but its partition `\(target.partition.id)` produces \(produces.rawValue) (\(target.source["produces"]))"
                )
            }
        }

        func checkNetwork(_ loaded: LoadedEnclave) {
            guard let network = loaded.enclave.network else { return }
            var vpc: IPv4CIDR?
            if let text = network.vpcCIDR {
                vpc = parseCIDR(text, what: "`vpc_cidr`", at: loaded.source["network.vpc_cidr"])
            } else if !network.subnets.isEmpty {
                error(loaded.source["network.subnets[0]"], "`subnets` are declared without `network.vpc_cidr`; subnets must lie inside the VPC range")
            }
            var accepted: [(IPv4CIDR, SourceLocation)] = []
            for (index, text) in network.subnets.enumerated() {
                let location = loaded.source["network.subnets[\(index)]"]
                guard let subnet = parseCIDR(text, what: "subnet", at: location) else { continue }
                if let vpc, !vpc.contains(subnet) {
                    error(location, "subnet `\(text)` is not inside vpc_cidr `\(vpc)`")
                }
                if let clash = accepted.first(where: { $0.0.overlaps(subnet) }) {
                    error(location, "subnet `\(text)` overlaps subnet `\(clash.0)` (\(clash.1))")
                }
                accepted.append((subnet, location))
            }
        }

        func parseCIDR(_ text: String, what: String, at location: SourceLocation) -> IPv4CIDR? {
            guard let cidr = IPv4CIDR(text) else {
                error(location, "\(what) `\(text)` is not an IPv4 CIDR block such as 10.0.0.0/16")
                return nil
            }
            if cidr.hasHostBits {
                error(location, "\(what) `\(text)` has host bits set; did you mean `\(cidr.network)`?")
                return nil
            }
            return cidr
        }

        // MARK: Imports

        /// Finds the export an import names and checks that the importer may use it.
        func resolve(_ entry: Import, path: String, source: SourceMap, importer: LoadedEnclave, partition: LoadedPartition?) -> ResolvedExport? {
            guard let exporter = enclavesByID[entry.from] else {
                if !tree.unreadableEnclaveIDs.contains(entry.from) {
                    let known = enclavesByID.keys.sorted()
                    error(
                        source["\(path).from"],
                        "import `\(entry.alias)` refers to enclave `\(entry.from)`, which is not declared\(Suggestions.didYouMean(entry.from, among: known)) (enclaves: \(known.plainList))"
                    )
                }
                return nil
            }
            guard let export = exporter.enclave.exports.first(where: { $0.name == entry.exportName }) else {
                if !exporter.unreadableExportNames.contains(entry.exportName) && !exporter.misspelledKeys.contains("exports") {
                    let names = exporter.enclave.exports.map(\.name)
                    error(
                        source["\(path).export_name"],
                        "import `\(entry.alias)` refers to export `\(entry.exportName)` of enclave `\(entry.from)`, which has no such export\(Suggestions.didYouMean(entry.exportName, among: names)) (exports of `\(entry.from)`: \(names.plainList))"
                    )
                }
                return nil
            }
            let importerName = partition.map { "partition `\(importer.enclave.id)/\($0.partition.id)`" } ?? "enclave `\(importer.enclave.id)`"
            switch export.to {
            case .public, .anyEnclave, .vpn:
                break
            case .enclave(let allowed) where allowed != importer.enclave.id:
                error(
                    source["\(path).from"],
                    "import `\(entry.alias)`: export `\(entry.from)/\(entry.exportName)` may only be imported by enclave `\(allowed)` (to: {enclave: \(allowed)}), so \(importerName) may not import it"
                )
                return nil
            case .partition(let allowed):
                let permitted = partition?.partition.id == allowed && importer.enclave.id == exporter.enclave.id
                if !permitted {
                    error(
                        source["\(path).from"],
                        "import `\(entry.alias)`: export `\(entry.from)/\(entry.exportName)` may only be imported by partition `\(allowed)` of enclave `\(entry.from)` through a partition-level import (to: {partition: \(allowed)}), so \(importerName) may not import it"
                    )
                    return nil
                }
            case .enclave:
                break
            }
            return ResolvedExport(enclave: exporter, export: export)
        }

        // MARK: Partition

        mutating func checkPartition(
            _ loaded: LoadedPartition, in enclave: LoadedEnclave,
            enclaveScope: [String: (resolved: ResolvedExport?, location: SourceLocation)]
        ) {
            let partition = loaded.partition
            let source = loaded.source
            let ref = PartitionRef(enclave.enclave.id, partition.id)
            checkID(partition.id, kind: "partition id", at: source["id"])
            checkTerraformCode(loaded)

            if let produces = partition.produces, !loaded.misspelledKeys.contains("declared_outputs") {
                let missing = produces.requiredOutputs.filter { !partition.declaredOutputs.contains($0) }
                if !missing.isEmpty {
                    error(
                        source["produces"],
                        "partition `\(partition.id)` produces \(produces.rawValue), so `declared_outputs` must include \(missing.quotedList) (\(produces.rawValue) needs: \(produces.requiredOutputs.plainList))"
                    )
                }
            }
            for (index, output) in partition.declaredOutputs.enumerated() where !TerraformIdentifier.isValid(output) {
                error(
                    source["declared_outputs[\(index)]"],
                    "declared output `\(output)` is not a valid Terraform output name (a letter or `_`, then letters, digits, `_` or `-`)")
            }
            reportDuplicates(partition.declaredOutputs.enumerated().map { ($1, source["declared_outputs[\($0)]"]) }) {
                "declared output `\($0)` of partition `\(partition.id)`"
            }
            checkDeclaredOutputsExist(loaded)
            for key in partition.inputs.keys.sorted() {
                if !TerraformIdentifier.isValid(key) {
                    error(
                        source["inputs.\(key)#key"],
                        "input key `\(key)` is not a valid Terraform variable name (a letter or `_`, then letters, digits, `_` or `-`)")
                } else if TreeValidator.reservedInputKeys.contains(key) {
                    error(
                        source["inputs.\(key)#key"],
                        "input key `\(key)` is reserved: nclav always sets it to the \(key == "nclav_enclave" ? "enclave" : "partition") id")
                }
            }

            // Partition-level scope: its own imports, then the enclave's.
            var scope: [String: ResolvedExport?] = enclaveScope.mapValues(\.resolved)
            for (entry, path) in zip(partition.imports, loaded.importPaths) {
                checkID(entry.alias, kind: "import alias", at: source["\(path).alias"])
                if let shadowed = enclaveScope[entry.alias] {
                    error(
                        source["\(path).alias"],
                        "import alias `\(entry.alias)` of partition `\(partition.id)` is also an enclave-level import alias (\(shadowed.location)); aliases must be unique within a partition's scope"
                    )
                }
                let resolved = resolve(entry, path: path, source: source, importer: enclave, partition: loaded)
                scope[entry.alias] = resolved
                if let target = resolved?.partition {
                    addEdge(from: ref, to: PartitionRef(resolved!.enclave.enclave.id, target.partition.id), at: source["\(path).from"])
                }
            }
            reportDuplicates(zip(partition.imports, loaded.importPaths).map { ($0.alias, source["\($1).alias"]) }) {
                "import alias `\($0)` in partition `\(partition.id)`"
            }

            for key in partition.inputs.keys.sorted() {
                checkTemplate(key: key, in: loaded, enclave: enclave, scope: scope, ref: ref)
            }
        }

        func checkTerraformCode(_ loaded: LoadedPartition) {
            let partition = loaded.partition
            if let source = partition.terraform.source {
                if !loaded.terraformFiles.isEmpty {
                    error(
                        loaded.source["terraform.source"],
                        "partition `\(partition.id)` sets `terraform.source`, but its directory also holds \(loaded.terraformFiles.plainList); in module mode nclav generates the root module, so remove those files or the `source`"
                    )
                }
                checkLocalSource(source, of: loaded)
            } else if loaded.terraformFiles.isEmpty {
                error(
                    loaded.source["id"],
                    "partition `\(partition.id)` has no Terraform code: add .tf files to `\(loaded.directory)` or set `terraform.source`")
            }
        }

        /// A local module must be a directory inside the enclaves tree, however the path is
        /// written: the server vendors it into the workspace, so a path leaving the tree would
        /// copy whatever it points at.
        func checkLocalSource(_ source: String, of loaded: LoadedPartition) {
            let location = loaded.source["terraform.source"]
            if source.hasPrefix("/") || source.hasPrefix("~") || source.lowercased().hasPrefix("file::") {
                error(
                    location,
                    "`terraform.source` `\(source)` is an absolute path; a local module must be inside the enclaves directory, given relative to the partition (`./module`, `../../modules/x`)"
                )
                return
            }
            guard source.hasPrefix("./") || source.hasPrefix("../") else { return }
            guard let relative = Self.normalize(TreeFiles.join(loaded.directory, source)) else {
                error(
                    location,
                    "`terraform.source` `\(source)` leaves the enclaves directory (local module paths are resolved from `\(loaded.directory)`); move the module inside the tree"
                )
                return
            }
            let files = TreeFiles(root: tree.root)
            switch files.entry(relative) {
            case .directory:
                let listing = files.files(below: relative)
                for problem in listing.problems { error(.start(of: problem.path), "`\(problem.path)` \(problem.message)") }
            case .missing, .file:
                error(location, "`terraform.source` `\(source)` is not a directory (local module paths are resolved from `\(loaded.directory)`)")
            case .unusable(let why):
                error(location, "`terraform.source` `\(source)`: `\(relative)` \(why)")
            }
        }

        /// A declared output with no `output` block would fail only after terraform applied;
        /// it is known now. The root module's top-level `.tf` files are read: the partition's
        /// own, or its local module's in module mode (whose outputs nclav passes through).
        /// Skipped for a remote module and for JSON configuration.
        func checkDeclaredOutputsExist(_ loaded: LoadedPartition) {
            let partition = loaded.partition
            guard !partition.declaredOutputs.isEmpty, !loaded.misspelledKeys.contains("declared_outputs") else { return }
            var moduleDirectory = loaded.directory
            var files = loaded.files.filter { !$0.path.contains("/") }
            if let source = partition.terraform.source {
                guard source.hasPrefix("./") || source.hasPrefix("../"), let relative = Self.normalize(TreeFiles.join(loaded.directory, source)),
                    case .directory = TreeFiles(root: tree.root).entry(relative)
                else { return }
                moduleDirectory = relative
                files = TreeFiles(root: tree.root).files(below: relative).files.filter { !$0.path.contains("/") }
            }
            guard !files.contains(where: { $0.path.hasSuffix(".tf.json") }) else { return }
            var found: Set<String> = []
            for file in files where file.path.hasSuffix(".tf") {
                guard let text = FileManager.default.contents(atPath: file.source).map({ String(decoding: $0, as: UTF8.self) }) else { continue }
                for match in text.matches(of: Self.outputBlock) { found.insert(String(match.1)) }
            }
            let place = moduleDirectory == loaded.directory ? "`\(loaded.directory)`" : "its module `\(moduleDirectory)`"
            for (index, output) in partition.declaredOutputs.enumerated() where !found.contains(output) && TerraformIdentifier.isValid(output) {
                error(
                    loaded.source["declared_outputs[\(index)]"],
                    "declared output `\(output)` has no `output \"\(output)\"` block in the .tf files of \(place) (outputs there: \(found.isEmpty ? "none" : found.sorted().quotedList)); add one, or remove it from declared_outputs"
                )
            }
        }

        nonisolated(unsafe) static let outputBlock = /(?m)^[ \t]*output[ \t]+"([A-Za-z_][A-Za-z0-9_-]*)"[ \t]*\{/

        /// `a/b/../c` → `a/c`; nil when `..` climbs above the root.
        static func normalize(_ path: String) -> String? {
            var parts: [Substring] = []
            for part in path.split(separator: "/") where part != "." {
                if part == ".." {
                    guard !parts.isEmpty else { return nil }
                    parts.removeLast()
                } else {
                    parts.append(part)
                }
            }
            return parts.joined(separator: "/")
        }

        // MARK: Templates

        mutating func checkTemplate(
            key: String, in loaded: LoadedPartition, enclave: LoadedEnclave,
            scope: [String: ResolvedExport?], ref: PartitionRef
        ) {
            guard let value = loaded.partition.inputs[key] else { return }
            let base = loaded.source["inputs.\(key)"]
            let exact = loaded.inputsWithExactColumns.contains(key)
            func location(_ offset: Int) -> SourceLocation {
                exact ? SourceLocation(file: base.file, line: base.line, column: base.column + offset) : base
            }
            let template: Template
            do {
                template = try Template(parsing: value)
            } catch {
                self.error(location(error.offset), "input `\(key)`: \(error.message)")
                return
            }
            let cloud = enclave.enclave.cloud
            for reference in template.references {
                let at = location(reference.offset)
                switch reference.segment {
                case .context(let name):
                    checkContextToken(name, key: key, at: at, cloud: cloud, enclave: enclave, scope: scope)
                case .importOutput(let alias, let output):
                    guard let entry = scope[alias] else {
                        if loaded.misspelledKeys.contains("imports") || enclave.misspelledKeys.contains("imports") { continue }
                        let visible = scope.keys.sorted()
                        error(
                            at,
                            "input `\(key)`: `{{ \(alias).\(output) }}` uses alias `\(alias)`, but no import with that alias is visible to partition `\(ref)`\(Suggestions.didYouMean(alias, among: visible)) (visible aliases: \(visible.plainList))"
                        )
                        continue
                    }
                    guard let resolved = entry, let target = resolved.partition else { continue }
                    let declared = target.partition.declaredOutputs
                    if !declared.contains(output) {
                        error(
                            at,
                            "input `\(key)`: `{{ \(alias).\(output) }}` asks for output `\(output)`, but partition `\(resolved.enclave.enclave.id)/\(target.partition.id)` behind export `\(resolved.export.name)` does not declare it\(Suggestions.didYouMean(output, among: declared)) (declared outputs: \(declared.plainList))"
                        )
                    }
                    addEdge(from: ref, to: PartitionRef(resolved.enclave.enclave.id, target.partition.id), at: at)
                case .literal:
                    break
                }
            }
        }

        func checkContextToken(
            _ name: String, key: String, at location: SourceLocation, cloud: CloudTarget?,
            enclave: LoadedEnclave, scope: [String: ResolvedExport?]
        ) {
            let available = cloud.map(ContextTokens.available(for:)) ?? ContextTokens.common
            if available.contains(name) { return }
            let providers = ContextTokens.clouds(providing: name)
            if !providers.isEmpty {
                let list = providers.map(\.rawValue).joined(separator: ", ")
                if let cloud {
                    error(
                        location,
                        "input `\(key)`: `{{ \(name) }}` is provided by \(list) only, and enclave `\(enclave.enclave.id)` uses cloud \(cloud.rawValue) (tokens for \(cloud.rawValue): \(available.plainList))"
                    )
                } else {
                    error(
                        location,
                        "input `\(key)`: `{{ \(name) }}` is provided by \(list) only, and enclave `\(enclave.enclave.id)` sets no `cloud:` (it gets the server's default); set `cloud:` to use it"
                    )
                }
                return
            }
            if let entry = scope[name] {
                let outputs = entry?.partition?.partition.declaredOutputs ?? []
                error(
                    location,
                    "input `\(key)`: `{{ \(name) }}` names import `\(name)` without an output; write `{{ \(name).<output> }}` (declared outputs: \(outputs.plainList))"
                )
                return
            }
            let hint = Suggestions.didYouMean(name, among: available)
            let cloudName = cloud?.rawValue ?? "every cloud"
            error(
                location,
                "input `\(key)`: `{{ \(name) }}` is not a context token\(hint) (tokens for \(cloudName): \(available.plainList); imports are written `{{ alias.output }}`)"
            )
        }

        // MARK: Graph

        mutating func addEdge(from dependent: PartitionRef, to dependency: PartitionRef, at location: SourceLocation) {
            graph.addEdge(from: dependent, to: dependency)
            let key = "\(dependent)→\(dependency)"
            if edgeLocations[key] == nil { edgeLocations[key] = location }
        }

        func checkCycles() {
            for cycle in graph.cycles() {
                let path = cycle.map(\.description).joined(separator: " → ")
                let location = edgeLocations["\(cycle[0])→\(cycle[1])"] ?? .start(of: "config.yml")
                error(location, "dependency cycle: \(path); each partition needs outputs of the next, so none can be applied first")
            }
        }
    }
}
