import Foundation
import Yams

/// Parses one YAML file into a Yams node tree, turning every parser complaint into a
/// positioned diagnostic. Decoding works on the node tree (not `YAMLDecoder`) because the
/// decoder stops at the first problem and loses positions; here every node keeps its mark.
enum YAMLDocument {
    /// The root node, or nil after reporting why there is none.
    static func parse(_ text: String, file: String, sink: DiagnosticSink) -> Node? {
        do {
            // The encoding is given: Yams' default reads the whole process environment on every
            // parse, which was the largest single cost of validating a large tree.
            guard let root = try Yams.compose(yaml: text, .default, .default, .utf8) else {
                sink.error(.start(of: file), "the file is empty; expected a mapping of keys")
                return nil
            }
            return checkTags(root, file: file, sink: sink) ? root : nil
        } catch let error as YamlError {
            sink.append(diagnostic(for: error, file: file))
            return nil
        } catch {
            sink.error(.start(of: file), "the file could not be parsed as YAML: \(error)")
            return nil
        }
    }

    /// The tags plain YAML values resolve to. Any other (`!!python/object:…`, `!Ref`) asks a
    /// reader to build something nclav does not build; reading past it would silently drop it.
    static let plainTags: Set<String> = ["str", "int", "bool", "null", "float", "timestamp", "map", "seq", "merge"].reduce(into: []) {
        $0.insert("tag:yaml.org,2002:\($1)")
    }

    /// Reports every node with a tag outside `plainTags`; true when there is none. Iterative:
    /// nesting depth costs memory, not stack.
    static func checkTags(_ root: Node, file: String, sink: DiagnosticSink) -> Bool {
        var clean = true
        var stack = [root]
        while let node = stack.popLast() {
            let tag = writtenTag(node)
            if !tag.isEmpty && !plainTags.contains(tag) && tag != "!" && tag != "?" {
                let shown = tag.hasPrefix("tag:yaml.org,2002:") ? "!!" + tag.dropFirst("tag:yaml.org,2002:".count) : tag
                sink.error(
                    node.location(in: file),
                    "the YAML tag `\(shown)` is not accepted: nclav reads plain text, numbers, booleans, lists and mappings; remove the tag")
                clean = false
            }
            switch node {
            case .mapping(let mapping):
                for (key, value) in mapping {
                    stack.append(key)
                    stack.append(value)
                }
            case .sequence(let sequence): stack.append(contentsOf: sequence)
            default: break
            }
        }
        return clean
    }

    /// The tag as written (empty, `?` or `!` when none was), not the one Yams would resolve: resolving
    /// matches every plain scalar against regular expressions.
    static func writtenTag(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar): return scalar.tag.rawValue
        case .mapping(let mapping): return mapping.tag.rawValue
        case .sequence(let sequence): return sequence.tag.rawValue
        case .alias: return "?"
        }
    }

    static func read(_ path: String, file: String, sink: DiagnosticSink) -> (text: String, root: Node?)? {
        guard let data = FileManager.default.contents(atPath: path) else {
            sink.error(.start(of: file), "the file could not be read (check its permissions)")
            return nil
        }
        guard let text = String(data: data, encoding: .utf8) else {
            sink.error(.start(of: file), "the file is not valid UTF-8 text")
            return nil
        }
        return (text, parse(text, file: file, sink: sink))
    }

    private static func diagnostic(for error: YamlError, file: String) -> Diagnostic {
        func at(_ mark: Mark) -> SourceLocation { SourceLocation(file: file, line: mark.line, column: mark.column) }
        func contextText(_ context: YamlError.Context?) -> String {
            guard let context else { return "" }
            return " (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
        }
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            return .error(at(mark), "invalid YAML: \(problem)\(contextText(context))")
        case let .duplicatedKeysInMapping(duplicates, context):
            let key = duplicates.first ?? "?"
            return .error(at(context.mark), "key `\(key)` appears more than once in the same mapping; each key may appear once")
        case let .reader(problem, offset, _, yaml):
            let (line, column) = lineAndColumn(ofUTF8Offset: offset ?? 0, in: yaml)
            return .error(SourceLocation(file: file, line: line, column: column), "the file cannot be read as YAML: \(problem)")
        default:
            return .error(.start(of: file), "invalid YAML: \(error)")
        }
    }

    private static func lineAndColumn(ofUTF8Offset offset: Int, in text: String) -> (Int, Int) {
        var line = 1, column = 1
        for (index, byte) in text.utf8.enumerated() {
            if index >= offset { break }
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        return (line, column)
    }
}

extension Node {
    /// Where this node starts in `file`.
    func location(in file: String) -> SourceLocation {
        guard let mark else { return .start(of: file) }
        return SourceLocation(file: file, line: mark.line, column: mark.column)
    }

    var isNull: Bool {
        // Yams keeps resolved tags internal; its own constructor answers "is this null?".
        if case .scalar = self { return self.null != nil }
        return false
    }

    /// "a list", "a mapping", "a number", … for type errors.
    var kindDescription: String {
        switch self {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            if isNull { return "no value" }
            guard scalar.style == .plain else { return "the text `\(scalar.string)`" }
            if self.bool != nil { return "a boolean (`\(scalar.string)`)" }
            if self.int != nil || self.float != nil { return "a number (`\(scalar.string)`)" }
            return "the text `\(scalar.string)`"
        }
    }
}

