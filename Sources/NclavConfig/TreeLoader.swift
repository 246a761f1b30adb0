import Foundation
import NclavCore
import NclavFiles
import Yams

/// Discovers and strictly decodes an enclaves directory.
///
/// Discovery: below the root, a directory whose `config.yml` has an `id` is an enclave, and
/// nothing inside it is searched for further enclaves. Its partitions are the immediate
/// subdirectories named in `partitions:`, or, without that key, every immediate
/// subdirectory holding a `config.yml`. Directories are visited in sorted order; names
/// starting with `.` (`.git`, `.terraform`) are not part of the tree. Files are read under
/// `TreeFiles`' rules: a link inside the tree counts as its target, anything that cannot be
/// read (a link leaving the tree, a dangling link, a `config.yml` that is a directory) is an
/// error naming it, and depth and path length are bounded.
public enum TreeLoader {
    static let enclaveKeys = ["id", "name", "cloud", "region", "identity", "network", "dns", "exports", "imports", "partitions", "agent_pool"]
    static let partitionKeys = ["id", "name", "produces", "backend", "terraform", "inputs", "declared_outputs", "imports"]
    static let exportKeys = ["name", "target_partition", "type", "to", "auth"]
    static let importKeys = ["from", "export_name", "alias"]
    static let networkKeys = ["vpc_cidr", "subnets"]
    static let dnsKeys = ["zone"]
    static let terraformKeys = ["source", "tool"]
    static let configFileName = "config.yml"

    public static func load(directory: String) throws(TreeLoadError) -> LoadedTree {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else { throw .notFound(directory) }
        guard isDirectory.boolValue else { throw .notADirectory(directory) }
        var walk = Walk(root: directory.count > 1 && directory.hasSuffix("/") ? String(directory.dropLast()) : directory)
        // An enclave directory given instead of the tree: the hint alone, not the cascade of
        // "unknown key" errors its partitions would give when read as enclaves.
        if !walk.rootIsAnEnclave() { walk.visit(relative: "") }
        return LoadedTree(
            root: directory, enclaves: walk.enclaves, diagnostics: walk.sink.items,
            unreadableEnclaveIDs: walk.unreadableEnclaveIDs, filesRead: walk.filesRead)
    }

    /// One traversal's mutable state; lives only for the duration of `load`.
    private struct Walk {
        /// Plain string paths: `URL.appendingPathComponent` was a fifth of loading a large tree.
        let root: String
        let files: TreeFiles
        let sink = DiagnosticSink()
        var enclaves: [LoadedEnclave] = []
        var unreadableEnclaveIDs: Set<String> = []
        var filesRead = 0
        var visitedDirectories: Set<String> = []

        init(root: String) {
            self.root = root
            files = TreeFiles(root: root)
        }

        func path(_ relative: String) -> String { files.absolute(relative) }

        func join(_ relative: String, _ name: String) -> String { TreeFiles.join(relative, name) }

        /// Directories (and links to directories inside the tree) directly in `relative`.
        /// A link that cannot be followed is an error: it may have been meant as a directory.
        func subdirectories(of relative: String) -> [String] {
            guard case .success(let names) = files.names(in: relative) else { return [] }
            return names.filter { name in
                let entry = join(relative, name)
                switch files.entry(entry) {
                case .directory: return true
                case .unusable(let why) where isLink(entry):
                    sink.error(.start(of: entry), "`\(entry)` \(why)")
                    return false
                default: return false
                }
            }
        }

        func isLink(_ relative: String) -> Bool {
            var info = stat()
            return lstat(path(relative), &info) == 0 && info.st_mode & S_IFMT == S_IFLNK
        }

        func isDirectory(_ relative: String) -> Bool {
            if case .directory = files.entry(relative) { return true }
            return false
        }

        func isFile(_ relative: String) -> Bool {
            if case .file = files.entry(relative) { return true }
            return false
        }

        /// Whether a `config.yml` is there to read. Anything present that is not a readable
        /// file is an error naming it (it would otherwise make its enclave or partition vanish).
        func hasConfig(_ relative: String) -> Bool {
            switch files.entry(relative) {
            case .missing: return false
            case .file: return true
            case .directory:
                sink.error(.start(of: relative), "`\(relative)` is a directory; a config.yml must be a file")
                return false
            case .unusable(let why):
                sink.error(.start(of: relative), "`\(relative)` \(why)")
                return false
            }
        }

