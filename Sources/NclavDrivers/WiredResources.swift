import Foundation

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
