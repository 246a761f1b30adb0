import Foundation

/// Colour for people at a terminal: `+` green, `~` yellow, `-` and failures red, as terraform
/// shows its plans. None when stdout is not a terminal, when `NO_COLOR` is set (no-color.org)
/// or when `TERM` is `dumb`.
enum Style {
    static let enabled: Bool = {
        let environment = ProcessInfo.processInfo.environment
        return isatty(STDOUT_FILENO) != 0 && (environment["NO_COLOR"] ?? "").isEmpty && environment["TERM"] != "dumb"
    }()

    static let green = "\u{1B}[32m", yellow = "\u{1B}[33m", red = "\u{1B}[31m", bold = "\u{1B}[1m", reset = "\u{1B}[0m"

    /// The line coloured by what it says: its leading symbol (after any `[  1.2s]` stamp and
    /// indentation), or a failure.
    static func line(_ text: String, enabled: Bool = Style.enabled) -> String {
        guard enabled else { return text }
        var body = Substring(text)
        if body.hasPrefix("["), let end = body.firstIndex(of: "]") { body = body[body.index(after: end)...] }
        let trimmed = body.drop { $0 == " " }
        let colour: String? =
            if trimmed.hasPrefix("-/+") || trimmed.hasPrefix("!") || trimmed.hasPrefix("- ") || text.contains(" finished with errors") {
                red
            } else if trimmed.hasPrefix("+ ") || trimmed.hasPrefix("✓") || text.hasPrefix("Apply complete") {
                green
            } else if trimmed.hasPrefix("~ ") || trimmed.hasPrefix("… ") || trimmed.hasPrefix("<=") {
                yellow
            } else {
                nil
            }
        return colour.map { $0 + text + reset } ?? text
    }
}
