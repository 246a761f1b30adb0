import Foundation

/// `GET /reconciles` and `GET /reconciles/{id}`: each apply, destroy or drift check as one report, read
/// back from its audit events and run records.
public struct ReconcileEntry: Codable, Sendable, Equatable {
    public var id: String
    public var startedAt: Date
    public var finishedAt: Date?
    /// `running`, `succeeded`, or the finishing event's message (`2 error(s)`).
    public var result: String
    /// What it set out to do (`5 change(s)`, `enclaves shop`, `every enclave`).
    public var message: String
    /// `apply`, `destroy` or `drift`.
    public var kind: String
    /// Who or what started it: the command, the credential and the peer address, or the
    /// server's drift schedule; nil for reconciles recorded before triggers were.
    public var trigger: String?

    public init(id: String, startedAt: Date, finishedAt: Date?, result: String, message: String, kind: String, trigger: String?) {
        self.id = id
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.result = result
        self.message = message
        self.kind = kind
        self.trigger = trigger
    }

    public enum CodingKeys: String, CodingKey {
        case id, startedAt = "started_at", finishedAt = "finished_at", result, message, kind, trigger
    }
}

public struct ReconcileListing: Codable, Sendable, Equatable {
    public var reconciles: [ReconcileEntry]
    public init(reconciles: [ReconcileEntry]) { self.reconciles = reconciles }
}

/// One reconcile's report: every partition it ran, skipped, failed or tore down.
public struct ReconcilePage: Codable, Sendable, Equatable {
    public struct Line: Codable, Sendable, Equatable {
        public var partition: String
        /// `provision`, `update`, `teardown` (from its run; empty when none started).
        public var operation: String
        /// `succeeded`, `failed`, `skipped`, `destroyed`.
        public var result: String
        public var reason: String
        public var runID: String?
        public var seconds: Double?

        public init(partition: String, operation: String, result: String, reason: String, runID: String?, seconds: Double?) {
            self.partition = partition
            self.operation = operation
            self.result = result
            self.reason = reason
            self.runID = runID
            self.seconds = seconds
        }

        public enum CodingKeys: String, CodingKey { case partition, operation, result, reason, runID = "run_id", seconds }
    }

    public var reconcile: ReconcileEntry
    public var partitions: [Line]
    /// Enclave boundaries created, updated or torn down (the events' messages).
    public var enclaves: [String]

    public init(reconcile: ReconcileEntry, partitions: [Line], enclaves: [String]) {
        self.reconcile = reconcile
        self.partitions = partitions
        self.enclaves = enclaves
    }
}