/// Reads one YAML mapping strictly: unknown keys, missing required keys and wrong types
/// all become diagnostics at the node's position. Every accessor reports and returns nil
/// on a problem, so a caller can keep reading and report every mistake in one pass.
struct MappingReader {
    let what: String
    let file: String
    let node: Node
    let sink: DiagnosticSink
    private let entries: [String: (key: Node, value: Node)]
    private let orderedKeys: [(name: String, node: Node)]
    /// Accepted keys; nil when the caller checks keys itself.
    let allowed: [String]?

    init?(_ node: Node, what: String, file: String, sink: DiagnosticSink, allowed: [String]? = nil) {
        guard case .mapping(let mapping) = node else {
            sink.error(node.location(in: file), "\(what) must be a mapping of keys, found \(node.kindDescription)")
            return nil
        }
        var entries: [String: (key: Node, value: Node)] = [:]
        var ordered: [(String, Node)] = []
        for (key, value) in mapping {
            guard case .scalar(let scalar) = key else {
                sink.error(key.location(in: file), "keys in \(what) must be plain names, found \(key.kindDescription)")
                continue
            }
            entries[scalar.string] = (key, value)
            ordered.append((scalar.string, key))
        }
        self.what = what
        self.file = file
        self.node = node
        self.sink = sink
        self.entries = entries
        self.orderedKeys = ordered
        self.allowed = allowed
        if let allowed { rejectUnknownKeys(allowed: allowed) }
    }

    /// Accepted keys that an unknown key looks like a typo of. A required key spelled wrong
    /// is reported once, as the typo, not a second time as missing.
    var misspelledKeys: Set<String> {
        guard let allowed else { return [] }
        return Set(
            orderedKeys.compactMap { name, _ in
                allowed.contains(name) ? nil : Suggestions.nearest(to: name, among: allowed)
            })
    }

    var location: SourceLocation { node.location(in: file) }

    func has(_ key: String) -> Bool { entries[key] != nil }

    func keyLocation(_ key: String) -> SourceLocation? { entries[key]?.key.location(in: file) }

    /// Reports every key not in `allowed`, suggesting the nearest accepted one.
    func rejectUnknownKeys(allowed: [String]) {
        for (name, keyNode) in orderedKeys where !allowed.contains(name) {
            let hint = Suggestions.didYouMean(name, among: allowed)
            sink.error(
                keyNode.location(in: file),
                "unknown key `\(name)` in \(what)\(hint) (accepted keys: \(allowed.plainList))")
        }
    }

    /// The value node, or nil (reported) when the key is missing or has no value.
    func required(_ key: String) -> Node? {
        guard let entry = entries[key] else {
            if !misspelledKeys.contains(key) { sink.error(location, "\(what) is missing the required key `\(key)`") }
            return nil
        }
        if entry.value.isNull {
            sink.error(entry.key.location(in: file), "`\(key)` has no value; \(what) requires it")
            return nil
        }
        return entry.value
    }

    /// The value node, or nil when the key is absent or explicitly null.
    func optional(_ key: String) -> Node? {
        guard let entry = entries[key], !entry.value.isNull else { return nil }
        return entry.value
    }

    func string(_ key: String, required isRequired: Bool) -> String? {
        guard let value = isRequired ? required(key) : optional(key) else { return nil }
        return scalarString(value, key: key)
    }

    /// Any scalar reads as its text (`2024` is a fine name); lists and mappings are errors.
    func scalarString(_ value: Node, key: String) -> String? {
        guard case .scalar(let scalar) = value else {
            sink.error(value.location(in: file), "`\(key)` must be a single value, found \(value.kindDescription)")
            return nil
        }
        return scalar.string
    }

    func enumValue<Value: RawRepresentable & CaseIterable>(_ key: String, required isRequired: Bool, as type: Value.Type) -> Value?
    where Value.RawValue == String {
        guard let value = isRequired ? required(key) : optional(key), let text = scalarString(value, key: key) else { return nil }
        if let parsed = Value(rawValue: text) { return parsed }
        let accepted = Value.allCases.map(\.rawValue)
        sink.error(
            value.location(in: file),
            "`\(key)` has unknown value `\(text)`\(Suggestions.didYouMean(text, among: accepted)) (accepted: \(accepted.plainList))")
        return nil
    }

    /// A list's items, or nil (reported) when the value is not a list.
    func sequence(_ key: String) -> [Node]? {
        guard let value = optional(key) else { return nil }
        guard case .sequence(let items) = value else {
            sink.error(value.location(in: file), "`\(key)` must be a list, found \(value.kindDescription)")
            return nil
        }
        return Array(items)
    }

    /// A list of single values with each value's location.
    func stringList(_ key: String) -> [(value: String, location: SourceLocation)] {
        guard let items = sequence(key) else { return [] }
        return items.compactMap { item in
            guard case .scalar(let scalar) = item, !item.isNull else {
                sink.error(item.location(in: file), "items of `\(key)` must be single values, found \(item.kindDescription)")
                return nil
            }
            return (scalar.string, item.location(in: file))
        }
    }

    func mapping(_ key: String, what: String, allowed: [String]? = nil) -> MappingReader? {
        guard let value = optional(key) else { return nil }
        return MappingReader(value, what: what, file: file, sink: sink, allowed: allowed)
    }

    /// Key/value pairs of a nested mapping in file order, with the value nodes.
    func pairs() -> [(key: String, keyNode: Node, value: Node)] {
        orderedKeys.compactMap { name, keyNode in entries[name].map { (name, keyNode, $0.value) } }
    }
}
