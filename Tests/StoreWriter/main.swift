import Foundation
import NclavCore
import NclavSQLite
import NclavStore
import NclavTestSupport

// Test helper for the kill -9 durability tests. Writes to a SQLite store as fast as it can and
// prints what it wrote only after the store has committed it; the tests kill this process with
// SIGKILL and check that everything printed survived.
//   nclav-store-writer <state.db>          audit events; prints each sequence number
//   nclav-store-writer <state.db> states   300 KB state versions (body files); prints each serial
let arguments = CommandLine.arguments
guard arguments.count == 2 || (arguments.count == 3 && arguments[2] == "states") else {
    FileHandle.standardError.write(Data("usage: nclav-store-writer <state.db> [states]\n".utf8))
    exit(2)
}
if arguments.count == 3 {
    let store = try SQLiteStore(path: arguments[1], retainedVersions: 5)
    let key = try StateKey(enclave: "durability", partition: "big")
    let padding = String(repeating: "y", count: 300 * 1024)
    var serial: Int64 = 1
    while true {
        // The same bytes BodyFileTests.big(serial, kilobytes: 300) builds.
        let body = StateFixtures.body(serial: serial, padding: "\(serial)-\(padding)")
        let write = StateWrite(body: body, serial: serial, lineage: "lineage-a", sha256: "sha-\(serial)", lockID: nil)
        guard case .stored = try await store.writeState(key, write) else { exit(3) }
        FileHandle.standardOutput.write(Data("\(serial)\n".utf8))
        serial += 1
    }
}
let store = try SQLiteStore(path: arguments[1])
var count = 0
while true {
    let event = try await store.appendEvent(AuditEvent(kind: "durability", message: "write \(count)"))
    FileHandle.standardOutput.write(Data("\(event.sequence)\n".utf8))
    count += 1
}
