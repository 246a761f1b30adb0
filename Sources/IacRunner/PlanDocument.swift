import Foundation

/// What a saved plan will do, read from `terraform show -json <planfile>` (terraform's JSON
/// output format, `format_version` 1.x): each resource instance's actions and each output's.
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

    public struct Unreadable: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { "terraform's plan JSON could not be read: \(reason)" }
    }

    public init(json data: Data) throws {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw Unreadable(reason: "not a JSON object (\(data.count) bytes)")
        }
        guard let version = object["format_version"] as? String, version.hasPrefix("1.") else {
            throw Unreadable(reason: "format_version \(object["format_version"] ?? "missing") is not 1.x")
        }
        var changes: [ResourceChange] = []
        for entry in object["resource_changes"] as? [[String: Any]] ?? [] {
            guard let address = entry["address"] as? String,
                let actions = (entry["change"] as? [String: Any])?["actions"] as? [String],
                let action = Self.action(actions)
            else { continue }
            changes.append(ResourceChange(address: address, action: action))
        }
        var outputs: Set<String> = []
        for (name, change) in object["output_changes"] as? [String: [String: Any]] ?? [:] {
            let actions = change["actions"] as? [String] ?? []
            let unknown = (change["after_unknown"] as? Bool) ?? false
            if actions != ["no-op"] || unknown { outputs.insert(name) }
        }
        self.init(resourceChanges: changes, changedOutputs: outputs)
    }

    /// terraform's action lists: `["create"]`, `["update"]`, `["delete"]`, `["read"]`,
    /// `["delete", "create"]` / `["create", "delete"]` (replace), `["no-op"]` (nil).
    static func action(_ actions: [String]) -> Action? {
        switch actions {
        case ["create"]: .create
        case ["update"]: .update
        case ["delete"]: .delete
        case ["read"]: .read
        case ["delete", "create"], ["create", "delete"]: .replace
        default: nil
        }
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
