import Foundation
import NIOCore
import NclavDrivers

/// Why one credential source could not give credentials. `notConfigured` lets the chain move on;
/// `failed` means the source was configured but broken, which stops the chain with that reason
/// (silently falling through to another identity would act as someone else).
public enum AWSCredentialOutcome: Sendable {
    case found(AWSCredentials)
    case notConfigured(String)
    case failed(String)
}

/// One place credentials can come from.
public protocol AWSCredentialSource: Sendable {
    var name: String { get }
    func resolve() async -> AWSCredentialOutcome
}

public enum AWSCredentialError: Error, Sendable, CustomStringConvertible {
    case noCredentials(tried: [(source: String, reason: String)])
    case sourceFailed(source: String, reason: String)

    public var description: String {
        switch self {
        case .noCredentials(let tried):
            return "no AWS credentials found; tried " + tried.map { "\($0.source) (\($0.reason))" }.joined(separator: ", ")
                + ". Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, run on ECS or EC2 with a role, or configure a profile (AWS_PROFILE)"
        case .sourceFailed(let source, let reason):
            return "AWS credentials from \(source) failed: \(reason)"
        }
    }
}

/// The credential chain, in the order the issue and the seed README give: environment, ECS
/// container credentials, EC2 instance metadata (IMDSv2), then the shared profile files.
/// Credentials are cached until five minutes before they expire.
public actor AWSCredentialChain {
    public let sources: [any AWSCredentialSource]
    private var cached: (credentials: AWSCredentials, source: String)?

    public init(sources: [any AWSCredentialSource]) { self.sources = sources }

    public static func standard(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        home: String = NSHomeDirectory()
    ) -> AWSCredentialChain {
        AWSCredentialChain(sources: [
            EnvironmentCredentials(environment: environment), ContainerCredentials(environment: environment),
            InstanceMetadataCredentials(environment: environment), ProfileCredentials(environment: environment, home: home),
        ])
    }

    /// The name of the source the current credentials came from.
    public var currentSource: String? { cached?.source }

    public func credentials(now: Date = Date()) async throws(AWSCredentialError) -> AWSCredentials {
        if let cached, cached.credentials.expiration.map({ $0.timeIntervalSince(now) > 300 }) ?? true { return cached.credentials }
        var tried: [(String, String)] = []
        for source in sources {
            switch await source.resolve() {
            case .found(let credentials):
                cached = (credentials, source.name)
                return credentials
            case .notConfigured(let reason): tried.append((source.name, reason))
            case .failed(let reason): throw .sourceFailed(source: source.name, reason: reason)
            }
        }
        throw .noCredentials(tried: tried)
    }
}

/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
public struct EnvironmentCredentials: AWSCredentialSource {
    public let name = "environment"
    let environment: [String: String]
    public init(environment: [String: String]) { self.environment = environment }

    public func resolve() async -> AWSCredentialOutcome {
        let key = environment["AWS_ACCESS_KEY_ID"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = environment["AWS_SECRET_ACCESS_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        switch (key, secret) {
        case (nil, nil): return .notConfigured("AWS_ACCESS_KEY_ID is not set")
        case (_?, nil): return .failed("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
        case (nil, _?): return .failed("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not")
        case (let key?, let secret?):
            let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            return .found(AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token))
        }
    }
}

/// The JSON both the ECS container endpoint and IMDS answer with.
struct TemporaryCredentialsDocument: Decodable {
    let AccessKeyId: String
    let SecretAccessKey: String
    let Token: String?
    let Expiration: String?
    let Code: String?

