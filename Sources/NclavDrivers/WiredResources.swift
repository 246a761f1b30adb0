import Foundation
import NclavCore

/// How a driver keeps what its `wireImports` made for a partition: each made thing (a
/// driver's own `Codable` enum) as JSON under `wired.<n>` in the partition's identity, in the
/// order made, so that teardown undoes exactly those things, newest first.
public enum WiredResources {
    public static let keyPrefix = "wired."

    /// `identity` with its wiring replaced by `records`.
    public static func storing<Record: Encodable>(_ records: [Record], in identity: PartitionIdentity) -> PartitionIdentity {
        var result = identity.filter { !$0.key.hasPrefix(keyPrefix) }
        for (index, record) in records.enumerated() { result[keyPrefix + String(index)] = encode(record) }
        return result
    }

    /// The wiring entries of `identity` that `records` no longer has (an import removed or
    /// changed since): what an apply must undo before it stores `records`. An entry that is not
    /// a record the driver can read stops the apply rather than being forgotten.
    public static func stale<Record: Equatable>(
        in identity: PartitionIdentity, keeping records: [Record], cloud: CloudTarget, read: (String) -> Record?
    ) throws(ImportWiringError) -> PartitionIdentity {
        var stale: PartitionIdentity = [:]
        for (key, value) in identity where key.hasPrefix(keyPrefix) {
            guard let record = read(value) else { throw .unreadableRecord(cloud: cloud, key: key, value: value) }
            if !records.contains(record) { stale[key] = value }
        }
        return stale
    }

    /// The identity's wiring entries, newest first: the order to undo them in.
    public static func newestFirst(in identity: PartitionIdentity) -> [(key: String, value: String)] {
        identity.filter { $0.key.hasPrefix(keyPrefix) }
            .map { (key: $0.key, value: $0.value) }
            .sorted { (Int($0.key.dropFirst(keyPrefix.count)) ?? 0) > (Int($1.key.dropFirst(keyPrefix.count)) ?? 0) }
    }

    public static func encode<Record: Encodable>(_ record: Record) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Records are enums of strings: encoding them cannot fail.
        return String(decoding: (try? encoder.encode(record)) ?? Data(), as: UTF8.self)
    }

    /// The record, or nil when the value is not one (teardown reports that rather than skips it).
    public static func decode<Record: Decodable>(_ type: Record.Type, from stored: String) -> Record? {
        try? JSONDecoder().decode(type, from: Data(stored.utf8))
    }
}

/// Why a driver could not wire (or unwire) an import; the same three on every cloud.
public enum ImportWiringError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The exporter's partition does not produce the outputs this export type needs.
    case missingExportOutput(cloud: CloudTarget, export: String, enclave: String, outputs: [String], type: ExportType)
    /// A tcp import needs an endpoint inside the importer's network, and it has none.
    case needsNetwork(cloud: CloudTarget, enclave: String, alias: String, endpoint: String)
    /// A wiring record the driver cannot read: teardown stops rather than skip it.
    case unreadableRecord(cloud: CloudTarget, key: String, value: String)

    public var description: String {
        switch self {
        case .missingExportOutput(let cloud, let export, let enclave, let outputs, let type):
            let names = outputs.map { "`\($0)`" }.joined(separator: " and ")
            return
                "export \(export) of enclave \(enclave) is a \(type.rawValue) export on \(cloud.displayName): its partition must declare and produce the output\(outputs.count > 1 ? "s" : "") \(names) for importers to connect to"
        case .needsNetwork(let cloud, let enclave, let alias, let endpoint):
            return
                "enclave \(enclave) imports tcp `\(alias)` on \(cloud.displayName), which needs \(endpoint) in its network; declare network.vpc_cidr with at least one subnet"
        case .unreadableRecord(let cloud, let key, let value):
            return
                "the partition's identity records `\(key)` = `\(value)`, which is not a \(cloud.displayName) import wiring record nclav knows; remove what it names by hand, then drop the partition from nclav's records with `nclav forget`"
        }
    }
}

extension CloudTarget {
    var displayName: String {
        switch self {
        case .local: "local"
        case .gcp: "GCP"
        case .azure: "Azure"
        case .aws: "AWS"
        }
    }
}
