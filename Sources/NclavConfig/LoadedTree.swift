import Foundation
import NclavCore
import NclavFiles

/// Positions of the values read from one config file, keyed by a path such as `id`,
/// `exports[1].type` or `inputs.db_host`. Validation uses it to point at the exact value.
public struct SourceMap: Sendable, Hashable {
    public let file: String
    var positions: [String: SourceLocation] = [:]

    init(file: String) { self.file = file }

    /// The location of `path`, or the start of the file when it was never read.
    public subscript(_ path: String) -> SourceLocation { positions[path] ?? .start(of: file) }

    public func contains(_ path: String) -> Bool { positions[path] != nil }

    mutating func record(_ path: String, _ location: SourceLocation) { positions[path] = location }
}

/// A partition as read from disk: the domain value plus where each part of it came from.
public struct LoadedPartition: Sendable {
    public var partition: Partition
    /// The partition directory, relative to the enclaves directory.
    public let directory: String
    public let source: SourceMap
    /// `.tf` / `.tf.json` files directly inside the partition directory, sorted.
    public let terraformFiles: [String]
    /// Every file of the partition directory but its `config.yml` (paths relative to it, links
    /// inside the tree resolved), as validation read them.
    public let files: [TreeFiles.File]
    /// Source-map prefix (`imports[2]`) for each entry of `partition.imports`.
    public let importPaths: [String]
    /// Accepted keys that were written with a typo (already reported): checks that need
    /// them are skipped instead of reporting the same mistake again.
    public let misspelledKeys: Set<String>
    /// Input keys whose value sits on one line, so a placeholder's column can be computed.
    let inputsWithExactColumns: Set<String>

    public var configFile: String { source.file }
}

/// An enclave as read from disk.
public struct LoadedEnclave: Sendable {
    /// `enclave.partitions` mirrors `partitions.map(\.partition)`.
    public var enclave: Enclave
    public let directory: String
    public let source: SourceMap
    public var partitions: [LoadedPartition]
    /// Source-map prefix for each entry of `enclave.exports` / `enclave.imports`.
    public let exportPaths: [String]
    public let importPaths: [String]
    /// Accepted keys that were written with a typo (already reported).
    public let misspelledKeys: Set<String>
    /// Names that were declared but could not be read completely. References to them are
    /// not reported a second time as dangling: the first error already says what is wrong.
    public let unreadableExportNames: Set<String>
    public let unreadablePartitionIDs: Set<String>

    public var configFile: String { source.file }
}

/// Everything found under one enclaves directory, in sorted discovery order.
public struct LoadedTree: Sendable {
    /// The directory as the user named it (used to print paths they can open).
    public let root: String
    public var enclaves: [LoadedEnclave]
    /// Problems found while reading files: syntax, unknown keys, wrong types, discovery.
    public let diagnostics: [Diagnostic]
    /// Ids salvaged from enclave files that could not be read, to avoid cascades.
    public let unreadableEnclaveIDs: Set<String>
    public let filesRead: Int

    public var partitionCount: Int { enclaves.reduce(0) { $0 + $1.partitions.count } }
    public var exportCount: Int { enclaves.reduce(0) { $0 + $1.enclave.exports.count } }
    public var enclaveImportCount: Int { enclaves.reduce(0) { $0 + $1.enclave.imports.count } }
    public var partitionImportCount: Int {
        enclaves.reduce(0) { total, enclave in total + enclave.partitions.reduce(0) { $0 + $1.partition.imports.count } }
    }
}

/// Why a directory could not be loaded at all (as opposed to loaded with diagnostics).
public enum TreeLoadError: Error, Sendable, Equatable, CustomStringConvertible {
    case notFound(String)
    case notADirectory(String)

    public var description: String {
        switch self {
        case .notFound(let path): return "`\(path)` does not exist; pass the directory that holds your enclave directories"
        case .notADirectory(let path): return "`\(path)` is a file, not a directory; pass the directory that holds your enclave directories"
        }
    }
}
