import Foundation

/// The hosted-platform Terraform modules (`bootstrap/gcp|azure|aws`), embedded in the binary
/// at build time by the EmbedBootstrapModules plugin, so `nclav platform render` and
/// `nclav bootstrap` work from the binary alone and always match the repository's files.
public enum PlatformCloud: String, CaseIterable, Sendable {
    case gcp, azure, aws

    /// The resources created before the image push: the registry and what it needs. The
    /// Makefile's `bootstrap-*` targets use the same list.
    public var registryTargets: [String] {
        switch self {
        case .gcp: return ["google_project_service.apis", "google_artifact_registry_repository.nclav"]
        case .azure: return ["azurerm_resource_group.nclav", "azurerm_container_registry.nclav"]
        case .aws: return ["aws_ecr_repository.nclav"]
        }
    }

    /// Variables the module cannot work without (checked before terraform runs).
    public var requiredVariables: [String] {
        switch self {
        case .gcp: return ["project_id", "enclave_parent", "billing_account"]
        case .azure:
            return [
                "subscription_id", "acr_name", "key_vault_name", "management_group_id", "billing_account_name",
                "billing_profile_name", "invoice_section_name",
            ]
        case .aws: return ["org_unit_id", "email_domain"]
        }
    }
}

public struct PlatformModule: Sendable {
    public let cloud: PlatformCloud
    /// Paths relative to the module directory, sorted, with their exact bytes.
    public let files: [(path: String, contents: Data)]
}

public enum PlatformTemplates {
    public enum RenderError: Error, CustomStringConvertible, Equatable {
        case notADirectory(String)
        case write(path: String, reason: String)

        public var description: String {
            switch self {
            case .notADirectory(let path): return "\(path) exists and is not a directory; choose another --out"
            case .write(let path, let reason): return "cannot write \(path): \(reason)"
            }
        }
    }

    public static func module(_ cloud: PlatformCloud) -> PlatformModule {
        let prefix = cloud.rawValue + "/"
        let files = EmbeddedModules.files.filter { $0.path.hasPrefix(prefix) }
            .map { (path: String($0.path.dropFirst(prefix.count)), contents: $0.contents) }
        return PlatformModule(cloud: cloud, files: files)
    }

    /// Writes the module's files into `directory` (created if needed). Files of the same name
    /// are replaced; anything else there (terraform.tfvars, .terraform/, state) is left alone.
    @discardableResult
    public static func render(_ cloud: PlatformCloud, to directory: URL) throws -> [String] {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw RenderError.notADirectory(directory.path)
        }
        var written: [String] = []
        for file in module(cloud).files {
            let target = directory.appendingPathComponent(file.path)
            do {
                try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                try file.contents.write(to: target, options: .atomic)
            } catch {
                throw RenderError.write(path: target.path, reason: "\(error.localizedDescription)")
            }
            written.append(file.path)
        }
        return written
    }
}

/// Filled by the generated `EmbeddedModules.swift` (see Plugins/EmbedBootstrapModules).
enum EmbeddedModules {
    static let files: [(path: String, contents: Data)] = base64Files.map { (path: $0.path, contents: Data(base64Encoded: $0.base64) ?? Data()) }
}