        /// A `config.yml` at the root usually means the user passed an enclave directory.
        mutating func rootIsAnEnclave() -> Bool {
            guard hasConfig(Self.configName) else { return false }
            let sink = DiagnosticSink()
            if let document = YAMLDocument.read(path(Self.configName), file: Self.configName, sink: sink),
                let root = document.root, case .mapping(let mapping) = root, mapping["id"] != nil
            {
                self.sink.error(
                    .start(of: Self.configName),
                    "this config.yml declares an enclave at the top of the enclaves directory; pass the directory that contains enclave directories (its parent) instead"
                )
                return true
            }
            return false
        }

        static let configName = TreeLoader.configFileName

        /// Visits every directory below the root in sorted order, depth first, with an explicit
        /// stack: a deep tree costs memory in proportion to its depth, never the call stack.
        mutating func visit(relative start: String) {
            var stack = [start]
            while let relative = stack.popLast() {
                if let problem = files.boundsProblem(relative) {
                    sink.error(.start(of: problem.path), problem.message)
                    continue
                }
                let canonical =
                    realpath(path(relative), nil).map { resolved in
                        defer { free(resolved) }
                        return String(cString: resolved)
                    } ?? path(relative)
                guard visitedDirectories.insert(canonical).inserted else { continue }
                let configRelative = join(relative, Self.configName)
                if !relative.isEmpty, hasConfig(configRelative) {
                    loadEnclaveConfig(relative: relative, configRelative: configRelative)
                    continue
                }
                stack.append(contentsOf: subdirectories(of: relative).reversed().map { join(relative, $0) })
            }
        }

        mutating func loadEnclaveConfig(relative: String, configRelative: String) {
            filesRead += 1
            guard let document = YAMLDocument.read(path(configRelative), file: configRelative, sink: sink) else { return }
            guard let root = document.root else {
                if let id = salvageID(from: document.text) { unreadableEnclaveIDs.insert(id) }
                return
            }
            guard let probe = MappingReader(root, what: "enclave config", file: configRelative, sink: DiagnosticSink()) else {
                _ = MappingReader(root, what: "enclave config", file: configRelative, sink: sink)
                return
            }
            guard probe.has("id") else {
                let reader = probe
                sink.error(
                    reader.location,
                    "this config.yml is not inside an enclave and has no `id`, so it declares nothing; add `id:` to make `\(relative)` an enclave (accepted keys: \(TreeLoader.enclaveKeys.plainList))"
                )
                return
            }
            let reader = MappingReader(root, what: "enclave config", file: configRelative, sink: sink, allowed: TreeLoader.enclaveKeys)!
            if let enclave = loadEnclave(relative: relative, reader: reader) {
                enclaves.append(enclave)
            } else if let id = salvageID(from: document.text) {
                unreadableEnclaveIDs.insert(id)
            }
        }

        /// Best-effort `id:` from a file that failed to parse, so other enclaves' references to
        /// it are not reported as dangling on top of the syntax error.
        func salvageID(from text: String) -> String? {
            for line in text.split(separator: "\n") where line.hasPrefix("id:") {
                let value = line.dropFirst(3).split(separator: "#").first?.trimmingCharacters(in: .whitespaces) ?? ""
                let unquoted = value.trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
                if !unquoted.isEmpty { return unquoted }
            }
            return nil
        }

        // MARK: Enclave

        mutating func loadEnclave(relative: String, reader: MappingReader) -> LoadedEnclave? {
            var map = SourceMap(file: reader.file)

            let id = readString(reader, "id", required: true, into: &map)
            let name = readString(reader, "name", required: true, into: &map)
            if let name, name.isEmpty { sink.error(map["name"], "`name` must not be empty") }
            let cloud = reader.enumValue("cloud", required: false, as: CloudTarget.self)
            recordValue(reader, "cloud", into: &map)
            let region = readString(reader, "region", required: false, into: &map)
            let identity = readString(reader, "identity", required: false, into: &map)
            let agentPool = readString(reader, "agent_pool", required: false, into: &map)
            if let agentPool, let problem = Identifier.problem(with: agentPool) {
                sink.error(map["agent_pool"], "`agent_pool` `\(agentPool)` is not a valid pool name: \(problem)")
            }
            let network = readNetwork(reader, into: &map)
            let dns = readDNS(reader, into: &map)

            var exports: [Export] = []
            var exportPaths: [String] = []
            var unreadableExports: Set<String> = []
            for (index, item) in (reader.sequence("exports") ?? []).enumerated() {
                let path = "exports[\(index)]"
                map.record(path, item.location(in: reader.file))
                guard let entry = MappingReader(item, what: "export", file: reader.file, sink: sink, allowed: TreeLoader.exportKeys) else { continue }
                if let export = readExport(entry, path: path, into: &map) {
                    exports.append(export)
                    exportPaths.append(path)
                } else if let name = entry.optional("name").flatMap({ $0.scalar?.string }) {
                    unreadableExports.insert(name)
                }
            }
            let (imports, importPaths) = readImports(reader, pathPrefix: "imports", into: &map)
            let partitions = loadPartitions(enclaveRelative: relative, reader: reader, into: &map)

            guard let id else { return nil }
            var enclave = Enclave(
                id: id, name: name ?? "", cloud: cloud, region: region, identity: identity,
                network: network, dns: dns, exports: exports, imports: imports)
            enclave.agentPool = agentPool
            enclave.partitions = partitions.loaded.map(\.partition)
            return LoadedEnclave(
                enclave: enclave, directory: relative, source: map, partitions: partitions.loaded,
                exportPaths: exportPaths, importPaths: importPaths, misspelledKeys: reader.misspelledKeys,
                unreadableExportNames: unreadableExports, unreadablePartitionIDs: partitions.unreadableIDs)
        }

