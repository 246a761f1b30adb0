import Foundation
import NclavCore

/// `GET /enclaves/{id}`, and each entry of `GET /enclaves`.
public struct EnclaveDetail: Codable, Sendable, Equatable {
    public var enclave: EnclaveState
    public var partitions: [PartitionState]
    public init(enclave: EnclaveState, partitions: [PartitionState]) {
        self.enclave = enclave
        self.partitions = partitions
    }
}

/// `GET /enclaves`.
public struct EnclaveListing: Codable, Sendable, Equatable {
    public var enclaves: [EnclaveDetail]
    public init(enclaves: [EnclaveDetail]) { self.enclaves = enclaves }
}

/// `GET /events`.
public struct EventListing: Codable, Sendable, Equatable {
    public var events: [AuditEvent]
    public init(events: [AuditEvent]) { self.events = events }
}

/// `GET …/iac/runs`: newest first, logs left empty.
public struct RunListing: Codable, Sendable, Equatable {
    public var runs: [IacRun]
    public init(runs: [IacRun]) { self.runs = runs }
}

/// `GET …/iac/runs/{id}/log?offset=N`: the whole lines after byte `offset`.
public struct LogChunk: Codable, Sendable, Equatable {
    public var offset: Int
    public var nextOffset: Int
    public var text: String
    public var status: String
    /// The run has ended and everything was sent.
    public var complete: Bool

    public init(offset: Int, nextOffset: Int, text: String, status: String, complete: Bool) {
        self.offset = offset
        self.nextOffset = nextOffset
        self.text = text
        self.status = status
        self.complete = complete
    }

    public enum CodingKeys: String, CodingKey { case offset, nextOffset = "next_offset", text, status, complete }
}

/// `GET /terraform/state/{e}/{p}/versions`.
public struct StateVersionListing: Codable, Sendable, Equatable {
    public var versions: [StateVersionInfo]
    public init(versions: [StateVersionInfo]) { self.versions = versions }
}

/// `GET /orphans`.
public struct OrphanReport: Codable, Sendable, Equatable {
    public struct Failure: Codable, Sendable, Equatable {
        public var enclave: String
        public var error: String
        public init(enclave: String, error: String) {
            self.enclave = enclave
            self.error = error
        }
    }

    public var orphans: [Orphan]
    public var errors: [Failure]
    public var scanned: [String]

    public init(orphans: [Orphan], errors: [Failure], scanned: [String]) {
        self.orphans = orphans
        self.errors = errors
        self.scanned = scanned
    }
}
