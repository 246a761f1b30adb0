import Foundation
import NclavCore
import NclavTestSupport

/// The test's own model of an enclaves tree: everything the generator may edit, written out
/// as YAML and Terraform files, and evaluated independently of nclav (which partitions
/// depend on which, what each one's outputs are for given inputs).
struct ModelTree: Sendable {
    struct Import: Hashable, Sendable {
        var from: String
        var export: String
        var alias: String
    }
    struct Export: Hashable, Sendable {
        var name: String
        var target: String
    }

    enum Layout: String, Sendable, CaseIterable {
        /// `main.tf` in the partition directory.
        case plain
        /// `terraform.source: ./module`, the module inside the partition directory.
        case inlineModule
        /// `terraform.source: ../…/modules/<enclave>-<partition>`, a module elsewhere in the tree.
        case outsideModule
    }

    struct Partition: Sendable {
        var id: String
        /// Creation order: a partition only ever reads partitions created before it, so the
        /// dependency graph is acyclic by construction.
        var order: Int
        /// Input name → template (`lit-3`, `{{ a7.hostname }}-x`, `{{ nclav_region }}`).
        var inputs: [String: String]
        /// Output name → Terraform string template over `var.<input>`.
        var outputs: [String: String]
        var imports: [Import]
        var layout: Layout
        /// Declares `variable "nclav_enclave"` / `"nclav_partition"` (plain layout only).
        var declaresContextVars: Bool
        /// Bumped by a cosmetic edit of its Terraform code.
        var salt: Int
        var failing: Bool
        var producesHTTP: Bool
    }

    struct Enclave: Sendable {
        var id: String
        var region: String
        /// Under a grouping directory (`group/<id>`) rather than at the top.
        var grouped: Bool
        var exports: [Export]
        var imports: [Import]
        var partitions: [Partition]

        var directory: String { grouped ? "group/\(id)" : id }
    }

    var enclaves: [Enclave] = []
    var counter = 0

    mutating func fresh(_ prefix: String) -> String {
        counter += 1
        return "\(prefix)\(counter)"
    }

    // MARK: Lookup

    var allPartitions: [(enclave: Enclave, partition: Partition)] {
        enclaves.flatMap { enclave in enclave.partitions.map { (enclave, $0) } }.sorted { $0.partition.order < $1.partition.order }
    }

    func key(_ enclave: String, _ partition: String) -> StateKey { try! StateKey(enclave: enclave, partition: partition) }

    func enclave(_ id: String) -> Enclave? { enclaves.first { $0.id == id } }

    func partition(_ key: StateKey) -> Partition? { enclave(key.enclave)?.partitions.first { $0.id == key.partition } }

    /// The partition behind an import (its exporting enclave's export target).
    func exporter(of entry: Import) -> StateKey? {
        guard let export = enclave(entry.from)?.exports.first(where: { $0.name == entry.export }) else { return nil }
        return key(entry.from, export.target)
    }

    /// The import an alias names for a partition: its own first, then its enclave's.
    func importFor(alias: String, partition: Partition, enclave: Enclave) -> Import? {
        partition.imports.first { $0.alias == alias } ?? enclave.imports.first { $0.alias == alias }
    }

    /// Aliases an input template reads (`{{ alias.key }}`), with the key.
    static func references(_ template: String) -> [(alias: String, key: String)] {
        var result: [(String, String)] = []
        var rest = Substring(template)
        while let open = rest.range(of: "{{ ") {
            rest = rest[open.upperBound...]
            guard let close = rest.range(of: " }}") else { break }
            let body = rest[..<close.lowerBound]
            rest = rest[close.upperBound...]
            let parts = body.split(separator: ".")
            // `{{ nclav_region }}` is a context token: no key.
            result.append((String(parts[0]), parts.count == 2 ? String(parts[1]) : ""))
        }
        return result
    }

    /// The partitions it must run after: every partition-level import, and every
    /// enclave-level import its inputs read.
    func dependencies(of partition: Partition, in enclave: Enclave) -> Set<StateKey> {
        var result: Set<StateKey> = []
        for entry in partition.imports { if let key = exporter(of: entry) { result.insert(key) } }
        for template in partition.inputs.values {
            for reference in Self.references(template) where !reference.key.isEmpty {
                if let entry = importFor(alias: reference.alias, partition: partition, enclave: enclave), let key = exporter(of: entry) {
                    result.insert(key)
                }
            }
        }
        return result
    }

