import Foundation
import IacRunner
import NclavCore
import NclavStore
import TFBackend

/// An IaC tool for scheduler-level tests: behaves like terraform on the model's modules
/// (one `terraform_data` and string outputs over `var.*`) without starting a process, writes
/// states to the store the way terraform would through the backend, and records every
/// invocation with the order it started and ended in.
///
/// It reads the rendered workspace exactly as terraform would: `nclav_context.auto.tfvars`
/// for the variables, the `.tf` files at the top (or the vendored module in module mode).
actor RecordingIacTool: IacTool {
    struct Invocation: Sendable {
        var key: StateKey
        var operation: TerraformInvocation.Operation
        var started: Int
        var ended: Int
    }

    private let store: any StateStore
    private var clock = 0
    private(set) var invocations: [Invocation] = []

    init(store: any StateStore) { self.store = store }

    nonisolated func version(of tool: String) async -> String? { "1.11.4" }

    func reset() { invocations = [] }

    func run(_ invocation: TerraformInvocation, log: @escaping @Sendable (String) async -> Void) async throws -> InvocationResult {
        clock += 1
        let started = clock
        // Let other runs interleave, as real processes would.
        await Task.yield()
        let result = await perform(invocation, log: log)
        clock += 1
        invocations.append(Invocation(key: invocation.key, operation: invocation.operation, started: started, ended: clock))
        return result
    }

    private func perform(_ invocation: TerraformInvocation, log: @escaping @Sendable (String) async -> Void) async -> InvocationResult {
        let name = invocation.operation.rawValue
        func exit(_ code: Int32) -> InvocationResult {
            InvocationResult(lastCommand: name, result: ProcessRunResult(termination: .exited(code)), toolVersion: "1.11.4")
        }
        await log("== fake terraform \(name)  [\(invocation.key)]")
        let module: Module
        do { module = try Module(workspace: invocation.workspace) } catch {
            await log("Error: \(error)")
            return exit(1)
        }
        let current = try? await store.latestState(invocation.key)
        let state = current.flatMap { FakeState(parsing: $0.body) }
        switch invocation.operation {
        case .destroy:
            guard let current, let state else { return exit(0) }
            await write(
                FakeState(lineage: state.lineage, serial: state.serial + 1, input: nil, outputs: [:]), key: invocation.key, after: current.info)
            await log("Destroy complete! Resources: 1 destroyed.")
            return exit(0)
        case .apply, .plan:
            if module.failing {
                await log("Error: Invalid value for \"path\" parameter: no file exists at \"does-not-exist.txt\"")
                return exit(1)
            }
            let desired: (input: String, outputs: [String: String])
            do { desired = try module.evaluate() } catch {
                await log("Error: \(error)")
                return exit(1)
            }
            let same = state?.input == desired.input && state?.outputs == desired.outputs
            if invocation.operation == .plan {
                await log(same ? "No changes. Your infrastructure matches the configuration." : "Plan: 1 to add, 0 to change, 1 to destroy.")
                return exit(same ? 0 : 2)
            }
            if !same {
                let next = FakeState(
                    lineage: state?.lineage ?? UUID().uuidString.lowercased(), serial: (state?.serial ?? 0) + 1,
                    input: desired.input, outputs: desired.outputs)
                await write(next, key: invocation.key, after: current?.info)
            }
            await log("Apply complete! Resources: \(same ? 0 : 1) added, 0 changed, \(same || state?.input == nil ? 0 : 1) destroyed.")
            return exit(0)
        }
    }

    private func write(_ state: FakeState, key: StateKey, after: StateVersionInfo?) async {
        let body = state.body
        _ = try? await store.writeState(
            key,
            StateWrite(
                body: body, serial: state.serial, lineage: state.lineage, sha256: Digest.sha256Hex(body),
                md5: Digest.md5Base64(body), lockID: nil))
    }

    /// The code terraform would run in a workspace, read the way the model writes it.
    struct Module {
        var variables: [String: String]
        var resourceInput: String?
        var outputs: [String: String]
        var failing: Bool

        struct Problem: Error, CustomStringConvertible { let description: String }

        init(workspace: URL) throws {
            let tfvars = (try? String(contentsOf: workspace.appendingPathComponent("nclav_context.auto.tfvars"), encoding: .utf8)) ?? ""
            variables = [:]
            for line in tfvars.split(separator: "\n") where !line.hasPrefix("#") {
                guard let equals = line.range(of: " = ") else { continue }
                variables[String(line[..<equals.lowerBound])] = Self.unquote(String(line[equals.upperBound...]))
            }
            let moduleMode = FileManager.default.fileExists(atPath: workspace.appendingPathComponent("nclav_module.tf").path)
            let code = moduleMode ? workspace.appendingPathComponent("nclav_module_source") : workspace
            var text = ""
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: code.path)) ?? []).sorted() where name.hasSuffix(".tf") {
                guard !name.hasPrefix("nclav_") || !moduleMode else { continue }
                text += (try? String(contentsOf: code.appendingPathComponent(name), encoding: .utf8)) ?? ""
            }
            failing = text.contains("does-not-exist")
            resourceInput = nil
            var moduleOutputs: [String: String] = [:]
            for line in text.split(separator: "\n") {
                if let input = Self.capture(line, #"^resource "terraform_data" "main" \{ input = "(.*)" \}$"#) { resourceInput = input[0] }
                if let output = Self.capture(line, #"^output "(\w+)" \{ value = "(.*)" \}$"#) { moduleOutputs[output[0]] = output[1] }
            }
            if moduleMode {
                // nclav_outputs.tf forwards each declared output of the module.
                let forwarded = (try? String(contentsOf: workspace.appendingPathComponent("nclav_outputs.tf"), encoding: .utf8)) ?? ""
                outputs = [:]
                for line in forwarded.split(separator: "\n") {
                    guard let name = Self.capture(line, #"^output "(\w+)" \{$"#)?.first else { continue }
                    guard let expression = moduleOutputs[name] else {
                        throw Problem(description: "Unsupported attribute: module.partition does not have an attribute named \"\(name)\"")
                    }
                    outputs[name] = expression
                }
            } else {
                outputs = moduleOutputs
            }
        }

        func evaluate() throws -> (input: String, outputs: [String: String]) {
            func render(_ template: String) throws -> String {
                var result = template
                while let range = result.range(of: #"\$\{var\.(\w+)\}"#, options: .regularExpression) {
                    let name = String(result[range].dropFirst(6).dropLast())
                    guard let value = variables[name] else { throw Problem(description: "Reference to undeclared input variable \"\(name)\"") }
                    result.replaceSubrange(range, with: value)
                }
                return result
            }
            return (try render(resourceInput ?? ""), try outputs.mapValues(render))
        }

        static func capture(_ line: Substring, _ pattern: String) -> [String]? {
            guard let regex = try? NSRegularExpression(pattern: pattern) else { return nil }
            let text = String(line)
            guard let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) else { return nil }
            return (1..<match.numberOfRanges).compactMap { Range(match.range(at: $0), in: text).map { String(text[$0]) } }
        }

        /// The inverse of nclav's HCL quoting for the values the model uses.
        static func unquote(_ quoted: String) -> String {
            guard quoted.hasPrefix("\""), quoted.hasSuffix("\""), quoted.count >= 2 else { return quoted }
            return String(quoted.dropFirst().dropLast()).replacingOccurrences(of: "\\\"", with: "\"")
                .replacingOccurrences(of: "$${", with: "${").replacingOccurrences(of: "%%{", with: "%{").replacingOccurrences(of: "\\\\", with: "\\")
        }
    }
}

