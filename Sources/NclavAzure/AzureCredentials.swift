import Foundation
import NclavDrivers

public typealias AzureAccessToken = AccessToken

public enum AzureCredentialError: CredentialChainError, CustomStringConvertible {
    case noCredentials(tried: [String])
    case sourceFailed(source: String, reason: String)

    public var description: String {
        switch self {
        case .noCredentials(let tried):
            return "no Azure credentials found; tried " + tried.joined(separator: ", ")
                + ". Pass --azure-client-id/--azure-client-secret (a service principal), run on Azure with a managed identity, or log in with `az login`"
        case .sourceFailed(let source, let reason): return "Azure credentials from \(source) failed: \(reason)"
        }
    }
}

/// One place an Azure token can come from; `nil` means "not configured here".
public typealias AzureCredentialSource = CredentialSource<AzureCredentialError>

func entraError(_ response: CloudHTTP.Response) -> String {
    if let object = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] {
        let code = object["error"] as? String ?? "HTTP \(response.status)"
        let text = (object["error_description"] as? String)?.split(separator: "\n").first.map(String.init) ?? ""
        var hint = ""
        if text.contains("AADSTS7000215") { hint = " (the client secret is wrong or expired)" }
        if text.contains("AADSTS700016") { hint = " (no application with that client id in this tenant)" }
        if text.contains("AADSTS90002") { hint = " (the tenant id is wrong)" }
        return "\(code): \(text)\(hint)"
    }
    return "HTTP \(response.status)"
}

/// A service principal with a client secret (client-credentials grant against Entra ID;
/// `AZURE_AUTHORITY_HOST` moves the authority, as in the Azure SDKs).
public struct ClientSecretCredentials: AzureCredentialSource {
    public let name = "service principal (client secret)"
    let tenantID: String
    let clientID: String?
    let clientSecret: String?
    let authority: String

    public init(tenantID: String, clientID: String?, clientSecret: String?, environment: [String: String]) {
        self.tenantID = tenantID
        self.clientID = clientID
        self.clientSecret = clientSecret
        var authority = environment["AZURE_AUTHORITY_HOST"].flatMap { $0.isEmpty ? nil : $0 } ?? "https://login.microsoftonline.com"
        while authority.hasSuffix("/") { authority.removeLast() }
        self.authority = authority
    }

