import Foundation
import NclavClient
import NclavCore

/// `apply --follow`: every running partition's terraform lines, prefixed `enc/part | `, as
/// they are written. On a terminal a one-line live status (what is running, how many lines)
/// stays at the bottom; otherwise plain lines only.
///
/// Each run is followed by polling its log (`…/log?offset=`), which reads the store, never
/// terraform's pipe: a slow or vanished client cannot slow a run down. A partition's end line
/// ("✓ …", "! …") waits until its log's last lines are printed, and takes it off the status line.
actor FollowPrinter {
    private let terminal: Bool
    private let colour: Bool
    private var running: [String: Int] = [:]  // partition → lines printed
    private var followers: [String: Task<Void, Never>] = [:]
    private var statusShown = false

    /// How long an end line waits for its run's last log lines (a server that stopped answering
    /// must not hang the client).
    static let lastLinesWait: Duration = .seconds(5)

    init(terminal: Bool = isatty(STDOUT_FILENO) != 0, colour: Bool = Style.enabled) {
        self.terminal = terminal
        self.colour = colour
    }

    /// A progress line from the reconcile stream (`line`), printed after `stamp`. A line that
    /// starts a run starts following it; one that ends a partition first prints its last lines.
    func progress(_ line: String, stamp: String, api: NclavAPIClient) async {
        if let partition = Self.endedPartition(line) {
            if let follower = followers.removeValue(forKey: partition) {
                let deadline = Task {
                    try? await Task.sleep(for: Self.lastLinesWait)
                    follower.cancel()
                }
                await follower.value
                deadline.cancel()
            }
            running[partition] = nil
        }
        write(Style.line("\(stamp) \(line)", enabled: colour))
        if let (partition, runID) = Self.startedRun(line) { follow(partition, runID: runID, api: api) }
    }

    private func follow(_ partition: String, runID: String, api: NclavAPIClient) {
        let parts = partition.split(separator: "/").map(String.init)
        guard parts.count == 2, let key = try? StateKey(enclave: parts[0], partition: parts[1]) else { return }
        running[partition] = 0
        if terminal { drawStatus() }
        followers[partition] = Task {
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
                    self.logLine(partition, String(pending[..<newline]))
                    pending = String(pending[pending.index(after: newline)...])
                }
                if chunk.complete {
                    if !pending.isEmpty { self.logLine(partition, pending) }
                    return
                }
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    /// Waits for every followed run's last lines.
    func drain() async {
        let all = followers.values
        followers = [:]
        for follower in all { await follower.value }
        running = [:]
        clearStatus()
    }

    /// "+ enc/part provision started (run <id>)" → (enc/part, id).
    static func startedRun(_ line: String) -> (partition: String, runID: String)? {
        guard let match = line.range(of: #"^\s*[+-] (\S+/\S+) \w+ started \(run ([0-9A-Fa-f-]{36})\)"#, options: .regularExpression) else {
            return nil
        }
        let words = line[match].split(separator: " ")
        guard words.count >= 5 else { return nil }
        let runID = words.last!.dropLast()
        return (String(words[1]), String(runID))
    }

    /// The partition a line ends: "✓ enc/part provision succeeded…", "- enc/part teardown
    /// succeeded…", "! enc/part … failed…", "· … skipped", "= … unchanged".
    static func endedPartition(_ line: String) -> String? {
        guard startedRun(line) == nil,
            let match = line.range(of: #"^\s*[✓!·=~-] \S+/\S+ "#, options: .regularExpression)
        else { return nil }
        return line[match].split(separator: " ").dropFirst().first.map(String.init)
    }

    private func logLine(_ partition: String, _ text: String) {
        if running[partition] != nil { running[partition]! += 1 }
        write("\(partition) | \(Style.terraform(text, enabled: colour))")
    }

    private func write(_ text: String) {
        if terminal && statusShown { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)) }
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
        statusShown = false
        if terminal { drawStatus() }
    }

    /// "running: shop/api (1 line), shop/web (12 lines)".
    static func status(_ running: [String: Int]) -> String? {
        guard !running.isEmpty else { return nil }
        return "running: " + running.keys.sorted().map { "\($0) (\(running[$0]!) \(running[$0]! == 1 ? "line" : "lines"))" }.joined(separator: ", ")
    }

    private func drawStatus() {
        guard let text = Self.status(running) else { return clearStatus() }
        FileHandle.standardOutput.write(Data(("\r\u{1B}[K" + String(text.prefix(120))).utf8))
        statusShown = true
    }

    private func clearStatus() {
        if statusShown { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)) }
        statusShown = false
    }
}
