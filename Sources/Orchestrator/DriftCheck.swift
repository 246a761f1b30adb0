import Foundation
import IacRunner
import NclavCore
import NclavDrivers
import NclavStore

/// Drift detection: `terraform plan -detailed-exitcode -lock=false` on every applied
/// partition (of one enclave, or all) in the workspace of its last apply, recorded as an
/// IacRun (`plan`) and stored on the partition. Read-only for Terraform state.
struct DriftCheck: Sendable {
    let environment: ReconcileEnvironment
    let reconcileID: UUID

    func run(enclave: String?) async throws -> DriftReport {
        let store = environment.store
        var report = DriftReport(reconcileID: reconcileID)
        let enclaves = try await store.enclaves().filter { enclave == nil || $0.id == enclave }
        if let enclave, enclaves.isEmpty { throw ReconcileError.notInState(enclave) }
        _ = try? await store.appendEvent(
            AuditEvent(kind: "drift.started", enclaveID: enclave, reconcileID: reconcileID, message: "drift check of \(enclave ?? "every enclave")"))
        for enclaveState in enclaves {
            for state in try await store.partitions(ofEnclave: enclaveState.id) where state.status == .active {
                guard let key = state.key else { continue }
                report.results.append(try await check(state, key: key, enclave: enclaveState))
            }
        }
        _ = try? await store.appendEvent(
            AuditEvent(
                kind: "drift.checked", enclaveID: enclave, reconcileID: reconcileID,
                message: "drift check: \(report.count(.inSync)) in sync, \(report.count(.drifted)) drifted, \(report.count(.error)) error(s)"))
        return report
    }

    private func check(_ state: PartitionState, key: StateKey, enclave: EnclaveState) async throws -> DriftReport.Entry {
        let store = environment.store
        if let latest = try await store.runs(enclave: key.enclave, partition: key.partition, limit: 1).first, latest.status == .running {
            return DriftReport.Entry(key: key, result: nil, skipped: "a run is in progress", seconds: nil)
        }
        let workspace = environment.renderer.directory(for: key)
        let start = Date()
        let result: DriftResult
        if !FileManager.default.fileExists(atPath: workspace.appendingPathComponent(WorkspaceRenderer.backendFile).path) {
            result = DriftResult(status: .error, summary: "no workspace on this server (\(workspace.path)); apply it once from this server")
        } else {
            let run = await RecordedRun(environment: environment, reconcileID: reconcileID).run(
                key, partition: state.desired, operation: .plan, workspace: workspace, enclave: enclave.desired,
                context: EnclaveContext(values: enclave.context), cloud: enclave.resolvedCloud, identity: state.identity ?? [:])
            if run.outcome.result != .succeeded {
                result = DriftResult(status: .error, summary: run.outcome.reason ?? "terraform plan failed", runID: run.outcome.runID)
            } else if run.exitCode == 2 {
                var log = ""
                if let runID = run.outcome.runID { log = try await store.run(runID)?.log ?? "" }
                result = DriftResult(status: .drifted, summary: Self.planSummary(log) ?? "terraform plan found changes", runID: run.outcome.runID)
            } else {
                result = DriftResult(status: .inSync, summary: "No changes.", runID: run.outcome.runID)
            }
        }
        let seconds = String(format: "%.1f", Date().timeIntervalSince(start))
        switch result.status {
        case .inSync: await environment.progress("  ✓ \(key) in sync (checked in \(seconds) s)")
        case .drifted: await environment.progress("  ~ \(key) drifted: \(result.summary)")
        case .error: await environment.progress("  ! \(key) drift check failed after \(seconds) s: \(result.summary)")
        }
        _ = try? await store.appendEvent(
            AuditEvent(
                kind: "partition.\(result.status.rawValue)", enclaveID: key.enclave, partitionID: key.partition, reconcileID: reconcileID,
                message: result.summary))
        // Re-read: only the drift field changes, whatever else happened meanwhile.
        if var current = try await store.partitions(ofEnclave: key.enclave).first(where: { $0.partitionID == key.partition }) {
            current.drift = result
            try await store.putPartition(current)
        }
        return DriftReport.Entry(key: key, result: result, skipped: nil, seconds: Date().timeIntervalSince(start))
    }

    /// "Plan: 1 to add, 2 to change, 0 to destroy." from terraform's plan output.
    static func planSummary(_ log: String) -> String? {
        log.split(separator: "\n").last { $0.hasPrefix("Plan: ") || $0.hasPrefix("Changes to Outputs") }
            .map { String($0).trimmingCharacters(in: .whitespaces) }
    }
}
