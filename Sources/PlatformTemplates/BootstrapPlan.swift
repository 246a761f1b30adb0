import Foundation

/// The steps `nclav bootstrap` takes on a rendered module, as data: the CLI runs them, and
/// `--dry-run` prints them. Variables travel in `nclav.auto.tfvars.json` beside the module
/// (not on the command line, where `ps` would show them), so both phases and later runs agree.
public struct BootstrapPlan: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        /// Run the tool with these arguments; stop with this name if it fails.
        case tool(name: String, arguments: [String])
        /// Phase 1 is done: the image must be pushed before phase 2 can start the service.
        case awaitImage
        /// Print these outputs of the module.
        case showOutputs([String])
    }

    public static let variablesFile = "nclav.auto.tfvars.json"

    public let cloud: PlatformCloud
    public let steps: [Step]

    public init(cloud: PlatformCloud, imageReady: Bool, autoApprove: Bool) {
        self.cloud = cloud
        let approve = autoApprove ? ["-auto-approve"] : []
        var steps: [Step] = [
            .tool(name: "init", arguments: ["init", "-input=false"]),
            .tool(name: "registry apply", arguments: ["apply", "-input=false"] + approve + cloud.registryTargets.map { "-target=\($0)" }),
        ]
        if imageReady {
            steps += [
                .tool(name: "apply", arguments: ["apply", "-input=false"] + approve),
                .showOutputs(["api_url", "connect_commands", "iam_setup_commands"]),
            ]
        } else {
            steps.append(.awaitImage)
        }
        self.steps = steps
    }

    public enum VariableError: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        case missing(names: [String], cloud: PlatformCloud)

        public var description: String {
            switch self {
            case .malformed(let text):
                return "--var \(text) is not name=value (a name of letters, digits and _, then =, then the value)"
            case .missing(let names, let cloud):
                let example = names.map { "--var \($0)=…" }.joined(separator: " ")
                return "the \(cloud.rawValue) module needs \(names.joined(separator: ", ")); pass \(example) (or put them in terraform.tfvars)"
            }
        }
    }

    /// Parses `name=value` pairs.
    public static func parseVariables(_ pairs: [String]) throws -> [String: String] {
        var variables: [String: String] = [:]
        for pair in pairs {
            guard let equals = pair.firstIndex(of: "=") else { throw VariableError.malformed(pair) }
            let name = String(pair[..<equals])
            guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }),
                name.first?.isNumber == false
            else { throw VariableError.malformed(pair) }
            variables[name] = String(pair[pair.index(after: equals)...])
        }
        return variables
    }

    /// The required variables not given on the command line, in earlier runs' variables file,
    /// nor in a terraform.tfvars the user keeps in the directory.
    public static func missingVariables(_ cloud: PlatformCloud, given: [String: String], directory: URL) -> [String] {
        var known = Set(given.keys)
        if let data = try? Data(contentsOf: directory.appendingPathComponent(variablesFile)),
            let saved = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        {
            known.formUnion(saved.keys)
        }
        if let text = try? String(contentsOf: directory.appendingPathComponent("terraform.tfvars"), encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                guard !trimmed.hasPrefix("#"), let equals = trimmed.firstIndex(of: "=") else { continue }
                known.insert(trimmed[..<equals].trimmingCharacters(in: .whitespaces))
            }
        }
        return cloud.requiredVariables.filter { !known.contains($0) }
    }

    /// Merges `given` into the directory's variables file (mode 0600) and returns all of them.
    @discardableResult
    public static func saveVariables(_ given: [String: String], in directory: URL) throws -> [String: String] {
        let file = directory.appendingPathComponent(variablesFile)
        var merged: [String: String] = [:]
        if let data = try? Data(contentsOf: file), let saved = try? JSONSerialization.jsonObject(with: data) as? [String: String] {
            merged = saved
        }
        merged.merge(given) { $1 }
        let data = try JSONSerialization.data(withJSONObject: merged, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: file, options: .atomic)
        chmod(file.path, 0o600)
        return merged
    }
}
