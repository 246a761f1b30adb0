import Foundation

// Build tool for the EmbedBootstrapModules plugin:
//   embed-templates <output.swift> <root> <relative file>...
// writes a Swift file holding each file's bytes (base64, so any byte survives exactly).
let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    FileHandle.standardError.write(Data("usage: embed-templates <output.swift> <root> <relative file>...\n".utf8))
    exit(2)
}
let output = URL(fileURLWithPath: arguments[1])
let root = URL(fileURLWithPath: arguments[2])
var source = """
    // Generated at build time by the EmbedBootstrapModules plugin from bootstrap/. Do not edit.
    extension EmbeddedModules {
        static let base64Files: [(path: String, base64: String)] = [

    """
for relative in arguments.dropFirst(3) {
    let data = try Data(contentsOf: root.appendingPathComponent(relative))
    let escaped = relative.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    source += "        (\"\(escaped)\", \"\(data.base64EncodedString())\"),\n"
}
source += "    ]\n}\n"
try Data(source.utf8).write(to: output, options: .atomic)
