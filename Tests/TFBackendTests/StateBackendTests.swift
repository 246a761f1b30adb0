import Foundation
import NclavAuth
import NclavCore
import NclavStore
import NclavTestSupport
import TFBackend
import Testing

func state(serial: Int, lineage: String = "7d1a", outputs: String = "{}") -> Data {
    StateFixtures.body(serial: Int64(serial), lineage: lineage, outputs: outputs)
}

func lockBody(_ id: String) -> Data {
    Data(
        #"{"ID":"\#(id)","Operation":"OperationTypeApply","Info":"","Who":"alice@laptop","Version":"1.11.4","Created":"2026-11-22T05:00:00Z","Path":""}"#
            .utf8)
}

@Suite("Terraform state documents")
struct StateDocumentTests {
    @Test("lineage, serial and outputs are read; output values stringify for templates")
    func parses() throws {
        let document = try StateDocument(
            parsing: state(
                serial: 3,
                outputs: #"""
                    {"hostname":{"value":"db.internal","type":"string"},"port":{"value":5432,"type":"number"},
                     "ratio":{"value":0.5},"ha":{"value":true},"tags":{"value":{"b":2,"a":"x"}},"zones":{"value":["a","b"]},"nothing":{"value":null}}
                    """#))
        #expect(document.lineage == "7d1a")
        #expect(document.serial == 3)
        #expect(document.terraformVersion == "1.11.4")
        #expect(document.outputs["hostname"]?.templateString == "db.internal")
        #expect(document.outputs["port"]?.templateString == "5432")
        #expect(document.outputs["ratio"]?.templateString == "0.5")
        #expect(document.outputs["ha"]?.templateString == "true")
        #expect(document.outputs["tags"]?.templateString == #"{"a":"x","b":2}"#)
        #expect(document.outputs["zones"]?.templateString == #"["a","b"]"#)
        #expect(document.outputs["nothing"]?.templateString == "")
    }

    @Test("bodies that are not Terraform states are refused with the reason")
    func refuses() {
        #expect(throws: StateDocument.Problem.notJSON) { try StateDocument(parsing: Data("not json".utf8)) }
        #expect(throws: StateDocument.Problem.notAnObject) { try StateDocument(parsing: Data("[1,2]".utf8)) }
        #expect(throws: StateDocument.Problem.missingLineage) { try StateDocument(parsing: Data(#"{"serial":1}"#.utf8)) }
        #expect(throws: StateDocument.Problem.missingLineage) { try StateDocument(parsing: Data(#"{"serial":1,"lineage":""}"#.utf8)) }
        #expect(throws: StateDocument.Problem.badSerial) { try StateDocument(parsing: Data(#"{"lineage":"x"}"#.utf8)) }
        #expect(throws: StateDocument.Problem.badSerial) { try StateDocument(parsing: Data(#"{"lineage":"x","serial":"1"}"#.utf8)) }
        #expect(throws: StateDocument.Problem.badSerial) { try StateDocument(parsing: Data(#"{"lineage":"x","serial":-1}"#.utf8)) }
        #expect(throws: StateDocument.Problem.badSerial) { try StateDocument(parsing: Data(#"{"lineage":"x","serial":1.5}"#.utf8)) }
    }

    @Test("Content-MD5 is base64 of the MD5 digest")
    func md5() {
        #expect(Digest.md5Base64(Data()) == "1B2M2Y8AsgTpgAmY7PhCfg==")
        #expect(Digest.sha256Hex(Data("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}

@Suite("State backend rules")
struct StateBackendTests {
    let key = try! StateKey(enclave: "shop", partition: "api")
    let other = try! StateKey(enclave: "shop", partition: "web")

    /// A run credential's principal, for a run recorded as running in `store`.
    func runPrincipal(_ key: StateKey, in store: MemoryStore) async throws -> Principal {
        let runID = UUID()
        try await store.createRun(IacRun(id: runID, enclaveID: key.enclave, partitionID: key.partition, operation: .update, tool: "terraform"))
        return .run(RunScope(key: key, runID: runID, expiresAt: Date(timeIntervalSinceNow: 60)))
    }

    @Test("GET answers 204 before the first write, then the latest body with its MD5")
    func getAndPut() async throws {
        let backend = StateBackend(store: MemoryStore())
        #expect(try await backend.get(key, as: .admin).status == 204)
        let body = state(serial: 1)
        #expect(try await backend.put(key, body: body, contentMD5: Digest.md5Base64(body), lockID: nil, force: false, as: .admin).status == 200)
        let answer = try await backend.get(key, as: .admin)
        #expect(answer.status == 200)
        #expect(answer.body == body)
        #expect(answer.headers["Content-MD5"] == Digest.md5Base64(body))
    }

    @Test("bad bodies, bad MD5 and stale serials are refused and store nothing")
    func refusals() async throws {
        let store = MemoryStore()
        let backend = StateBackend(store: store)
        #expect(try await backend.put(key, body: Data("{}".utf8), contentMD5: nil, lockID: nil, force: false, as: .admin).status == 400)
        #expect(try await backend.put(key, body: state(serial: 1), contentMD5: "AAAA", lockID: nil, force: false, as: .admin).status == 400)
        #expect(try await store.stateVersions(key).isEmpty)
        _ = try await backend.put(key, body: state(serial: 5), contentMD5: nil, lockID: nil, force: false, as: .admin)
        let stale = try await backend.put(key, body: state(serial: 4), contentMD5: nil, lockID: nil, force: false, as: .admin)
        #expect(stale.status == 409)
        let foreign = try await backend.put(key, body: state(serial: 9, lineage: "other"), contentMD5: nil, lockID: nil, force: false, as: .admin)
        #expect(foreign.status == 409)
        #expect(String(decoding: foreign.body, as: UTF8.self).contains("lineage"))
        #expect(
            try await backend.put(
                key, body: state(serial: 1, lineage: "other"), contentMD5: nil, lockID: nil, force: true, as: try await runPrincipal(key, in: store)
            ).status == 403)
        #expect(
            try await backend.put(key, body: state(serial: 1, lineage: "other"), contentMD5: nil, lockID: nil, force: true, as: .admin).status == 200)
        #expect(try await store.stateVersions(key).count == 2)
    }

    @Test("a held lock answers 423 with the holder's JSON; writes need its ID")
    func locking() async throws {
        let backend = StateBackend(store: MemoryStore())
        #expect(try await backend.lock(key, body: lockBody("A"), as: .admin).status == 200)
        #expect(try await backend.lock(key, body: lockBody("A"), as: .admin).status == 200, "a retry with the same ID succeeds")
        let conflict = try await backend.lock(key, body: lockBody("B"), as: .admin)
        #expect(conflict.status == 423)
        #expect(conflict.headers["Content-Type"] == "application/json")
        #expect(conflict.body == lockBody("A"))
        #expect(try await backend.lock(key, body: Data("{}".utf8), as: .admin).status == 400)

        #expect(try await backend.put(key, body: state(serial: 1), contentMD5: nil, lockID: nil, force: false, as: .admin).status == 423)
        #expect(try await backend.put(key, body: state(serial: 1), contentMD5: nil, lockID: "B", force: false, as: .admin).status == 423)
        #expect(try await backend.put(key, body: state(serial: 1), contentMD5: nil, lockID: "A", force: false, as: .admin).status == 200)
        #expect(try await backend.delete(key, as: .admin).status == 423)

        let wrongUnlock = try await backend.unlock(key, body: lockBody("B"), as: .admin)
        #expect(wrongUnlock.status == 409)
        #expect(wrongUnlock.body == lockBody("A"))
        #expect(try await backend.unlock(key, body: lockBody("A"), as: .admin).status == 200)
        #expect(try await backend.lockInfo(key, as: .admin).status == 204)
    }

    @Test("force-unlock (empty body) and delete are for the admin token only")
    func adminOnly() async throws {
        let store = MemoryStore()
        let backend = StateBackend(store: store)
        let run = try await runPrincipal(key, in: store)
        #expect(try await backend.lock(key, body: lockBody("A"), as: run).status == 200)
        #expect(try await backend.unlock(key, body: Data(), as: run).status == 403)
        #expect(try await backend.lockInfo(key, as: .admin).body == lockBody("A"))
        #expect(try await backend.unlock(key, body: Data(), as: .admin).status == 200)
        #expect(try await backend.lockInfo(key, as: .admin).status == 204)
        #expect(try await backend.delete(key, as: run).status == 403)
        #expect(try await backend.delete(key, as: .admin).status == 200)
    }

    @Test("a run credential reaches its own partition's state and nothing else")
    func scoped() async throws {
        let store = MemoryStore()
        let backend = StateBackend(store: store)
        let run = try await runPrincipal(key, in: store)
        #expect(try await backend.put(key, body: state(serial: 1), contentMD5: nil, lockID: nil, force: false, as: run).status == 200)
        #expect(try await store.stateVersions(key).first?.runID == run.runID)
        #expect(try await backend.get(other, as: run).status == 403)
        #expect(try await backend.put(other, body: state(serial: 1), contentMD5: nil, lockID: nil, force: false, as: run).status == 403)
        #expect(try await backend.lock(other, body: lockBody("A"), as: run).status == 403)
        #expect(try await backend.versions(other, as: run).status == 403)
        #expect(try await backend.lock(key, body: lockBody("R"), as: run).status == 200)
        #expect(try await store.lock(key)?.runID == run.runID)
    }

    @Test("a run credential stops working when its run ends, however it ends")
    func endsWithRun() async throws {
        for status in [IacRun.Status.succeeded, .failed, .cancelled, .interrupted] {
            let store = MemoryStore()
            let backend = StateBackend(store: store)
            let run = try await runPrincipal(key, in: store)
            #expect(try await backend.put(key, body: state(serial: 1), contentMD5: nil, lockID: nil, force: false, as: run).status == 200)
            try await store.finishRun(try #require(run.runID), status: status, exitCode: 0, finishedAt: Date())
            for answer in [
                try await backend.get(key, as: run), try await backend.lock(key, body: lockBody("L"), as: run),
                try await backend.put(key, body: state(serial: 2), contentMD5: nil, lockID: nil, force: false, as: run),
            ] {
                #expect(answer.status == 401, "after the run \(status.rawValue)")
            }
            #expect(try await store.stateVersions(key).count == 1)
        }
        // A credential for a run nclav never recorded opens nothing.
        let store = MemoryStore()
        let stranger = Principal.run(RunScope(key: key, runID: UUID(), expiresAt: Date(timeIntervalSinceNow: 60)))
        #expect(try await StateBackend(store: store).get(key, as: stranger).status == 401)
    }

    @Test("versions list newest first and each can be fetched")
    func versions() async throws {
        let backend = StateBackend(store: MemoryStore())
        for serial in 1...3 { _ = try await backend.put(key, body: state(serial: serial), contentMD5: nil, lockID: nil, force: false, as: .admin) }
        let listing = try await backend.versions(key, as: .admin)
        let object = try JSONSerialization.jsonObject(with: listing.body) as? [String: Any]
        let versions = object?["versions"] as? [[String: Any]]
        #expect(versions?.compactMap { $0["serial"] as? Int } == [3, 2, 1])
        let second = try await backend.version(key, version: 2, as: .admin)
        #expect(second.body == state(serial: 2))
        #expect(second.headers["X-Nclav-State-Serial"] == "2")
        #expect(try await backend.version(key, version: 9, as: .admin).status == 404)
    }
}