    public func token(scope: String, http: CloudHTTP) async throws(AzureCredentialError) -> AzureAccessToken? {
        switch (clientID, clientSecret) {
        case (nil, nil): return nil
        case (nil, _?): throw .sourceFailed(source: name, reason: "--azure-client-secret is set but --azure-client-id is not")
        case (_?, nil):
            throw .sourceFailed(
                source: name, reason: "--azure-client-id is set but --azure-client-secret is not (for a managed identity, leave both unset)")
        case (let id?, let secret?):
            guard let url = URL(string: "\(authority)/\(tenantID)/oauth2/v2.0/token") else {
                throw .sourceFailed(source: name, reason: "bad authority \(authority)")
            }
            let form = FormEncoding.encode([("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret), ("scope", scope)])
            let response: CloudHTTP.Response
            do {
                response = try await http.send(
                    "POST", url, headers: [("Content-Type", "application/x-www-form-urlencoded")], body: form, timeout: .seconds(30))
            } catch {
                throw .sourceFailed(source: name, reason: "\(error)")
            }
            guard response.status == 200, let token = AccessToken(answer: response.body) else {
                throw .sourceFailed(source: name, reason: entraError(response))
            }
            return token
        }
    }
}

/// Managed identity: the App Service / Container Apps endpoint (`IDENTITY_ENDPOINT` +
/// `IDENTITY_HEADER`), else the VM's IMDS (`AZURE_POD_IDENTITY_AUTHORITY_HOST` moves it).
/// `clientID` picks a user-assigned identity.
public struct ManagedIdentityCredentials: AzureCredentialSource {
    public let name = "managed identity"
    let environment: [String: String]
    let clientID: String?

    public init(environment: [String: String], clientID: String? = nil) {
        self.environment = environment
        self.clientID = clientID ?? environment["AZURE_CLIENT_ID"].flatMap { $0.isEmpty ? nil : $0 }
    }

    public func token(scope: String, http: CloudHTTP) async throws(AzureCredentialError) -> AzureAccessToken? {
        let resource = scope.hasSuffix("/.default") ? String(scope.dropLast("/.default".count)) + "/" : scope
        var query = [("resource", resource)]
        if let clientID { query.append(("client_id", clientID)) }
        if let endpoint = environment["IDENTITY_ENDPOINT"], !endpoint.isEmpty, let header = environment["IDENTITY_HEADER"], !header.isEmpty {
            guard
                let url = URL(string: endpoint + "?" + String(decoding: FormEncoding.encode([("api-version", "2019-08-01")] + query), as: UTF8.self))
            else {
                throw .sourceFailed(source: name, reason: "IDENTITY_ENDPOINT=\(endpoint) is not a URL")
            }
            let response: CloudHTTP.Response
            do { response = try await http.send("GET", url, headers: [("X-IDENTITY-HEADER", header)], timeout: .seconds(30)) } catch {
                throw .sourceFailed(source: name, reason: "\(error)")
            }
            guard response.status == 200, let token = AccessToken(answer: response.body) else {
                throw .sourceFailed(source: name, reason: "the identity endpoint answered \(response.status): \(response.bodyText.prefix(200))")
            }
            return token
        }
        let configured = environment["AZURE_POD_IDENTITY_AUTHORITY_HOST"].flatMap { $0.isEmpty ? nil : $0 }
        var host = configured ?? "http://169.254.169.254"
        while host.hasSuffix("/") { host.removeLast() }
        guard
            let url = URL(
                string: host + "/metadata/identity/oauth2/token?"
                    + String(decoding: FormEncoding.encode([("api-version", "2018-02-01")] + query), as: UTF8.self))
        else {
            return nil
        }
        // Off Azure nothing answers: a short timeout keeps the chain quick (an endpoint named
        // explicitly is expected to answer and gets longer).
        guard let response = try? await http.send("GET", url, headers: [("Metadata", "true")], timeout: .seconds(configured == nil ? 1 : 15)) else {
            return nil
        }
        if response.status == 400, response.bodyText.contains("identity") { return nil }  // a VM without an identity
        guard response.status == 200, let token = AccessToken(answer: response.body) else {
            throw .sourceFailed(source: name, reason: "IMDS answered \(response.status): \(response.bodyText.prefix(200))")
        }
        return token
    }
}

/// `az account get-access-token`, for a person running nclav on a laptop after `az login`.
public struct AzureCLICredentials: AzureCredentialSource {
    public let name = "Azure CLI (az account get-access-token)"
    let path: String
    let tenantID: String?

    public init(environment: [String: String], tenantID: String?) {
        self.path = environment["PATH"] ?? "/usr/bin:/bin"
        self.tenantID = tenantID
    }

    public func token(scope: String, http: CloudHTTP) async throws(AzureCredentialError) -> AzureAccessToken? {
        guard let az = path.split(separator: ":").map({ "\($0)/az" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return nil
        }
        let resource = scope.hasSuffix("/.default") ? String(scope.dropLast("/.default".count)) : scope
        var arguments = ["account", "get-access-token", "--resource", resource, "--output", "json"]
        if let tenantID { arguments += ["--tenant", tenantID] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: az)
        process.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { throw .sourceFailed(source: name, reason: "cannot run \(az): \(error)") }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw .sourceFailed(
                source: name, reason: "az exited \(process.terminationStatus): \(errorText.split(separator: "\n").first ?? ""); run `az login`")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], let token = object["accessToken"] as? String else {
            throw .sourceFailed(source: name, reason: "az printed something that is not a token")
        }
        let expires = (object["expires_on"] as? Double) ?? (object["expires_on"] as? Int).map(Double.init)
        return AzureAccessToken(token: token, expiresAt: expires.map { Date(timeIntervalSince1970: $0) } ?? Date().addingTimeInterval(1800))
    }
}

/// Service principal, then managed identity, then the Azure CLI (a `CredentialChain`: the
/// first configured source wins; tokens cached per scope until five minutes before they expire).
public actor AzureCredentialChain {
    let chain: CredentialChain<AzureCredentialError>

    public init(sources: [any AzureCredentialSource]) { chain = CredentialChain(sources: sources) }

    public static func standard(
        tenantID: String, clientID: String?, clientSecret: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> AzureCredentialChain {
        AzureCredentialChain(sources: [
            ClientSecretCredentials(tenantID: tenantID, clientID: clientID, clientSecret: clientSecret, environment: environment),
            ManagedIdentityCredentials(environment: environment),
            AzureCLICredentials(environment: environment, tenantID: tenantID),
        ])
    }

    public func source(for scope: String) async -> String? { await chain.sourceIndex(for: scope).map { chain.sources[$0].name } }

    public func token(
        scope: String = "https://management.azure.com/.default", now: Date = Date()
    ) async throws(AzureCredentialError) -> AzureAccessToken {
        try await chain.token(scope: scope, now: now)
    }
}
