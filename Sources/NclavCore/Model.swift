/// An isolated boundary (a GCP project, an Azure subscription, an AWS account, or `local`)
/// as declared in `<dir>/config.yml`.
public struct Enclave: Codable, Sendable, Hashable {
    public var id: String
    public var name: String
    /// Absent means "the server's default cloud".
    public var cloud: CloudTarget?
    /// Absent means "the driver's default region".
    public var region: String?
    public var identity: String?
    public var network: Network?
    public var dns: DNS?
    public var exports: [Export]
    /// Enclave-level imports: visible to every partition of this enclave.
    public var imports: [Import]
    public var partitions: [Partition]
    /// The pool of agents that run this enclave's partitions (`nclav agent --labels pool=<name>`);
    /// nil for any agent.
    public var agentPool: String?

    public init(
        id: String, name: String, cloud: CloudTarget? = nil, region: String? = nil,
        identity: String? = nil, network: Network? = nil, dns: DNS? = nil,
        exports: [Export] = [], imports: [Import] = [], partitions: [Partition] = []
    ) {
        self.id = id
        self.name = name
        self.cloud = cloud
        self.region = region
        self.identity = identity
        self.network = network
        self.dns = dns
        self.exports = exports
        self.imports = imports
        self.partitions = partitions
    }

    enum CodingKeys: String, CodingKey {
        case id, name, cloud, region, identity, network, dns, exports, imports, partitions
        case agentPool = "agent_pool"
    }
}

public struct Network: Codable, Sendable, Hashable {
    public var vpcCIDR: String?
    public var subnets: [String]

    public init(vpcCIDR: String? = nil, subnets: [String] = []) {
        self.vpcCIDR = vpcCIDR
        self.subnets = subnets
    }

    enum CodingKeys: String, CodingKey {
        case vpcCIDR = "vpc_cidr", subnets
    }
}

public struct DNS: Codable, Sendable, Hashable {
    public var zone: String?

    public init(zone: String? = nil) { self.zone = zone }
}

/// A named endpoint an enclave offers to others, backed by one of its partitions.
public struct Export: Codable, Sendable, Hashable {
    public var name: String
    public var targetPartition: String
    public var type: ExportType
    public var to: ExportAudience
    public var auth: AuthType

    public init(name: String, targetPartition: String, type: ExportType, to: ExportAudience, auth: AuthType = .none) {
        self.name = name
        self.targetPartition = targetPartition
        self.type = type
        self.to = to
        self.auth = auth
    }

    enum CodingKeys: String, CodingKey {
        case name, targetPartition = "target_partition", type, to, auth
    }
}

/// A reference to an export of enclave `from`, usable in templates as `{{ alias.key }}`.
public struct Import: Codable, Sendable, Hashable {
    public var from: String
    public var exportName: String
    public var alias: String

    public init(from: String, exportName: String, alias: String) {
        self.from = from
        self.exportName = exportName
        self.alias = alias
    }

    enum CodingKeys: String, CodingKey {
        case from, exportName = "export_name", alias
    }
}

/// Where a partition's Terraform code comes from and which binary runs it.
public struct TerraformSettings: Codable, Sendable, Hashable {
    /// Module mode: nclav generates the root module that calls this source.
    public var source: String?
    /// An explicit binary (name on PATH or absolute path).
    public var tool: String?

    public init(source: String? = nil, tool: String? = nil) {
        self.source = source
        self.tool = tool
    }
}

/// A Terraform/OpenTofu root module inside an enclave.
public struct Partition: Codable, Sendable, Hashable {
    public var id: String
    public var name: String
    public var produces: ExportType?
    public var backend: IacBackend
    public var terraform: TerraformSettings
    /// Variable name → value template. Renderers sort by key, so order never matters.
    public var inputs: [String: String]
    public var declaredOutputs: [String]
    /// Partition-level imports: visible to this partition only.
    public var imports: [Import]

    public init(
        id: String, name: String, produces: ExportType? = nil, backend: IacBackend = .terraform,
        terraform: TerraformSettings = TerraformSettings(), inputs: [String: String] = [:],
        declaredOutputs: [String] = [], imports: [Import] = []
    ) {
        self.id = id
        self.name = name
        self.produces = produces
        self.backend = backend
        self.terraform = terraform
        self.inputs = inputs
        self.declaredOutputs = declaredOutputs
        self.imports = imports
    }

    enum CodingKeys: String, CodingKey {
        case id, name, produces, backend, terraform, inputs, declaredOutputs = "declared_outputs", imports
    }
}
