import Foundation

/// What a saved plan will do, as terraform's machine-readable plan output reports it
/// (`PlanStreamReader`): each resource instance's action and the outputs that change.
public struct PlanDocument: Sendable, Equatable, Codable {
    public enum Action: String, Sendable, Codable, CaseIterable {
        case create, update, replace, delete, read

        /// How terraform's own plan shows it.
        public var symbol: String {
            switch self {
            case .create: "+"
            case .update: "~"
            case .replace: "-/+"
            case .delete: "-"
            case .read: "<="
            }
        }
    }

    public struct ResourceChange: Sendable, Equatable, Codable {
        public var address: String
        public var action: Action
        public init(address: String, action: Action) {
            self.address = address
            self.action = action
        }
    }

    /// Resource instances that change, in terraform's order; no-ops left out.
    public var resourceChanges: [ResourceChange]
    /// Root outputs whose value changes (or becomes known only after the apply).
    public var changedOutputs: Set<String>

    public init(resourceChanges: [ResourceChange], changedOutputs: Set<String>) {
        self.resourceChanges = resourceChanges
        self.changedOutputs = changedOutputs
    }

    public func count(_ action: Action) -> Int { resourceChanges.filter { $0.action == action }.count }

    /// "2 to add, 1 to change, 1 to replace, 0 to destroy" (replacements counted apart, as
    /// terraform counts them in both add and destroy).
    public var summary: String {
        var parts = ["\(count(.create)) to add", "\(count(.update)) to change"]
        if count(.replace) > 0 { parts.append("\(count(.replace)) to replace") }
        parts.append("\(count(.delete)) to destroy")
        if count(.read) > 0 { parts.append("\(count(.read)) to read") }
        return parts.joined(separator: ", ")
    }

    /// Whether applying it destroys anything (a replacement does).
    public var destroys: Bool { resourceChanges.contains { $0.action == .delete || $0.action == .replace } }
}

/// Reads `terraform plan -json`'s machine-readable lines as they come: each becomes the
/// human line it carries (`@message`, with a diagnostic's detail and place) for the run's log,
/// and the planned changes and output changes are collected into a `PlanDocument`. Lines that
/// are not JSON (terraform's own warnings on stderr) pass through unchanged.
public actor PlanStreamReader {
    private var changes: [PlanDocument.ResourceChange] = []
    private var outputs: Set<String> = []
    private var summarized = false

    public init() {}

    /// The plan, once terraform reported its change summary; nil when it never did.
    public var document: PlanDocument? {
        summarized ? PlanDocument(resourceChanges: changes, changedOutputs: outputs) : nil
    }

    public func read(_ line: String) -> String {
        guard line.hasPrefix("{"), let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { return line }
        let message = object["@message"] as? String ?? line
        switch object["type"] as? String {
        case "planned_change":
            let change = object["change"] as? [String: Any] ?? [:]
            if let address = (change["resource"] as? [String: Any])?["addr"] as? String, let action = Self.action(change["action"] as? String) {
                changes.append(PlanDocument.ResourceChange(address: address, action: action))
            }
        case "outputs":
            for (name, value) in object["outputs"] as? [String: [String: Any]] ?? [:] {
                if let action = value["action"] as? String, action != "noop" { outputs.insert(name) }
            }
        case "change_summary":
            summarized = true
        case "diagnostic":
            let diagnostic = object["diagnostic"] as? [String: Any] ?? [:]
            var text = message
            if let range = diagnostic["range"] as? [String: Any], let file = range["filename"] as? String {
                let line = ((range["start"] as? [String: Any])?["line"] as? Int).map { " line \($0)" } ?? ""
                text += "\n  on \(file)\(line)"
            }
            if let detail = diagnostic["detail"] as? String, !detail.isEmpty { text += "\n\(detail)" }
            return text
        default:
            break
        }
        return message
    }

    /// terraform's JSON UI actions; moves, removals (`removed` blocks), imports and no-ops are
    /// not changes to resources.
    static func action(_ name: String?) -> PlanDocument.Action? {
        switch name {
        case "create": .create
        case "update": .update
        case "replace": .replace
        case "delete": .delete
        case "read": .read
        default: nil
        }
    }
}
