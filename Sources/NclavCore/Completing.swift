/// Runs `body` to its end even when the calling task has been cancelled, and waits for it.
///
/// For the writes that record how something ended (a run's end, its last log lines, a job's
/// outcome): they matter most exactly when a shutdown cancels the work, and a cancelled task's
/// database calls and HTTP requests fail at once.
public func completing<T: Sendable>(_ body: @escaping @Sendable () async -> T) async -> T {
    await Task { await body() }.value
}

/// `completing` for a body that throws.
public func completing<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await Task { try await body() }.value
}
