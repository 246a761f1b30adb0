import Foundation
import Logging

/// nclav's log lines: `<UTC time> <level> <label>: key=value … [source] message`, one per event,
/// metadata keys sorted, written to standard error with one `write` per line.
///
/// Why not swift-log's `StreamLogHandler`: it re-renders its metadata string every time a key
/// is set, and Hummingbird sets a request id on a fresh logger for every request, so every
/// request paid for formatting a log line that (at the usual levels) is never written. Here
/// metadata is only rendered when a line is actually logged.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String

    public init(label: String, level: Logger.Level, metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider) {
        self.label = label
        self.logLevel = level
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get(), !provided.isEmpty { merged.merge(provided) { $1 } }
        if let explicit = event.metadata, !explicit.isEmpty { merged.merge(explicit) { $1 } }
        if let error = event.error { merged["error.message"] = "\(error)" }
        FileHandle.standardError.write(
            Data(
                Self.line(
                    time: Date(), level: event.level, label: label, metadata: merged,
                    source: event.source, message: event.message.description
                ).utf8))
    }

    static func line(time: Date, level: Logger.Level, label: String, metadata: Logger.Metadata, source: String, message: String) -> String {
        let rendered = metadata.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        return "\(time.formatted(.iso8601)) \(level) \(label):\(rendered) [\(source)] \(message)\n"
    }
}
