import Foundation
import NclavCore
import NclavDrivers

/// The `--aws-*` settings of `nclav serve`.
public struct AWSDriverConfiguration: Sendable, Equatable {
    /// The OU new enclave accounts are moved into (`ou-xxxx-yyyyyyyy`).
    public var orgUnitID: String
    /// Accounts are registered as `<account name>@<emailDomain>`.
    public var emailDomain: String
    public var defaultRegion: String
    public var accountPrefix: String?
    /// The role Organizations creates in each new account, assumed to work inside it.
    public var crossAccountRole: String
    /// A role to assume (with the chain's credentials) for the management calls.
    public var managementRoleARN: String?
    /// Policies attached to each partition's IAM role. The account is the isolation boundary.
    public var partitionPolicyARNs: [String]
    public var backoff: CappedBackoff

    public init(
        orgUnitID: String, emailDomain: String, defaultRegion: String = "us-east-1", accountPrefix: String? = nil,
        crossAccountRole: String = "OrganizationAccountAccessRole", managementRoleARN: String? = nil,
        partitionPolicyARNs: [String] = ["arn:aws:iam::aws:policy/AdministratorAccess"], backoff: CappedBackoff = CappedBackoff()
    ) {
        self.orgUnitID = orgUnitID
        self.emailDomain = emailDomain
        self.defaultRegion = defaultRegion
        self.accountPrefix = accountPrefix
        self.crossAccountRole = crossAccountRole
        self.managementRoleARN = managementRoleARN
        self.partitionPolicyARNs = partitionPolicyARNs
        self.backoff = backoff
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.orgUnitID == b.orgUnitID && a.emailDomain == b.emailDomain && a.defaultRegion == b.defaultRegion && a.accountPrefix == b.accountPrefix
            && a.crossAccountRole == b.crossAccountRole && a.managementRoleARN == b.managementRoleARN
            && a.partitionPolicyARNs == b.partitionPolicyARNs
    }

    /// Problems with the settings, each saying what is accepted.
    public func problems() -> [String] {
        var out: [String] = []
        if orgUnitID.range(of: #"^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$"#, options: .regularExpression) == nil {
            out.append("--aws-org-unit-id `\(orgUnitID)` is not an OU id; expected ou-<root>-<suffix>, e.g. ou-ab12-cd345678")
        }
        if emailDomain.range(of: #"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"#, options: .regularExpression) == nil {
            out.append("--aws-email-domain `\(emailDomain)` is not a domain; expected e.g. example.com (accounts get <name>@<domain>)")
        }
        if defaultRegion.range(of: #"^[a-z]{2}(-[a-z]+)+-\d$"#, options: .regularExpression) == nil {
            out.append("--aws-default-region `\(defaultRegion)` is not an AWS region; expected e.g. us-east-1")
        }
        if let prefix = accountPrefix, prefix.range(of: #"^[a-z0-9][a-z0-9-]{0,20}$"#, options: .regularExpression) == nil {
            out.append("--aws-account-prefix `\(prefix)` must be 1-21 lowercase letters, digits or hyphens")
        }
        if crossAccountRole.range(of: #"^[\w+=,.@-]{1,64}$"#, options: .regularExpression) == nil {
            out.append("--aws-cross-account-role `\(crossAccountRole)` is not an IAM role name")
        }
        if let arn = managementRoleARN, arn.range(of: #"^arn:aws[a-z-]*:iam::\d{12}:role/.+$"#, options: .regularExpression) == nil {
            out.append("--aws-role-arn `\(arn)` is not an IAM role ARN; expected arn:aws:iam::<12 digits>:role/<name>")
        }
        return out
    }
}

/// Temporary credentials per assumed role, refreshed five minutes before they expire.
actor AssumedRoleCache {
    private var entries: [String: AWSCredentials] = [:]

    func credentials(for key: String, now: Date = Date(), mint: @Sendable () async throws -> AWSCredentials) async throws -> AWSCredentials {
        if let cached = entries[key], cached.expiration.map({ $0.timeIntervalSince(now) > 300 }) ?? false { return cached }
        let fresh = try await mint()
        entries[key] = fresh
        return fresh
    }
}

