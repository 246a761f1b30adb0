import Crypto
import Foundation
import IacRunner
import NclavConfig
import NclavCore

/// What `nclav plan` found, kept so that `apply --plan <id>` applies exactly it: per partition
/// terraform's saved plan file and what it will do, the state version it was made against,
/// and the digest of everything the plan was made from.
public struct SavedPlan: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var key: StateKey
        /// `provision`, `update` or `teardown`.
        public var operation: IacRun.Operation
        /// The saved plan file's name in the plan's directory; nil when it was not planned
        /// (deferred, or its plan failed).
        public var planFile: String?
        /// The state the plan was made against: store version and terraform serial (nil: none yet).
        public var stateVersion: Int64?
        public var stateSerial: Int64?
        public var changes: [PlanDocument.ResourceChange]
        /// Declared outputs the apply changes: importers of these are deferred.
        public var changedOutputs: [String]
        /// Why it cannot be planned truthfully yet; it is planned again after that applies.
        public var deferred: String?
        public var runID: UUID?
        /// Why its plan failed.
        public var error: String?

        public init(key: StateKey, operation: IacRun.Operation) {
            self.key = key
            self.operation = operation
            self.changes = []
            self.changedOutputs = []
        }

        /// "2 to add, 0 to change, 1 to destroy".
        public var summary: String { PlanDocument(resourceChanges: changes, changedOutputs: []).summary }
        public var destroys: Bool { operation == .teardown || changes.contains { $0.action == .delete || $0.action == .replace } }
    }

    public struct EnclaveEntry: Codable, Sendable, Equatable {
        public var id: String
        /// `provision`, `update` or `teardown`.
        public var operation: EnclaveOutcome.Operation
    }

    public var id: UUID
    public var createdAt: Date
    public var expiresAt: Date
    /// Of the tree and the stored state it was planned against (`PlanDigest`).
    public var digest: String
    public var targets: Targets?
    /// In the order an apply runs them: teardowns first, then the dependency order.
    public var partitions: [Entry]
    public var enclaves: [EnclaveEntry]
    /// The partition-level diff (`nclav diff`'s lines).
    public var lines: [String]

    public var errors: [String] { partitions.compactMap { entry in entry.error.map { "\(entry.key): \($0)" } } }
    /// Whether applying it would change anything.
    public var hasChanges: Bool {
        !enclaves.isEmpty || partitions.contains { !$0.changes.isEmpty || $0.deferred != nil || $0.operation == .teardown }
    }
    /// What it destroys: teardowns, and resources deleted or replaced.
    public var destructions: [String] {
        enclaves.filter { $0.operation == .teardown }.map { "enclave \($0.id) torn down" }
            + partitions.filter { $0.operation == .teardown }.map { "partition \($0.key) torn down" }
            + partitions.flatMap { entry in
                entry.changes.filter { $0.action == .delete || $0.action == .replace }.map {
                    "\(entry.key): \($0.address) \($0.action == .delete ? "destroyed" : "replaced")"
                }
            }
    }
}

/// Which partitions a `diff`, `plan` or `apply` is about: whole enclaves and single
/// partitions, plus everything upstream of them (so their inputs are right).
public struct Targets: Codable, Sendable, Equatable {
    public var enclaves: [String]
    public var partitions: [StateKey]

    public init(enclaves: [String] = [], partitions: [StateKey] = []) {
        self.enclaves = enclaves.sorted()
        self.partitions = partitions.sorted()
    }

    public var isEmpty: Bool { enclaves.isEmpty && partitions.isEmpty }

    /// The targeted partitions of the tree and all they depend on, transitively. Throws when a
    /// target names nothing in the tree or in state.
    public func selection(
        _ tree: LoadedTree, graph: Digraph<TreeValidator.PartitionRef>, stored: StoredState
    ) throws(TargetError) -> Set<StateKey> {
        let declared = Set(tree.enclaves.map(\.enclave.id))
        let known = declared.union(stored.enclaves.map(\.id))
        for enclave in enclaves where !known.contains(enclave) { throw .unknown("enclave `\(enclave)`", known: known.sorted()) }
        var selected: Set<StateKey> = []
        for loaded in tree.enclaves where enclaves.contains(loaded.enclave.id) {
            for partition in loaded.partitions {
                if let key = try? StateKey(enclave: loaded.enclave.id, partition: partition.partition.id) { selected.insert(key) }
            }
        }
        for state in stored.partitions where enclaves.contains(state.enclaveID) { if let key = state.key { selected.insert(key) } }
        let allKeys = Set(
            tree.enclaves.flatMap { enclave in
                enclave.partitions.compactMap { try? StateKey(enclave: enclave.enclave.id, partition: $0.partition.id) }
            } + stored.partitions.compactMap(\.key))
        for key in partitions {
            guard allKeys.contains(key) else { throw .unknown("partition `\(key)`", known: allKeys.map(\.description).sorted()) }
            selected.insert(key)
        }
        // Everything upstream, so the targets' inputs are what the tree says.
        var queue = Array(selected)
        while let key = queue.popLast() {
            for upstream in graph.dependencies(of: .init(key.enclave, key.partition)) {
                guard let upstreamKey = try? StateKey(enclave: upstream.enclave, partition: upstream.partition) else { continue }
                if selected.insert(upstreamKey).inserted { queue.append(upstreamKey) }
            }
        }
        return selected
    }

    public var description: String {
        (enclaves.map { "--enclave \($0)" } + partitions.map { "--partition \($0)" }).joined(separator: " ")
    }
}

public enum TargetError: Error, Sendable, Equatable, CustomStringConvertible {
    case unknown(String, known: [String])

