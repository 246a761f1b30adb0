/// "Did you mean …?" for typos in keys, enum values and references.
enum Suggestions {
    /// The closest candidate within a small edit distance, or nil when nothing is close.
    static func nearest(to word: String, among candidates: [String]) -> String? {
        let limit = word.count <= 3 ? 1 : (word.count <= 6 ? 2 : 3)
        var best: (candidate: String, distance: Int)?
        // A truncated key (`target` for `target_partition`) is a typo too.
        if word.count >= 4, let extended = candidates.first(where: { $0 != word && $0.hasPrefix(word) }) {
            return extended
        }
        for candidate in candidates where candidate != word {
            let distance = editDistance(word.lowercased(), candidate.lowercased())
            if distance <= limit, distance < (best?.distance ?? Int.max) { best = (candidate, distance) }
        }
        return best?.candidate
    }

    /// "; did you mean `x`?" or "".
    static func didYouMean(_ word: String, among candidates: [String]) -> String {
        nearest(to: word, among: candidates).map { "; did you mean `\($0)`?" } ?? ""
    }

    /// Optimal string alignment distance: Levenshtein plus adjacent transpositions, so
    /// `tpc` → `tcp` counts as one edit.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var table = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { table[i][0] = i }
        for j in 0...b.count { table[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
                }
            }
        }
        return table[a.count][b.count]
    }
}

extension Array where Element == String {
    /// `a, b, c` with each item in backticks, or "none".
    var quotedList: String { isEmpty ? "none" : map { "`\($0)`" }.joined(separator: ", ") }
    var plainList: String { isEmpty ? "none" : joined(separator: ", ") }
}