/// AWS enclaves: one account per enclave, created through Organizations and moved into the
/// OU; inside it a VPC, subnets and a private Route 53 zone when declared, and an IAM role per
/// partition that terraform acts as (short-lived credentials, minted per run).
public struct AWSDriver: Driver {
    public let cloud = CloudTarget.aws
    public let configuration: AWSDriverConfiguration
    let chain: AWSCredentialChain
    let endpoints: AWSEndpointResolver
    let roles = AssumedRoleCache()

    public static let managedTag = "nclav-managed"
    public static let enclaveTag = "nclav-enclave"
    public static let partitionTag = "nclav-partition"

    public init(
        configuration: AWSDriverConfiguration, chain: AWSCredentialChain = .standard(), endpoints: AWSEndpointResolver = AWSEndpointResolver()
    ) {
        self.configuration = configuration
        self.chain = chain
        self.endpoints = endpoints
    }

    // MARK: Identities

    /// Credentials for Organizations calls: the chain's, or the management role assumed with them.
    func managementClient() -> AWSClient {
        let chain = self.chain
        let base = AWSClient(region: configuration.defaultRegion, endpoints: endpoints, backoff: configuration.backoff) {
            try await chain.credentials()
        }
        guard let roleARN = configuration.managementRoleARN else { return base }
        return assumed(roleARN, by: base, region: configuration.defaultRegion)
    }

    /// A client acting as `roleARN`, assumed by `source`'s identity. A failure to assume
    /// surfaces from the first call, where AWS's message explains it.
    func assumed(_ roleARN: String, by source: AWSClient, region: String) -> AWSClient {
        let roles = self.roles
        return AWSClient(region: region, endpoints: endpoints, backoff: configuration.backoff) {
            do {
                return try await roles.credentials(for: roleARN) {
                    try await STS(client: source).assumeRole(roleARN, sessionName: "nclav").credentials
                }
            } catch {
                throw AWSCredentialError.sourceFailed(source: "sts:AssumeRole \(roleARN)", reason: "\(error)")
            }
        }
    }

    func accountName(_ enclave: Enclave) -> String { [configuration.accountPrefix, enclave.id].compactMap { $0 }.joined(separator: "-") }
    func email(_ enclave: Enclave) -> String { "\(accountName(enclave))@\(configuration.emailDomain)" }
    func region(_ enclave: Enclave) -> String { enclave.region.flatMap { $0.isEmpty ? nil : $0 } ?? configuration.defaultRegion }
    func adminRoleARN(account: String) -> String { "arn:aws:iam::\(account):role/\(configuration.crossAccountRole)" }
    static func partitionRoleName(_ partition: String) -> String { String("nclav-\(partition)".prefix(64)) }
    static func partitionRoleARN(account: String, partition: String) -> String { "arn:aws:iam::\(account):role/\(partitionRoleName(partition))" }

    /// Acting inside the enclave's account, as the cross-account role.
    func accountClient(_ context: EnclaveContext, enclave: Enclave) throws -> AWSClient {
        guard let account = context.values["account_id"], !account.isEmpty else { throw AWSDriverError.noAccount(enclave: enclave.id) }
        return assumed(adminRoleARN(account: account), by: managementClient(), region: context.values["region"] ?? region(enclave))
    }

    func tags(_ enclave: Enclave, partition: String? = nil) -> [String: String] {
        var tags = [Self.managedTag: "true", Self.enclaveTag: enclave.id]
        if let partition { tags[Self.partitionTag] = partition }
        return tags
    }

    // MARK: Enclaves