    public var description: String {
        switch self {
        case .unknown(let what, let known):
            let shown = known.prefix(12).joined(separator: ", ") + (known.count > 12 ? ", …" : "")
            return "the target \(what) is neither in the tree nor in state; known: \(shown.isEmpty ? "nothing" : shown)"
        }
    }
}

/// Why `apply --plan` refuses a plan.
public enum SavedPlanError: Error, Sendable, Equatable, CustomStringConvertible {
    case notFound(UUID)
    case expired(UUID, at: Date)
    case treeChanged(UUID)
    case stateChanged(UUID, partition: StateKey, planned: Int64?, now: Int64?)
    case failedPlan(UUID, errors: [String])
    case unreadable(UUID, reason: String)

    public var description: String {
        switch self {
        case .notFound(let id): return "plan \(id) does not exist (plans are removed when they expire or are applied); run `nclav plan` again"
        case .expired(let id, let at):
            return "plan \(id) expired at \(ISO8601DateFormatter().string(from: at)); run `nclav plan` again"
        case .treeChanged(let id):
            return
                "plan \(id) is stale: the enclaves tree (or an upstream's stored outputs) is not what it was planned from; run `nclav plan` again and apply the new plan"
        case .stateChanged(let id, let partition, let planned, let now):
            return
                "plan \(id) is stale: the state of \(partition) changed since it was planned (serial \(planned.map(String.init) ?? "none") → \(now.map(String.init) ?? "none")); run `nclav plan` again and apply the new plan"
        case .failedPlan(let id, let errors):
            return "plan \(id) has partitions whose plan failed, so it cannot be applied: \(errors.joined(separator: "; "))"
        case .unreadable(let id, let reason): return "plan \(id) cannot be read: \(reason)"
        }
    }
}

/// Saved plans on the server's disk: `<directory>/<id>/plan.json` and the partitions' plan
/// files beside it (0700: a plan file holds the variables and state it was made with).
public struct PlanStore: Sendable {
    public let directory: URL
    /// How long a plan may be applied after it was made.
    public var lifetime: TimeInterval

    public init(directory: URL, lifetime: TimeInterval = 24 * 3600) {
        self.directory = directory
        self.lifetime = lifetime
    }

    public func folder(_ id: UUID) -> URL { directory.appendingPathComponent(id.uuidString.lowercased(), isDirectory: true) }

    func prepare(_ id: UUID) throws {
        try FileManager.default.createDirectory(at: folder(id), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    func save(_ plan: SavedPlan) throws {
        try prepare(plan.id)
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        try encoder.encode(plan).write(to: folder(plan.id).appendingPathComponent("plan.json"), options: .atomic)
    }

    public func load(_ id: UUID, now: Date = Date()) throws(SavedPlanError) -> SavedPlan {
        let file = folder(id).appendingPathComponent("plan.json")
        guard let data = FileManager.default.contents(atPath: file.path) else { throw .notFound(id) }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let plan: SavedPlan
        do { plan = try decoder.decode(SavedPlan.self, from: data) } catch { throw .unreadable(id, reason: "\(error)") }
        guard plan.expiresAt > now else {
            remove(id)
            throw .expired(id, at: plan.expiresAt)
        }
        return plan
    }

    public func remove(_ id: UUID) { try? FileManager.default.removeItem(at: folder(id)) }

    /// Every plan that may still be applied, newest first.
    public func list(now: Date = Date()) -> [SavedPlan] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.compactMap { UUID(uuidString: $0) }.compactMap { try? load($0, now: now) }.sorted { $0.createdAt > $1.createdAt }
    }

    /// Removes expired plans (and folders that never got a plan.json, older than a lifetime).
    @discardableResult
    public func sweep(now: Date = Date()) -> Int {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        var removed = 0
        for name in names {
            guard let id = UUID(uuidString: name) else { continue }
            do { _ = try load(id, now: now) } catch {
                if case .expired = error {
                    removed += 1
                    continue
                }
                let created = (try? FileManager.default.attributesOfItem(atPath: folder(id).path)[.creationDate] as? Date) ?? now
                if now.timeIntervalSince(created) > lifetime {
                    remove(id)
                    removed += 1
                }
            }
        }
        return removed
    }
}

/// What a plan was made from, as one digest: every desired enclave's and partition's
/// fingerprint (files, inputs, upstream outputs as stored) and the targets.
enum PlanDigest {
    static func of(
        _ tree: LoadedTree, plan: Plan, stored: StoredState, tokens: @escaping ContextTokensProvider, targets: Targets?
    ) -> String {
        var lines: [String] = []
        for (id, fingerprint) in plan.enclaveFingerprints.sorted(by: { $0.key < $1.key }) { lines.append("enclave \(id) \(fingerprint)") }
        for enclave in tree.enclaves {
            for partition in enclave.partitions {
                let fingerprint = Planner.fingerprint(partition, in: enclave, tree: tree, stored: storedByKey(stored), tokens: tokens)
                lines.append("partition \(enclave.enclave.id)/\(partition.partition.id) \(fingerprint)")
            }
        }
        for state in stored.partitions { lines.append("stored \(state.enclaveID)/\(state.partitionID) \(state.fingerprint ?? "-")") }
        lines.append("targets \(targets?.description ?? "")")
        return SHA256.hash(data: Data(lines.sorted().joined(separator: "\n").utf8)).map { String(format: "%02x", $0) }.joined()
    }

    static func storedByKey(_ stored: StoredState) -> [StateKey: PartitionState] {
        var result: [StateKey: PartitionState] = [:]
        for state in stored.partitions { if let key = state.key { result[key] = state } }
        return result
    }
}
