import Crypto
import Foundation
import NclavCore

/// What a per-run credential allows: reading, writing and locking one partition's state,
/// for one run, until it expires. Nothing else, and never a force-unlock.
public struct RunScope: Codable, Sendable, Hashable {
    public let key: StateKey
    public let runID: UUID
    public let expiresAt: Date

    /// The expiry is kept to whole seconds, the precision the credential carries.
    public init(key: StateKey, runID: UUID, expiresAt: Date) {
        self.key = key
        self.runID = runID
        self.expiresAt = Date(timeIntervalSince1970: expiresAt.timeIntervalSince1970.rounded(.down))
    }

    enum CodingKeys: String, CodingKey { case key = "k", runID = "r", expiresAt = "x" }
}

/// Mints and checks run credentials: `nclavrun.<payload>.<mac>`, base64url, HMAC-SHA256 with
/// a key derived from the admin token. Stateless, so they survive restarts and any replica
/// that shares the admin token accepts them; rotating the token revokes them all.
public struct RunCredentialSigner: Sendable {
    public static let prefix = "nclavrun."
    // Raw key bytes: `SymmetricKey` is not Sendable in this swift-crypto version.
    private let keyBytes: Data
    private var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    public init(adminToken: String) {
        let derived = HMAC<SHA256>.authenticationCode(
            for: Data("nclav run credential v1".utf8),
            using: SymmetricKey(data: Data(adminToken.utf8)))
        keyBytes = Data(derived)
    }

    public func mint(_ scope: RunScope) -> String {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .secondsSince1970
        encoder.outputFormatting = .sortedKeys
        // Encoding a struct of strings, a UUID and a date cannot fail.
        let payload = (try? encoder.encode(scope)) ?? Data()
        let mac = HMAC<SHA256>.authenticationCode(for: payload, using: key)
        return Self.prefix + Base64URL.encode(payload) + "." + Base64URL.encode(Data(mac))
    }

    /// The scope a credential grants, or nil when it is forged, malformed or expired.
    public func verify(_ credential: String, now: Date = Date()) -> RunScope? {
        guard credential.hasPrefix(Self.prefix) else { return nil }
        let parts = credential.dropFirst(Self.prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let payload = Base64URL.decode(String(parts[0])), let mac = Base64URL.decode(String(parts[1])),
            HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: payload, using: key)
        else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        guard let scope = try? decoder.decode(RunScope.self, from: payload), scope.expiresAt > now else { return nil }
        return scope
    }
}

enum Base64URL {
    static func encode(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: String) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}

/// Who a request is from, once authenticated.
public enum Principal: Sendable, Equatable {
    case admin
    case run(RunScope)
    /// An agent, by its token's id: it may only claim and report jobs.
    case agent(String)

    /// True when this principal may read, write and lock the state at `key`.
    public func mayUseState(_ key: StateKey) -> Bool {
        switch self {
        case .admin: return true
        case .run(let scope): return scope.key == key
        case .agent: return false
        }
    }

    public var runID: UUID? {
        if case .run(let scope) = self { return scope.runID }
        return nil
    }
}

/// Turns an `Authorization` header into a principal: `Bearer <secret>` or `Basic` with the
/// secret as password (terraform's http backend sends Basic).
public struct Authenticator: Sendable {
    private let adminToken: String
    private let signer: RunCredentialSigner

    public init(adminToken: String) {
        self.adminToken = adminToken
        self.signer = RunCredentialSigner(adminToken: adminToken)
    }

    public func principal(authorization header: String?, now: Date = Date()) -> Principal? {
        guard let secret = Self.secret(from: header) else { return nil }
        if constantTimeEquals(secret, adminToken) { return .admin }
        return signer.verify(secret, now: now).map(Principal.run)
    }

    public static func secret(from header: String?) -> String? {
        guard let header else { return nil }
        // Fast path for what every client sends on every request: `Bearer <token>`.
        if header.utf8.starts(with: "Bearer ".utf8) {
            let value = header.utf8.dropFirst(7).drop { $0 == UInt8(ascii: " ") }
            let trimmed = value.reversed().drop { $0 == UInt8(ascii: " ") }.count
            let token = String(decoding: value.prefix(trimmed), as: UTF8.self)
            return token.isEmpty ? nil : token
        }
        // Terraform's http backend sends `Basic base64(user:password)` on every state call.
        if header.utf8.starts(with: "Basic ".utf8) {
            let value = header.utf8.dropFirst(6).drop { $0 == UInt8(ascii: " ") }
            return basicPassword(Data(value).trimmingTrailingSpaces())
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        let scheme = parts[0].lowercased()
        let value = parts[1].trimmingCharacters(in: .whitespaces)
        if scheme == "bearer" { return value.isEmpty ? nil : value }
        guard scheme == "basic" else { return nil }
        return basicPassword(Data(value.utf8))
    }

    /// The password of a Basic credential (base64 of `user:password`); the user is ignored.
    static func basicPassword(_ encoded: Data) -> String? {
        guard let decoded = Data(base64Encoded: encoded), let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        let password = decoded[decoded.index(after: colon)...]
        guard !password.isEmpty, let text = String(data: password, encoding: .utf8) else { return nil }
        return text
    }
}

private extension Data {
    func trimmingTrailingSpaces() -> Data {
        var end = endIndex
        while end > startIndex, self[index(before: end)] == UInt8(ascii: " ") { end = index(before: end) }
        return self[startIndex..<end]
    }
}