        func readString(_ reader: MappingReader, _ key: String, required: Bool, into map: inout SourceMap, prefix: String = "") -> String? {
            recordValue(reader, key, into: &map, prefix: prefix)
            return reader.string(key, required: required)
        }

        func recordValue(_ reader: MappingReader, _ key: String, into map: inout SourceMap, prefix: String = "") {
            let path = prefix.isEmpty ? key : "\(prefix).\(key)"
            if let value = reader.optional(key) {
                map.record(path, value.location(in: reader.file))
            } else if let keyLocation = reader.keyLocation(key) {
                map.record(path, keyLocation)
            }
        }

        func readNetwork(_ reader: MappingReader, into map: inout SourceMap) -> Network? {
            guard let network = reader.mapping("network", what: "`network`", allowed: TreeLoader.networkKeys) else { return nil }
            let cidr = readString(network, "vpc_cidr", required: false, into: &map, prefix: "network")
            var subnets: [String] = []
            for (index, item) in network.stringList("subnets").enumerated() {
                map.record("network.subnets[\(index)]", item.location)
                subnets.append(item.value)
            }
            return Network(vpcCIDR: cidr, subnets: subnets)
        }

        func readDNS(_ reader: MappingReader, into map: inout SourceMap) -> DNS? {
            guard let dns = reader.mapping("dns", what: "`dns`", allowed: TreeLoader.dnsKeys) else { return nil }
            return DNS(zone: readString(dns, "zone", required: false, into: &map, prefix: "dns"))
        }

        func readExport(_ entry: MappingReader, path: String, into map: inout SourceMap) -> Export? {
            let name = readString(entry, "name", required: true, into: &map, prefix: path)
            let target = readString(entry, "target_partition", required: true, into: &map, prefix: path)
            recordValue(entry, "type", into: &map, prefix: path)
            let type = entry.enumValue("type", required: true, as: ExportType.self)
            recordValue(entry, "to", into: &map, prefix: path)
            let audience = readAudience(entry)
            recordValue(entry, "auth", into: &map, prefix: path)
            let auth = entry.has("auth") ? entry.enumValue("auth", required: true, as: AuthType.self) : AuthType.none
            guard let name, let target, let type, let audience, let auth else { return nil }
            return Export(name: name, targetPartition: target, type: type, to: audience, auth: auth)
        }

        func readAudience(_ entry: MappingReader) -> ExportAudience? {
            guard let value = entry.required("to") else { return nil }
            let accepted = ExportAudience.scalarSpellings + ["{enclave: <id>}", "{partition: <id>}"]
            switch value {
            case .scalar(let scalar):
                if let audience = ExportAudience(scalar: scalar.string) { return audience }
                let hint = Suggestions.didYouMean(scalar.string, among: ExportAudience.scalarSpellings)
                sink.error(value.location(in: entry.file), "`to` has unknown value `\(scalar.string)`\(hint) (accepted: \(accepted.plainList))")
                return nil
            case .mapping:
                guard let restriction = MappingReader(value, what: "`to`", file: entry.file, sink: sink, allowed: ["enclave", "partition"]) else {
                    return nil
                }
                let enclave = restriction.string("enclave", required: false)
                let partition = restriction.string("partition", required: false)
                switch (enclave, partition) {
                case let (enclave?, nil): return .enclave(enclave)
                case let (nil, partition?): return .partition(partition)
                case (.some, .some):
                    sink.error(
                        value.location(in: entry.file),
                        "`to` names both an enclave and a partition; give exactly one (accepted: \(accepted.plainList))")
                    return nil
                case (nil, nil):
                    if restriction.pairs().allSatisfy({ ["enclave", "partition"].contains($0.key) }) {
                        sink.error(value.location(in: entry.file), "`to` must name an enclave or a partition (accepted: \(accepted.plainList))")
                    }
                    return nil
                }
            default:
                sink.error(value.location(in: entry.file), "`to` must be one of \(accepted.plainList), found \(value.kindDescription)")
                return nil
            }
        }

