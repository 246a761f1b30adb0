import Foundation
import NclavCore

/// The outcome of loading and validating one enclaves directory.
public struct ValidationResult: Sendable {
    public let tree: LoadedTree
    /// Load and validation diagnostics together, sorted by file, line, column.
    public let diagnostics: [Diagnostic]
    /// The partition dependency graph, computed by the same pass as the diagnostics.
    public let graph: Digraph<TreeValidator.PartitionRef>

    public var errors: [Diagnostic] { diagnostics.filter { $0.severity == .error } }
    public var warnings: [Diagnostic] { diagnostics.filter { $0.severity == .warning } }
    public var isValid: Bool { errors.isEmpty }

    /// Loads `directory` and validates whatever could be read, so independent mistakes in
    /// different files are all reported in one run.
    public static func check(directory: String) throws(TreeLoadError) -> ValidationResult {
        let tree = try TreeLoader.load(directory: directory)
        let analysis = TreeValidator.analyze(tree)
        var diagnostics = tree.diagnostics + analysis.diagnostics
        if tree.enclaves.isEmpty && tree.diagnostics.isEmpty {
            diagnostics.append(
                .error(
                    .start(of: ""),
                    "no enclave found in this directory: an enclave is a directory below it whose config.yml has an `id`"))
        }
        return ValidationResult(tree: tree, diagnostics: Array(Set(diagnostics)).sorted(), graph: analysis.graph)
    }

    /// This result with more diagnostics (terraform's own, from `validate --terraform`).
    public func adding(_ extra: [Diagnostic]) -> ValidationResult {
        ValidationResult(tree: tree, diagnostics: Array(Set(diagnostics + extra)).sorted(), graph: graph)
    }

    /// The path to show for a tree-relative file: what the user can open from where they ran.
    public func displayPath(_ file: String) -> String {
        let root = tree.root.hasSuffix("/") && tree.root.count > 1 ? String(tree.root.dropLast()) : tree.root
        if file.isEmpty { return root }
        if root == "." { return file }
        return root == "/" ? "/\(file)" : "\(root)/\(file)"
    }

    /// `path:line:col: severity: message`, one per diagnostic.
    public func diagnosticLines() -> [String] {
        diagnostics.map { "\(displayPath($0.location.file)):\($0.location.line):\($0.location.column): \($0.severity.rawValue): \($0.message)" }
    }

    /// One line per enclave: cloud, partitions, exports and imports, for a quick look.
    public func enclaveOverview() -> [String] {
        tree.enclaves.map { loaded in
            let enclave = loaded.enclave
            let partitions = loaded.partitions.map(\.partition.id)
            return "  \(enclave.id) [cloud: \(enclave.cloud?.rawValue ?? "server default")] "
                + "partitions: \(partitions.plainList); exports: \(enclave.exports.map(\.name).plainList); "
                + "imports: \(enclave.imports.map { "\($0.alias) <- \($0.from)/\($0.exportName)" }.plainList)"
        }
    }

    public var summaryLine: String {
        let counts =
            "\(plural(tree.enclaves.count, "enclave")), \(plural(tree.partitionCount, "partition")), "
            + "\(plural(tree.exportCount, "export")), \(plural(tree.enclaveImportCount + tree.partitionImportCount, "import")) "
            + "(\(tree.enclaveImportCount) enclave-level, \(tree.partitionImportCount) partition-level)"
        let warningText = warnings.isEmpty ? "" : ", \(plural(warnings.count, "warning"))"
        if isValid { return "valid: \(counts)\(warningText)" }
        return "invalid: \(plural(errors.count, "error"))\(warningText) in \(plural(tree.filesRead, "file")) read"
    }

    /// The same content as the text report, for tools.
    public func jsonReport() -> String {
        struct Entry: Encodable {
            let severity: String, path: String, file: String, line: Int, column: Int, message: String
        }
        struct Summary: Encodable {
            let enclaves: Int, partitions: Int, exports: Int, enclave_imports: Int, partition_imports: Int
            let errors: Int, warnings: Int, files_read: Int
        }
        struct Report: Encodable {
            let valid: Bool, directory: String, diagnostics: [Entry], summary: Summary, summary_line: String
        }
        let report = Report(
            valid: isValid, directory: tree.root,
            diagnostics: diagnostics.map {
                Entry(
                    severity: $0.severity.rawValue, path: displayPath($0.location.file), file: $0.location.file,
                    line: $0.location.line, column: $0.location.column, message: $0.message)
            },
            summary: Summary(
                enclaves: tree.enclaves.count, partitions: tree.partitionCount, exports: tree.exportCount,
                enclave_imports: tree.enclaveImportCount, partition_imports: tree.partitionImportCount,
                errors: errors.count, warnings: warnings.count, files_read: tree.filesRead),
            summary_line: summaryLine)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Encoding plain structs of strings and ints cannot fail.
        let data = (try? encoder.encode(report)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    private func plural(_ count: Int, _ noun: String) -> String { "\(count) \(noun)\(count == 1 ? "" : "s")" }
}
