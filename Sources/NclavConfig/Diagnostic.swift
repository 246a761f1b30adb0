/// A position in a file of the enclaves tree. `file` is relative to the enclaves directory
/// so reports read the same wherever the tree is checked out.
public struct SourceLocation: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    public let file: String
    /// 1-based.
    public let line: Int
    /// 1-based.
    public let column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// The start of a file: used when a problem concerns the file as a whole.
    public static func start(of file: String) -> SourceLocation { SourceLocation(file: file, line: 1, column: 1) }

    /// `file:line:col`; `.` stands for the enclaves directory itself.
    public var description: String { "\(file.isEmpty ? "." : file):\(line):\(column)" }

    public static func < (lhs: SourceLocation, rhs: SourceLocation) -> Bool {
        (lhs.file, lhs.line, lhs.column) < (rhs.file, rhs.line, rhs.column)
    }
}

/// One problem found while loading or validating an enclaves tree.
public struct Diagnostic: Sendable, Hashable, Codable, Comparable {
    public enum Severity: String, Sendable, Codable, Comparable {
        case error, warning

        public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs == .error && rhs == .warning }
    }

    public let severity: Severity
    public let location: SourceLocation
    public let message: String

    public init(_ severity: Severity, at location: SourceLocation, _ message: String) {
        self.severity = severity
        self.location = location
        self.message = message
    }

    public static func error(_ location: SourceLocation, _ message: String) -> Diagnostic { Diagnostic(.error, at: location, message) }
    public static func warning(_ location: SourceLocation, _ message: String) -> Diagnostic { Diagnostic(.warning, at: location, message) }

    /// `file:line:col: error: message`, with `file` relative to the enclaves directory.
    public var description: String { "\(location): \(severity.rawValue): \(message)" }

    public static func < (lhs: Diagnostic, rhs: Diagnostic) -> Bool {
        (lhs.location, lhs.severity, lhs.message) < (rhs.location, rhs.severity, rhs.message)
    }
}

/// Collects diagnostics during one synchronous load; never shared across tasks.
final class DiagnosticSink {
    private(set) var items: [Diagnostic] = []

    func error(_ location: SourceLocation, _ message: String) { items.append(.error(location, message)) }
    func warning(_ location: SourceLocation, _ message: String) { items.append(.warning(location, message)) }
    func append(_ diagnostic: Diagnostic) { items.append(diagnostic) }
}
