import Crypto
import Foundation

/// Seals a job's payload (the partition's files, the run credential, the cloud credentials)
/// while it waits and runs in the database: AES-GCM with a key derived from the admin token.
/// The database, its WAL and its backups then hold no usable credential; every replica that
/// shares the admin token opens it for the agent that claims the job. Rotating the token makes
/// jobs queued before it unreadable, which fails them with a reason.
public struct JobPayloadSeal: Sendable {
    static let prefix = Data("nclavjob1:".utf8)
    // Raw key bytes: `SymmetricKey` is not Sendable in this swift-crypto version.
    private let keyBytes: Data
    private var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    public init(adminToken: String) {
        keyBytes = Data(
            HMAC<SHA256>.authenticationCode(for: Data("nclav job payload v1".utf8), using: SymmetricKey(data: Data(adminToken.utf8))))
    }

    public func seal(_ payload: Data) throws -> Data {
        guard let combined = try AES.GCM.seal(payload, using: key).combined else { throw JobPayloadSealError.cannotSeal }
        return Self.prefix + combined
    }

    public func open(_ sealed: Data) throws -> Data {
        guard sealed.starts(with: Self.prefix) else { throw JobPayloadSealError.notSealed }
        do {
            return try AES.GCM.open(AES.GCM.SealedBox(combined: sealed.dropFirst(Self.prefix.count)), using: key)
        } catch {
            throw JobPayloadSealError.otherKey
        }
    }
}

public enum JobPayloadSealError: Error, Sendable, CustomStringConvertible, Equatable {
    case cannotSeal
    case notSealed
    case otherKey

    public var description: String {
        switch self {
        case .cannotSeal: "the job's payload could not be sealed"
        case .notSealed: "the job's payload is not sealed by this nclav (queued by an older release?); apply again"
        case .otherKey:
            "the job's payload was sealed with another admin token (rotated since the job was queued, or a replica with a different token); apply again"
        }
    }
}
