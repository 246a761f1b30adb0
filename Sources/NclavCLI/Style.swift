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

    static let cyan = "\u{1B}[36m"

    /// A line of terraform's log in terraform's own colours. Runs are recorded with
    /// `-no-color`, so logs stay plain for downloads and searches; colour is added where a
    /// person reads them. Diagnostics red or yellow, plan symbols as in a plan, summaries bold.
    static func terraform(_ text: String, enabled: Bool = Style.enabled) -> String {
        guard enabled else { return text }
        let trimmed = text.drop { $0 == " " }
        let framed = text.hasPrefix("│ ") ? text.dropFirst(2) : Substring(text)
        let colour: String? =
            if framed.hasPrefix("Error: ") {
                bold + red
            } else if framed.hasPrefix("Warning: ") {
                bold + yellow
            } else if text.hasPrefix("Apply complete!") || text.hasPrefix("Destroy complete!") || text.hasPrefix("No changes.") {
                bold + green
            } else if text.hasPrefix("Plan: ") || trimmed.hasPrefix("# ") {
                bold
            } else if trimmed.hasPrefix("-/+ ") || trimmed.hasPrefix("+/- ") || trimmed.hasPrefix("- ") {
                red
            } else if trimmed.hasPrefix("+ ") {
                green
            } else if trimmed.hasPrefix("~ ") {
                yellow
            } else if trimmed.hasPrefix("<= ") {
                cyan
            } else {
                nil
            }
        return colour.map { $0 + text + reset } ?? text
    }
}
