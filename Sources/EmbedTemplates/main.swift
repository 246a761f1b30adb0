import Foundation

// Build tool for the EmbedBootstrapModules plugin:
//   embed-templates <output.swift> <TypeName> <root> <relative file>...
// writes a Swift file holding each file's bytes (base64, so any byte survives exactly).
let arguments = CommandLine.arguments
guard arguments.count >= 4 else {
    FileHandle.standardError.write(Data("usage: embed-templates <output.swift> <TypeName> <root> <relative file>...\n".utf8))
    exit(2)
}
let output = URL(fileURLWithPath: arguments[1])
let typeName = arguments[2]
let root = URL(fileURLWithPath: arguments[3])
var source = """
    // Generated at build time by the EmbedBootstrapModules plugin. Do not edit.
    extension \(typeName) {
        static let base64Files: [(path: String, base64: String)] = [

    """
for relative in arguments.dropFirst(4) {
    let data = try Data(contentsOf: root.appendingPathComponent(relative))
    let escaped = relative.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    source += "        (\"\(escaped)\", \"\(data.base64EncodedString())\"),\n"
}
source += "    ]\n}\n"
try Data(source.utf8).write(to: output, options: .atomic)
