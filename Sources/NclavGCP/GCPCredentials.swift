import Crypto
import Foundation
import NclavDrivers
import _CryptoExtras

public typealias GCPAccessToken = AccessToken

public enum GCPCredentialError: CredentialChainError, CustomStringConvertible {
    case noCredentials(tried: [String])
    case sourceFailed(source: String, reason: String)

    public var description: String {
        switch self {
        case .noCredentials(let tried):
            return "no GCP credentials found; tried " + tried.joined(separator: ", ")
                + ". Set GOOGLE_APPLICATION_CREDENTIALS to a service-account key, run `gcloud auth application-default login` (its default scopes include the e-mail nclav needs to grant itself roles), or run on GCP with a service account"
        case .sourceFailed(let source, let reason):
            return "GCP credentials from \(source) failed: \(reason)"
        }
    }
}

/// One place GCP credentials can come from; it also knows whom the token belongs to.
public protocol GCPCredentialSource: CredentialSource where Failure == GCPCredentialError {
    /// The principal as IAM names it (`serviceAccount:…` or `user:…`).
    func member(http: CloudHTTP, token: GCPAccessToken) async throws(GCPCredentialError) -> String
}

let cloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

/// A GCP source seen by the shared chain, which needs only its token.
struct TokenOnly: CredentialSource {
    let base: any GCPCredentialSource
    var name: String { base.name }
    func token(scope: String, http: CloudHTTP) async throws(GCPCredentialError) -> AccessToken? { try await base.token(scope: scope, http: http) }
}

/// The token endpoint's error (`{"error": "invalid_grant", "error_description": "…"}`) in words.
func tokenError(_ response: CloudHTTP.Response) -> String {
    if let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] {
        let code = object["error"] as? String ?? "HTTP \(response.status)"
        let text = object["error_description"] as? String ?? ""
        return "the token endpoint answered \(response.status) \(code)\(text.isEmpty ? "" : ": \(text)")"
    }
    return "the token endpoint answered \(response.status)"
}

/// A key file of either kind `gcloud` and the console write: `service_account` (a signed JWT is
/// exchanged for a token at the key's `token_uri`) or `authorized_user` (ADC from
/// `gcloud auth application-default login`: a refresh token).
public struct KeyFileCredentials: GCPCredentialSource {
    public let name: String
    let path: String?
    let mustExist: Bool
    let endpoints: GCPEndpoints

    /// `GOOGLE_APPLICATION_CREDENTIALS` (must exist when set) or gcloud's ADC file.
    public init(name: String, path: String?, mustExist: Bool, endpoints: GCPEndpoints) {
        self.name = name
        self.path = path
        self.mustExist = mustExist
        self.endpoints = endpoints
    }

    struct KeyFile: Decodable {
        let type: String
        let client_email: String?
        let private_key: String?
        let private_key_id: String?
        let token_uri: String?
        let client_id: String?
        let client_secret: String?
        let refresh_token: String?
    }

