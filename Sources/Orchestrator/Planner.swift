import Crypto
import Foundation
import IacRunner
import NclavConfig
import NclavCore
import NclavDrivers
import TFBackend

/// What the store holds, as the planner needs it.
public struct StoredState: Sendable {
    public var enclaves: [EnclaveState]
    public var partitions: [PartitionState]

    public init(enclaves: [EnclaveState] = [], partitions: [PartitionState] = []) {
        self.enclaves = enclaves
        self.partitions = partitions
    }
}

/// One line of a diff.
public enum Change: Sendable, Equatable {
    case createEnclave(String)
    case updateEnclave(String)
    case deleteEnclave(String)
    case createPartition(StateKey)
    /// Certain to run: `reason` is `changed`, `drifted` or `failed last time`.
    case updatePartition(StateKey, reason: String)
    /// Runs only if what it reads changes while the apply runs: an upstream partition's
    /// outputs, or its enclave's context (`condition` says which, e.g. `if shop/api's outputs change`).
    case mayUpdatePartition(StateKey, condition: String)
    case deletePartition(StateKey)
    case wireExport(enclave: String, name: String)
    case wireImport(enclave: String, partition: String?, alias: String)

    /// The text `nclav diff` prints for this change.
    public var line: String {
        switch self {
        case .createEnclave(let id): return "+ enclave \(id)"
        case .updateEnclave(let id): return "~ enclave \(id)"
        case .deleteEnclave(let id): return "- enclave \(id)"
        case .createPartition(let key): return "+ partition \(key)"
        case .updatePartition(let key, let reason): return "~ partition \(key) (\(reason))"
        case .mayUpdatePartition(let key, let condition): return "~ partition \(key) (\(condition))"
        case .deletePartition(let key): return "- partition \(key)"
        case .wireExport(let enclave, let name): return "  > export \(enclave)/\(name)"
        case .wireImport(let enclave, let partition, let alias):
            return "  < import \(enclave)/\(partition.map { "\($0)/" } ?? "")\(alias)"
        }
    }

    /// The partition a partition change is about.
    public var partitionKey: StateKey? {
        switch self {
        case .createPartition(let key), .updatePartition(let key, _), .mayUpdatePartition(let key, _), .deletePartition(let key): return key
        default: return nil
        }
    }

    /// False for changes that happen only if something upstream turns out different.
    public var isCertain: Bool {
        if case .mayUpdatePartition = self { return false }
        return true
    }
}

/// The difference between a loaded tree and the store, in the order an apply works through
/// it: teardowns (dependents first, then enclaves), enclave boundaries and their wiring, then
/// partitions in dependency order (exporters before importers).
public struct Plan: Sendable, Equatable {
    public var changes: [Change]
    /// Fingerprints of every desired partition (`enclave/partition` → hex), for the reconciler
    /// to store after a successful apply.
    public var partitionFingerprints: [StateKey: String]
    public var enclaveFingerprints: [String: String]
    /// True when the tree would remove every stored enclave (an empty or wrong directory).
    public var deletesEverything: Bool

    public init(
        changes: [Change], partitionFingerprints: [StateKey: String] = [:], enclaveFingerprints: [String: String] = [:],
        deletesEverything: Bool = false
    ) {
        self.changes = changes
        self.partitionFingerprints = partitionFingerprints
        self.enclaveFingerprints = enclaveFingerprints
        self.deletesEverything = deletesEverything
    }

    public var isEmpty: Bool { changes.isEmpty }
    /// Changes an apply will make whatever happens upstream.
    public var certainCount: Int { changes.filter(\.isCertain).count }
    /// Partitions that run only if an upstream's outputs (or their enclave's context) change.
    public var conditionalCount: Int { changes.count - certainCount }

    /// `nclav diff` output: one line per change, then the summary.
    public var lines: [String] {
        changes.map(\.line) + [summary]
    }

    public var summary: String {
        if changes.isEmpty { return "No changes." }
        let conditional = conditionalCount
        return "\(certainCount) change(s) would be applied"
            + (conditional == 0 ? "." : "; \(conditional) more partition(s) run only if what they read changes.")
    }
}

/// Values the enclave's driver provides as `{{ nclav_* }}` tokens (local: project id = enclave id).
public typealias ContextTokensProvider = @Sendable (Enclave, Partition) -> [String: String]

public let localContextTokens: ContextTokensProvider = { enclave, partition in
    ["nclav_enclave_id": enclave.id, "nclav_partition_id": partition.id, "nclav_project_id": enclave.id, "nclav_region": enclave.region ?? ""]
}

