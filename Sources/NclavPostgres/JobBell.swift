import Foundation

/// Wakes workers waiting for a job the moment one is queued: by this replica directly, by any
/// other through PostgreSQL's `LISTEN`/`NOTIFY`. A waiter also wakes after its timeout, so a
/// notification lost while the listening connection reconnects costs a little delay, never a
/// job.
actor JobBell {
    private var waiters: [UUID: CheckedContinuation<Void, Never>] = [:]
    private var listener: Task<Void, Never>?
    /// How many times the bell rang: a waiter that took this before looking at the queue
    /// does not wait for a job queued since.
    private(set) var rings: UInt64 = 0

    /// Wakes every waiter.
    func ring() {
        rings &+= 1
        let woken = waiters
        waiters.removeAll()
        for continuation in woken.values { continuation.resume() }
    }

    /// Returns at once when the bell rang since `ticket` (a value of `rings`), else at the next
    /// ring, when the waiting task is cancelled, or after `timeout`.
    func wait(after ticket: UInt64, upTo timeout: Duration) async {
        guard rings == ticket, !Task.isCancelled else { return }
        let id = UUID()
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.wake(id)
        }
        // Registered before this actor runs anything else, so no ring in between is missed.
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in waiters[id] = continuation }
        } onCancel: {
            Task { [weak self] in await self?.wake(id) }
        }
        timer.cancel()
    }

    private func wake(_ id: UUID) {
        waiters.removeValue(forKey: id)?.resume()
    }

    /// Starts listening once, with `listen`, which rings this bell for each notification and
    /// returns or throws when its connection ends.
    func startListening(_ listen: @escaping @Sendable () async -> Void) {
        guard listener == nil else { return }
        listener = Task { await listen() }
    }

    func stop() {
        listener?.cancel()
        listener = nil
        ring()
    }
}