        func readImports(_ reader: MappingReader, pathPrefix: String, into map: inout SourceMap) -> ([Import], [String]) {
            var imports: [Import] = []
            var paths: [String] = []
            for (index, item) in (reader.sequence("imports") ?? []).enumerated() {
                let path = "\(pathPrefix)[\(index)]"
                map.record(path, item.location(in: reader.file))
                guard let entry = MappingReader(item, what: "import", file: reader.file, sink: sink, allowed: TreeLoader.importKeys) else { continue }
                let from = readString(entry, "from", required: true, into: &map, prefix: path)
                let exportName = readString(entry, "export_name", required: true, into: &map, prefix: path)
                let alias = readString(entry, "alias", required: true, into: &map, prefix: path)
                guard let from, let exportName, let alias else { continue }
                imports.append(Import(from: from, exportName: exportName, alias: alias))
                paths.append(path)
            }
            return (imports, paths)
        }

        // MARK: Partitions

        mutating func loadPartitions(
            enclaveRelative: String, reader: MappingReader, into map: inout SourceMap
        )
            -> (loaded: [LoadedPartition], unreadableIDs: Set<String>)
        {
            var directories: [String] = []
            if reader.optional("partitions") != nil {
                var listed: Set<String> = []
                for (index, item) in reader.stringList("partitions").enumerated() {
                    map.record("partitions[\(index)]", item.location)
                    let name = item.value
                    if name.isEmpty || name.contains("/") || name.hasPrefix(".") {
                        sink.error(
                            item.location,
                            "`partitions` entry `\(name)` must be the name of a subdirectory of `\(enclaveRelative)` (no `/`, not starting with `.`)")
                        continue
                    }
                    guard listed.insert(name).inserted else {
                        sink.error(item.location, "`partitions` lists `\(name)` more than once")
                        continue
                    }
                    let directory = join(enclaveRelative, name)
                    if !isDirectory(directory) {
                        let hint = Suggestions.didYouMean(name, among: subdirectories(of: enclaveRelative))
                        sink.error(item.location, "`partitions` lists `\(name)`, but `\(directory)` is not a directory\(hint)")
                    } else if case .missing = files.entry(join(directory, Self.configName)) {
                        sink.error(item.location, "`partitions` lists `\(name)`, but `\(directory)` has no config.yml")
                    } else if hasConfig(join(directory, Self.configName)) {
                        directories.append(name)
                    }
                }
                let keyLocation = reader.keyLocation("partitions") ?? reader.location
                for name in subdirectories(of: enclaveRelative) where !listed.contains(name) {
                    if case .missing = files.entry(join(join(enclaveRelative, name), Self.configName)) { continue }
                    sink.warning(
                        keyLocation, "`\(join(enclaveRelative, name))` has a config.yml but is not listed in `partitions`, so it is not loaded")
                }
            } else {
                directories = subdirectories(of: enclaveRelative).filter { hasConfig(join(join(enclaveRelative, $0), Self.configName)) }
            }

            var loaded: [LoadedPartition] = []
            var unreadable: Set<String> = []
            for name in directories {
                let directory = join(enclaveRelative, name)
                let file = join(directory, Self.configName)
                filesRead += 1
                guard let document = YAMLDocument.read(path(file), file: file, sink: sink) else { continue }
                guard let root = document.root,
                    let partitionReader = MappingReader(root, what: "partition config", file: file, sink: sink, allowed: TreeLoader.partitionKeys)
                else {
                    if let id = salvageID(from: document.text) { unreadable.insert(id) }
                    continue
                }
                if let partition = loadPartition(directory: directory, reader: partitionReader) {
                    loaded.append(partition)
                } else if let id = partitionReader.optional("id").flatMap({ $0.scalar?.string }) {
                    unreadable.insert(id)
                }
            }
            return (loaded, unreadable)
        }