    func load() throws(GCPCredentialError) -> KeyFile? {
        guard let path, !path.isEmpty else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            if mustExist { throw .sourceFailed(source: name, reason: "cannot read \(path)") }
            return nil
        }
        guard let key = try? JSONDecoder().decode(KeyFile.self, from: data) else {
            throw .sourceFailed(
                source: name, reason: "\(path) is not a Google credentials JSON file (expected \"type\": \"service_account\" or \"authorized_user\")")
        }
        return key
    }

    public func token(scope: String, http: CloudHTTP) async throws(GCPCredentialError) -> GCPAccessToken? {
        guard let key = try load() else { return nil }
        switch key.type {
        case "service_account":
            guard let email = key.client_email, let pem = key.private_key else {
                throw .sourceFailed(source: name, reason: "the service-account key has no client_email or private_key")
            }
            let tokenURI = key.token_uri ?? "https://oauth2.googleapis.com/token"
            let assertion = try Self.assertion(email: email, keyID: key.private_key_id, pem: pem, audience: tokenURI, now: Date())
            guard let url = URL(string: tokenURI) else { throw .sourceFailed(source: name, reason: "token_uri \(tokenURI) is not a URL") }
            return try await exchange(
                url, form: [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion)], http: http)
        case "authorized_user":
            guard let id = key.client_id, let secret = key.client_secret, let refresh = key.refresh_token else {
                throw .sourceFailed(
                    source: name,
                    reason:
                        "the authorized_user file lacks client_id, client_secret or refresh_token; run `gcloud auth application-default login` again")
            }
            return try await exchange(
                endpoints.url("oauth2", "/token"),
                form: [("grant_type", "refresh_token"), ("client_id", id), ("client_secret", secret), ("refresh_token", refresh)], http: http)
        default:
            throw .sourceFailed(
                source: name, reason: "credentials of type \(key.type) are not supported; use a service_account key or authorized_user ADC")
        }
    }

    func exchange(_ url: URL, form: [(String, String)], http: CloudHTTP) async throws(GCPCredentialError) -> GCPAccessToken {
        let response: CloudHTTP.Response
        do {
            response = try await http.send(
                "POST", url, headers: [("Content-Type", "application/x-www-form-urlencoded")], body: FormEncoding.encode(form), timeout: .seconds(30))
        } catch {
            throw .sourceFailed(source: name, reason: "\(error)")
        }
        guard response.status == 200, let token = AccessToken(answer: response.body) else {
            throw .sourceFailed(source: name, reason: tokenError(response))
        }
        return token
    }

    public func member(http: CloudHTTP, token: GCPAccessToken) async throws(GCPCredentialError) -> String {
        guard let key = try load() else { throw .sourceFailed(source: name, reason: "the key file went away") }
        if key.type == "service_account", let email = key.client_email { return "serviceAccount:\(email)" }
        // A user: ask who the token belongs to.
        // Google's documented endpoint; the token goes in the body, never in a URL.
        let url = endpoints.url("oauth2", "/tokeninfo")
        let form = FormEncoding.encode([("access_token", token.token)])
        guard
            let response = try? await http.send(
                "POST", url, headers: [("Content-Type", "application/x-www-form-urlencoded")], body: form, timeout: .seconds(30)),
            response.status == 200,
            let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any], let email = object["email"] as? String
        else {
            throw .sourceFailed(
                source: name,
                reason:
                    "could not learn the user's e-mail from tokeninfo; log in again with `gcloud auth application-default login` without --scopes (or include openid and https://www.googleapis.com/auth/userinfo.email)"
            )
        }
        return "user:\(email)"
    }

    /// The RS256-signed JWT a service account presents to the token endpoint (RFC 7523).
    static func assertion(email: String, keyID: String?, pem: String, audience: String, now: Date) throws(GCPCredentialError) -> String {
        var header: [String: String] = ["alg": "RS256", "typ": "JWT"]
        if let keyID { header["kid"] = keyID }
        let issued = Int(now.timeIntervalSince1970)
        let claims: [String: Any] = ["iss": email, "scope": cloudPlatformScope, "aud": audience, "iat": issued, "exp": issued + 3600]
        guard let headerData = try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]),
            let claimsData = try? JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])
        else {
            throw .sourceFailed(source: "service-account key", reason: "could not encode the JWT")
        }
        let signingInput = base64URL(headerData) + "." + base64URL(claimsData)
        do {
            let key = try _RSA.Signing.PrivateKey(pemRepresentation: pem)
            let signature = try key.signature(for: SHA256.hash(data: Data(signingInput.utf8)), padding: .insecurePKCS1v1_5)
            return signingInput + "." + base64URL(signature.rawRepresentation)
        } catch {
            throw .sourceFailed(source: "service-account key", reason: "the private_key is not a usable RSA key (\(type(of: error)))")
        }
    }
}

func base64URL(_ data: Data) -> String {
    data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(
        of: "=", with: "")
}

