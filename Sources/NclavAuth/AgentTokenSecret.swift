import Crypto
import Foundation

/// Agent tokens: `nclav-agent.<id>.<secret>`. The id names the token (to list and revoke it);
/// only the SHA-256 of the secret is stored, so the store never holds a usable token.
public enum AgentTokenSecret {
    public static let prefix = "nclav-agent."

    /// A new token: its id, the token to hand to the agent (shown once), and what is stored.
    public static func make() -> (id: String, token: String, secretSHA256: String) {
        let id = AdminToken.generateHex(bytes: 6)
        let secret = AdminToken.generateHex(bytes: 32)
        return (id, "\(prefix)\(id).\(secret)", sha256(secret))
    }

    /// The id and secret of something shaped like an agent token.
    public static func parse(_ token: String) -> (id: String, secret: String)? {
        guard token.hasPrefix(prefix) else { return nil }
        let parts = token.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 12, parts[1].count == 64,
            parts.allSatisfy({ $0.allSatisfy { $0.isHexDigit && !$0.isUppercase } })
        else { return nil }
        return (String(parts[0]), String(parts[1]))
    }

    /// `<id>:<sha256 of the secret>`, what a server is given to accept a token made elsewhere
    /// (by terraform, say); nil when `token` is not an agent token.
    public static func registration(of token: String) -> String? {
        parse(token).map { "\($0.id):\(sha256($0.secret))" }
    }

    /// The id and hash of `<id>:<sha256>`; nil when malformed.
    public static func parseRegistration(_ text: String) -> (id: String, secretSHA256: String)? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, isID(String(parts[0])), parts[1].count == 64, parts[1].allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
            return nil
        }
        return (String(parts[0]), String(parts[1]))
    }

    /// Twelve lower-case hex digits.
    public static func isID(_ text: String) -> Bool {
        text.count == 12 && text.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    /// True when `secret` is the one whose hash is `stored`.
    public static func matches(_ secret: String, stored: String) -> Bool {
        constantTimeEquals(sha256(secret), stored)
    }

    static func sha256(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