        func loadPartition(directory: String, reader: MappingReader) -> LoadedPartition? {
            var map = SourceMap(file: reader.file)
            let id = readString(reader, "id", required: true, into: &map)
            let name = readString(reader, "name", required: true, into: &map)
            if let name, name.isEmpty { sink.error(map["name"], "`name` must not be empty") }
            recordValue(reader, "produces", into: &map)
            let produces = reader.enumValue("produces", required: false, as: ExportType.self)
            recordValue(reader, "backend", into: &map)
            let backend = reader.enumValue("backend", required: false, as: IacBackend.self)
            // A value that failed to read leaves the partition out of validation: checks that
            // depend on it would only repeat the first error in other words.
            let backendBroken = reader.optional("backend") != nil && backend == nil
            let producesBroken = reader.optional("produces") != nil && produces == nil

            var terraform = TerraformSettings()
            if let settings = reader.mapping("terraform", what: "`terraform`", allowed: TreeLoader.terraformKeys) {
                terraform.source = readString(settings, "source", required: false, into: &map, prefix: "terraform")
                terraform.tool = readString(settings, "tool", required: false, into: &map, prefix: "terraform")
                if let source = terraform.source, source.trimmingCharacters(in: .whitespaces).isEmpty {
                    sink.error(map["terraform.source"], "`terraform.source` must not be empty")
                }
                if let tool = terraform.tool, tool.trimmingCharacters(in: .whitespaces).isEmpty {
                    sink.error(map["terraform.tool"], "`terraform.tool` must not be empty")
                }
            }

            var inputs: [String: String] = [:]
            var exactColumns: Set<String> = []
            if let inputReader = reader.mapping("inputs", what: "`inputs`") {
                for (key, keyNode, value) in inputReader.pairs() {
                    guard case .scalar(let scalar) = value, !value.isNull else {
                        sink.error(
                            value.isNull ? keyNode.location(in: reader.file) : value.location(in: reader.file),
                            "input `\(key)` must be a single value (text, number or boolean), found \(value.kindDescription)")
                        continue
                    }
                    var location = value.location(in: reader.file)
                    let quoted = scalar.style == .singleQuoted || scalar.style == .doubleQuoted
                    if (scalar.style == .plain || quoted) && !scalar.string.contains("\n") {
                        if quoted { location = SourceLocation(file: location.file, line: location.line, column: location.column + 1) }
                        exactColumns.insert(key)
                    }
                    map.record("inputs.\(key)", location)
                    map.record("inputs.\(key)#key", keyNode.location(in: reader.file))
                    inputs[key] = scalar.string
                }
            }

            var outputs: [String] = []
            for (index, item) in reader.stringList("declared_outputs").enumerated() {
                map.record("declared_outputs[\(index)]", item.location)
                outputs.append(item.value)
            }
            let (imports, importPaths) = readImports(reader, pathPrefix: "imports", into: &map)

            // Every file of the partition, read under the tree's rules: what validation saw is
            // what the fingerprint covers and what the workspace mirrors.
            let listing = files.files(below: directory, skip: [Self.configName])
            for problem in listing.problems { sink.error(.start(of: problem.path), "`\(problem.path)` \(problem.message)") }
            for (file, reason) in listing.ignored.sorted(by: { $0.key < $1.key }) {
                sink.warning(.start(of: join(directory, file)), "`\(join(directory, file))` is ignored: \(reason)")
            }
            for file in listing.files where GeneratedNames.all.contains(String(file.path.split(separator: "/").first ?? "")) {
                sink.error(
                    .start(of: join(directory, file.path)),
                    "`\(join(directory, file.path))` has a name nclav generates in every workspace (\(GeneratedNames.all.sorted().plainList)); rename it"
                )
            }
            let terraformFiles = listing.files.map(\.path).filter { !$0.contains("/") && ($0.hasSuffix(".tf") || $0.hasSuffix(".tf.json")) }

            guard let id, !backendBroken, !producesBroken else { return nil }
            let partition = Partition(
                id: id, name: name ?? "", produces: produces, backend: backend ?? .terraform,
                terraform: terraform, inputs: inputs, declaredOutputs: outputs, imports: imports)
            return LoadedPartition(
                partition: partition, directory: directory, source: map, terraformFiles: terraformFiles, files: listing.files,
                importPaths: importPaths, misspelledKeys: reader.misspelledKeys, inputsWithExactColumns: exactColumns)
        }
    }
}
