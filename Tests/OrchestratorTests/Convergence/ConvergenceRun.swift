import Foundation
import NclavConfig
import NclavCore
import NclavStore
import NclavTestSupport
import Orchestrator
import TFBackend

/// Where a convergence run applies its trees: a store, a reconciler over it, and the
/// directories the reconciler renders into and the tree is written to.
struct ConvergenceWorld: Sendable {
    let store: any StateStore
    let reconciler: Reconciler
    let workspaces: URL
    let tree: URL
}

/// A model-based test of the reconcile engine: a seeded random tree, then a sequence of
/// random edits, each followed by an apply whose result is checked against the model's own
/// expectation (and against the store, the run records and terraform's states).
struct ConvergenceRun {
    struct Failure: Error, CustomStringConvertible {
        let seed: UInt64
        let step: Int
        let edit: String
        let problems: [String]
        var description: String {
            "seed \(seed), step \(step) (after: \(edit)): \(problems.count) problem(s)\n  " + problems.joined(separator: "\n  ")
                + "\nreplay: NCLAV_CONVERGENCE_SEED=\(seed) swift test --filter Convergence"
        }
    }

    /// What the model believes about one partition after the applies so far.
    struct Record: Equatable {
        var signature: String
        var inputs: [String: String]
        var outputs: [String: String]
        var failed: Bool
        var drifted: Bool
        /// Its terraform state holds a resource (it succeeded at least once since created).
        var hasResources: Bool
    }

    let seed: UInt64
    let world: ConvergenceWorld
    let maxPartitions: Int
    var random: SeededGenerator
    var model: ModelTree
    var records: [StateKey: Record] = [:]
    var stepsRun = 0
    /// Totals over the run, for the test's own report.
    var totals: [String: Int] = [:]

    init(seed: UInt64, world: ConvergenceWorld, maxEnclaves: Int = 6, maxPartitions: Int = 30) {
        self.seed = seed
        self.world = world
        self.maxPartitions = maxPartitions
        random = SeededGenerator(seed: seed)
        model = ModelTree.generate(&random, maxEnclaves: maxEnclaves, maxPartitions: maxPartitions)
    }

    /// Applies the generated tree, then `steps` edits with an apply after each.
    mutating func run(steps: Int) async throws {
        try await applyAndCheck(edit: "first apply")
        for _ in 0..<steps {
            stepsRun += 1
            let edit = try await randomEdit()
            totals[edit.split(separator: " ").first.map(String.init) ?? edit, default: 0] += 1
            try await applyAndCheck(edit: edit)
        }
    }

    // MARK: Edits

