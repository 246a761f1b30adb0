import Foundation

/// The AWS services nclav calls, with what the SDKs need to reach and sign for each.
public enum AWSService: String, Sendable, CaseIterable {
    case organizations, sts, ec2, iam, route53, tagging, sqs

    /// The SigV4 signing name.
    public var signingName: String { rawValue }

    /// The service id as the SDKs spell it in `AWS_ENDPOINT_URL_<SERVICE>` (upper case, spaces
    /// become underscores): Organizations, STS, EC2, IAM, Route 53, Resource Groups Tagging API.
    public var endpointEnvironmentSuffix: String {
        switch self {
        case .organizations: return "ORGANIZATIONS"
        case .sts: return "STS"
        case .ec2: return "EC2"
        case .iam: return "IAM"
        case .route53: return "ROUTE_53"
        case .tagging: return "RESOURCE_GROUPS_TAGGING_API"
        case .sqs: return "SQS"
        }
    }

    /// Organizations, IAM and Route 53 are global: one endpoint, signed for us-east-1.
    var isGlobal: Bool { self == .organizations || self == .iam || self == .route53 }

    func defaultEndpoint(region: String) -> String {
        switch self {
        case .organizations: return "https://organizations.us-east-1.amazonaws.com"
        case .iam: return "https://iam.amazonaws.com"
        case .route53: return "https://route53.amazonaws.com"
        case .sts, .ec2, .tagging, .sqs: return "https://\(rawValue).\(region).amazonaws.com"
        }
    }
}

/// Where a request for a service goes, resolved the way the AWS SDKs do:
/// `AWS_ENDPOINT_URL_<SERVICE>`, then `AWS_ENDPOINT_URL`, then the public endpoint; none of the
/// overrides when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`.
public struct AWSEndpointResolver: Sendable {
    public let environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) { self.environment = environment }

    public struct Endpoint: Sendable, Equatable {
        public let url: URL
        public let signingRegion: String
    }

    public enum ResolveError: Error, Equatable, CustomStringConvertible {
        case badURL(variable: String, value: String)
        public var description: String {
            switch self {
            case .badURL(let variable, let value):
                return "\(variable)=\(value) is not an http(s) URL; set it to something like http://127.0.0.1:5000 or unset it"
            }
        }
    }

    public func endpoint(for service: AWSService, region: String) throws(ResolveError) -> Endpoint {
        let signingRegion = service.isGlobal ? "us-east-1" : region
        if environment["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"]?.lowercased() != "true" {
            for variable in ["AWS_ENDPOINT_URL_\(service.endpointEnvironmentSuffix)", "AWS_ENDPOINT_URL"] {
                guard let value = environment[variable], !value.isEmpty else { continue }
                guard let url = URL(string: value), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https", url.host != nil
                else {
                    throw .badURL(variable: variable, value: value)
                }
                return Endpoint(url: url, signingRegion: signingRegion)
            }
        }
        return Endpoint(url: URL(string: service.defaultEndpoint(region: region))!, signingRegion: signingRegion)
    }

    /// The endpoint variables to hand on to terraform so its provider reaches the same place.
    public var overrides: [String: String] {
        environment.filter {
            $0.key == "AWS_ENDPOINT_URL" || $0.key.hasPrefix("AWS_ENDPOINT_URL_") || $0.key == "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
        }
    }
}
