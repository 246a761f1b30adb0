import Foundation
import NclavCore

/// The decisions every store makes inside its transaction, written once so the SQLite,
/// in-memory and PostgreSQL stores cannot drift apart.
package enum StateRules {
    /// `nil` means "store it as a new version"; anything else is the answer instead.
    package static func decide(_ write: StateWrite, latest: StateVersionInfo?, lock: StateLock?) -> StateWriteOutcome? {
        if let lock, lock.id != write.lockID { return .locked(lock) }
        guard let latest else { return nil }
        if latest.sha256 == write.sha256 { return .unchanged(latest) }
        if write.force { return nil }
        if latest.lineage != write.lineage { return .lineageConflict(current: latest) }
        if write.serial <= latest.serial { return .serialConflict(current: latest) }
        return nil
    }

    /// `nil` means "take the lock".
    package static func decideLock(_ requested: StateLock, existing: StateLock?) -> LockOutcome? {
        guard let existing else { return nil }
        return existing.id == requested.id ? .alreadyHeld : .heldByOther(existing)
    }

    /// `nil` means "remove the lock".
    package static func decideUnlock(id: String?, existing: StateLock?) -> UnlockOutcome? {
        guard let existing else { return .notLocked }
        if let id, id != existing.id { return .heldByOther(existing) }
        return nil
    }
}