    private mutating func randomEdit() async throws -> String {
        let partitions = model.allPartitions
        for _ in 0..<20 {
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<16:
                guard let (enclave, partition) = random.pick(partitions) else { continue }
                let literal = partition.inputs.keys.sorted().filter { partition.inputs[$0]!.hasPrefix("lit-") }
                let key = model.key(enclave.id, partition.id)
                if let name = random.pick(literal), random.chance(0.8) {
                    let value = "lit-\(Int.random(in: 0...9, using: &random))"
                    model.update(key) { $0.inputs[name] = value }
                    return "input \(key).\(name) = \(value)"
                }
                let name = model.fresh("in_")
                model.update(key) { $0.inputs[name] = "lit-new" }
                return "input \(key).\(name) added"
            case 16..<28:
                guard let (enclave, partition) = random.pick(partitions) else { continue }
                let key = model.key(enclave.id, partition.id)
                model.update(key) { $0.salt += 1 }
                return "code \(key) edited (a comment)"
            case 28..<40:
                guard let (enclave, partition) = random.pick(partitions.filter { !$0.partition.outputs.isEmpty }),
                    let output = random.pick(partition.outputs.keys.sorted())
                else { continue }
                let key = model.key(enclave.id, partition.id)
                let template = model.hostTemplate(partition, &random)
                model.update(key) { $0.outputs[output] = template }
                return "output \(key).\(output) = \(template)"
            case 40..<52:
                guard model.partitionCount < maxPartitions else { continue }
                if model.enclaves.isEmpty || random.chance(0.15) { model.addEnclave(&random) }
                model.addPartition(&random)
                return "partition added"
            case 52..<60:
                guard let (enclave, partition) = random.pick(partitions.filter { removable(model.key($0.enclave.id, $0.partition.id)) }) else {
                    continue
                }
                let key = model.key(enclave.id, partition.id)
                model.removePartition(key)
                return "partition \(key) removed"
            case 60..<64:
                guard model.enclaves.count > 1,
                    let enclave = random.pick(
                        model.enclaves.filter { enclave in enclave.partitions.allSatisfy { removable(model.key(enclave.id, $0.id)) } })
                else { continue }
                model.removeEnclave(enclave.id)
                return "enclave \(enclave.id) removed"
            case 64..<72:
                guard let (enclave, partition) = random.pick(partitions.filter { !$0.partition.failing }) else { continue }
                let key = model.key(enclave.id, partition.id)
                model.update(key) { $0.failing = true }
                return "code \(key) broken"
            case 72..<84:
                guard let (enclave, partition) = random.pick(partitions.filter { $0.partition.failing }) else { continue }
                let key = model.key(enclave.id, partition.id)
                model.update(key) { $0.failing = false }
                return "code \(key) fixed"
            case 84..<92:
                let candidates = records.filter { !$0.value.failed && !$0.value.drifted && $0.value.hasResources && model.partition($0.key) != nil }
                guard let key = random.pick(candidates.keys.sorted()) else { continue }
                try await drift(key)
                return "drift \(key) behind nclav's back, found by a drift check"
            default:
                guard let index = model.enclaves.indices.randomElement(using: &random) else { continue }
                let region = "r\(Int.random(in: 1...3, using: &random))"
                model.enclaves[index].region = region
                return "region \(model.enclaves[index].id) = \(region)"
            }
        }
        return "nothing edited"
    }

    /// A partition can be removed unless its teardown would run its broken code.
    private func removable(_ key: StateKey) -> Bool {
        !(model.partition(key)?.failing == true && records[key]?.hasResources == true)
    }

    /// Changes a partition's state the way someone running terraform by hand would, then
    /// runs a drift check and expects that partition (and those still drifted) to be found.
    private mutating func drift(_ key: StateKey) async throws {
        let store = world.store
        guard let latest = try await store.latestState(key), let body = Self.drifted(latest.body),
            let document = try? StateDocument(parsing: body)
        else {
            throw Failure(seed: seed, step: stepsRun, edit: "drift \(key)", problems: ["the state of \(key) could not be read to drift it"])
        }
        let outcome = try await store.writeState(
            key,
            StateWrite(
                body: body, serial: document.serial, lineage: document.lineage,
                sha256: Digest.sha256Hex(body), md5: Digest.md5Base64(body), lockID: nil))
        guard case .stored = outcome else {
            throw Failure(seed: seed, step: stepsRun, edit: "drift \(key)", problems: ["the drifted state was refused: \(outcome)"])
        }
        let lock = try await world.reconciler.acquire()
        let report = try await world.reconciler.drift(holding: lock)
        var problems: [String] = []
        for entry in report.results {
            // Drifted earlier and skipped since (an upstream failed): still drifted.
            let expected: DriftResult.Status = entry.key == key || records[entry.key]?.drifted == true ? .drifted : .inSync
            if entry.result?.status != expected {
                problems.append(
                    "drift check of \(entry.key): \(entry.result.map { "\($0.status.rawValue) (\($0.summary))" } ?? entry.skipped ?? "?"), expected \(expected.rawValue)"
                )
            }
        }
        if !report.results.contains(where: { $0.key == key }) { problems.append("the drift check did not check \(key)") }
        if !problems.isEmpty { throw Failure(seed: seed, step: stepsRun, edit: "drift \(key)", problems: problems) }
        records[key]?.drifted = true
    }

    /// The state with its resource's input and every output changed, serial raised.
    static func drifted(_ body: Data) -> Data? {
        guard var object = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
            let serial = (object["serial"] as? NSNumber)?.int64Value
        else { return nil }
        object["serial"] = serial + 1
        if var outputs = object["outputs"] as? [String: Any] {
            for (name, value) in outputs {
                if var output = value as? [String: Any], let string = output["value"] as? String {
                    output["value"] = string + "-drifted"
                    outputs[name] = output
                }
            }
            object["outputs"] = outputs
        }
        if var resources = object["resources"] as? [[String: Any]] {
            for r in resources.indices {
                guard var instances = resources[r]["instances"] as? [[String: Any]] else { continue }
                for i in instances.indices {
                    guard var attributes = instances[i]["attributes"] as? [String: Any],
                        var input = attributes["input"] as? [String: Any], let value = input["value"] as? String
                    else { continue }
                    input["value"] = value + "-drifted"
                    attributes["input"] = input
                    instances[i]["attributes"] = attributes
                }
                resources[r]["instances"] = instances
            }
            object["resources"] = resources
        }
        return try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }

    // MARK: Expectation

    struct Expectation {
        var ran: Set<StateKey> = []
        var failed: Set<StateKey> = []
        var skipped: Set<StateKey> = []
        var removed: Set<StateKey> = []
        /// Removed partitions whose teardown runs terraform (their state holds resources).
        var tornDown: Set<StateKey> = []
        var records: [StateKey: Record] = [:]
    }

    /// What the apply of the current model must do, worked out from the model alone.
    func expectation() -> Expectation {
        var expected = Expectation()
        expected.records = records
        for (key, record) in records where model.partition(key) == nil {
            expected.removed.insert(key)
            if record.hasResources { expected.tornDown.insert(key) }
            expected.records[key] = nil
        }
        for (enclave, partition) in model.allPartitions {
            let key = model.key(enclave.id, partition.id)
            if model.dependencies(of: partition, in: enclave).contains(where: { expected.failed.contains($0) || expected.skipped.contains($0) }) {
                expected.skipped.insert(key)
                continue
            }
            guard let inputs = model.resolve(partition, in: enclave, outputs: expected.records.mapValues(\.outputs)) else {
                // Only possible when an upstream never succeeded, which skips this one above.
                expected.skipped.insert(key)
                continue
            }
            let signature = model.signature(partition, in: enclave)
            let record = expected.records[key]
            let runs = record == nil || record!.failed || record!.drifted || record!.signature != signature || record!.inputs != inputs
            guard runs else { continue }
            expected.ran.insert(key)
            if partition.failing {
                expected.failed.insert(key)
                expected.records[key] = Record(
                    signature: record?.signature ?? "", inputs: record?.inputs ?? [:], outputs: record?.outputs ?? [:],
                    failed: true, drifted: record?.drifted ?? false, hasResources: record?.hasResources ?? false)
            } else {
                expected.records[key] = Record(
                    signature: signature, inputs: inputs, outputs: ModelTree.evaluate(partition.outputs, inputs: inputs),
                    failed: false, drifted: false, hasResources: true)
            }
        }
        return expected
    }

    // MARK: Apply and check

    private mutating func applyAndCheck(edit: String) async throws {
        try model.write(to: world.tree)
        let validation = try ValidationResult.check(directory: world.tree.path)
        guard validation.isValid else {
            throw Failure(seed: seed, step: stepsRun, edit: edit, problems: ["the generated tree is invalid:"] + validation.diagnosticLines())
        }
        let tree = validation.tree
        let expected = expectation()
        let before = try await world.reconciler.plan(tree).plan
        let parallelism = Int.random(in: 1...4, using: &random)
        let report = try await world.reconciler.reconcile(tree, options: ReconcileOptions(parallelism: parallelism))
        var problems = try await check(report, plan: before, expected: expected, tree: tree)
        if expected.failed.isEmpty && problems.isEmpty {
            let after = try await world.reconciler.plan(tree).plan
            if !after.isEmpty { problems.append("not converged: right after a successful apply, diff says " + after.lines.joined(separator: " / ")) }
        }
        if ProcessInfo.processInfo.environment["NCLAV_CONVERGENCE_TRACE"] != nil {
            print(
                "step \(stepsRun): \(edit) → "
                    + report.outcomes.map { "\($0.key) \($0.operation.rawValue) \($0.result.rawValue)" }.joined(separator: ", "))
        }
        guard problems.isEmpty else { throw Failure(seed: seed, step: stepsRun, edit: edit, problems: problems) }
        records = expected.records
        totals["runs", default: 0] += report.runCount
        totals["applies", default: 0] += 1
    }

    private func check(_ report: ReconcileReport, plan: Plan, expected: Expectation, tree: LoadedTree) async throws -> [String] {
        var problems: [String] = []
        func expect(_ condition: Bool, _ message: @autoclosure () -> String) { if !condition { problems.append(message()) } }
        func names(_ keys: Set<StateKey>) -> String { keys.isEmpty ? "none" : keys.sorted().map(\.description).joined(separator: ", ") }
        let store = world.store

        // The report: failures, exit status, skipped partitions.
        let failed = Set(report.outcomes.filter { $0.result == .failed }.map(\.key))
        expect(failed == expected.failed, "failed: \(names(failed)); the model expects \(names(expected.failed))")
        expect(report.errors.isEmpty == failed.isEmpty, "errors \(report.errors) do not match the failed outcomes \(names(failed))")
        let skipped = Set(report.outcomes.filter { $0.result == .skipped }.map(\.key))
        expect(skipped == expected.skipped, "skipped: \(names(skipped)); the model expects \(names(expected.skipped))")

        // Every run of this reconcile, from the store's run records.
        var runs: [StateKey: [IacRun]] = [:]
        for key in Set(expected.ran).union(expected.tornDown).union(report.outcomes.map(\.key)).union(records.keys) {
            let recorded = try await store.runs(enclave: key.enclave, partition: key.partition, limit: 50).filter {
                $0.reconcileID == report.reconcileID
            }
            if !recorded.isEmpty { runs[key] = recorded }
        }
        for (key, list) in runs where list.count > 1 { problems.append("\(key) ran \(list.count) times in one apply") }
        let ranKeys = Set(runs.keys)
        expect(
            ranKeys == expected.ran.union(expected.tornDown),
            "ran: \(names(ranKeys)); the model expects \(names(expected.ran.union(expected.tornDown)))")
        let reported = Dictionary(report.outcomes.compactMap { outcome in outcome.runID.map { (outcome.key, $0) } }, uniquingKeysWith: { a, _ in a })
        expect(Set(reported.keys) == ranKeys, "the report lists runs of \(names(Set(reported.keys))), the store has \(names(ranKeys))")
        for (key, list) in runs where reported[key] != list.first?.id { problems.append("the report's run of \(key) is not the stored one") }
        expect(report.runCount == 0 || !report.changedNothing, "runs happened but the report says nothing changed")
        expect(!report.changedNothing || ranKeys.isEmpty, "\"No changes.\" although \(names(ranKeys)) ran")

        // Order: never before an upstream that ran in the same apply had finished.
        for (enclave, partition) in model.allPartitions {
            let key = model.key(enclave.id, partition.id)
            guard let run = runs[key]?.first else { continue }
            for dependency in model.dependencies(of: partition, in: enclave) {
                guard let upstream = runs[dependency]?.first else { continue }
                if (upstream.finishedAt ?? .distantFuture) > run.startedAt {
                    problems.append("\(key) started before its upstream \(dependency) finished")
                }
            }
        }

        // The plan announced what ran: certain changes ran (or were skipped), every run was listed.
        var certain: Set<StateKey> = [], conditional: Set<StateKey> = [], deleted: Set<StateKey> = []
        for change in plan.changes {
            guard let key = change.partitionKey else { continue }
            switch change {
            case .deletePartition: deleted.insert(key)
            case .mayUpdatePartition: conditional.insert(key)
            default: certain.insert(key)
            }
        }
        expect(
            expected.ran.isSubset(of: certain.union(conditional)),
            "ran without being in the diff: \(names(expected.ran.subtracting(certain.union(conditional))))")
        expect(
            certain.isSubset(of: expected.ran.union(expected.skipped)),
            "the diff was certain about \(names(certain.subtracting(expected.ran.union(expected.skipped)))), which did not run")
        expect(deleted == expected.removed, "the diff deletes \(names(deleted)); removed were \(names(expected.removed))")

        // Stored records, terraform's states and the model agree.
        for (key, record) in expected.records {
            guard let state = try await store.partitions(ofEnclave: key.enclave).first(where: { $0.partitionID == key.partition }) else {
                if !expected.skipped.contains(key) { problems.append("\(key) has no stored record") }
                continue
            }
            if record.failed {
                expect(state.status == .failed, "\(key) failed but is stored as \(state.status.rawValue)")
                continue
            }
            expect(state.status == .active, "\(key) is stored as \(state.status.rawValue), expected active")
            expect(state.outputs == record.outputs, "\(key) stored outputs \(state.outputs), the model expects \(record.outputs)")
            guard !record.drifted else { continue }
            let document = try await store.latestState(key).flatMap { try? StateDocument(parsing: $0.body) }
            let terraformOutputs = (document?.outputs ?? [:]).filter { state.desired.declaredOutputs.contains($0.key) }.mapValues(\.templateString)
            expect(terraformOutputs == state.outputs, "\(key) stored outputs \(state.outputs) differ from its terraform state's \(terraformOutputs)")
        }
        for key in expected.removed {
            let state = try await store.partitions(ofEnclave: key.enclave).first { $0.partitionID == key.partition }
            expect(state == nil, "\(key) was removed from the YAML but is still in state")
            expect(try await store.latestState(key) == nil, "\(key) was torn down but its terraform state is still stored")
            let workspace = world.workspaces.appendingPathComponent(key.enclave).appendingPathComponent(key.partition)
            expect(!FileManager.default.fileExists(atPath: workspace.path), "\(key) was torn down but its workspace is still there")
        }
        let storedEnclaves = Set(try await store.enclaves().map(\.id))
        let desiredEnclaves = Set(model.enclaves.map(\.id))
        expect(storedEnclaves == desiredEnclaves, "stored enclaves \(storedEnclaves.sorted()), the YAML has \(desiredEnclaves.sorted())")
        return problems
    }
}