/// The GCE/Cloud Run metadata server (`GCE_METADATA_HOST` moves it, as in Google's libraries).
public struct MetadataServerCredentials: GCPCredentialSource {
    public let name = "metadata server"
    let host: String
    /// Probing the default address off GCP must fail fast; a host named explicitly is
    /// expected to answer, so it gets time to do so on a busy machine (4 s was seen to expire
    /// under a loaded test run). A refused connection still fails at once either way.
    let probeTimeout: Int64
    public init(environment: [String: String]) {
        let configured = environment["GCE_METADATA_HOST"].flatMap { $0.isEmpty ? nil : $0 }
        host = configured ?? "metadata.google.internal"
        probeTimeout = configured == nil ? 2 : 15
    }

    func get(_ path: String, http: CloudHTTP, timeout: Int64) async -> CloudHTTP.Response? {
        guard let url = URL(string: "http://\(host)/computeMetadata/v1/\(path)") else { return nil }
        return try? await http.send("GET", url, headers: [("Metadata-Flavor", "Google")], timeout: .seconds(timeout))
    }

    public func token(scope: String, http: CloudHTTP) async throws(GCPCredentialError) -> GCPAccessToken? {
        guard let response = await get("instance/service-accounts/default/token", http: http, timeout: probeTimeout) else { return nil }
        guard response.header("Metadata-Flavor") == "Google" else { return nil }  // something else answered
        guard response.status == 200, let token = AccessToken(answer: response.body) else {
            throw .sourceFailed(
                source: name,
                reason: "the metadata server answered \(response.status) for the default service account's token; is a service account attached?")
        }
        return token
    }

    public func member(http: CloudHTTP, token: GCPAccessToken) async throws(GCPCredentialError) -> String {
        guard let response = await get("instance/service-accounts/default/email", http: http, timeout: 5), response.status == 200 else {
            throw .sourceFailed(source: name, reason: "the metadata server did not say which service account this is")
        }
        return "serviceAccount:\(response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines))"
    }
}

/// The chain: `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's ADC file, then the metadata
/// server (a `CredentialChain`: the first configured source wins, tokens cached).
public actor GCPCredentialChain {
    let chain: CredentialChain<GCPCredentialError>
    let sources: [any GCPCredentialSource]
    let endpoints: GCPEndpoints
    private var cachedMember: String?

    public init(sources: [any GCPCredentialSource], endpoints: GCPEndpoints) {
        self.sources = sources
        self.chain = CredentialChain(sources: sources.map { TokenOnly(base: $0) })
        self.endpoints = endpoints
    }

    public static func standard(
        environment: [String: String] = ProcessInfo.processInfo.environment, home: String = NSHomeDirectory()
    ) -> GCPCredentialChain {
        let configDirectory = environment["CLOUDSDK_CONFIG"].flatMap { $0.isEmpty ? nil : $0 } ?? home + "/.config/gcloud"
        let endpoints = GCPEndpoints(environment: environment)
        return GCPCredentialChain(
            sources: [
                KeyFileCredentials(
                    name: "GOOGLE_APPLICATION_CREDENTIALS", path: environment["GOOGLE_APPLICATION_CREDENTIALS"], mustExist: true, endpoints: endpoints
                ),
                KeyFileCredentials(
                    name: "gcloud application-default credentials", path: configDirectory + "/application_default_credentials.json",
                    mustExist: false, endpoints: endpoints),
                MetadataServerCredentials(environment: environment),
            ], endpoints: endpoints)
    }

    public var currentSource: String? { get async { await chain.sourceIndex(for: cloudPlatformScope).map { sources[$0].name } } }

    public func token(now: Date = Date()) async throws(GCPCredentialError) -> GCPAccessToken {
        try await chain.token(scope: cloudPlatformScope, now: now)
    }

    /// Who nclav acts as, for IAM bindings it must give itself.
    public func member() async throws(GCPCredentialError) -> String {
        if let cachedMember { return cachedMember }
        let token = try await token()
        guard let index = await chain.sourceIndex(for: cloudPlatformScope) else { throw .noCredentials(tried: []) }
        let member = try await sources[index].member(http: chain.http, token: token)
        cachedMember = member
        return member
    }
}
