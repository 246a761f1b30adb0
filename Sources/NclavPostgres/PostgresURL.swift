import Foundation
import PostgresNIO

/// A `postgres://user:password@host:port/database?sslmode=…` URL read the way libpq reads it,
/// turned into a PostgresNIO client configuration.
///
/// Supported query parameters: `sslmode` (disable, allow, prefer — the default, require,
/// verify-ca, verify-full), `sslrootcert` (a PEM file of CA certificates), `host` (a Unix
/// socket directory, as libpq allows), `application_name`, `connect_timeout` (seconds).
/// The password never appears in an error or in `redacted`.
public struct PostgresURL: Sendable, Equatable {
    public enum SSLMode: String, Sendable, CaseIterable {
        case disable, allow, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var socketDirectory: String?
    public var user: String
    public var password: String?
    public var database: String
    public var sslMode: SSLMode
    public var rootCertificatePath: String?
    public var applicationName: String
    public var connectTimeoutSeconds: Int

    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case notAURL(String)
        case scheme(String)
        case missing(String)
        case badParameter(name: String, value: String, accepted: String)
        case unreadableRootCertificate(path: String, reason: String)

        public var description: String {
            switch self {
            case .notAURL(let redacted):
                return "the PostgreSQL URL \(redacted) is not a URL; expected postgres://user:password@host:5432/database?sslmode=require"
            case .scheme(let scheme):
                return "the PostgreSQL URL scheme is \"\(scheme)\"; expected postgres:// or postgresql://"
            case .missing(let part):
                return "the PostgreSQL URL has no \(part); expected postgres://user:password@host:5432/database"
            case .badParameter(let name, let value, let accepted):
                return "the PostgreSQL URL parameter \(name)=\(value) is not accepted; expected \(accepted)"
            case .unreadableRootCertificate(let path, let reason):
                return "cannot read sslrootcert \(path): \(reason)"
            }
        }
    }

    public init(_ text: String) throws {
        guard let components = URLComponents(string: text) else { throw ParseError.notAURL(Self.redact(text)) }
        guard let scheme = components.scheme?.lowercased() else { throw ParseError.notAURL(Self.redact(text)) }
        guard scheme == "postgres" || scheme == "postgresql" else { throw ParseError.scheme(scheme) }
        var parameters: [String: String] = [:]
        for item in components.queryItems ?? [] { parameters[item.name] = item.value ?? "" }

        host = components.percentEncodedHost.flatMap { $0.removingPercentEncoding } ?? ""
        socketDirectory = parameters["host"].flatMap { $0.hasPrefix("/") ? $0 : nil }
        if let named = parameters["host"], !named.hasPrefix("/") { host = named }
        if host.isEmpty && socketDirectory == nil { throw ParseError.missing("host") }
        port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw ParseError.badParameter(name: "port", value: "\(port)", accepted: "1-65535") }
        guard let user = components.percentEncodedUser?.removingPercentEncoding ?? parameters["user"], !user.isEmpty else {
            throw ParseError.missing("user name")
        }
        self.user = user
        password = components.percentEncodedPassword?.removingPercentEncoding ?? parameters["password"]
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        database = path.isEmpty ? (parameters["dbname"] ?? user) : path

        let modeText = parameters["sslmode"] ?? "prefer"
        guard let mode = SSLMode(rawValue: modeText) else {
            throw ParseError.badParameter(
                name: "sslmode", value: modeText,
                accepted: SSLMode.allCases.map(\.rawValue).joined(separator: ", "))
        }
        sslMode = mode
        rootCertificatePath = parameters["sslrootcert"].flatMap { $0.isEmpty ? nil : $0 }
        applicationName = parameters["application_name"] ?? "nclav"
        if let timeout = parameters["connect_timeout"] {
            guard let seconds = Int(timeout), seconds > 0 else {
                throw ParseError.badParameter(name: "connect_timeout", value: timeout, accepted: "a whole number of seconds > 0")
            }
            connectTimeoutSeconds = seconds
        } else {
            connectTimeoutSeconds = 10
        }
    }

    /// The URL with its password replaced, for logs and errors.
    public var redacted: String {
        let location = socketDirectory.map { "[\($0)]" } ?? "\(host):\(port)"
        return "postgres://\(user)\(password == nil ? "" : ":***")@\(location)/\(database)?sslmode=\(sslMode.rawValue)"
    }

    static func redact(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@"), let schemeEnd = text.range(of: "://") else { return "(unparseable)" }
        let credentials = text[schemeEnd.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return text }
        return String(text[..<colon]) + ":***" + String(text[at...])
    }

    /// libpq's rules: `prefer`/`allow` try TLS and fall back; `require` insists on TLS
    /// (verifying the server's chain only when `sslrootcert` is given, as libpq does);
    /// `verify-ca` checks the chain; `verify-full` also checks the host name.
    func tlsConfiguration() throws -> (client: PostgresClient.Configuration.TLS, connection: PostgresConnection.Configuration.TLS) {
        if sslMode == .disable { return (.disable, .disable) }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let rootCertificatePath {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(rootCertificatePath))
            } catch {
                throw ParseError.unreadableRootCertificate(path: rootCertificatePath, reason: "\(error)")
            }
        }
        switch sslMode {
        case .disable: break
        case .allow, .prefer: tls.certificateVerification = .none
        case .require: tls.certificateVerification = rootCertificatePath == nil ? .none : .noHostnameVerification
        case .verifyCA: tls.certificateVerification = .noHostnameVerification
        case .verifyFull: tls.certificateVerification = .fullVerification
        }
        let context = try NIOSSLContext(configuration: tls)
        switch sslMode {
        case .allow, .prefer: return (.prefer(tls), .prefer(context))
        default: return (.require(tls), .require(context))
        }
    }

    func clientConfiguration() throws -> PostgresClient.Configuration {
        let tls = try tlsConfiguration().client
        var configuration: PostgresClient.Configuration
        if let socketDirectory {
            configuration = .init(unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: user, password: password, database: database)
        } else {
            configuration = .init(host: host, port: port, username: user, password: password, database: database, tls: tls)
        }
        configuration.options.connectTimeout = .seconds(Int64(connectTimeoutSeconds))
        configuration.options.additionalStartupParameters = [("application_name", applicationName)]
        return configuration
    }

    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        if let socketDirectory {
            configuration = .init(unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: user, password: password, database: database)
        } else {
            configuration = .init(
                host: host, port: port, username: user, password: password, database: database,
                tls: try tlsConfiguration().connection)
        }
        configuration.options.connectTimeout = .seconds(Int64(connectTimeoutSeconds))
        configuration.options.additionalStartupParameters = [("application_name", applicationName)]
        return configuration
    }
}
