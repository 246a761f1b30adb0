import Crypto
import Foundation
import _CryptoExtras

/// nclav as an OpenID Connect issuer for Entra workload identity federation: each partition's
/// managed identity trusts tokens with subject `nclav:<enclave>:<partition>` from this issuer,
/// so terraform can act as that identity (`ARM_USE_OIDC` + `ARM_OIDC_TOKEN`) from anywhere —
/// no secret per partition, nothing attached to the host.
///
/// Entra fetches `<issuer>/.well-known/openid-configuration` and the JWKS it points to; those
/// two static documents are written by `nclav platform azure-oidc-documents` for the operator
/// to publish (a public blob container or static site). The signing key is
/// `NCLAV_AZURE_OIDC_KEY_PEM` (hosted: from Key Vault) or `$NCLAV_HOME/azure-oidc-key.pem`,
/// created 0600 on first use.
public struct WorkloadIdentityIssuer: Sendable {
    public static let audience = "api://AzureADTokenExchange"
    public let issuer: String
    let key: _RSA.Signing.PrivateKey
    public let keyID: String

    public enum IssuerError: Error, Sendable, CustomStringConvertible {
        case badIssuer(String)
        case badKey(String)
        public var description: String {
            switch self {
            case .badIssuer(let issuer):
                return "the OIDC issuer `\(issuer)` must be an https URL without a trailing slash, e.g. https://nclavoidc.blob.core.windows.net/oidc"
            case .badKey(let reason): return "the Azure OIDC signing key is not usable: \(reason)"
            }
        }
    }

    public init(issuer: String, key: _RSA.Signing.PrivateKey) throws(IssuerError) {
        guard let url = URL(string: issuer), url.scheme == "https" || url.host == "127.0.0.1", !issuer.hasSuffix("/") else {
            throw .badIssuer(issuer)
        }
        self.issuer = issuer
        self.key = key
        let modulus = (try? key.publicKey.getKeyPrimitives().modulus) ?? Data()
        self.keyID = String(Self.base64URL(Data(SHA256.hash(data: modulus))).prefix(16))
    }

    /// The key from `NCLAV_AZURE_OIDC_KEY_PEM`, else from `file` (created when missing).
    public static func load(issuer: String, environment: [String: String], file: URL) throws(IssuerError) -> WorkloadIdentityIssuer {
        if let pem = environment["NCLAV_AZURE_OIDC_KEY_PEM"], !pem.isEmpty {
            do { return try WorkloadIdentityIssuer(issuer: issuer, key: _RSA.Signing.PrivateKey(pemRepresentation: pem)) } catch let error
                as IssuerError
            { throw error } catch {
                throw .badKey("NCLAV_AZURE_OIDC_KEY_PEM is not an RSA private key in PEM")
            }
        }
        if let text = try? String(contentsOf: file, encoding: .utf8) {
            guard let key = try? _RSA.Signing.PrivateKey(pemRepresentation: text) else {
                throw .badKey("\(file.path) is not an RSA private key in PEM")
            }
            return try WorkloadIdentityIssuer(issuer: issuer, key: key)
        }
        let key: _RSA.Signing.PrivateKey
        do { key = try _RSA.Signing.PrivateKey(keySize: .bits2048) } catch { throw .badKey("could not generate one") }
        do {
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            let created = FileManager.default.createFile(
                atPath: file.path, contents: Data(key.pemRepresentation.utf8), attributes: [.posixPermissions: 0o600])
            if !created { throw IssuerError.badKey("cannot write \(file.path)") }
        } catch { throw .badKey("cannot write \(file.path)") }
        return try WorkloadIdentityIssuer(issuer: issuer, key: key)
    }

    public static func subject(enclave: String, partition: String) -> String { "nclav:\(enclave):\(partition)" }

    /// A signed token for one partition, valid for `lifetime` seconds.
    public func token(subject: String, lifetime: TimeInterval = 3600, now: Date = Date()) throws(IssuerError) -> String {
        let issued = Int(now.timeIntervalSince1970)
        let header = ["alg": "RS256", "typ": "JWT", "kid": keyID]
        let claims: [String: Any] = [
            "iss": issuer, "sub": subject, "aud": Self.audience, "iat": issued, "nbf": issued - 60,
            "exp": issued + Int(lifetime), "jti": UUID().uuidString,
        ]
        guard let headerData = try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]),
            let claimsData = try? JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])
        else { throw .badKey("cannot encode the token") }
        let input = Self.base64URL(headerData) + "." + Self.base64URL(claimsData)
        guard let signature = try? key.signature(for: SHA256.hash(data: Data(input.utf8)), padding: .insecurePKCS1v1_5) else {
            throw .badKey("signing failed")
        }
        return input + "." + Self.base64URL(signature.rawRepresentation)
    }

    public var jwksPath: String { "/openid/v1/jwks" }

    public var openIDConfiguration: Data {
        let object: [String: Any] = [
            "issuer": issuer, "jwks_uri": issuer + jwksPath, "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
        ]
        return (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])) ?? Data()
    }

    public var jwks: Data {
        let primitives = try? key.publicKey.getKeyPrimitives()
        let jwk: [String: String] = [
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": keyID,
            "n": Self.base64URL(primitives?.modulus ?? Data()), "e": Self.base64URL(primitives?.publicExponent ?? Data()),
        ]
        return (try? JSONSerialization.data(withJSONObject: ["keys": [jwk]], options: [.sortedKeys, .prettyPrinted])) ?? Data()
    }

    /// Writes both documents under `directory` at the paths Entra will request.
    public func writeDocuments(to directory: URL) throws {
        let wellKnown = directory.appendingPathComponent(".well-known")
        let jwksFile = directory.appendingPathComponent(String(jwksPath.dropFirst()))
        try FileManager.default.createDirectory(at: wellKnown, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: jwksFile.deletingLastPathComponent(), withIntermediateDirectories: true)
        try openIDConfiguration.write(to: wellKnown.appendingPathComponent("openid-configuration"))
        try jwks.write(to: jwksFile)
    }

    static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(
            of: "=", with: "")
    }
}
