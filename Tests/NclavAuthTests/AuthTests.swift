import Foundation
import NclavAuth
import NclavCore
import NclavTestSupport
import Testing

@Suite("Admin token", .serialized)
struct AdminTokenTests {
    @Test("a missing token file is created 0600 with 64 hex characters and reused afterwards")
    func generatedAndReused() throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let first = try AdminToken.load(environment: [:], home: home, rotate: false)
        let path = home.appendingPathComponent("token").path
        #expect(first.source == .generated(path))
        #expect(first.value.count == 64 && first.value.allSatisfy(\.isHexDigit))
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let again = try AdminToken.load(environment: [:], home: home, rotate: false)
        #expect(again.value == first.value)
        #expect(again.source == .file(path))
        let rotated = try AdminToken.load(environment: [:], home: home, rotate: true)
        #expect(rotated.value != first.value)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == rotated.value + "\n")
    }

    @Test("NCLAV_TOKEN wins over the file and must not be guessable")
    func environment() throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let token = try AdminToken.load(environment: ["NCLAV_TOKEN": "a-long-enough-secret"], home: home, rotate: false)
        #expect(token.value == "a-long-enough-secret")
        #expect(token.source == .environment)
        #expect(!FileManager.default.fileExists(atPath: home.appendingPathComponent("token").path))
        #expect(throws: AdminToken.SetupError.environmentTokenTooShort(5)) {
            try AdminToken.load(environment: ["NCLAV_TOKEN": "short"], home: home, rotate: false)
        }
        #expect(throws: AdminToken.SetupError.rotateWithEnvironmentToken) {
            try AdminToken.load(environment: ["NCLAV_TOKEN": "a-long-enough-secret"], home: home, rotate: true)
        }
    }

    @Test("a damaged token file is refused with what to do, and a loose one is tightened")
    func damagedFile() throws {
        let home = try TestSupport.makeScratchDirectory("nclav-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let path = home.appendingPathComponent("token").path
        try "not-a-token\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: AdminToken.SetupError.malformedFile(path: path)) {
            try AdminToken.load(environment: [:], home: home, rotate: false)
        }
        try (String(repeating: "ab", count: 32) + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        _ = try AdminToken.load(environment: [:], home: home, rotate: false)
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o600)
    }

    @Test("constant-time comparison is still a comparison")
    func comparison() {
        #expect(constantTimeEquals("abc", "abc"))
        #expect(!constantTimeEquals("abc", "abd"))
        #expect(!constantTimeEquals("abc", "abcd"))
        #expect(!constantTimeEquals("", "a"))
        #expect(constantTimeEquals("", ""))
    }
}

@Suite("Run credentials and authentication")
struct RunCredentialTests {
    let admin = String(repeating: "0f", count: 32)
    let stateKey = try! StateKey(enclave: "shop", partition: "api")

    @Test("a minted credential verifies to its scope until it expires")
    func roundTrip() {
        let signer = RunCredentialSigner(adminToken: admin)
        let scope = RunScope(key: stateKey, runID: UUID(), expiresAt: Date(timeIntervalSinceNow: 600))
        let credential = signer.mint(scope)
        #expect(credential.hasPrefix("nclavrun."))
        #expect(!credential.contains(admin))
        let verified = signer.verify(credential)
        #expect(verified?.key == stateKey)
        #expect(verified?.runID == scope.runID)
        #expect(signer.verify(credential, now: Date(timeIntervalSinceNow: 601)) == nil)
    }

    @Test("forged, altered or foreign credentials are refused")
    func forgery() {
        let signer = RunCredentialSigner(adminToken: admin)
        let credential = signer.mint(RunScope(key: stateKey, runID: UUID(), expiresAt: Date(timeIntervalSinceNow: 600)))
        #expect(RunCredentialSigner(adminToken: String(repeating: "1f", count: 32)).verify(credential) == nil)
        var altered = Array(credential)
        altered[12] = altered[12] == "A" ? "B" : "A"
        #expect(signer.verify(String(altered)) == nil)
        #expect(signer.verify("nclavrun.e30.AAAA") == nil)
        #expect(signer.verify("nclavrun.") == nil)
        #expect(signer.verify(admin) == nil)
    }

    @Test("Bearer and Basic carry the admin token or a run credential")
    func authenticator() {
        let authenticator = Authenticator(adminToken: admin)
        let basic = { (user: String, password: String) in "Basic " + Data("\(user):\(password)".utf8).base64EncodedString() }
        #expect(authenticator.principal(authorization: "Bearer \(admin)") == .admin)
        #expect(authenticator.principal(authorization: "bearer \(admin)") == .admin)
        #expect(authenticator.principal(authorization: basic("nclav", admin)) == .admin)
        #expect(authenticator.principal(authorization: basic("anyone", admin)) == .admin)
        #expect(authenticator.principal(authorization: "Bearer wrong") == nil)
        #expect(authenticator.principal(authorization: basic("nclav", "wrong")) == nil)
        #expect(authenticator.principal(authorization: basic(admin, "")) == nil, "the token belongs in the password")
        #expect(authenticator.principal(authorization: nil) == nil)
        #expect(authenticator.principal(authorization: "Bearer") == nil)
        #expect(authenticator.principal(authorization: "Token \(admin)") == nil)
        #expect(
            authenticator.principal(authorization: "basic " + Data("x:\(admin)".utf8).base64EncodedString()) == .admin, "scheme is case-insensitive")
        #expect(authenticator.principal(authorization: basic("x", admin) + "  ") == .admin, "trailing spaces")
        #expect(authenticator.principal(authorization: "Basic not-base64!") == nil)
        #expect(authenticator.principal(authorization: "Basic " + Data("no-colon".utf8).base64EncodedString()) == nil)
        #expect(authenticator.principal(authorization: "Basic " + Data([0x78, 0x3A, 0xFF, 0xFE]).base64EncodedString()) == nil, "password not UTF-8")
        #expect(
            authenticator.principal(authorization: "Basic " + Data("x:a:\(admin)".utf8).base64EncodedString()) == nil,
            "the password runs from the first colon")

        let scope = RunScope(key: stateKey, runID: UUID(), expiresAt: Date(timeIntervalSinceNow: 60))
        let credential = RunCredentialSigner(adminToken: admin).mint(scope)
        let principal = authenticator.principal(authorization: basic("nclav-run", credential))
        #expect(principal == .run(scope))
        #expect(principal?.mayUseState(stateKey) == true)
        #expect(principal?.mayUseState(try! StateKey(enclave: "shop", partition: "web")) == false)
        #expect(Principal.admin.mayUseState(try! StateKey(enclave: "any", partition: "thing")))
    }
}
