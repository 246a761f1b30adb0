import Foundation
import NclavCore
import NclavSQLite
import NclavStore
import NclavTestSupport
import Testing

/// Large state bodies in the SQLite store live as files beside the database. These tests
/// check the file side of that: what is written, what is removed and when, what a crash or
/// damage leaves behind, and bodies staged while they arrive.
@Suite("SQLite state body files")
struct BodyFileTests {
    struct Scratch {
        let directory: URL
        var path: String { directory.appendingPathComponent("state.db").path }
        var bodies: String { path + "-bodies" }

        init() throws { directory = try TestSupport.makeScratchDirectory("nclav-bodies") }

        func files() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: bodies).sorted() }
        func remove() { try? FileManager.default.removeItem(at: directory) }
    }

    /// A state of about `kilobytes` KB whose bytes depend on its serial.
    static func big(_ serial: Int64, kilobytes: Int = 200, lineage: String = "lineage-a") -> StateWrite {
        stateBody(lineage: lineage, serial: serial, padding: "\(serial)-\(String(repeating: "y", count: kilobytes * 1024))")
    }

    @Test("a large body is a file; pruning, refusals and deletion leave exactly the retained versions' files")
    func lifecycle() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let k = key("e", "p")
        do {
            let store = try SQLiteStore(path: scratch.path, retainedVersions: 3)
            _ = try await store.writeState(k, stateBody(serial: 1))
            #expect(try scratch.files().isEmpty, "a small body stays in its row")
            for serial in Int64(2)...6 {
                guard case .stored = try await store.writeState(k, Self.big(serial)) else {
                    Issue.record("write \(serial)")
                    return
                }
            }
            guard case .serialConflict = try await store.writeState(k, Self.big(3)) else {
                Issue.record("an old serial is refused")
                return
            }
            try await store.close()  // waits for the background removals
        }
        #expect(try scratch.files().count == 3, "versions 4, 5 and 6; none for the pruned or the refused write")
        let store = try SQLiteStore(path: scratch.path, retainedVersions: 3)
        #expect(try await store.stateVersions(k).map(\.serial) == [6, 5, 4])
        #expect(try await store.latestState(k)?.body == Self.big(6).body)
        #expect(try await store.stateVersion(k, version: 4)?.body == Self.big(4).body)
        #expect(try await store.deleteState(k) == .deleted(versions: 3))
        try await store.close()
        #expect(try scratch.files().isEmpty)
    }

    @Test("opening sweeps body files no row references, but not ones another process may be about to commit")
    func sweep() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let k = key("e", "p")
        do {
            let store = try SQLiteStore(path: scratch.path)
            _ = try await store.writeState(k, Self.big(1))
            try await store.close()
        }
        let stale = scratch.bodies + "/" + UUID().uuidString.lowercased()
        let young = scratch.bodies + "/" + UUID().uuidString.lowercased()
        let foreign = scratch.bodies + "/notes.txt"
        for path in [stale, young, foreign] { #expect(FileManager.default.createFile(atPath: path, contents: Data("left over".utf8))) }
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-3600)], ofItemAtPath: stale)
        let store = try SQLiteStore(path: scratch.path)
        #expect(!FileManager.default.fileExists(atPath: stale), "an hour-old unreferenced body is a crash's leftover")
        #expect(FileManager.default.fileExists(atPath: young))
        #expect(FileManager.default.fileExists(atPath: foreign), "only names nclav writes are touched")
        #expect(try await store.latestState(k)?.body == Self.big(1).body)
        // What the open spared once it is old enough (the store looks again after the grace period).
        for name in try scratch.files() {
            try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-60)], ofItemAtPath: scratch.bodies + "/" + name)
        }
        #expect(try store.sweepOrphanedBodies() == 1, "only the unreferenced body")
        #expect(!FileManager.default.fileExists(atPath: young))
        #expect(try await store.latestState(k)?.body == Self.big(1).body, "a referenced body is never swept")
        try await store.close()
    }

    @Test("a missing or truncated body file is reported as damage, with the file and what to do")
    func damage() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let k = key("e", "p")
        let store = try SQLiteStore(path: scratch.path)
        _ = try await store.writeState(k, Self.big(1))
        _ = try await store.writeState(k, Self.big(2))
        try await store.close()
        let reopened = try SQLiteStore(path: scratch.path)
        defer { Task { try? await reopened.close() } }
        let files = try scratch.files()
        #expect(files.count == 2)
        // Version 2 is the newest; find its file by content.
        let newest = try #require(files.first { (try? Data(contentsOf: URL(fileURLWithPath: scratch.bodies + "/" + $0))) == Self.big(2).body })
        let oldest = try #require(files.first { $0 != newest })

        try Data("{\"trunc".utf8).write(to: URL(fileURLWithPath: scratch.bodies + "/" + newest))
        do {
            _ = try await reopened.latestState(k)
            Issue.record("a truncated body must not be served")
        } catch let error as StoreError {
            guard case .corrupt(let message) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(message.contains(newest) && message.contains("ends after 7 bytes") && message.contains("nclav state rollback"), "\(message)")
        }

        try FileManager.default.removeItem(atPath: scratch.bodies + "/" + oldest)
        do {
            _ = try await reopened.stateVersion(k, version: 1)
            Issue.record("a missing body must not be served")
        } catch let error as StoreError {
            guard case .corrupt(let message) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(message.contains(oldest) && message.contains("missing") && message.contains("version 1"), "\(message)")
        }
        #expect(try await reopened.stateVersions(k).map(\.serial) == [2, 1], "the listing still shows both rows")
    }

    @Test("a staged body is stored without a second copy; one nobody stored is removed")
    func staged() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let k = key("e", "p")
        let store = try SQLiteStore(path: scratch.path)
        #expect(try store.stageStateBody(expectedSize: 1000) == nil, "small bodies are not staged")

        func stage(_ write: StateWrite) throws -> StateWrite {
            let staged = try #require(try store.stageStateBody(expectedSize: write.body.count))
            write.body.withUnsafeBytes { bytes in
                // In uneven pieces, as a network delivers them.
                var offset = 0
                while offset < bytes.count {
                    let end = min(bytes.count, offset + 7_000 + offset % 13)
                    staged.append(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
                    offset = end
                }
            }
            var copy = write
            copy.body = try staged.finish()
            copy.staged = staged
            #expect(copy.body == write.body)
            return copy
        }

        let first = try stage(Self.big(1))
        guard case .stored = try await store.writeState(k, first) else {
            Issue.record("stored")
            return
        }
        first.staged?.discardUnlessClaimed()
        #expect(try scratch.files().count == 1, "the staged file became the version's body")
        #expect(try await store.latestState(k)?.body == Self.big(1).body)

        let refused = try stage(Self.big(1, lineage: "other"))
        guard case .lineageConflict = try await store.writeState(k, refused) else {
            Issue.record("refused")
            return
        }
        refused.staged?.discardUnlessClaimed()
        let unsent = try stage(Self.big(2))  // e.g. the upload failed its MD5 check
        unsent.staged?.discardUnlessClaimed()
        try await store.close()
        #expect(try scratch.files().count == 1)
        let reopened = try SQLiteStore(path: scratch.path)
        #expect(try await reopened.latestState(k)?.body == Self.big(1).body)
        try await reopened.close()
    }

    @Test("kill -9 while writing large states: every acknowledged version is intact, nothing is half-written")
    func killNine() async throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let output = scratch.directory.appendingPathComponent("acknowledged.txt")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let writer = Process()
        writer.executableURL = TestSupport.productsDirectory.appendingPathComponent("nclav-store-writer")
        writer.arguments = [scratch.path, "states"]
        writer.standardOutput = try FileHandle(forWritingTo: output)
        try writer.run()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let lines = (try? String(contentsOf: output, encoding: .utf8))?.split(separator: "\n").count ?? 0
            if lines >= 60 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        kill(writer.processIdentifier, SIGKILL)
        writer.waitUntilExit()
        #expect(writer.terminationReason == .uncaughtSignal)

        let acknowledged = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").compactMap { Int64($0) }
        let lastAcknowledged = try #require(acknowledged.last)
        #expect(acknowledged.count >= 60)
        let store = try SQLiteStore(path: scratch.path, retainedVersions: 5)
        let k = key("durability", "big")
        let versions = try await store.stateVersions(k)
        let latest = try #require(versions.first)
        #expect(latest.serial >= lastAcknowledged, "the newest acknowledged write survived")
        for version in versions {
            let body = try #require(try await store.stateVersion(k, version: version.version)).body
            #expect(body == Self.big(version.serial, kilobytes: 300).body, "version \(version.version) is intact")
        }
        try await store.close()
    }
}