    /// Every input with its placeholders filled, or nil while an upstream output is unknown.
    func resolve(_ partition: Partition, in enclave: Enclave, outputs: [StateKey: [String: String]]) -> [String: String]? {
        var result: [String: String] = [:]
        for (name, template) in partition.inputs {
            var value = template
            for reference in Self.references(template) {
                if reference.key.isEmpty {
                    guard reference.alias == "nclav_region" else { return nil }
                    value = value.replacingOccurrences(of: "{{ nclav_region }}", with: enclave.region)
                    continue
                }
                guard
                    let replacement = importFor(alias: reference.alias, partition: partition, enclave: enclave)
                        .flatMap(exporter(of:)).flatMap({ outputs[$0]?[reference.key] })
                else { return nil }
                value = value.replacingOccurrences(of: "{{ \(reference.alias).\(reference.key) }}", with: replacement)
            }
            result[name] = value
        }
        return result
    }

    /// What terraform's outputs are for these inputs.
    static func evaluate(_ outputs: [String: String], inputs: [String: String]) -> [String: String] {
        outputs.mapValues { template in
            var value = template
            for (name, input) in inputs { value = value.replacingOccurrences(of: "${var.\(name)}", with: input) }
            return value
        }
    }

    /// Everything of a partition that nclav's fingerprint covers (its YAML and its code), in
    /// the model's own words: equal signatures mean nothing of it changed.
    func signature(_ partition: Partition, in enclave: Enclave) -> String {
        let inputs = partition.inputs.keys.sorted().map { "\($0)=\(partition.inputs[$0]!)" }.joined(separator: ",")
        let outputs = partition.outputs.keys.sorted().map { "\($0)=\(partition.outputs[$0]!)" }.joined(separator: ",")
        let imports = partition.imports.map { "\($0.from)/\($0.export) as \($0.alias)" }.joined(separator: ",")
        return [
            inputs, outputs, imports, partition.layout.rawValue, "\(partition.declaresContextVars)", "\(partition.salt)",
            "\(partition.failing)", "\(partition.producesHTTP)", "\(enclave.grouped)",
        ].joined(separator: "|")
    }

    // MARK: Generation

    /// A random tree of 1–`maxEnclaves` enclaves and up to `maxPartitions` partitions.
    static func generate(_ random: inout SeededGenerator, maxEnclaves: Int, maxPartitions: Int) -> ModelTree {
        var tree = ModelTree()
        let enclaveCount = Int.random(in: 1...maxEnclaves, using: &random)
        for _ in 0..<enclaveCount { tree.addEnclave(&random) }
        let partitionCount = Int.random(in: enclaveCount...max(enclaveCount, maxPartitions), using: &random)
        for _ in 0..<partitionCount { tree.addPartition(&random) }
        return tree
    }

    mutating func addEnclave(_ random: inout SeededGenerator) {
        enclaves.append(
            Enclave(
                id: fresh("e"), region: "r\(Int.random(in: 1...3, using: &random))", grouped: random.chance(0.3),
                exports: [], imports: [], partitions: []))
    }

    var partitionCount: Int { enclaves.reduce(0) { $0 + $1.partitions.count } }

