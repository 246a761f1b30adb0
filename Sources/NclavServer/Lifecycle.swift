import Foundation
import Logging
import NclavStore
import ServiceLifecycle

/// The reconciles (applies, destroys, drift checks) running in this server: started here
/// rather than as loose tasks, so a graceful shutdown cancels them — terraform gets its SIGINT,
/// saves state and stops; runs end `cancelled`, locks are released — and waits for them to end
/// before anything they write to is closed.
public actor ReconcileTasks: Service {
    private var running: [UUID: Task<Void, Never>] = [:]
    private var stopping = false
    private let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    struct ShuttingDown: Error, CustomStringConvertible {
        var description: String { "the server is shutting down; retry against another replica or after it restarts" }
    }

    /// Runs `work` as one of the server's reconciles; refused once shutdown has begun.
    func start(_ work: @escaping @Sendable () async -> Void) throws {
        guard !stopping else { throw ShuttingDown() }
        let id = UUID()
        running[id] = Task {
            await work()
            self.finished(id)
        }
    }

    private func finished(_ id: UUID) { running[id] = nil }

    var count: Int { running.count }

    public func run() async throws {
        try? await gracefulShutdown()
        stopping = true
        let tasks = Array(running.values)
        if !tasks.isEmpty { logger.notice("shutting down: cancelling running reconciles", metadata: ["count": "\(tasks.count)"]) }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }
}

/// `--drift-interval`: a drift check of everything on a schedule, stopped by a graceful
/// shutdown (a check in progress is cancelled with its runs).
struct DriftSchedule: Service {
    let interval: Duration
    let routes: ReconcileRoutes
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await routes.scheduledDrift(every: interval, logger: logger)
        }
    }
}

/// Owns the store: closes it when the server shuts down, after every service that writes to
/// it has stopped (it runs first, so it is shut down last).
struct StoreService: Service {
    let store: any StateStore
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        try await store.close()
        logger.info("stopped; store closed")
    }
}
