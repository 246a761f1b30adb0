import Crypto
import Foundation
import IacRunner
import NclavConfig
import NclavCore
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
    case updatePartition(StateKey, reason: String)
    case deletePartition(StateKey)
    case wireExport(enclave: String, name: String)
    case wireImport(enclave: String, partition: String?, alias: String)

    /// The text `nclav diff` prints for this change.
    public var line: String {
        switch self {
        case .createEnclave(let id): return "+ enclave \(id)"
        case .updateEnclave(let id): return "~ enclave \(id)"
        case .deleteEnclave(let id): return "- enclave \(id)"
        case .createPartition(let key): return "  + partition \(key)"
        case .updatePartition(let key, let reason): return "  ~ partition \(key) (\(reason))"
        case .deletePartition(let key): return "  - partition \(key)"
        case .wireExport(let enclave, let name): return "  > export \(enclave)/\(name)"
        case .wireImport(let enclave, let partition, let alias):
            return "  < import \(enclave)/\(partition.map { "\($0)/" } ?? "")\(alias)"
        }
    }
}

/// The difference between a loaded tree and the store, in a stable order.
public struct Plan: Sendable, Equatable {
    public var changes: [Change]
    /// Fingerprints of every desired partition (`enclave/partition` → hex), for the reconciler
    /// to store after a successful apply.
    public var partitionFingerprints: [StateKey: String]
    public var enclaveFingerprints: [String: String]
    /// True when the tree would remove every stored enclave (an empty or wrong directory).
    public var deletesEverything: Bool

    public var isEmpty: Bool { changes.isEmpty }