    mutating func addPartition(_ random: inout SeededGenerator) {
        guard let enclaveIndex = enclaves.indices.randomElement(using: &random) else { return }
        let id = fresh("p")
        let layout = random.pick(Layout.allCases)!
        var partition = Partition(
            id: id, order: counter, inputs: [:], outputs: [:], imports: [], layout: layout,
            declaresContextVars: layout == .plain && random.chance(0.5), salt: 0, failing: false, producesHTTP: false)
        for _ in 0..<Int.random(in: 0...2, using: &random) { partition.inputs[fresh("in_")] = "lit-\(Int.random(in: 0...9, using: &random))" }
        if random.chance(0.3) { partition.inputs[fresh("in_")] = "{{ nclav_region }}" }
        // Read up to two earlier exported partitions.
        let exported = allPartitions.filter { $0.partition.producesHTTP && $0.partition.order < partition.order }
        for _ in 0..<Int.random(in: 0...2, using: &random) {
            guard let (exporterEnclave, target) = random.pick(exported),
                let export = exporterEnclave.exports.first(where: { $0.target == target.id })
            else { break }
            let alias: String
            if let existing = enclaves[enclaveIndex].imports.first(where: { $0.from == exporterEnclave.id && $0.export == export.name }) {
                alias = existing.alias
            } else if partition.imports.contains(where: { $0.from == exporterEnclave.id && $0.export == export.name }) {
                continue
            } else if random.chance(0.5) {
                alias = fresh("a")
                enclaves[enclaveIndex].imports.append(Import(from: exporterEnclave.id, export: export.name, alias: alias))
            } else {
                alias = fresh("a")
                partition.imports.append(Import(from: exporterEnclave.id, export: export.name, alias: alias))
            }
            let key = random.chance(0.7) ? "hostname" : "port"
            partition.inputs[fresh("in_")] = random.chance(0.5) ? "{{ \(alias).\(key) }}" : "via-{{ \(alias).\(key) }}"
        }
        if random.chance(0.5) {
            partition.producesHTTP = true
            partition.outputs["hostname"] = hostTemplate(partition, &random)
            partition.outputs["port"] = "80\(Int.random(in: 10...99, using: &random))"
            enclaves[enclaveIndex].exports.append(Export(name: fresh("x"), target: id))
        } else {
            for _ in 0..<Int.random(in: 0...2, using: &random) { partition.outputs[fresh("o")] = hostTemplate(partition, &random) }
        }
        enclaves[enclaveIndex].partitions.append(partition)
    }

    /// An output template: reads one of the partition's inputs, or none.
    func hostTemplate(_ partition: Partition, _ random: inout SeededGenerator) -> String {
        let suffix = "h\(Int.random(in: 0...99, using: &random))"
        guard let input = random.pick(partition.inputs.keys.sorted()) else { return "\(partition.id).\(suffix)" }
        return "${var.\(input)}.\(suffix)"
    }

    /// Removes a partition and everything that reads it: its exports, the imports of those
    /// exports anywhere, and the inputs that used them.
    mutating func removePartition(_ key: StateKey) {
        guard let enclaveIndex = enclaves.firstIndex(where: { $0.id == key.enclave }) else { return }
        let exports = enclaves[enclaveIndex].exports.filter { $0.target == key.partition }.map(\.name)
        enclaves[enclaveIndex].partitions.removeAll { $0.id == key.partition }
        enclaves[enclaveIndex].exports.removeAll { $0.target == key.partition }
        dropImports { $0.from == key.enclave && exports.contains($0.export) }
    }

    mutating func removeEnclave(_ id: String) {
        enclaves.removeAll { $0.id == id }
        dropImports { $0.from == id }
    }

    private mutating func dropImports(_ gone: (Import) -> Bool) {
        for e in enclaves.indices {
            var aliases = Set(enclaves[e].imports.filter(gone).map(\.alias))
            enclaves[e].imports.removeAll(where: gone)
            for p in enclaves[e].partitions.indices {
                aliases.formUnion(enclaves[e].partitions[p].imports.filter(gone).map(\.alias))
                enclaves[e].partitions[p].imports.removeAll(where: gone)
            }
            guard !aliases.isEmpty else { continue }
            for p in enclaves[e].partitions.indices {
                for (name, template) in enclaves[e].partitions[p].inputs
                where Self.references(template).contains(where: { aliases.contains($0.alias) }) {
                    enclaves[e].partitions[p].inputs[name] = nil
                    // An output that read the input reads a literal now.
                    for (output, expression) in enclaves[e].partitions[p].outputs where expression.contains("${var.\(name)}") {
                        enclaves[e].partitions[p].outputs[output] = expression.replacingOccurrences(of: "${var.\(name)}", with: "gone")
                    }
                }
            }
        }
    }

    mutating func update(_ key: StateKey, _ change: (inout Partition) -> Void) {
        guard let e = enclaves.firstIndex(where: { $0.id == key.enclave }),
            let p = enclaves[e].partitions.firstIndex(where: { $0.id == key.partition })
        else { return }
        change(&enclaves[e].partitions[p])
    }

