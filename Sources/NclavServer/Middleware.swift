import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NclavAuth
import NclavStore
import TFBackend

/// The request context: Hummingbird's core storage plus who is calling.
public struct NclavRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?
    /// The peer's IP address, for the record of who started a reconcile.
    public var remoteAddress: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        principal = nil
        remoteAddress = source.channel.remoteAddress?.ipAddress
    }
}

/// Every route but `/health` and `/ready` needs the admin token or a run credential, and a
/// run credential only opens `/terraform/state/…` (the state routes check its partition).
/// Unknown paths answer 401 too, so an unauthenticated caller learns nothing about routes.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = NclavRequestContext
    static let openPaths: Set<String> = ["/health", "/ready"]

    /// `/health`, `/ready`, and the web UI's static files (`/ui`, `/ui/<file>`), which hold no
    /// data: the UI sends the token itself on every API call.
    static func isOpen(_ path: String) -> Bool {
        openPaths.contains(path) || path == "/ui" || (path.hasPrefix("/ui/") && !path.dropFirst(4).contains("/"))
    }
    let authenticator: Authenticator
    /// Where agent tokens are looked up; nil when the store keeps none.
    var agentTokens: (any JobStore)? = nil

    /// The 401 answer, also sent by `StateFastPath`.
    static let unauthorized = BackendResponse.error(
        401, "missing or invalid token",
        details: ["send `Authorization: Bearer <token>` (or Basic with the token as password)"])
    static let challenge = #"Bearer realm="nclav""#

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if Self.isOpen(request.uri.path) { return try await next(request, context) }
        let header = request.headers.value(.authorization)
        var found = authenticator.principal(authorization: header)
        if found == nil, let agentTokens, let secret = Authenticator.secret(from: header), let parsed = AgentTokenSecret.parse(secret),
            let token = try? await agentTokens.agentToken(parsed.id), token.revokedAt == nil,
            AgentTokenSecret.matches(parsed.secret, stored: token.secretSHA256)
        {
            found = .agent(token.id)
        }
        guard let principal = found else {
            var response = Response(Self.unauthorized)
            response.headers[.wwwAuthenticate] = Self.challenge
            return response
        }
        if case .run = principal, !request.uri.path.hasPrefix("/terraform/state/") {
            return try APIError(.forbidden, "a run credential may only use its partition's Terraform state")
                .response(from: request, context: context)
        }
        // An agent token claims and reports jobs, nothing else; the agent routes are for agents.
        let agentRoute = request.uri.path.hasPrefix("/agent/")
        if case .agent = principal, !agentRoute {
            return try APIError(.forbidden, "an agent token may only claim and report jobs (/agent/…)").response(from: request, context: context)
        }
        if agentRoute, principal == .admin {
            return try APIError(.forbidden, "/agent/… is for agents: run `nclav agent` with a token from `nclav agent-token create`")
                .response(from: request, context: context)
        }
        var context = context
        context.principal = principal
        return try await next(request, context)
    }
}

/// One structured line per request: method, path, status, duration and who asked. Never
/// headers or bodies, which carry tokens and state.
struct RequestLogMiddleware: RouterMiddleware {
    typealias Context = NclavRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var status: Int = 500
        defer {
            let elapsed = ContinuousClock.now - start
            let milliseconds = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            let quiet = AuthMiddleware.openPaths.contains(request.uri.path)
            logger.log(
                level: quiet ? .debug : .info, "request",
                metadata: [
                    "method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "status": "\(status)",
                    "ms": "\(String(format: "%.2f", milliseconds))",
                ])
        }
        do {
            let response = try await next(request, context)
            status = response.status.code
            return response
        } catch {
            let apiError = APIError.from(error)
            status = apiError.status.code
            if apiError.status.code >= 500 {
                logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(String(describing: error))"])
            }
            return try apiError.response(from: request, context: context)
        }
    }
}

extension HTTPFields {
    /// A field's value without the subscript's cost: `headers[name]` joins every field of that
    /// name into a new string, and the hot paths (auth, body length, metrics) read a few fields
    /// on every request. A repeated field still gets the subscript's joined value, so
    /// `Authorization: a` + `Authorization: b` stays one (invalid) credential, as before.
    func value(_ name: HTTPField.Name) -> String? {
        var found: String?
        for field in self where field.name == name {
            if found != nil { return self[name] }
            found = field.value
        }
        return found
    }

    /// `Content-Length` as a number, when present and well-formed.
    var declaredLength: Int? { value(.contentLength).flatMap { Int($0) } }
}