    public func provisionEnclave(_ enclave: Enclave, previous: EnclaveContext?) async throws -> EnclaveContext {
        if enclave.dns?.zone != nil, enclave.network?.vpcCIDR == nil { throw AWSDriverError.zoneNeedsVPC(enclave: enclave.id) }
        let management = managementClient()
        let organizations = Organizations(client: management)
        let (account, created) = try await ensureAccount(enclave, previous: previous, organizations: organizations)
        try await ensureInOU(account, organizations: organizations)

        let region = region(enclave)
        var values = [
            "account_id": account, "account_name": accountName(enclave), "account_email": email(enclave), "region": region,
            "project_id": account, "admin_role_arn": adminRoleARN(account: account),
        ]
        let inside = assumed(adminRoleARN(account: account), by: management, region: region)
        // A new account's cross-account role takes a little while to become assumable; an
        // AccessDenied that outlasts IAM propagation is a real one and is reported.
        try await configuration.backoff.untilPropagated({ $0.awsCode == "AccessDenied" || "\($0)".contains("AccessDenied") }) {
            _ = try await STS(client: inside).callerAccount()
        }
        if created {
            // A new account answers OptInRequired / PendingVerification for minutes (AWS
            // allows up to hours) while its services activate; wait for EC2 in its region
            // before anything is made there.
            try await configuration.backoff.untilPropagated(
                { ["OptInRequired", "PendingVerification"].contains($0.awsCode ?? "") }, for: configuration.backoff.deadline
            ) {
                try await EC2(client: inside).describeAvailabilityZones()
            }
        }
        if let network = enclave.network, let cidr = network.vpcCIDR {
            let ec2 = EC2(client: inside)
            let vpc: String
            if let found = try await ec2.findVPC(cidr: cidr, tags: tags(enclave)) {
                vpc = found
            } else {
                vpc = try await ec2.createVPC(cidr: cidr, tags: tags(enclave))
            }
            var subnets: [String] = []
            for subnet in network.subnets {
                if let found = try await ec2.findSubnet(vpcID: vpc, cidr: subnet) {
                    subnets.append(found)
                } else {
                    subnets.append(try await ec2.createSubnet(vpcID: vpc, cidr: subnet, tags: tags(enclave)))
                }
            }
            values["vpc_id"] = vpc
            values["subnet_ids"] = subnets.joined(separator: ",")
            if let zone = enclave.dns?.zone {
                let route53 = Route53(client: inside)
                if let found = try await route53.findPrivateZone(name: zone) {
                    values["dns_zone_id"] = found
                } else {
                    values["dns_zone_id"] = try await route53.createPrivateZone(
                        name: zone, vpcID: vpc, region: region, callerReference: "nclav-\(enclave.id)-\(zone)")
                }
            }
        }
        return EnclaveContext(values: values)
    }

    /// The enclave's account: the one already recorded, else the one registered with its email
    /// (an apply that stopped after CreateAccount), else a new one (`created`).
    func ensureAccount(_ enclave: Enclave, previous: EnclaveContext?, organizations: Organizations) async throws -> (id: String, created: Bool) {
        if let recorded = previous?.values["account_id"], !recorded.isEmpty {
            let account = try await organizations.describeAccount(recorded)
            guard account.status == "ACTIVE" else {
                throw AWSDriverError.accountNotActive(enclave: enclave.id, account: recorded, status: account.status)
            }
            return (recorded, false)
        }
        let email = email(enclave)
        if let existing = try await organizations.listAccounts().first(where: { $0.email.lowercased() == email.lowercased() }) {
            guard existing.status == "ACTIVE" else {
                throw AWSDriverError.accountNotActive(enclave: enclave.id, account: existing.id, status: existing.status)
            }
            return (existing.id, false)
        }
        // An organization created moments ago is still finalizing (the provider retries this
        // for 4 minutes: organizationFinalizationTimeout).
        let request = try await configuration.backoff.untilPropagated({ $0.awsCode == "FinalizingOrganizationException" }) {
            try await organizations.createAccount(email: email, name: accountName(enclave), tags: tags(enclave))
        }
        let finished = try await configuration.backoff.poll("creating AWS account \(accountName(enclave))") {
            () async throws -> CreateAccountStatus? in
            do {
                let status = try await organizations.describeCreateAccountStatus(request.requestID)
                return status.state == "IN_PROGRESS" ? nil : status
            } catch  where error.awsCode == "CreateAccountStatusNotFoundException" {
                return nil  // the request is not visible yet (the provider treats it as pending)
            }
        }
        if finished.state == "SUCCEEDED", let id = finished.accountID { return (id, true) }
        if finished.failureReason == "EMAIL_ALREADY_EXISTS",
            let existing = try await organizations.listAccounts().first(where: { $0.email.lowercased() == email.lowercased() })
        {
            return (existing.id, false)
        }
        throw AWSDriverError.accountCreationFailed(enclave: enclave.id, reason: finished.failureReason ?? finished.state)
    }