/// The part of a terraform state the fake reads and writes: one `terraform_data.main` and
/// string outputs, in terraform's own JSON layout.
struct FakeState: Sendable {
    var lineage: String
    var serial: Int64
    var input: String?
    var outputs: [String: String]

    init(lineage: String, serial: Int64, input: String?, outputs: [String: String]) {
        self.lineage = lineage
        self.serial = serial
        self.input = input
        self.outputs = outputs
    }

    init?(parsing body: Data) {
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
            let lineage = object["lineage"] as? String, let serial = (object["serial"] as? NSNumber)?.int64Value
        else { return nil }
        self.lineage = lineage
        self.serial = serial
        outputs = [:]
        for (name, value) in object["outputs"] as? [String: Any] ?? [:] {
            if let string = (value as? [String: Any])?["value"] as? String { outputs[name] = string }
        }
        let resources = object["resources"] as? [[String: Any]] ?? []
        let instance = (resources.first { $0["name"] as? String == "main" }?["instances"] as? [[String: Any]])?.first
        input = ((instance?["attributes"] as? [String: Any])?["input"] as? [String: Any])?["value"] as? String
    }

    var body: Data {
        var object: [String: Any] = [
            "version": 4, "terraform_version": "1.11.4", "serial": serial, "lineage": lineage,
            "outputs": outputs.mapValues { ["value": $0, "type": "string"] },
        ]
        if let input {
            object["resources"] = [
                [
                    "mode": "managed", "type": "terraform_data", "name": "main", "provider": "provider[\"terraform.io/builtin/terraform\"]",
                    "instances": [
                        [
                            "schema_version": 0,
                            "attributes": [
                                "id": "fake", "input": ["value": input, "type": "string"],
                                "output": ["value": input, "type": "string"],
                            ],
                        ]
                    ],
                ]
            ]
        } else {
            object["resources"] = [Any]()
        }
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
    }
}
