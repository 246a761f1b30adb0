import Foundation
import NclavCore
import NclavStore

// Test helper: appends audit events to a SQLite store as fast as it can and prints each
// event's sequence number only after the store has committed it. The durability test kills
// this process with SIGKILL and checks that every printed number survived.
let arguments = CommandLine.arguments
guard arguments.count == 2 else {
    FileHandle.standardError.write(Data("usage: nclav-store-writer <state.db>\n".utf8))
    exit(2)
}
let store = try SQLiteStore(path: arguments[1])
var count = 0
while true {
    let event = try await store.appendEvent(AuditEvent(kind: "durability", message: "write \(count)"))
    FileHandle.standardOutput.write(Data("\(event.sequence)\n".utf8))
    count += 1
}
