/// The `{{ nclav_* }}` tokens a partition's inputs may use. Each cloud's driver provides
/// the common ones plus its own; validation refuses a token the enclave's cloud cannot fill.
public enum ContextTokens {
    /// Provided for every cloud (local: project id = enclave id).
    public static let common = ["nclav_enclave_id", "nclav_partition_id", "nclav_project_id", "nclav_region"]

    /// Tokens a cloud adds on top of `common`.
    public static func specific(to cloud: CloudTarget) -> [String] {
        switch cloud {
        case .local: return []
        case .gcp: return ["nclav_service_account", "nclav_vpc_id", "nclav_subnet_ids", "nclav_dns_zone_id"]
        case .azure:
            return ["nclav_subscription_id", "nclav_tenant_id", "nclav_resource_group", "nclav_vpc_id", "nclav_subnet_ids", "nclav_dns_zone_id"]
        case .aws: return ["nclav_account_id", "nclav_role_arn", "nclav_vpc_id", "nclav_subnet_ids", "nclav_dns_zone_id"]
        }
    }

    public static func available(for cloud: CloudTarget) -> [String] { common + specific(to: cloud) }

    /// Every cloud that provides `token`, sorted.
    public static func clouds(providing token: String) -> [CloudTarget] {
        CloudTarget.allCases.filter { available(for: $0).contains(token) }.sorted()
    }
}
