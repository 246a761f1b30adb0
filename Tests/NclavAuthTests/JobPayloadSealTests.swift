import Foundation
import NclavAuth
import Testing

@Suite("Job payloads sealed with the admin token")
struct JobPayloadSealTests {
    @Test("a sealed payload holds none of its bytes in the clear and opens only with the same admin token")
    func sealAndOpen() throws {
        let payload = Data(#"{"credential":"nclavrun.abc.def","env":{"AWS_SECRET_ACCESS_KEY":"wJalrXUtnFEMI"}}"#.utf8)
        let seal = JobPayloadSeal(adminToken: String(repeating: "a", count: 64))
        let sealed = try seal.seal(payload)
        #expect(sealed.range(of: Data("nclavrun".utf8)) == nil && sealed.range(of: Data("wJalrXUtnFEMI".utf8)) == nil)
        #expect(try seal.open(sealed) == payload)
        #expect(try seal.seal(payload) != sealed, "a fresh nonce each time")

        #expect(throws: JobPayloadSealError.otherKey) { try JobPayloadSeal(adminToken: String(repeating: "b", count: 64)).open(sealed) }
        var tampered = sealed
        tampered[tampered.count - 1] ^= 1
        #expect(throws: JobPayloadSealError.otherKey) { try seal.open(tampered) }
        #expect(throws: JobPayloadSealError.notSealed) { try seal.open(payload) }
    }
}
