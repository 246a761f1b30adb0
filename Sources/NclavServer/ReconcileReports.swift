import Foundation
import Hummingbird
import NclavAPI
import NclavCore
import NclavStore

/// `GET /reconciles` and `GET /reconciles/{id}`: each apply, destroy or drift check as one report, built
/// from the audit events it wrote (started, each partition's end, finished) and the runs it
/// recorded. Reaches back as far as the newest 1000 events.
struct ReconcileReports: Sendable {
    let store: any StateStore
    static let window = 1000

    func register(on router: Router<NclavRequestContext>) {
        router.get(RouterPath(APIPath.reconciles)) { _, _ in Routes.json(ReconcileListing(reconciles: try await list())) }
        router.get(RouterPath(APIPath.Template.reconcile)) { _, context in
            Routes.json(try await page(try Routes.uuid(context, "reconcile")))
        }
    }

    static let startKinds: [String: String] = ["reconcile.started": "apply", "destroy.started": "destroy", "drift.started": "drift"]
    static let triggerKind = "reconcile.trigger"

    func list() async throws -> [ReconcileEntry] {
        let events = try await store.events(enclave: nil, limit: Self.window)
        let byReconcile = Dictionary(grouping: events.filter { $0.reconcileID != nil }, by: { $0.reconcileID! })
        return byReconcile.compactMap { id, events in Self.entry(id, events) }.sorted { $0.startedAt > $1.startedAt }
    }

    static func entry(_ id: UUID, _ events: [AuditEvent]) -> ReconcileEntry? {
        guard let start = events.first(where: { startKinds[$0.kind] != nil }), let kind = startKinds[start.kind] else { return nil }
        let end = events.first { $0.kind == "reconcile.finished" || $0.kind == "drift.checked" }
        let failed = events.contains { $0.kind == "partition.failed" }
        let result =
            end.map { $0.message.replacingOccurrences(of: "drift check: ", with: "") }
            ?? (kind == "destroy" ? (failed ? "finished with errors" : "finished") : "running")
        return ReconcileEntry(
            id: id.uuidString.lowercased(), startedAt: start.time, finishedAt: end?.time ?? events.map(\.time).max(), result: result,
            message: start.message, kind: kind, trigger: events.first { $0.kind == triggerKind }?.message)
    }

    func page(_ id: UUID) async throws -> ReconcilePage {
        let events = try await store.events(enclave: nil, limit: Self.window).filter { $0.reconcileID == id }.sorted { $0.sequence < $1.sequence }
        guard let entry = Self.entry(id, events) else { throw APIError(.notFound, "reconcile \(id) is not among the newest \(Self.window) events") }
        var lines: [ReconcilePage.Line] = []
        for event in events where event.kind.hasPrefix("partition.") {
            guard let enclave = event.enclaveID, let partition = event.partitionID else { continue }
            let run = try await store.runs(enclave: enclave, partition: partition, limit: 50).first { $0.reconcileID == id }
            let result = String(event.kind.dropFirst("partition.".count)).replacingOccurrences(of: "applied", with: "succeeded")
            lines.append(
                ReconcilePage.Line(
                    partition: "\(enclave)/\(partition)", operation: run?.operation.rawValue ?? "", result: result, reason: event.message,
                    runID: run?.id.uuidString, seconds: run.flatMap { run in run.finishedAt.map { $0.timeIntervalSince(run.startedAt) } }))
        }
        let enclaves = events.filter { $0.kind.hasPrefix("enclave.") }.map(\.message)
        return ReconcilePage(reconcile: entry, partitions: lines, enclaves: enclaves)
    }
}
