import Testing

@testable import NclavConfig

@Suite("Did-you-mean suggestions")
struct SuggestionTests {
    @Test("near typos are suggested, distant words are not")
    func nearest() {
        let keys = ["id", "name", "cloud", "region", "exports", "imports", "partitions"]
        #expect(Suggestions.nearest(to: "nmae", among: keys) == "name")
        #expect(Suggestions.nearest(to: "regoin", among: keys) == "region")
        #expect(Suggestions.nearest(to: "export", among: keys) == "exports")
        #expect(Suggestions.nearest(to: "partition", among: keys) == "partitions")
        #expect(Suggestions.nearest(to: "zzz", among: keys) == nil)
        #expect(Suggestions.nearest(to: "tpc", among: ["http", "tcp", "queue"]) == "tcp")
        #expect(Suggestions.nearest(to: "target", among: ["name", "target_partition"]) == "target_partition")
    }

    @Test("transpositions count as one edit")
    func transposition() {
        #expect(Suggestions.editDistance("tcp", "tpc") == 1)
        #expect(Suggestions.editDistance("kitten", "sitting") == 3)
        #expect(Suggestions.editDistance("", "abc") == 3)
    }
}
