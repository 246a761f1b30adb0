import Foundation

/// Writes small enclaves trees for tests: `tree.file("app/config.yml", "id: app\n…")`.
/// Paths are relative to `root`; directories are created as needed.
public struct TreeBuilder: Sendable {
    public let root: URL

    public init(root: URL) throws {
        self.root = root
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    /// A fresh tree in a new scratch directory; the caller removes `root`'s parent.
    public static func scratch(_ label: String = "nclav-tree") throws -> TreeBuilder {
        try TreeBuilder(root: try TestSupport.makeScratchDirectory(label).appendingPathComponent("tree"))
    }

    @discardableResult
    public func file(_ relative: String, _ content: String) throws -> URL {
        let url = root.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try content.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// An enclave `config.yml` on the local cloud; `extra` is appended as YAML.
    public func enclave(_ id: String, directory: String? = nil, _ extra: String = "") throws {
        try file("\(directory ?? id)/config.yml", "id: \(id)\nname: \(id)\ncloud: local\nregion: local-1\n" + extra)
    }

    /// A partition with its `config.yml` (`extra` appended) and `main.tf`.
    public func partition(_ enclave: String, _ id: String, _ extra: String = "", main: String) throws {
        try file("\(enclave)/\(id)/config.yml", "id: \(id)\nname: \(id)\n" + extra)
        try file("\(enclave)/\(id)/main.tf", main)
    }

    public func remove(_ relative: String) throws {
        try FileManager.default.removeItem(at: root.appendingPathComponent(relative))
    }

    /// A one-enclave tree whose partition sleeps `seconds` in a provisioner, so a test can act
    /// while its apply runs. Returns the tree and how to remove it.
    public static func slowTree(seconds: Int) throws -> (URL, () -> Void) {
        let builder = try scratch("nclav-slow-tree")
        try builder.file("app/config.yml", "id: app\nname: App\ncloud: local\n")
        try builder.partition(
            "app", "slow",
            main: """
                resource "terraform_data" "slow" {
                  input = "v\(seconds)"
                  provisioner "local-exec" {
                    command = "echo sleeping; sleep \(seconds)"
                  }
                }
                """)
        let scratch = builder.root.deletingLastPathComponent()
        return (builder.root, { try? FileManager.default.removeItem(at: scratch) })
    }
}
