import ArgumentParser

/// `nclav aply dir` names the command it did not know and the nearest one it does, instead of
/// argument-parser's "2 unexpected arguments".
enum CommandSuggestion {
    static func forUnknown(_ arguments: [String], commands: [ParsableCommand.Type]) -> String? {
        guard let first = arguments.first(where: { !$0.hasPrefix("-") }), arguments.first == first else { return nil }
        let names = commands.map { $0.configuration.commandName ?? String(describing: $0).lowercased() }
        guard !names.contains(first) else { return nil }
        let nearest = names.map { ($0, distance(first, $0)) }.min { $0.1 < $1.1 }
        var message = "error: `\(first)` is not an nclav command"
        if let (name, cost) = nearest, cost <= max(2, first.count / 3) { message += "; did you mean `\(name)`?" }
        return message + "\nCommands: \(names.joined(separator: ", ")). See `nclav --help`."
    }

    /// Edit distance (insertions, deletions, substitutions, adjacent swaps).
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var table = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1) }
            }
        }
        return table[a.count][b.count]
    }
}
