import Foundation
import NclavConfig
import NclavFiles
import NclavTestSupport
import Testing

/// How validation reads the files of a tree: links, unreadable entries, depth, tags, module
/// paths. Every case that used to be skipped silently is an error naming the path.
@Suite("Reading the tree's files")
struct TreeFileRulesTests {
    /// A tree with enclave `app` and partition `api` (main.tf), in a fresh scratch directory.
    func tree() throws -> TreeBuilder {
        let builder = try TreeBuilder.scratch("nclav-files")
        try builder.enclave("app")
        try builder.partition("app", "api", main: "resource \"terraform_data\" \"x\" {}\n")
        return builder
    }

    func check(_ builder: TreeBuilder) throws -> ValidationResult { try ValidationResult.check(directory: builder.root.path) }

    func errors(_ result: ValidationResult) -> [String] { result.diagnostics.filter { $0.severity == .error }.map(\.description) }

    func link(_ builder: TreeBuilder, _ relative: String, to target: String) throws {
        let url = builder.root.appendingPathComponent(relative)
        try? FileManager.default.removeItem(at: url)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: url.path, withDestinationPath: target)
    }

    func cleanup(_ builder: TreeBuilder) { try? FileManager.default.removeItem(at: builder.root.deletingLastPathComponent()) }

    @Test("a link inside the tree counts as the file it points to, config.yml included")
    func linksInside() throws {
        let builder = try tree()
        defer { cleanup(builder) }
        try builder.file("shared/main.tf", "resource \"terraform_data\" \"x\" {}\n")
        try link(builder, "app/api/main.tf", to: "../../shared/main.tf")
        try builder.file("shared/web.yml", "id: web\nname: web\n")
        try link(builder, "app/web/config.yml", to: "../../shared/web.yml")
        try builder.file("app/web/main.tf", "resource \"terraform_data\" \"y\" {}\n")
        try link(builder, "app/web/lib", to: "../../shared")
        let result = try check(builder)
        #expect(result.isValid, "\(result.diagnosticLines())")
        let api = try #require(result.tree.enclaves.first?.partitions.first { $0.partition.id == "api" })
        #expect(api.files.map(\.path) == ["main.tf"])
        #expect(api.files.first?.source.hasSuffix("/shared/main.tf") == true)
        #expect(api.terraformFiles == ["main.tf"])
        let web = try #require(result.tree.enclaves.first?.partitions.first { $0.partition.id == "web" })
        #expect(web.files.map(\.path) == ["lib/main.tf", "lib/web.yml", "main.tf"])
    }

    @Test("links that leave the tree, dangle or loop are errors naming them")
    func badLinks() throws {
        let builder = try tree()
        defer { cleanup(builder) }
        try link(builder, "app/api/outside.tf", to: "/etc/hostname")
        try link(builder, "app/api/gone.tf", to: "missing.tf")
        try link(builder, "app/api/self", to: ".")
        try link(builder, "app/api/a", to: "b")
        try link(builder, "app/api/b", to: "a")
        let result = try check(builder)
        #expect(!result.isValid)
        let lines = errors(result)
        #expect(
            lines.contains(
                "app/api/outside.tf:1:1: error: `app/api/outside.tf` is a symbolic link to /etc/hostname, outside the enclaves directory; copy the file into the tree (links are followed only inside it)"
            ), "\(lines)")
        #expect(lines.contains("app/api/gone.tf:1:1: error: `app/api/gone.tf` is a symbolic link to missing.tf, which does not exist"), "\(lines)")
        #expect(lines.contains("app/api/self:1:1: error: `app/api/self` is a symbolic link to a directory that contains it (a loop)"), "\(lines)")
        #expect(lines.contains("app/api/a:1:1: error: `app/api/a` is a symbolic link that loops (→ b)"), "\(lines)")
    }

    @Test("a config.yml that cannot be read is an error, never a missing enclave or partition")
    func unreadableConfig() throws {
        let builder = try tree()
        defer { cleanup(builder) }
        try FileManager.default.createDirectory(at: builder.root.appendingPathComponent("app/web/config.yml"), withIntermediateDirectories: true)
        try link(builder, "app/db/config.yml", to: "nowhere.yml")
        try link(builder, "other/config.yml", to: "/etc/hostname")
        try builder.file("loop/x", "")
        try link(builder, "loop/config.yml", to: "config.yml")
        let result = try check(builder)
        let lines = errors(result)
        #expect(lines.contains("app/web/config.yml:1:1: error: `app/web/config.yml` is a directory; a config.yml must be a file"), "\(lines)")
        #expect(
            lines.contains("app/db/config.yml:1:1: error: `app/db/config.yml` is a symbolic link to nowhere.yml, which does not exist"), "\(lines)")
        #expect(
            lines.contains {
                $0.hasPrefix("other/config.yml:1:1: error: `other/config.yml` is a symbolic link to /etc/hostname, outside the enclaves directory")
            }, "\(lines)")
        #expect(lines.contains("loop/config.yml:1:1: error: `loop/config.yml` is a symbolic link that loops (→ config.yml)"), "\(lines)")
    }

    @Test("a deep chain of directories is refused with its depth, quickly and without recursion")
    func depth() throws {
        let builder = try tree()
        defer { cleanup(builder) }
        // 2,000 levels: deeper than PATH_MAX allows in one string, so made one level at a time
        // relative to an open directory (the working directory is shared by parallel tests).
        let deep = builder.root.appendingPathComponent("deep")
        try FileManager.default.createDirectory(at: deep, withIntermediateDirectories: true)
        var descriptor = open(deep.path, O_RDONLY | O_DIRECTORY)
        for _ in 0..<2000 {
            mkdirat(descriptor, "d", 0o755)
            let next = openat(descriptor, "d", O_RDONLY | O_DIRECTORY)
            close(descriptor)
            descriptor = next
        }
        close(descriptor)
        let result = try check(builder)
        let lines = errors(result)
        #expect(lines.count == 1, "\(lines)")
        #expect(lines.first?.contains("is 33 directories deep; nclav reads at most 32 levels below the enclaves directory") == true, "\(lines)")
        // Removing it needs the same care.
        _ = try? TestSupport.run("/bin/rm", ["-rf", builder.root.appendingPathComponent("deep").path])
    }

    @Test("a path longer than the limit is refused with its length")
    func pathLength() throws {
        let builder = try tree()
        defer { cleanup(builder) }
        let name = String(repeating: "n", count: 200)
        try builder.file((0..<6).map { _ in name }.joined(separator: "/") + "/x.txt", "x")
        let lines = errors(try check(builder))
        #expect(lines.contains { $0.contains("bytes long; nclav accepts at most 1024 bytes below the enclaves directory") }, "\(lines)")
    }

    @Test("a FIFO (or device, or socket) is an error naming it")
    func unreadableFiles() throws {
        let builder = try tree()
        defer { cleanup(builder) }
        mkfifo(builder.root.appendingPathComponent("app/api/pipe.tf").path, 0o644)
        let lines = errors(try check(builder))
        #expect(
            lines.contains("app/api/pipe.tf:1:1: error: `app/api/pipe.tf` is not a regular file or directory (a FIFO, socket or device)"), "\(lines)")
    }

    @Test("local state files are left out with a warning; files with generated names are refused")
    func ignoredAndReserved() throws {
        let builder = try tree()
        defer { cleanup(builder) }
        try builder.file("app/api/terraform.tfstate", "{}")
        try builder.file("app/api/nclav_backend.tf", "# mine")
        let result = try check(builder)
        #expect(
            result.diagnostics.contains {
                $0.severity == .warning && $0.description.contains("`app/api/terraform.tfstate` is ignored: local state files are not used")
            })
        #expect(
            errors(result).contains { $0.hasPrefix("app/api/nclav_backend.tf:1:1: error: `app/api/nclav_backend.tf` has a name nclav generates") },
            "\(errors(result))")
    }

    @Test("YAML tags are refused where they stand")
    func yamlTags() throws {
        let builder = try tree()
        defer { cleanup(builder) }
        try builder.file("app/api/config.yml", "id: api\nname: api\ninputs:\n  a: !!python/object:os.system \"true\"\n  b: 2024-01-01\n")
        let lines = errors(try check(builder))
        #expect(
            lines == [
                "app/api/config.yml:4:6: error: the YAML tag `!!python/object:os.system` is not accepted: nclav reads plain text, numbers, booleans, lists and mappings; remove the tag"
            ])
    }

    @Test("a local module must be a directory inside the tree, however the path is written")
    func moduleSources() throws {
        let builder = try tree()
        defer { cleanup(builder) }
        let outside = try TestSupport.makeScratchDirectory("nclav-outside-module")
        defer { try? FileManager.default.removeItem(at: outside) }
        try "output \"x\" { value = 1 }\n".write(to: outside.appendingPathComponent("main.tf"), atomically: true, encoding: .utf8)
        try builder.file("modules/ok/main.tf", "output \"x\" { value = 1 }\n")
        try link(builder, "modules/linked", to: outside.path)
        let cases = [
            ("abs", outside.path, "is an absolute path; a local module must be inside the enclaves directory"),
            ("up", "../../../../..\(outside.path)", "leaves the enclaves directory"),
            ("link", "../../modules/linked", "outside the enclaves directory"),
            ("missing", "../../modules/none", "is not a directory"),
        ]
        for (id, source, _) in cases {
            try builder.file("app/\(id)/config.yml", "id: \(id)\nname: \(id)\nterraform:\n  source: \(source)\n")
        }
        try builder.file("app/fine/config.yml", "id: fine\nname: fine\nterraform:\n  source: ../../modules/ok\n")
        let lines = errors(try check(builder))
        for (id, _, expected) in cases {
            #expect(lines.contains { $0.hasPrefix("app/\(id)/config.yml:") && $0.contains(expected) }, "\(id): \(lines)")
        }
        #expect(!lines.contains { $0.contains("app/fine") }, "\(lines)")
    }
}