    func ensureInOU(_ account: String, organizations: Organizations) async throws {
        guard let parent = try await organizations.parent(of: account) else { return }
        if parent == configuration.orgUnitID { return }
        do { try await organizations.moveAccount(account, from: parent, to: configuration.orgUnitID) } catch {
            // Another apply moved it meanwhile.
            guard error.code == "DuplicateAccountException" else { throw error }
        }
    }

    public func teardownEnclave(_ enclave: Enclave, context: EnclaveContext) async throws {
        guard let account = context.values["account_id"], !account.isEmpty else { return }
        let organizations = Organizations(client: managementClient())
        if let status = try? await organizations.describeAccount(account).status, status != "ACTIVE" { return }
        let inside = try accountClient(context, enclave: enclave)
        if let zone = context.values["dns_zone_id"], !zone.isEmpty { try await Route53(client: inside).deleteZone(zone) }
        if let vpc = context.values["vpc_id"], !vpc.isEmpty {
            let ec2 = EC2(client: inside)
            for subnet in try await ec2.subnets(ofVPC: vpc) { try await ec2.deleteSubnet(subnet) }
            try await ec2.deleteVPC(vpc)
        }
        do { try await organizations.closeAccount(account) } catch {
            guard error.code == "AccountAlreadyClosedException" || error.code == "AccountNotFoundException" else { throw error }
        }
    }

    // MARK: Partitions

    public func contextTokens(enclave: Enclave, context: EnclaveContext, partition: Partition) -> [String: String] {
        let account = context.values["account_id"] ?? ""
        return [
            "nclav_enclave_id": enclave.id, "nclav_partition_id": partition.id, "nclav_project_id": account, "nclav_account_id": account,
            "nclav_region": context.values["region"] ?? region(enclave),
            "nclav_role_arn": account.isEmpty ? "" : Self.partitionRoleARN(account: account, partition: partition.id),
            "nclav_vpc_id": context.values["vpc_id"] ?? "", "nclav_subnet_ids": context.values["subnet_ids"] ?? "",
            "nclav_dns_zone_id": context.values["dns_zone_id"] ?? "",
        ]
    }

    public func provisionPartition(enclave: Enclave, context: EnclaveContext, partition: Partition) async throws -> PartitionIdentity {
        let iam = IAM(client: try accountClient(context, enclave: enclave))
        let account = context.values["account_id"] ?? ""
        let name = Self.partitionRoleName(partition.id)
        // Anyone in the enclave's own account allowed to assume roles (the cross-account role
        // nclav works as) may act as the partition; nothing outside the account may.
        let trust =
            #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::\#(account):root"},"Action":"sts:AssumeRole"}]}"#
        let arn: String
        var created = false
        if let existing = try await iam.roleARN(name) {
            arn = existing
        } else {
            arn = try await iam.createRole(name, trustPolicy: trust, tags: tags(enclave, partition: partition.id))
            created = true
        }
        let attached = Set(try await iam.attachedPolicies(name))
        for policy in configuration.partitionPolicyARNs where !attached.contains(policy) { try await iam.attachPolicy(policy, to: name) }
        if created {
            // A role is not assumable for a while after CreateRole (IAM propagation; the
            // provider waits up to 2 minutes): wait here, so terraform never starts with a role
            // it cannot become.
            let roleARN = arn.isEmpty ? Self.partitionRoleARN(account: account, partition: partition.id) : arn
            let inside = try accountClient(context, enclave: enclave)
            try await configuration.backoff.untilPropagated({ $0.awsCode == "AccessDenied" }) {
                _ = try await STS(client: inside).assumeRole(roleARN, sessionName: "nclav-check", seconds: 900)
            }
        }
        return [
            "role_name": name, "role_arn": arn.isEmpty ? Self.partitionRoleARN(account: account, partition: partition.id) : arn,
            "account_id": account,
        ]
    }

    public func teardownPartition(enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity) async throws {
        guard let name = identity["role_name"] else { return }
        try await unwire(identity, context: context, enclave: enclave)
        let iam = IAM(client: try accountClient(context, enclave: enclave))
        guard try await iam.roleARN(name) != nil else { return }
        for policy in try await iam.attachedPolicies(name) { try await iam.detachPolicy(policy, from: name) }
        // A role with inline policies cannot be deleted (DeleteConflict).
        for policy in try await iam.rolePolicies(name) { try await iam.deleteRolePolicy(role: name, name: policy) }
        try await iam.deleteRole(name)
    }

