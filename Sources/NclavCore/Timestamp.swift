import Foundation

/// How nclav writes a time for people and programs: ISO 8601 in UTC with milliseconds
/// (`2026-12-06T22:04:23.125Z`). A terraform run often lasts under a second, and durations are
/// computed from these.
public enum Timestamp {
    public static func string(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// The JSON encoding strategy that writes `string(_:)`.
    public static let encoding: JSONEncoder.DateEncodingStrategy = .custom { date, encoder in
        var container = encoder.singleValueContainer()
        try container.encode(string(date))
    }
}

extension Duration {
    /// The duration in seconds, fractions included.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