    /// `nclav diff` output: one line per change, then the summary.
    public var lines: [String] {
        changes.map(\.line) + [changes.isEmpty ? "No changes." : "\(changes.count) change(s) would be applied."]
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
/// a partition downstream of a created or changed one is `~ (upstream changes)`, since its
/// resolved inputs may change.
public enum Planner {
    public static func plan(_ tree: LoadedTree, stored: StoredState, tokens: ContextTokensProvider = localContextTokens,
                            graph knownGraph: Digraph<TreeValidator.PartitionRef>? = nil) -> Plan {
        let storedEnclaves = Dictionary(stored.enclaves.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var storedPartitions: [StateKey: PartitionState] = [:]
        for state in stored.partitions {
            if let key = try? StateKey(enclave: state.enclaveID, partition: state.partitionID) { storedPartitions[key] = state }
        }
        let graph = knownGraph ?? TreeValidator.dependencyGraph(of: tree)
        let desiredIDs = Set(tree.enclaves.map(\.enclave.id))

        // Partition fingerprints and first-order changes, in dependency order so upstream
        // changes are known before their importers are looked at.
        var fingerprints: [StateKey: String] = [:]
        var partitionChange: [StateKey: Change] = [:]
        var loadedByRef: [TreeValidator.PartitionRef: (LoadedEnclave, LoadedPartition)] = [:]
        for enclave in tree.enclaves {
            for partition in enclave.partitions { loadedByRef[.init(enclave.enclave.id, partition.partition.id)] = (enclave, partition) }
        }
        let ordered = graph.waves().flatMap { $0 }
        for ref in ordered {
            guard let (enclave, partition) = loadedByRef[ref], let key = try? StateKey(enclave: ref.enclave, partition: ref.partition) else { continue }
            let fingerprint = Self.fingerprint(partition, in: enclave, tree: tree, stored: storedPartitions, tokens: tokens)
            fingerprints[key] = fingerprint
            if storedPartitions[key] == nil {
                partitionChange[key] = .createPartition(key)
            } else if storedPartitions[key]?.fingerprint != fingerprint {
                partitionChange[key] = .updatePartition(key, reason: "changed")
            } else {
                let upstreamChanging = graph.dependencies(of: ref).contains { dependency in
                    (try? StateKey(enclave: dependency.enclave, partition: dependency.partition)).flatMap { partitionChange[$0] } != nil
                }
                if upstreamChanging {
                    partitionChange[key] = .updatePartition(key, reason: "upstream changes")
                } else if storedPartitions[key]?.drift?.status == .drifted {
                    // Its YAML and files are unchanged, but its real infrastructure is not what
                    // was applied: the next apply puts it back.
                    partitionChange[key] = .updatePartition(key, reason: "drifted")
                }
            }
        }

        var changes: [Change] = []
        var enclaveFingerprints: [String: String] = [:]
        let allIDs = desiredIDs.union(storedEnclaves.keys).sorted()
        let loadedByID = Dictionary(tree.enclaves.map { ($0.enclave.id, $0) }, uniquingKeysWith: { first, _ in first })
        let storedPartitionsByEnclave = Dictionary(grouping: stored.partitions, by: \.enclaveID)
        for id in allIDs {
            guard let loaded = loadedByID[id] else {
                changes.append(.deleteEnclave(id))
                for state in (storedPartitionsByEnclave[id] ?? []).sorted(by: { $0.partitionID < $1.partitionID }) {
                    if let key = try? StateKey(enclave: id, partition: state.partitionID) { changes.append(.deletePartition(key)) }
                }
                continue
            }
            let enclave = loaded.enclave
            let fingerprint = Self.enclaveFingerprint(enclave)
            enclaveFingerprints[id] = fingerprint
            let previous = storedEnclaves[id]
            var lines: [Change] = []
            if previous == nil {
                lines.append(.createEnclave(id))
            } else if previous?.fingerprint != fingerprint {
                lines.append(.updateEnclave(id))
            }
            let desiredPartitionIDs = Set(enclave.partitions.map(\.id))
            var partitionLines: [(String, Change)] = []
            for partition in enclave.partitions {
                if let key = try? StateKey(enclave: id, partition: partition.id), let change = partitionChange[key] {
                    partitionLines.append((partition.id, change))
                }
            }
            for state in storedPartitionsByEnclave[id] ?? [] where !desiredPartitionIDs.contains(state.partitionID) {
                if let key = try? StateKey(enclave: id, partition: state.partitionID) { partitionLines.append((state.partitionID, .deletePartition(key))) }
            }
            lines += partitionLines.sorted { $0.0 < $1.0 }.map(\.1)
            let previousExports = Set((previous?.desired.exports ?? []).map(Self.canonical))
            lines += enclave.exports.filter { !previousExports.contains(Self.canonical($0)) }.map { .wireExport(enclave: id, name: $0.name) }
            let previousImports = Set((previous?.desired.imports ?? []).map(Self.canonical))
            lines += enclave.imports.filter { !previousImports.contains(Self.canonical($0)) }.map { .wireImport(enclave: id, partition: nil, alias: $0.alias) }
            for partition in enclave.partitions.sorted(by: { $0.id < $1.id }) {
                let key = try? StateKey(enclave: id, partition: partition.id)
                let before = key.flatMap { storedPartitions[$0] }.map { Set($0.desired.imports.map(Self.canonical)) } ?? []
                lines += partition.imports.filter { !before.contains(Self.canonical($0)) }.map { .wireImport(enclave: id, partition: partition.id, alias: $0.alias) }
            }
            if !lines.isEmpty, previous != nil, !lines.contains(where: { if case .updateEnclave = $0 { return true }; return false }),
               lines.contains(where: { if case .wireExport = $0 { return true }; if case .wireImport = $0 { return true }; return false }) {
                // Export and import wiring is part of the enclave: show it as an update.
                lines.insert(.updateEnclave(id), at: 0)
            }
            changes += lines
        }
        let deletesEverything = !storedEnclaves.isEmpty && desiredIDs.isDisjoint(with: storedEnclaves.keys)
        return Plan(changes: changes, partitionFingerprints: fingerprints, enclaveFingerprints: enclaveFingerprints,
                    deletesEverything: deletesEverything)
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
    public static func fingerprint(_ loaded: LoadedPartition, in enclave: LoadedEnclave, tree: LoadedTree,
                                   stored: [StateKey: PartitionState], tokens: ContextTokensProvider) -> String {
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
        for relative in PartitionFiles.list(path: directory).files {
            feed(relative)
            let content = FileManager.default.contents(atPath: "\(directory)/\(relative)") ?? Data()
            feed(Digest.sha256Hex(content))
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
    public static func resolveInputs(_ partition: Partition, in enclave: LoadedEnclave, tree: LoadedTree,
                                     stored: [StateKey: PartitionState], tokens: ContextTokensProvider) -> [String: String] {
        let context = tokens(enclave.enclave, partition)
        var aliases: [String: Import] = [:]
        for entry in enclave.enclave.imports { aliases[entry.alias] = entry }
        for entry in partition.imports { aliases[entry.alias] = entry }
        var resolved: [String: String] = [:]
        for (name, value) in partition.inputs {
            guard let template = try? Template(parsing: value) else { resolved[name] = value; continue }
            resolved[name] = template.render { segment in
                switch segment {
                case .context(let token): return context[token] ?? ""
                case .importOutput(let alias, let key):
                    guard let entry = aliases[alias],
                          let exporter = tree.enclaves.first(where: { $0.enclave.id == entry.from }),
                          let export = exporter.enclave.exports.first(where: { $0.name == entry.exportName }),
                          let stateKey = try? StateKey(enclave: entry.from, partition: export.targetPartition),
                          let value = stored[stateKey]?.outputs[key] else { return "<pending \(alias).\(key)>" }
                    return value
                case .literal(let text): return text
                }
            }
        }
        return resolved
    }
}
