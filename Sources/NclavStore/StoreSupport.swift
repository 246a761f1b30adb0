import Foundation

/// Set once when the store closes; checked before every call so a closed store answers
/// with `StoreError.closed` instead of a database error.
public final class ClosedFlag: @unchecked Sendable {
    // Guarded by `lock`: read on every call from any task.
    private let lock = NSLock()
    private var closed = false

    public init() {}

    public func close() { lock.withLock { closed = true } }

    public func check() throws {
        try lock.withLock { if closed { throw StoreError.closed } }
    }
}

/// JSON for stored records that hold whole domain values (every store keeps them this way).
/// Dates as reference-date seconds so they round-trip exactly.
public enum RecordCoding {
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.timeIntervalSinceReferenceDate)
        }
        encoder.outputFormatting = .sortedKeys
        do { return try encoder.encode(value) } catch { throw StoreError.corrupt("cannot encode \(T.self): \(error)") }
    }

    public static func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            Date(timeIntervalSinceReferenceDate: try decoder.singleValueContainer().decode(Double.self))
        }
        do { return try decoder.decode(type, from: data) } catch { throw StoreError.corrupt("cannot decode \(T.self): \(error)") }
    }
}
