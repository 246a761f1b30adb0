import Foundation
import HTTPTypes
import Hummingbird
import NIOHTTP1
import NclavStore
import TFBackend

/// An error answered as nclav's JSON error shape `{"error": "...", "details": [...]}`.
struct APIError: HTTPResponseError {
    let status: HTTPResponse.Status
    let message: String
    let details: [String]

    init(_ status: HTTPResponse.Status, _ message: String, details: [String] = []) {
        self.status = status
        self.message = message
        self.details = details
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(BackendResponse.error(status.code, message, details: details))
    }

    /// Maps anything thrown by a handler to an answer that never leaks internals: store
    /// trouble is a 503 (retry later), anything else a plain 500.
    static func from(_ error: Error) -> APIError {
        switch error {
        case let error as APIError: return error
        case let error as HTTPError:
            // The router's own answers (unknown route, wrong method) keep their status.
            let message = error.status == .notFound ? "no such route" : (error.body ?? error.status.reasonPhrase)
            return APIError(error.status, message, details: error.status == .notFound ? ["the routes are listed in the README"] : [])
        case let error as HTTPParserError:
            // Broken framing (chunk sizes, header syntax) is the client's request, not our fault.
            return APIError(.badRequest, "the request is not valid HTTP: \(error)", details: ["nothing was read or stored"])
        case let error as StoreError:
            switch error {
            case .closed: return APIError(.serviceUnavailable, "the server is shutting down")
            case .unknownRun(let id): return APIError(.notFound, "no IaC run with id \(id)")
            case .database, .cannotOpen, .corrupt:
                return APIError(.serviceUnavailable, "the state store is unavailable", details: ["retry shortly; the server log has the cause"])
            }
        default:
            return APIError(.internalServerError, "internal error", details: ["the server log has the cause"])
        }
    }
}

extension Response {
    init(_ answer: BackendResponse) {
        var fields = HTTPFields()
        for (name, value) in answer.headers.sorted(by: { $0.key < $1.key }) {
            if let field = HTTPField.Name(name) { fields[field] = value }
        }
        self.init(status: HTTPResponse.Status(code: answer.status), headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.body)))
    }
}