/// Diffs a validated tree against stored state (spec §3).
///
/// A partition's fingerprint covers its semantic config, the content of every file of its
/// directory, the tool, and its inputs resolved with the outputs stored for the partitions it
/// imports from — never the directory's path. A partition whose fingerprint changed is `~`;
/// one downstream of a changing partition is `~ (if … outputs change)`: it runs only if the
/// outputs it reads come out different.
public enum Planner {
    public static func plan(
        _ tree: LoadedTree, stored: StoredState, tokens: ContextTokensProvider = localContextTokens,
        graph knownGraph: Digraph<TreeValidator.PartitionRef>? = nil
    ) -> Plan {
        let storedEnclaves = Dictionary(stored.enclaves.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var storedPartitions: [StateKey: PartitionState] = [:]
        for state in stored.partitions {
            if let key = state.key { storedPartitions[key] = state }
        }
        let graph = knownGraph ?? TreeValidator.dependencyGraph(of: tree)
        let desiredIDs = Set(tree.enclaves.map(\.enclave.id))
        var loadedByRef: [TreeValidator.PartitionRef: (LoadedEnclave, LoadedPartition)] = [:]
        for enclave in tree.enclaves {
            for partition in enclave.partitions { loadedByRef[.init(enclave.enclave.id, partition.partition.id)] = (enclave, partition) }
        }

        // 1. Teardowns: partitions gone from the YAML (dependents first), then enclaves.
        var changes: [Change] = []
        var desiredKeys: Set<StateKey> = []
        for ref in loadedByRef.keys { if let key = try? StateKey(enclave: ref.enclave, partition: ref.partition) { desiredKeys.insert(key) } }
        let removed = stored.partitions.filter { $0.key.map { !desiredKeys.contains($0) } ?? false }
        changes += StoredGraph.teardownOrder(removed, enclaves: stored.enclaves).compactMap { $0.key.map(Change.deletePartition) }
        changes += storedEnclaves.keys.filter { !desiredIDs.contains($0) }.sorted().map(Change.deleteEnclave)

        // 2. Enclave boundaries and their export/import wiring.
        var enclaveFingerprints: [String: String] = [:]
        var changedEnclaves: Set<String> = []
        for loaded in tree.enclaves.sorted(by: { $0.enclave.id < $1.enclave.id }) {
            let enclave = loaded.enclave, id = enclave.id
            let fingerprint = Self.enclaveFingerprint(enclave)
            enclaveFingerprints[id] = fingerprint
            let previous = storedEnclaves[id]
            var wiring: [Change] = []
            let previousExports = Set((previous?.desired.exports ?? []).map(Self.canonical))
            wiring += enclave.exports.filter { !previousExports.contains(Self.canonical($0)) }.map { .wireExport(enclave: id, name: $0.name) }
            let previousImports = Set((previous?.desired.imports ?? []).map(Self.canonical))
            wiring += enclave.imports.filter { !previousImports.contains(Self.canonical($0)) }.map {
                .wireImport(enclave: id, partition: nil, alias: $0.alias)
            }
            for partition in enclave.partitions.sorted(by: { $0.id < $1.id }) {
                let before =
                    (try? StateKey(enclave: id, partition: partition.id)).flatMap { storedPartitions[$0] }
                    .map { Set($0.desired.imports.map(Self.canonical)) } ?? []
                wiring += partition.imports.filter { !before.contains(Self.canonical($0)) }.map {
                    .wireImport(enclave: id, partition: partition.id, alias: $0.alias)
                }
            }
            if previous == nil {
                changes.append(.createEnclave(id))
            } else if previous?.fingerprint != fingerprint || !wiring.isEmpty {
                // Export and import wiring is part of the enclave: show it as an update.
                changes.append(.updateEnclave(id))
                if previous?.fingerprint != fingerprint { changedEnclaves.insert(id) }
            }
            changes += wiring
        }

        // 3. Partitions in dependency order, so upstream changes are known before their importers.
        var fingerprints: [StateKey: String] = [:]
        var changing: [StateKey: Change] = [:]
        for ref in graph.waves().flatMap({ $0 }) {
            guard let (enclave, partition) = loadedByRef[ref], let key = try? StateKey(enclave: ref.enclave, partition: ref.partition) else {
                continue
            }
            let fingerprint = Self.fingerprint(partition, in: enclave, tree: tree, stored: storedPartitions, tokens: tokens)
            fingerprints[key] = fingerprint
            let previous = storedPartitions[key]
            let change: Change?
            if previous == nil {
                change = .createPartition(key)
            } else if previous?.status == .failed {
                change = .updatePartition(key, reason: "failed last time")
            } else if previous?.fingerprint != fingerprint {
                change = .updatePartition(key, reason: "changed")
            } else if previous?.drift?.status == .drifted {
                // Its YAML and files are unchanged, but its real infrastructure is not what
                // was applied: the next apply puts it back.
                change = .updatePartition(key, reason: "drifted")
            } else {
                let upstream = graph.dependencies(of: ref).compactMap { try? StateKey(enclave: $0.enclave, partition: $0.partition) }
                    .filter { changing[$0] != nil }
                if !upstream.isEmpty {
                    let names = upstream.map(\.description)
                    change = .mayUpdatePartition(key, condition: "if \(names.joined(separator: " or "))'s outputs change")
                } else if changedEnclaves.contains(enclave.enclave.id) && Self.readsContext(partition.partition) {
                    change = .mayUpdatePartition(key, condition: "if enclave \(enclave.enclave.id)'s context changes")
                } else {
                    change = nil
                }
            }
            if let change {
                changing[key] = change
                changes.append(change)
            }
        }
        let deletesEverything = !storedEnclaves.isEmpty && desiredIDs.isDisjoint(with: storedEnclaves.keys)
        return Plan(
            changes: changes, partitionFingerprints: fingerprints, enclaveFingerprints: enclaveFingerprints,
            deletesEverything: deletesEverything)
    }

    /// True when an input uses a `{{ nclav_* }}` token that comes from the enclave's driver
    /// context (everything but the enclave and partition ids, which never change).
    static func readsContext(_ partition: Partition) -> Bool {
        partition.inputs.values.contains { value in
            guard let template = try? Template(parsing: value) else { return false }
            return template.segments.contains { segment in
                if case .context(let token) = segment { return token != "nclav_enclave_id" && token != "nclav_partition_id" }
                return false
            }
        }
    }

    // MARK: Fingerprints

    static func canonical<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    static func sha256(_ text: String) -> String {
        Digest.sha256Hex(Data(text.utf8))
    }

    /// The enclave's own configuration (its partitions are fingerprinted one by one).
    public static func enclaveFingerprint(_ enclave: Enclave) -> String {
        var own = enclave
        own.partitions = []
        return sha256(canonical(own))
    }

    /// See the type's documentation for what is covered.
    public static func fingerprint(
        _ loaded: LoadedPartition, in enclave: LoadedEnclave, tree: LoadedTree,
        stored: [StateKey: PartitionState], tokens: ContextTokensProvider
    ) -> String {
        let partition = loaded.partition
        let directory = loaded.directory.isEmpty ? tree.root : "\(tree.root)/\(loaded.directory)"
        var hasher = SHA256()
        func feed(_ text: String) {
            hasher.update(data: Data("\(text.utf8.count):".utf8))
            hasher.update(data: Data(text.utf8))
        }
        feed("config")
        feed(canonical(partition))
        feed("tool")
        feed(partition.terraform.tool ?? partition.backend.defaultTool)
        feed("files")
        // The files validation read (links inside the tree resolved): the same set the
        // workspace mirrors. One that vanished since counts as a change; rendering then says why.
        for file in loaded.files {
            feed(file.path)
            feed(FileManager.default.contents(atPath: file.source).map(Digest.sha256Hex) ?? "unreadable")
        }
        // A local module outside the partition directory is vendored into the workspace, so
        // its content is part of what terraform applies.
        if let source = partition.terraform.source,
            let module = WorkspaceSpec.localModulePath(source, partitionDirectory: URL(fileURLWithPath: directory, isDirectory: true))
        {
            if module != directory && !module.hasPrefix(directory + "/") {
                feed("module")
                for file in PartitionFiles.list(path: module, treeRoot: tree.root, keepConfig: true).files {
                    feed(file.path)
                    feed(FileManager.default.contents(atPath: file.source).map(Digest.sha256Hex) ?? "unreadable")
                }
            }
        }
        feed("inputs")
        let resolved = resolveInputs(partition, in: enclave, tree: tree, stored: stored, tokens: tokens)
        for name in resolved.keys.sorted() {
            feed(name)
            feed(resolved[name]!)
        }
        return Digest.hex(hasher.finalize())
    }

    /// Inputs with every placeholder filled: context tokens from the driver, `{{ alias.key }}`
    /// from the stored outputs of the partition behind the export. A value not known yet (the
    /// upstream partition was never applied) reads as `<pending alias.key>`.
    public static func resolveInputs(
        _ partition: Partition, in enclave: LoadedEnclave, tree: LoadedTree,
        stored: [StateKey: PartitionState], tokens: ContextTokensProvider
    ) -> [String: String] {
        let context = tokens(enclave.enclave, partition)
        var aliases: [String: Import] = [:]
        for entry in enclave.enclave.imports { aliases[entry.alias] = entry }
        for entry in partition.imports { aliases[entry.alias] = entry }
        var resolved: [String: String] = [:]
        for (name, value) in partition.inputs {
            guard let template = try? Template(parsing: value) else {
                resolved[name] = value
                continue
            }
            resolved[name] = template.render { segment in
                switch segment {
                case .context(let token): return context[token] ?? ""
                case .importOutput(let alias, let key):
                    guard let entry = aliases[alias],
                        let exporter = tree.enclaves.first(where: { $0.enclave.id == entry.from }),
                        let export = exporter.enclave.exports.first(where: { $0.name == entry.exportName }),
                        let stateKey = try? StateKey(enclave: entry.from, partition: export.targetPartition),
                        let value = stored[stateKey]?.outputs[key]
                    else { return "<pending \(alias).\(key)>" }
                    return value
                case .literal(let text): return text
                }
            }
        }
        return resolved
    }
}