    func credentials() -> AWSCredentials {
        let expiration = Expiration.flatMap { ISO8601DateFormatter().date(from: $0) }
        return AWSCredentials(accessKeyID: AccessKeyId, secretAccessKey: SecretAccessKey, sessionToken: Token, expiration: expiration)
    }
}

/// ECS task role: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (against 169.254.170.2) or
/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]`.
public struct ContainerCredentials: AWSCredentialSource {
    public let name = "ECS container credentials"
    let environment: [String: String]
    let http = CloudHTTP()
    public init(environment: [String: String]) { self.environment = environment }

    /// Plain http is only allowed to the container agent's own addresses, as the SDKs require.
    static let allowedHTTPHosts: Set<String> = ["127.0.0.1", "localhost", "::1", "169.254.170.2", "169.254.170.23", "fd00:ec2::23"]

    public func resolve() async -> AWSCredentialOutcome {
        let url: URL
        if let relative = environment["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"], !relative.isEmpty {
            guard let built = URL(string: "http://169.254.170.2" + relative) else {
                return .failed("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=\(relative) is not a path")
            }
            url = built
        } else if let full = environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"], !full.isEmpty {
            guard let built = URL(string: full), let host = built.host, let scheme = built.scheme?.lowercased() else {
                return .failed("AWS_CONTAINER_CREDENTIALS_FULL_URI=\(full) is not a URL")
            }
            if scheme == "http", !Self.allowedHTTPHosts.contains(host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))) {
                return .failed("AWS_CONTAINER_CREDENTIALS_FULL_URI uses http to \(host); only loopback or the ECS/EKS agent addresses may use http")
            }
            url = built
        } else {
            return .notConfigured("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI are not set")
        }
        var headers: [(String, String)] = []
        if let file = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], !file.isEmpty {
            guard let token = try? String(contentsOfFile: file, encoding: .utf8) else {
                return .failed("cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(file)")
            }
            headers.append(("Authorization", token.trimmingCharacters(in: .whitespacesAndNewlines)))
        } else if let token = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"], !token.isEmpty {
            headers.append(("Authorization", token))
        }
        let response: CloudHTTP.Response
        do { response = try await http.send("GET", url, headers: headers, timeout: .seconds(5)) } catch { return .failed("\(error)") }
        guard response.status == 200 else { return .failed("the container credentials endpoint answered \(response.status)") }
        guard let document = try? JSONDecoder().decode(TemporaryCredentialsDocument.self, from: response.body) else {
            return .failed("the container credentials endpoint answered something that is not a credentials document")
        }
        return .found(document.credentials())
    }
}

/// EC2 instance metadata, IMDSv2 only (a session token first, then the role's credentials).
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it; `AWS_EC2_METADATA_DISABLED=true` turns it off.
public struct InstanceMetadataCredentials: AWSCredentialSource {
    public let name = "EC2 instance metadata (IMDSv2)"
    let environment: [String: String]
    let http = CloudHTTP()
    public init(environment: [String: String]) { self.environment = environment }

    public func resolve() async -> AWSCredentialOutcome {
        if environment["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true" { return .notConfigured("AWS_EC2_METADATA_DISABLED=true") }
        let configured = environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 }
        var base = configured ?? "http://169.254.169.254"
        while base.hasSuffix("/") { base.removeLast() }
        guard let tokenURL = URL(string: base + "/latest/api/token") else { return .failed("AWS_EC2_METADATA_SERVICE_ENDPOINT=\(base) is not a URL") }
        // Off EC2 nothing answers: a short timeout keeps the chain quick (an endpoint named
        // explicitly is expected to answer and gets longer).
        guard
            let tokenResponse = try? await http.send(
                "PUT", tokenURL, headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
                timeout: .seconds(configured == nil ? 1 : 15))
        else {
            return .notConfigured("no instance metadata service at \(base)")
        }
        guard tokenResponse.status == 200, !tokenResponse.body.isEmpty else {
            return .failed(
                "the metadata service refused an IMDSv2 session token (\(tokenResponse.status)); is the hop limit too low for a container?")
        }
        let token = tokenResponse.bodyText
        let listURL = URL(string: base + "/latest/meta-data/iam/security-credentials/")!
        guard let list = try? await http.send("GET", listURL, headers: [("X-aws-ec2-metadata-token", token)], timeout: .seconds(10)) else {
            return .failed("the metadata service stopped answering")
        }
        guard list.status == 200, let role = list.bodyText.split(separator: "\n").first.map(String.init), !role.isEmpty else {
            return .notConfigured("this instance has no IAM role attached")
        }
        guard let roleURL = URL(string: base + "/latest/meta-data/iam/security-credentials/" + role),
            let answer = try? await http.send("GET", roleURL, headers: [("X-aws-ec2-metadata-token", token)], timeout: .seconds(10)),
            answer.status == 200,
            let document = try? JSONDecoder().decode(TemporaryCredentialsDocument.self, from: answer.body)
        else {
            return .failed("the metadata service did not return credentials for role \(role)")
        }
        if let code = document.Code, code != "Success" { return .failed("the metadata service reports \(code) for role \(role)") }
        return .found(document.credentials())
    }
}

/// The shared files: `AWS_SHARED_CREDENTIALS_FILE` (~/.aws/credentials) and `AWS_CONFIG_FILE`
/// (~/.aws/config), profile `AWS_PROFILE` (else `default`). Static keys only; a profile that
/// assumes a role is refused with what to use instead.
public struct ProfileCredentials: AWSCredentialSource {
    public let name = "shared profile"
    let environment: [String: String]
    let home: String
    public init(environment: [String: String], home: String) {
        self.environment = environment
        self.home = home
    }

    public func resolve() async -> AWSCredentialOutcome {
        let explicit = environment["AWS_PROFILE"].flatMap { $0.isEmpty ? nil : $0 }
        let profile = explicit ?? "default"
        let credentialsFile = environment["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials"
        let configFile = environment["AWS_CONFIG_FILE"] ?? home + "/.aws/config"
        var settings: [String: String] = [:]
        if let text = try? String(contentsOfFile: configFile, encoding: .utf8) {
            let sections = Self.parse(text)
            settings.merge(sections[profile == "default" ? "default" : "profile \(profile)"] ?? sections[profile] ?? [:]) { $1 }
        }
        if let text = try? String(contentsOfFile: credentialsFile, encoding: .utf8) {
            settings.merge(Self.parse(text)[profile] ?? [:]) { $1 }
        }
        if let key = settings["aws_access_key_id"], let secret = settings["aws_secret_access_key"] {
            return .found(AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: settings["aws_session_token"]))
        }
        if settings["role_arn"] != nil || settings["sso_session"] != nil || settings["credential_process"] != nil {
            return .failed(
                "profile \(profile) assumes a role, uses SSO or a credential_process, which nclav does not run; give it static keys or use --aws-role-arn with base credentials"
            )
        }
        if settings.isEmpty {
            let reason = "no profile \(profile) in \(credentialsFile) or \(configFile)"
            return explicit != nil ? .failed("AWS_PROFILE=\(profile) but " + reason) : .notConfigured(reason)
        }
        return .failed("profile \(profile) has no aws_access_key_id/aws_secret_access_key")
    }

    /// INI sections -> lowercased keys -> values. `#` and `;` start comments.
    static func parse(_ text: String) -> [String: [String: String]] {
        var sections: [String: [String: String]] = [:]
        var current: String? = nil
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                current = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                continue
            }
            guard let current, let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            sections[current, default: [:]][key] = value
        }
        return sections
    }
}
