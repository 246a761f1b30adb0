import Foundation
import HTTPTypes
import Hummingbird

/// Files embedded at build time by the EmbedBootstrapModules plugin: the OpenAPI document
/// (`docs/openapi.yaml`, served at `/openapi.yaml`) and the web UI (`ui/`, served at `/ui`).
enum EmbeddedAssets {
    static let files: [String: [UInt8]] = Dictionary(
        uniqueKeysWithValues: base64Files.map {
            ($0.path, [UInt8](Data(base64Encoded: $0.base64) ?? Data()))
        })

    static var openAPI: [UInt8] { files["docs/openapi.yaml"] ?? [] }
}

/// `/ui`: the embedded web UI, with headers that keep it from being framed or fed scripts
/// from anywhere else.
enum UIAssets {
    static let types = ["html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"]

    static func response(_ name: String) throws -> Response {
        guard !name.contains("/"), !name.hasPrefix("."), let bytes = EmbeddedAssets.files["ui/\(name)"],
            let type = types[String(name.split(separator: ".").last ?? "")]
        else {
            throw APIError(.notFound, "no such UI file `\(name)`", details: ["open /ui"])
        }
        var headers = HTTPFields()
        headers[.contentType] = type
        headers[.contentSecurityPolicy] =
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        headers[.xContentTypeOptions] = "nosniff"
        headers[.referrerPolicy] = "no-referrer"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

extension HTTPField.Name {
    static let contentSecurityPolicy = Self("Content-Security-Policy")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
}