    public func terraformEnvironment(
        enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity
    ) async throws -> TerraformEnvironment {
        let account = context.values["account_id"] ?? ""
        let roleARN = identity["role_arn"] ?? Self.partitionRoleARN(account: account, partition: partition.id)
        let region = context.values["region"] ?? region(enclave)
        let inside = try accountClient(context, enclave: enclave)
        // Role chaining caps these at one hour, and terraform cannot renew them: the run's log
        // warns before they expire.
        let credentials = try await configuration.backoff.untilPropagated({ $0.awsCode == "AccessDenied" }) {
            try await STS(client: inside).assumeRole(roleARN, sessionName: "nclav-\(partition.id)".prefixString(64)).credentials
        }
        var variables = endpoints.overrides
        variables["AWS_ACCESS_KEY_ID"] = credentials.accessKeyID
        variables["AWS_SECRET_ACCESS_KEY"] = credentials.secretAccessKey
        variables["AWS_SESSION_TOKEN"] = credentials.sessionToken ?? ""
        variables["AWS_REGION"] = region
        variables["AWS_DEFAULT_REGION"] = region
        // Nothing of the server's own AWS identity (keys, profile, container credentials)
        // reaches the partition: every AWS_ variable it sees is set here.
        variables["AWS_EC2_METADATA_DISABLED"] = "true"
        return TerraformEnvironment(
            variables: variables, secretNames: ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"], clearedPrefixes: ["AWS_"],
            credentialsExpire: credentials.expiration ?? Date().addingTimeInterval(3600))
    }

    // MARK: Orphans

    public func orphans(enclave: EnclaveState, knownPartitions: Set<String>) async throws -> [Orphan] {
        let context = EnclaveContext(values: enclave.context)
        guard context.values["account_id"] != nil else { return [] }
        let tagging = ResourceTagging(client: try accountClient(context, enclave: enclave.desired))
        let resources = try await tagging.resources(tagged: [Self.managedTag: "true", Self.enclaveTag: enclave.id])
        return resources.compactMap { resource in
            guard let partition = resource.tags[Self.partitionTag], !knownPartitions.contains(partition) else { return nil }
            return Orphan(enclaveID: enclave.id, cloud: "aws", resource: resource.arn, partition: partition, tags: resource.tags)
        }.sorted { $0.resource < $1.resource }
    }
}

public enum AWSDriverError: Error, Sendable, CustomStringConvertible {
    case noAccount(enclave: String)
    case accountNotActive(enclave: String, account: String, status: String)
    case accountCreationFailed(enclave: String, reason: String)
    case zoneNeedsVPC(enclave: String)

    public var description: String {
        switch self {
        case .noAccount(let enclave):
            return "enclave \(enclave) has no AWS account recorded yet; apply it first"
        case .accountNotActive(let enclave, let account, let status):
            return
                "the AWS account \(account) of enclave \(enclave) is \(status); closed accounts stay for 90 days — reopen it through AWS support, or give the enclave another id"
        case .accountCreationFailed(let enclave, let reason):
            let hint: String
            switch reason {
            case "ACCOUNT_LIMIT_EXCEEDED": hint = "the organization has reached its account quota; request an increase in Service Quotas"
            case "EMAIL_ALREADY_EXISTS": hint = "another AWS account already uses this email; set --aws-account-prefix or --aws-email-domain"
            case "INVALID_EMAIL", "INVALID_ADDRESS": hint = "check --aws-email-domain"
            case "CONCURRENT_ACCOUNT_MODIFICATION": hint = "another change to the organization was running; apply again"
            default: hint = "see the Organizations console for the request"
            }
            return "creating the AWS account for enclave \(enclave) failed: \(reason); \(hint)"
        case .zoneNeedsVPC(let enclave):
            return
                "enclave \(enclave) declares dns.zone but no network.vpc_cidr; an AWS private hosted zone is attached to the enclave's VPC, so declare network.vpc_cidr too"
        }
    }
}

extension String {
    func prefixString(_ count: Int) -> String { String(prefix(count)) }
}
