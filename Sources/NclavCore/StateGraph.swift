import Foundation

/// The dependency graph of what is applied, built from stored state alone (so it works after
/// the YAML is gone): nodes are partitions, an edge points from an importer to the partition
/// behind the export it imports.
public struct StateGraph: Codable, Sendable, Equatable {
    public struct Node: Codable, Sendable, Equatable {
        public let id: String
        public let status: ProvisionStatus
        public let produces: ExportType?
        /// `in-sync`, `drifted` or `error` from the last drift check; nil when never checked.
        public var drift: DriftResult.Status? = nil
        /// The operation of the partition's run in progress (`provision`, `plan`, …); nil when none is.
        public var running: String? = nil
    }

    public struct EnclaveNode: Codable, Sendable, Equatable {
        public let id: String
        public let cloud: CloudTarget
        public let status: ProvisionStatus
        public var partitions: [Node]
        public let exports: [String]
    }

    public struct Edge: Codable, Sendable, Equatable {
        /// `enclave/partition` of the importer.
        public let from: String
        /// `enclave/partition` behind the export.
        public let to: String
        public let alias: String
        /// `enclave/export`.
        public let export: String
    }

    public private(set) var enclaves: [EnclaveNode]
    public let edges: [Edge]

    /// The graph with each partition's run in progress (`enc/part` → operation) marked.
    public func marking(running: [String: String]) -> StateGraph {
        var graph = self
        for e in graph.enclaves.indices {
            for p in graph.enclaves[e].partitions.indices {
                graph.enclaves[e].partitions[p].running = running["\(graph.enclaves[e].id)/\(graph.enclaves[e].partitions[p].id)"]
            }
        }
        return graph
    }

    public init(enclaves: [EnclaveState], partitions: [PartitionState]) {
        let byEnclave = Dictionary(grouping: partitions, by: \.enclaveID)
        self.enclaves = enclaves.sorted { $0.id < $1.id }.map { enclave in
            EnclaveNode(
                id: enclave.id, cloud: enclave.resolvedCloud, status: enclave.status,
                partitions: (byEnclave[enclave.id] ?? []).sorted { $0.partitionID < $1.partitionID }
                    .map { Node(id: $0.partitionID, status: $0.status, produces: $0.desired.produces, drift: $0.drift?.status) },
                exports: enclave.desired.exports.map(\.name))
        }
        let enclaveByID = Dictionary(enclaves.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var edges: [Edge] = []
        for partition in partitions {
            let enclaveImports = enclaveByID[partition.enclaveID]?.desired.imports ?? []
            // Enclave-level imports count where the partition's inputs use them.
            let used = Set(
                partition.desired.inputs.values.flatMap { value in
                    ((try? Template(parsing: value))?.references ?? []).compactMap { reference -> String? in
                        if case .importOutput(let alias, _) = reference.segment { return alias }
                        return nil
                    }
                })
            let imports = partition.desired.imports + enclaveImports.filter { used.contains($0.alias) }
            for entry in imports {
                guard let export = enclaveByID[entry.from]?.desired.exports.first(where: { $0.name == entry.exportName }) else { continue }
                edges.append(
                    Edge(
                        from: "\(partition.enclaveID)/\(partition.partitionID)", to: "\(entry.from)/\(export.targetPartition)",
                        alias: entry.alias, export: "\(entry.from)/\(entry.exportName)"))
            }
        }
        self.edges = edges.sorted { ($0.from, $0.to, $0.alias) < ($1.from, $1.to, $1.alias) }
    }

    private init(enclaves: [EnclaveNode], edges: [Edge]) {
        self.enclaves = enclaves
        self.edges = edges
    }

    /// One enclave and the edges that touch it.
    public func filtered(to enclave: String) -> StateGraph {
        StateGraph(
            enclaves: enclaves.filter { $0.id == enclave },
            edges: edges.filter { $0.from.hasPrefix("\(enclave)/") || $0.to.hasPrefix("\(enclave)/") })
    }

    public var textLines: [String] {
        var lines: [String] = []
        for enclave in enclaves {
            lines.append("enclave \(enclave.id) [\(enclave.cloud.rawValue), \(enclave.status.rawValue)]")
            for node in enclave.partitions {
                lines.append(
                    "  partition \(enclave.id)/\(node.id) [\(node.status.rawValue)\(node.drift.map { ", \($0.rawValue)" } ?? "")]\(node.produces.map { " produces \($0.rawValue)" } ?? "")"
                )
            }
        }
        if !edges.isEmpty {
            lines.append("imports:")
            for edge in edges { lines.append("  \(edge.from) -> \(edge.to) (\(edge.alias) = \(edge.export))") }
        }
        return lines.isEmpty ? ["(nothing applied yet)"] : lines
    }

    /// Graphviz: one cluster per enclave, an edge per import.
    public var dot: String {
        var lines = ["digraph nclav {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
        for (index, enclave) in enclaves.enumerated() {
            lines.append("  subgraph cluster_\(index) {")
            lines.append("    label=\"\(enclave.id) (\(enclave.cloud.rawValue))\";")
            for node in enclave.partitions {
                let color = node.status == .active ? "darkgreen" : (node.status == .failed ? "red" : "gray")
                lines.append("    \"\(enclave.id)/\(node.id)\" [label=\"\(node.id)\", color=\(color)];")
            }
            lines.append("  }")
        }
        for edge in edges { lines.append("  \"\(edge.from)\" -> \"\(edge.to)\" [label=\"\(edge.alias)\"];") }
        lines.append("}")
        return lines.joined(separator: "\n")
    }
}
