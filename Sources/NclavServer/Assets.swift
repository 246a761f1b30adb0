import Foundation

/// Files embedded at build time by the EmbedBootstrapModules plugin: the OpenAPI document
/// (`docs/openapi.yaml`, served at `/openapi.yaml`) and the web UI (`ui/`, served at `/ui`).
enum EmbeddedAssets {
    static let files: [String: [UInt8]] = Dictionary(uniqueKeysWithValues: base64Files.map {
        ($0.path, [UInt8](Data(base64Encoded: $0.base64) ?? Data()))
    })

    static var openAPI: [UInt8] { files["docs/openapi.yaml"] ?? [] }
}
