import Foundation
import NclavCore

/// How the API writes and reads JSON: sorted keys, no escaped slashes, ISO 8601 dates with
/// milliseconds (a terraform run often lasts under a second, and durations are computed from them).
public enum Wire {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = Timestamp.encoding
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let text = try decoder.singleValueContainer().decode(String.self)
            let formatter = ISO8601DateFormatter()
            if let date = formatter.date(from: text) { return date }
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            if let date = formatter.date(from: text) { return date }
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not an ISO 8601 date: \(text)"))
        }
        return decoder
    }

    /// One NDJSON line: the value's JSON and a newline.
    public static func line<T: Encodable>(_ value: T) -> String {
        ((try? encoder().encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? #"{"type":"error","error":"encoding"}"#) + "\n"
    }
}

/// nclav's error body: `{"error": "what went wrong", "details": ["what to do next", …]}`.
public struct ErrorBody: Codable, Sendable, Equatable {
    public var error: String
    public var details: [String]

    public init(error: String, details: [String] = []) {
        self.error = error
        self.details = details
    }
}
