import Foundation
import NclavClient
import NclavCore

/// `apply --follow`: every running partition's terraform lines, prefixed `enc/part | `, as
/// they are written. On a terminal a one-line live status (what is running, how many lines)
/// stays at the bottom; otherwise plain lines only.
///
/// Each run is followed by polling its log (`…/log?offset=`), which reads the store, never
/// terraform's pipe: a slow or vanished client cannot slow a run down.
actor FollowPrinter {
    private let terminal: Bool
    private var running: [String: Int] = [:]  // partition → lines printed
    private var followers: [Task<Void, Never>] = []
    private var statusShown = false

    init(terminal: Bool = isatty(STDOUT_FILENO) != 0) { self.terminal = terminal }

    /// A progress line from the reconcile stream.
    func progress(_ text: String) {
        write(text)
    }

    /// Starts following a run announced by a progress line ("+ enc/part provision started (run <id>)").
    func follow(_ line: String, api: NclavAPIClient) {
        guard let (partition, runID) = Self.startedRun(line) else { return }
        running[partition] = 0
        let parts = partition.split(separator: "/").map(String.init)
        guard parts.count == 2, let key = try? StateKey(enclave: parts[0], partition: parts[1]) else { return }
        followers.append(
            Task {
                var offset = 0
                var pending = ""
                while !Task.isCancelled {
                    guard let chunk = try? await api.logChunk(key, run: runID, offset: offset) else {
                        try? await Task.sleep(for: .milliseconds(500))
                        continue
                    }
                    offset = chunk.nextOffset
                    pending += chunk.text
                    while let newline = pending.firstIndex(of: "\n") {
                        self.line(partition, String(pending[..<newline]))
                        pending = String(pending[pending.index(after: newline)...])
                    }
                    if chunk.complete {
                        if !pending.isEmpty { self.line(partition, pending) }
                        self.finished(partition)
                        return
                    }
                    try? await Task.sleep(for: .milliseconds(250))
                }
            })
    }

    /// Waits for every followed run's last lines.
    func drain() async {
        let all = followers
        followers = []
        for follower in all { await follower.value }
        clearStatus()
    }

    static func startedRun(_ line: String) -> (partition: String, runID: String)? {
        guard let match = line.range(of: #"^\s*[+-] (\S+/\S+) \w+ started \(run ([0-9A-Fa-f-]{36})\)"#, options: .regularExpression) else {
            return nil
        }
        let words = line[match].split(separator: " ")
        guard words.count >= 5 else { return nil }
        let runID = words.last!.dropLast()
        return (String(words[1]), String(runID))
    }

    private func line(_ partition: String, _ text: String) {
        running[partition, default: 0] += 1
        write("\(partition) | \(text)")
    }

    private func finished(_ partition: String) {
        running[partition] = nil
        if terminal { drawStatus() }
    }

    private func write(_ text: String) {
        if terminal && statusShown { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)) }
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
        statusShown = false
        if terminal { drawStatus() }
    }

    private func drawStatus() {
        guard !running.isEmpty else {
            clearStatus()
            return
        }
        let summary = running.keys.sorted().map { "\($0) (\(running[$0]!) lines)" }.joined(separator: ", ")
        let width = 120
        let text = "running: \(summary)"
        FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + String(text.prefix(width))).utf8))
        statusShown = true
    }

    private func clearStatus() {
        if statusShown { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)) }
        statusShown = false
    }
}
