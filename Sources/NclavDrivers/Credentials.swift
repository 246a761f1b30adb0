import Foundation

/// An OAuth access token and when it stops working. `description` never shows the token.
public struct AccessToken: Sendable, Equatable, CustomStringConvertible {
    public let token: String
    public let expiresAt: Date

    public init(token: String, expiresAt: Date) {
        self.token = token
        self.expiresAt = expiresAt
    }

    public var description: String { "access token (hidden), expires \(expiresAt)" }

    /// A token answer (`{"access_token", "expires_in" | "expires_on"}`), as OAuth token
    /// endpoints, metadata servers and managed-identity endpoints write it (numbers or strings).
    public init?(answer data: Data, now: Date = Date()) {
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], let token = object["access_token"] as? String else {
            return nil
        }
        func number(_ key: String) -> Double? {
            (object[key] as? Double) ?? (object[key] as? String).flatMap(Double.init) ?? (object[key] as? Int).map(Double.init)
        }
        self.token = token
        if let on = number("expires_on") {
            expiresAt = Date(timeIntervalSince1970: on)
        } else {
            expiresAt = now.addingTimeInterval(number("expires_in") ?? 3600)
        }
    }
}

/// `application/x-www-form-urlencoded`, as OAuth token endpoints take it.
public enum FormEncoding {
    public static func encode(_ pairs: [(String, String)]) -> Data {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return Data(pairs.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }.joined(separator: "&").utf8)
    }
}

/// The error a credential chain raises when no source is configured.
public protocol CredentialChainError: Error, Sendable {
    static func noCredentials(tried: [String]) -> Self
}

/// One place a cloud's credentials can come from. `nil` from `token` means "not configured
/// here" (the chain moves on); an error means configured but broken (the chain stops).
public protocol CredentialSource<Failure>: Sendable {
    associatedtype Failure: CredentialChainError
    var name: String { get }
    func token(scope: String, http: CloudHTTP) async throws(Failure) -> AccessToken?
}

/// A cloud's credential chain: its sources tried in order, the first configured one wins;
/// tokens cached per scope until five minutes before they expire.
public actor CredentialChain<Failure: CredentialChainError> {
    public nonisolated let sources: [any CredentialSource<Failure>]
    public let http = CloudHTTP()
    private var cache: [String: (token: AccessToken, source: Int)] = [:]

    public init(sources: [any CredentialSource<Failure>]) { self.sources = sources }

    /// Which of `sources` answered for `scope` last.
    public func sourceIndex(for scope: String) -> Int? { cache[scope]?.source }

    public func token(scope: String, now: Date = Date()) async throws(Failure) -> AccessToken {
        if let cached = cache[scope], cached.token.expiresAt.timeIntervalSince(now) > 300 { return cached.token }
        var tried: [String] = []
        for (index, source) in sources.enumerated() {
            if let token = try await source.token(scope: scope, http: http) {
                cache[scope] = (token, index)
                return token
            }
            tried.append(source.name)
        }
        throw Failure.noCredentials(tried: tried)
    }
}