    // MARK: Files

    /// Writes the tree under `root`, replacing whatever was there.
    func write(to root: URL) throws {
        let manager = FileManager.default
        try? manager.removeItem(at: root)
        try manager.createDirectory(at: root, withIntermediateDirectories: true)
        for enclave in enclaves {
            let directory = root.appendingPathComponent(enclave.directory)
            try manager.createDirectory(at: directory, withIntermediateDirectories: true)
            var yaml = "id: \(enclave.id)\nname: Enclave \(enclave.id)\ncloud: local\nregion: \(enclave.region)\n"
            if !enclave.exports.isEmpty {
                yaml +=
                    "exports:\n"
                    + enclave.exports.map {
                        "  - name: \($0.name)\n    target_partition: \($0.target)\n    type: http\n    to: any_enclave\n"
                    }.joined()
            }
            yaml += Self.importsYAML(enclave.imports)
            try yaml.write(to: directory.appendingPathComponent("config.yml"), atomically: true, encoding: .utf8)
            for partition in enclave.partitions { try write(partition, in: enclave, root: root) }
        }
    }

    static func importsYAML(_ imports: [Import]) -> String {
        imports.isEmpty ? "" : "imports:\n" + imports.map { "  - from: \($0.from)\n    export_name: \($0.export)\n    alias: \($0.alias)\n" }.joined()
    }

    private func write(_ partition: Partition, in enclave: Enclave, root: URL) throws {
        let manager = FileManager.default
        let directory = root.appendingPathComponent(enclave.directory).appendingPathComponent(partition.id)
        try manager.createDirectory(at: directory, withIntermediateDirectories: true)
        var yaml = "id: \(partition.id)\nname: Partition \(partition.id)\n"
        if partition.producesHTTP { yaml += "produces: http\n" }
        let codeDirectory: URL
        switch partition.layout {
        case .plain:
            codeDirectory = directory
        case .inlineModule:
            yaml += "terraform:\n  source: ./module\n"
            codeDirectory = directory.appendingPathComponent("module")
        case .outsideModule:
            let up = String(repeating: "../", count: enclave.grouped ? 3 : 2)
            yaml += "terraform:\n  source: \(up)modules/\(enclave.id)-\(partition.id)\n"
            codeDirectory = root.appendingPathComponent("modules/\(enclave.id)-\(partition.id)")
        }
        if !partition.inputs.isEmpty {
            yaml += "inputs:\n" + partition.inputs.keys.sorted().map { "  \($0): \"\(partition.inputs[$0]!)\"\n" }.joined()
        }
        if !partition.outputs.isEmpty { yaml += "declared_outputs: [\(partition.outputs.keys.sorted().joined(separator: ", "))]\n" }
        yaml += Self.importsYAML(partition.imports)
        try yaml.write(to: directory.appendingPathComponent("config.yml"), atomically: true, encoding: .utf8)
        try manager.createDirectory(at: codeDirectory, withIntermediateDirectories: true)
        try Self.terraform(partition).write(to: codeDirectory.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
    }

    /// The partition's Terraform code: one `terraform_data` whose input joins every input
    /// (so a drifted state shows in a plan), and one single-line string output per output.
    static func terraform(_ partition: Partition) -> String {
        var text = "# model partition \(partition.id), revision \(partition.salt)\n"
        if partition.declaresContextVars {
            text += "variable \"nclav_enclave\" { type = string }\nvariable \"nclav_partition\" { type = string }\n"
        }
        for name in partition.inputs.keys.sorted() { text += "variable \"\(name)\" { type = string }\n" }
        let joined = (["k"] + partition.inputs.keys.sorted().map { "${var.\($0)}" }).joined(separator: "|")
        text += "resource \"terraform_data\" \"main\" { input = \"\(joined)\" }\n"
        for name in partition.outputs.keys.sorted() { text += "output \"\(name)\" { value = \"\(partition.outputs[name]!)\" }\n" }
        if partition.failing {
            text += "resource \"terraform_data\" \"broken\" { input = file(\"${path.module}/does-not-exist.txt\") }\n"
        }
        return text
    }
}
