import Foundation
import NclavCore

/// Collects a run's log lines and hands them on in small batches: at most every 100 ms or 64
/// lines, so a log stays live while terraform runs without one write (or request) per line.
/// The server appends batches to the run's log; an agent sends them to the server.
public actor LineBatcher {
    private let send: @Sendable (String) async -> Void
    private var pending: [String] = []
    private var flushScheduled = false

    public init(send: @escaping @Sendable (String) async -> Void) {
        self.send = send
    }

    public func append(_ line: String) async {
        pending.append(line)
        if pending.count >= 64 {
            await flush()
        } else if !flushScheduled {
            flushScheduled = true
            Task {
                try? await Task.sleep(for: .milliseconds(100))
                await self.flush()
            }
        }
    }

    /// Sends what is pending, each line ending in a newline.
    public func flush() async {
        flushScheduled = false
        guard !pending.isEmpty else { return }
        let text = pending.map { $0 + "\n" }.joined()
        pending.removeAll()
        // The last lines of a run that is being cancelled are the ones that say why it stopped.
        let send = self.send
        await completing { await send(text) }
    }
}
