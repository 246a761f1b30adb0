import Crypto
import Foundation
import NclavCore
import NclavDrivers

/// The `--gcp-*` settings of `nclav serve`.
public struct GCPDriverConfiguration: Sendable {
    /// `folders/123` or `organizations/456`.
    public var parent: String
    /// `billingAccounts/XXXXXX-XXXXXX-XXXXXX`.
    public var billingAccount: String
    public var projectPrefix: String?
    public var defaultRegion: String
    /// Project roles given to each partition's service account. The project is the boundary.
    public var partitionRoles: [String]
    public var backoff: CappedBackoff

    public init(
        parent: String, billingAccount: String, projectPrefix: String? = nil, defaultRegion: String = "us-central1",
        partitionRoles: [String] = ["roles/owner"], backoff: CappedBackoff = CappedBackoff()
    ) {
        self.parent = parent
        self.billingAccount = billingAccount
        self.projectPrefix = projectPrefix
        self.defaultRegion = defaultRegion
        self.partitionRoles = partitionRoles
        self.backoff = backoff
    }

    public func problems() -> [String] {
        var out: [String] = []
        if parent.range(of: #"^(folders|organizations)/\d+$"#, options: .regularExpression) == nil {
            out.append("--gcp-parent `\(parent)` is not a resource parent; expected folders/<number> or organizations/<number>")
        }
        if billingAccount.range(of: #"^billingAccounts/[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$"#, options: .regularExpression) == nil {
            out.append("--gcp-billing-account `\(billingAccount)` is not a billing account; expected billingAccounts/XXXXXX-XXXXXX-XXXXXX (hex)")
        }
        if let prefix = projectPrefix, prefix.range(of: #"^[a-z][a-z0-9-]{0,19}$"#, options: .regularExpression) == nil {
            out.append("--gcp-project-prefix `\(prefix)` must start with a letter and hold at most 20 lowercase letters, digits or hyphens")
        }
        if defaultRegion.range(of: #"^[a-z]+-[a-z]+\d+$"#, options: .regularExpression) == nil {
            out.append("--gcp-default-region `\(defaultRegion)` is not a GCP region; expected e.g. us-central1")
        }
        return out
    }
}

/// GCP enclaves: one project per enclave under the parent, labelled, linked to billing, with
/// the APIs nclav and terraform need, an enclave service account, a VPC with subnets and a
/// private DNS zone when declared, and a service account per partition that terraform acts as
/// (an access token minted for it per run).
public struct GCPDriver: Driver {
    public let cloud = CloudTarget.gcp
    public let configuration: GCPDriverConfiguration
    let client: GCPClient
    let chain: GCPCredentialChain

    public static let networkName = "nclav-vpc"
    public static let zoneName = "nclav-zone"
    public static let enclaveAccount = "nclav-enclave"

    public init(configuration: GCPDriverConfiguration, chain: GCPCredentialChain, endpoints: GCPEndpoints) {
        self.configuration = configuration
        self.chain = chain
        self.client = GCPClient(chain: chain, endpoints: endpoints, backoff: configuration.backoff)
    }

    // MARK: Names

    /// `{prefix}-{enclave}`, sanitised: 6–30 characters of a-z 0-9 -, starting with a letter,
    /// not ending with `-`; too long or too short gets a stable hash suffix.
    public static func projectID(prefix: String?, enclave: String) -> String {
        let raw = [prefix, enclave].compactMap { $0 }.joined(separator: "-").lowercased()
        var id = String(raw.map { ("a"..."z").contains($0) || ("0"..."9").contains($0) ? $0 : "-" })
        while id.contains("--") { id = id.replacingOccurrences(of: "--", with: "-") }
        if !(id.first.map { ("a"..."z").contains($0) } ?? false) { id = "p-" + id }
        let hash = shortHash(raw)
        if id.count > 30 { id = String(id.prefix(25)).trimmingCharacters(in: CharacterSet(charactersIn: "-")) + "-" + hash }
        if id.count < 6 { id = id.trimmingCharacters(in: CharacterSet(charactersIn: "-")) + "-" + hash }
        return id.trimmingCharacters(in: CharacterSet(charactersIn: "-"))
    }

    /// A service-account id (6–30 chars) for a partition: `nclav-<partition>`.
    public static func accountID(partition: String) -> String {
        let id = "nclav-\(partition)"
        if id.count <= 30 { return id.count >= 6 ? id : id + "-" + shortHash(partition) }
        return String(id.prefix(25)).trimmingCharacters(in: CharacterSet(charactersIn: "-")) + "-" + shortHash(partition)
    }

    static func shortHash(_ text: String) -> String {
        SHA256.hash(data: Data(text.utf8)).prefix(2).map { String(format: "%02x", $0) }.joined()
    }

    static func email(account: String, project: String) -> String { "\(account)@\(project).iam.gserviceaccount.com" }

    func region(_ enclave: Enclave) -> String { enclave.region.flatMap { $0.isEmpty ? nil : $0 } ?? configuration.defaultRegion }

    func labels(_ enclave: Enclave) -> [String: String] { ["nclav-managed": "true", "nclav-enclave": enclave.id] }

    // MARK: Enclaves

    public func provisionEnclave(_ enclave: Enclave, previous: EnclaveContext?) async throws -> EnclaveContext {
        let projectID = previous?.values["project_id"] ?? Self.projectID(prefix: configuration.projectPrefix, enclave: enclave.id)
        let project = try await ensureProject(projectID, enclave: enclave)
        try await ensureBilling(projectID)
        var services = [
            "iam.googleapis.com", "iamcredentials.googleapis.com", "cloudresourcemanager.googleapis.com", "serviceusage.googleapis.com",
            "cloudasset.googleapis.com",
        ]
        if enclave.network != nil { services.append("compute.googleapis.com") }
        if enclave.dns?.zone != nil { services.append("dns.googleapis.com") }
        try await enableServices(services, in: projectID)

        let enclaveAccount = try await ensureServiceAccount(Self.enclaveAccount, project: projectID, displayName: "nclav enclave \(enclave.id)")
        // nclav mints partition tokens: its own identity needs Token Creator in the project.
        let me = try await chain.member()
        try await editProjectPolicy(projectID) { policy in Self.add(["roles/iam.serviceAccountTokenCreator"], member: me, to: &policy) }

        let region = region(enclave)
        var values = ["project_id": projectID, "project_number": project, "region": region, "service_account": enclaveAccount]
        if let network = enclave.network {
            let networkPath = "projects/\(projectID)/global/networks/\(Self.networkName)"
            try await insertCompute(
                "/compute/v1/projects/\(projectID)/global/networks",
                body: ["name": Self.networkName, "autoCreateSubnetworks": false, "description": "nclav enclave \(enclave.id)"],
                what: "creating network \(Self.networkName) in \(projectID)")
            var subnets: [String] = []
            for cidr in network.subnets {
                let name = "nclav-" + cidr.replacingOccurrences(of: ".", with: "-").replacingOccurrences(of: "/", with: "-")
                try await insertCompute(
                    "/compute/v1/projects/\(projectID)/regions/\(region)/subnetworks",
                    body: ["name": name, "ipCidrRange": cidr, "network": networkPath, "privateIpGoogleAccess": true],
                    what: "creating subnetwork \(name) in \(projectID)")
                subnets.append("projects/\(projectID)/regions/\(region)/subnetworks/\(name)")
            }
            values["vpc_id"] = networkPath
            values["subnet_ids"] = subnets.joined(separator: ",")
            if let zone = enclave.dns?.zone {
                let body: [String: Any] = [
                    "name": Self.zoneName, "dnsName": zone.hasSuffix(".") ? zone : zone + ".", "description": "nclav enclave \(enclave.id)",
                    "visibility": "private", "labels": labels(enclave),
                    "privateVisibilityConfig": ["networks": [["networkUrl": "https://www.googleapis.com/compute/v1/" + networkPath]]],
                ]
                try await configuration.backoff.untilPropagated({ $0.gcpAPI?.isServiceJustEnabled == true }) {
                    do { try await client.call("POST", "dns", "/dns/v1/projects/\(projectID)/managedZones", body: body) } catch {
                        guard error.gcpAPI?.isAlreadyExists == true else { throw error }
                    }
                }
                values["dns_zone_id"] = Self.zoneName
            }
        } else if enclave.dns?.zone != nil {
            throw GCPDriverError.zoneNeedsNetwork(enclave: enclave.id)
        }
        return EnclaveContext(values: values)
    }

    /// The project, created when missing; returns its number. A project with this id that is
    /// not this enclave's (labels differ) is refused rather than taken over.
    func ensureProject(_ projectID: String, enclave: Enclave) async throws -> String {
        do {
            let project = try await client.call("GET", "cloudresourcemanager", "/v3/projects/\(projectID)")
            return try check(project, projectID: projectID, enclave: enclave)
        } catch let error as GCPCallError where error.api.map({ $0.code == 403 || $0.isNotFound }) ?? false {
            // 403 is what GCP answers for a project that does not exist (or is not visible).
        }
        let body: [String: Any] = [
            "projectId": projectID, "displayName": String("nclav \(enclave.id)".prefix(30)), "parent": configuration.parent,
            "labels": labels(enclave),
        ]
        let operation: [String: Any]
        do { operation = try await client.call("POST", "cloudresourcemanager", "/v3/projects", body: body) } catch {
            guard error.api?.isAlreadyExists == true else { throw error }
            // Ours when an earlier attempt of this very create went through (its answer lost);
            // anyone else's when it is not labelled for this enclave or not visible at all.
            do {
                return try check(
                    try await client.call("GET", "cloudresourcemanager", "/v3/projects/\(projectID)"), projectID: projectID, enclave: enclave)
            } catch GCPDriverError.projectNotOurs(_, _) {
                throw GCPDriverError.projectIDTaken(enclave: enclave.id, projectID: projectID)
            } catch let error as GCPCallError where error.api?.code == 403 || error.api?.isNotFound == true {
                throw GCPDriverError.projectIDTaken(enclave: enclave.id, projectID: projectID)
            }
        }
        let project = try await client.wait(
            operation: operation, service: "cloudresourcemanager", version: "v3", what: "creating project \(projectID)")
        if project["name"] == nil {
            return try check(
                try await client.call("GET", "cloudresourcemanager", "/v3/projects/\(projectID)"), projectID: projectID, enclave: enclave)
        }
        return try check(project, projectID: projectID, enclave: enclave)
    }

    func check(_ project: [String: Any], projectID: String, enclave: Enclave) throws -> String {
        let labels = project["labels"] as? [String: String] ?? [:]
        guard labels["nclav-enclave"] == enclave.id else { throw GCPDriverError.projectNotOurs(enclave: enclave.id, projectID: projectID) }
        if let state = project["state"] as? String, state != "ACTIVE" {
            throw GCPDriverError.projectNotActive(enclave: enclave.id, projectID: projectID, state: state)
        }
        return (project["name"] as? String ?? "").replacingOccurrences(of: "projects/", with: "")
    }

    func ensureBilling(_ projectID: String) async throws {
        let info = try await client.call("GET", "cloudbilling", "/v1/projects/\(projectID)/billingInfo")
        if info["billingAccountName"] as? String == configuration.billingAccount, info["billingEnabled"] as? Bool == true { return }
        try await client.call(
            "PUT", "cloudbilling", "/v1/projects/\(projectID)/billingInfo", body: ["billingAccountName": configuration.billingAccount])
        // As the provider's updateProjectBillingAccount: read the link back before relying on it.
        let account = configuration.billingAccount
        try await configuration.backoff.untilConsistent("linking \(projectID) to \(account)", times: 1) {
            let info = try await client.call("GET", "cloudbilling", "/v1/projects/\(projectID)/billingInfo")
            return info["billingAccountName"] as? String == account && info["billingEnabled"] as? Bool == true
        }
    }

    /// Enables `services` in the project and waits until they are usable: the operation, then
    /// the list of enabled services showing every one (the provider's
    /// `waitForServiceUsageEnabledServices`). Enabling billable APIs right after the billing
    /// link is refused for a while ("Precondition check failed"), and retried.
    func enableServices(_ services: [String], in projectID: String) async throws {
        let backoff = configuration.backoff
        try await backoff.untilPropagated({ $0.gcpAPI?.isBillingPropagating == true }) {
            let enable = try await client.call(
                "POST", "serviceusage", "/v1/projects/\(projectID)/services:batchEnable", body: ["serviceIds": services])
            _ = try await client.wait(operation: enable, service: "serviceusage", version: "v1", what: "enabling APIs in \(projectID)")
        }
        try await backoff.untilConsistent("APIs becoming enabled in \(projectID)", times: 1) {
            var enabled: Set<String> = []
            var pageToken = ""
            repeat {
                var query = [("filter", "state:ENABLED"), ("pageSize", "200")]
                if !pageToken.isEmpty { query.append(("pageToken", pageToken)) }
                let page = try await client.call("GET", "serviceusage", "/v1/projects/\(projectID)/services", query: query)
                for service in page["services"] as? [[String: Any]] ?? [] {
                    if let name = (service["config"] as? [String: Any])?["name"] as? String { enabled.insert(name) }
                }
                pageToken = page["nextPageToken"] as? String ?? ""
            } while !pageToken.isEmpty
            return enabled.isSuperset(of: services)
        }
    }

    /// The service account, created when missing. A new one is read back until IAM answers
    /// for it three times in a row, as the provider's `resourceGoogleServiceAccountCreate` does
    /// (403 and 404 meaning "not yet"), so the policy edits that follow can name it.
    func ensureServiceAccount(_ accountID: String, project: String, displayName: String) async throws -> String {
        let email: String
        do {
            let created = try await configuration.backoff.untilPropagated({ $0.gcpAPI?.isServiceJustEnabled == true }) {
                try await client.call(
                    "POST", "iam", "/v1/projects/\(project)/serviceAccounts",
                    body: ["accountId": accountID, "serviceAccount": ["displayName": displayName, "description": "created by nclav"]])
            }
            email = created["email"] as? String ?? Self.email(account: accountID, project: project)
        } catch {
            guard error.gcpAPI?.isAlreadyExists == true else { throw error }
            return Self.email(account: accountID, project: project)
        }
        try await configuration.backoff.untilConsistent("service account \(email) becoming visible to IAM") {
            do {
                try await client.call("GET", "iam", "/v1/projects/\(project)/serviceAccounts/\(email)")
                return true
            } catch let error where error.gcpAPI.map({ $0.code == 403 || $0.isNotFound }) == true {
                return false
            }
        }
        return email
    }

    /// Inserts a Compute resource (already there is fine); sent again while Compute was enabled
    /// moments ago or a network it needs is not ready (`ComputeOperationWaiter.IsRetryable`).
    func insertCompute(_ path: String, body: [String: Any], what: String) async throws {
        try await configuration.backoff.untilPropagated({ error in
            if case .resourceNotReady = error as? GCPCallError { return true }
            return error.gcpAPI?.isServiceJustEnabled == true
        }) {
            let operation: [String: Any]
            do { operation = try await client.call("POST", "compute", path, body: body) } catch {
                if error.gcpAPI?.isAlreadyExists == true { return }
                throw error
            }
            try await client.waitCompute(operation: operation, what: what)
        }
    }

    /// Read-modify-write of the project's IAM policy, as the provider's
    /// `iamPolicyReadModifyWrite`: the whole cycle again when someone else wrote between (409
    /// ABORTED on an etag mismatch) or when a member is a service account IAM does not know yet
    /// (400 "does not exist"), with backoff; then read back until the change shows.
    func editProjectPolicy(_ projectID: String, _ change: @escaping (inout [String: Any]) -> Bool) async throws {
        let read = {
            try await client.call(
                "POST", "cloudresourcemanager", "/v3/projects/\(projectID):getIamPolicy", body: ["options": ["requestedPolicyVersion": 3]])
        }
        try await configuration.backoff.untilPropagated({ $0.gcpAPI.map { $0.code == 409 || $0.isAccountPropagating } == true }) {
            var policy = try await read()
            guard change(&policy) else { return }
            try await client.call("POST", "cloudresourcemanager", "/v3/projects/\(projectID):setIamPolicy", body: ["policy": policy])
        }
        try await configuration.backoff.untilConsistent("the IAM policy of \(projectID) showing the change", times: 1) {
            var policy = try await read()
            return !change(&policy)
        }
    }

    /// Adds `member` to each role's binding; false when nothing changed.
    static func add(_ roles: [String], member: String, to policy: inout [String: Any]) -> Bool {
        var bindings = policy["bindings"] as? [[String: Any]] ?? []
        var changed = false
        for role in roles {
            if let index = bindings.firstIndex(where: { $0["role"] as? String == role && $0["condition"] == nil }) {
                var members = bindings[index]["members"] as? [String] ?? []
                if !members.contains(member) {
                    members.append(member)
                    bindings[index]["members"] = members
                    changed = true
                }
            } else {
                bindings.append(["role": role, "members": [member]])
                changed = true
            }
        }
        policy["bindings"] = bindings
        return changed
    }

    /// Removes `member` from every binding, or from `role`'s only; false when it had none.
    static func remove(member: String, role: String? = nil, from policy: inout [String: Any]) -> Bool {
        var changed = false
        let bindings: [[String: Any]] = (policy["bindings"] as? [[String: Any]] ?? []).compactMap { binding in
            if let role, binding["role"] as? String != role { return binding }
            var binding = binding
            var members = binding["members"] as? [String] ?? []
            guard members.contains(member) else { return binding }
            changed = true
            members.removeAll { $0 == member }
            binding["members"] = members
            return members.isEmpty ? nil : binding
        }
        policy["bindings"] = bindings
        return changed
    }

    public func teardownEnclave(_ enclave: Enclave, context: EnclaveContext) async throws {
        guard let projectID = context.values["project_id"], !projectID.isEmpty else { return }
        // Deleting the project deletes what is in it: service accounts, network, zone.
        let operation: [String: Any]
        do { operation = try await client.call("DELETE", "cloudresourcemanager", "/v3/projects/\(projectID)") } catch {
            guard let api = error.api, api.isNotFound || api.code == 403 else { throw error }
            // 403 is also "nclav may not delete projects": only gone when it cannot be read either.
            if try await projectIsGone(projectID) { return }
            throw error
        }
        _ = try await client.wait(operation: operation, service: "cloudresourcemanager", version: "v3", what: "deleting project \(projectID)")
    }

    /// Whether a project is gone or already being deleted (unreadable counts as gone: GCP
    /// answers 403 for a project that does not exist).
    func projectIsGone(_ projectID: String) async throws -> Bool {
        let project: [String: Any]
        do { project = try await client.call("GET", "cloudresourcemanager", "/v3/projects/\(projectID)") } catch {
            if let api = error.api, api.code == 403 || api.isNotFound { return true }
            throw error
        }
        return (project["state"] as? String).map { $0 != "ACTIVE" } ?? false
    }

    // MARK: Partitions

    public func contextTokens(enclave: Enclave, context: EnclaveContext, partition: Partition) -> [String: String] {
        let project = context.values["project_id"] ?? Self.projectID(prefix: configuration.projectPrefix, enclave: enclave.id)
        return [
            "nclav_enclave_id": enclave.id, "nclav_partition_id": partition.id, "nclav_project_id": project,
            "nclav_region": context.values["region"] ?? region(enclave),
            "nclav_service_account": Self.email(account: Self.accountID(partition: partition.id), project: project),
            "nclav_vpc_id": context.values["vpc_id"] ?? "", "nclav_subnet_ids": context.values["subnet_ids"] ?? "",
            "nclav_dns_zone_id": context.values["dns_zone_id"] ?? "",
        ]
    }

    public func provisionPartition(enclave: Enclave, context: EnclaveContext, partition: Partition) async throws -> PartitionIdentity {
        guard let projectID = context.values["project_id"] else { throw GCPDriverError.noProject(enclave: enclave.id) }
        let email = try await ensureServiceAccount(
            Self.accountID(partition: partition.id), project: projectID, displayName: "nclav partition \(partition.id)")
        let roles = configuration.partitionRoles
        try await editProjectPolicy(projectID) { policy in Self.add(roles, member: "serviceAccount:\(email)", to: &policy) }
        return ["service_account": email, "project_id": projectID]
    }

    public func teardownPartition(enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity) async throws {
        guard let email = identity["service_account"], let projectID = identity["project_id"] ?? context.values["project_id"] else { return }
        try await unwire(identity)
        try await editProjectPolicy(projectID) { policy in Self.remove(member: "serviceAccount:\(email)", from: &policy) }
        do { try await client.call("DELETE", "iam", "/v1/projects/\(projectID)/serviceAccounts/\(email)") } catch {
            guard error.api?.isNotFound == true else { throw error }
        }
    }

    public func terraformEnvironment(
        enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity
    ) async throws -> TerraformEnvironment {
        let projectID = context.values["project_id"] ?? ""
        let email = identity["service_account"] ?? Self.email(account: Self.accountID(partition: partition.id), project: projectID)
        // The Token Creator grant and the account itself were made by this apply on a first run:
        // IAM takes minutes to honour them.
        let minted = try await configuration.backoff.untilPropagated({ $0.gcpAPI?.isTokenGrantPropagating == true }) {
            try await client.call(
                "POST", "iamcredentials", "/v1/projects/-/serviceAccounts/\(email):generateAccessToken",
                body: ["scope": [cloudPlatformScope], "lifetime": "3600s"])
        }
        guard let token = minted["accessToken"] as? String else { throw GCPCallError.unreadable(call: "generateAccessToken for \(email)") }
        let region = context.values["region"] ?? region(enclave)
        return TerraformEnvironment(
            variables: [
                "GOOGLE_OAUTH_ACCESS_TOKEN": token, "GOOGLE_PROJECT": projectID, "GOOGLE_CLOUD_PROJECT": projectID, "GOOGLE_REGION": region,
                "CLOUDSDK_CORE_PROJECT": projectID, "CLOUDSDK_AUTH_ACCESS_TOKEN": token,
            ],
            secretNames: ["GOOGLE_OAUTH_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN"], clearedPrefixes: ["GOOGLE_", "CLOUDSDK_"],
            credentialsExpire: (minted["expireTime"] as? String).flatMap(Self.timestamp) ?? Date().addingTimeInterval(3600))
    }

    /// An RFC 3339 time as Google writes it (with or without fractional seconds).
    static func timestamp(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }

    // MARK: Orphans

    public func orphans(enclave: EnclaveState, knownPartitions: Set<String>) async throws -> [Orphan] {
        guard let projectID = enclave.context["project_id"] else { return [] }
        var found: [Orphan] = []
        var pageToken = ""
        repeat {
            var query = [("query", "labels.nclav-managed:true")]
            if !pageToken.isEmpty { query.append(("pageToken", pageToken)) }
            let page = try await client.call("GET", "cloudasset", "/v1/projects/\(projectID):searchAllResources", query: query)
            for result in page["results"] as? [[String: Any]] ?? [] {
                let labels = result["labels"] as? [String: String] ?? [:]
                guard labels["nclav-enclave"] == nil || labels["nclav-enclave"] == enclave.id,
                    let partition = labels["nclav-partition"], !knownPartitions.contains(partition)
                else { continue }
                found.append(
                    Orphan(enclaveID: enclave.id, cloud: "gcp", resource: result["name"] as? String ?? "?", partition: partition, tags: labels))
            }
            pageToken = page["nextPageToken"] as? String ?? ""
        } while !pageToken.isEmpty
        return found.sorted { $0.resource < $1.resource }
    }
}

public enum GCPDriverError: Error, Sendable, CustomStringConvertible {
    case noProject(enclave: String)
    case projectIDTaken(enclave: String, projectID: String)
    case projectNotOurs(enclave: String, projectID: String)
    case projectNotActive(enclave: String, projectID: String, state: String)
    case zoneNeedsNetwork(enclave: String)

    public var description: String {
        switch self {
        case .noProject(let enclave): return "enclave \(enclave) has no GCP project recorded yet; apply it first"
        case .projectIDTaken(let enclave, let id):
            return
                "the GCP project id \(id) for enclave \(enclave) is taken by a project nclav cannot see (project ids are global); set --gcp-project-prefix to pick another"
        case .projectNotOurs(let enclave, let id):
            return
                "GCP project \(id) exists but is not labelled nclav-enclave=\(enclave); nclav will not take over a project it did not create — set --gcp-project-prefix or label the project"
        case .projectNotActive(let enclave, let id, let state):
            return
                "GCP project \(id) of enclave \(enclave) is \(state); restore it with `gcloud projects undelete \(id)` (within 30 days) or give the enclave another id"
        case .zoneNeedsNetwork(let enclave):
            return
                "enclave \(enclave) declares dns.zone but no network; a private Cloud DNS zone is attached to the enclave's VPC, so declare network too"
        }
    }
}

// MARK: Import wiring

extension GCPDriver {
    /// What GCP can do for an import between GCP enclaves:
    /// - `http`: the importer's service account may invoke Cloud Run in the exporter's project
    ///   (`roles/run.invoker` there);
    /// - `tcp`: a Private Service Connect endpoint in the importer's VPC to the exporter's
    ///   service attachment (exporter output `service_attachment`), with an A record
    ///   `<alias>.<zone>` in the importer's private zone when it has one;
    /// - `queue`: a Pub/Sub subscription in the importer's project on the exporter's topic
    ///   (exporter output `topic`), with `roles/pubsub.subscriber` on the topic.
    /// Imports from other clouds are left alone. Each thing made is recorded (`wired.N`) so
    /// `teardownPartition` removes it.
    public func wireImports(
        enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity,
        imports: [ImportWiring]
    ) async throws -> PartitionIdentity {
        guard let projectID = context.values["project_id"], let email = identity["service_account"] else { return identity }
        let member = "serviceAccount:\(email)"
        var records: [GCPWiredResource] = []
        // Subscriptions live in the importer's project, whose own terraform has not run yet on
        // a first apply: nclav enables Pub/Sub there itself.
        if imports.contains(where: { $0.exporterCloud == .gcp && $0.export.type == .queue }) {
            try await enableServices(["pubsub.googleapis.com"], in: projectID)
        }
        for wiring in imports where wiring.exporterCloud == .gcp {
            guard let exporterProject = wiring.exporterContext["project_id"] else { continue }
            switch wiring.export.type {
            case .http:
                try await editProjectPolicy(exporterProject) { policy in Self.add(["roles/run.invoker"], member: member, to: &policy) }
                records.append(.invoker(project: exporterProject, member: member))
            case .tcp:
                guard let attachment = wiring.exporterOutputs["service_attachment"] else {
                    throw ImportWiringError.missingExportOutput(
                        cloud: .gcp, export: wiring.export.name, enclave: wiring.exporterEnclave, outputs: ["service_attachment"], type: .tcp)
                }
                guard let network = context.values["vpc_id"], let subnet = context.values["subnet_ids"]?.split(separator: ",").first.map(String.init)
                else {
                    throw ImportWiringError.needsNetwork(
                        cloud: .gcp, enclave: enclave.id, alias: wiring.alias, endpoint: "a Private Service Connect endpoint")
                }
                let region = context.values["region"] ?? region(enclave)
                let name = "nclav-psc-\(partition.id)-\(wiring.alias)".prefix(63).trimmingCharacters(in: CharacterSet(charactersIn: "-"))
                try await insertCompute(
                    "/compute/v1/projects/\(projectID)/regions/\(region)/addresses",
                    body: ["name": name, "addressType": "INTERNAL", "subnetwork": subnet], what: "reserving the PSC address \(name)")
                let address = try await client.call("GET", "compute", "/compute/v1/projects/\(projectID)/regions/\(region)/addresses/\(name)")
                let ip = address["address"] as? String ?? ""
                try await insertCompute(
                    "/compute/v1/projects/\(projectID)/regions/\(region)/forwardingRules",
                    body: [
                        "name": name, "target": attachment, "network": network,
                        "IPAddress": "projects/\(projectID)/regions/\(region)/addresses/\(name)",
                        "loadBalancingScheme": "",
                    ],
                    what: "creating the PSC endpoint \(name)")
                records.append(.pscEndpoint(project: projectID, region: region, name: name))
                if let zoneName = context.values["dns_zone_id"], let zone = enclave.dns?.zone, !ip.isEmpty {
                    let record = "\(wiring.alias).\(zone.hasSuffix(".") ? zone : zone + ".")"
                    do {
                        try await client.call(
                            "POST", "dns", "/dns/v1/projects/\(projectID)/managedZones/\(zoneName)/rrsets",
                            body: ["name": record, "type": "A", "ttl": 300, "rrdatas": [ip]])
                    } catch { guard error.api?.isAlreadyExists == true else { throw error } }
                    records.append(.dnsRecord(project: projectID, zone: zoneName, name: record))
                }
            case .queue:
                guard let topic = wiring.exporterOutputs["topic"] else {
                    throw ImportWiringError.missingExportOutput(
                        cloud: .gcp, export: wiring.export.name, enclave: wiring.exporterEnclave, outputs: ["topic"], type: .queue)
                }
                let subscription = "projects/\(projectID)/subscriptions/nclav-\(partition.id)-\(wiring.alias)"
                let subscriptionBody: [String: Any] = [
                    "topic": topic, "labels": labels(enclave).merging(["nclav-partition": partition.id]) { $1 },
                ]
                try await configuration.backoff.untilPropagated({ $0.gcpAPI.map { $0.isPubSubNotReady || $0.isServiceJustEnabled } == true }) {
                    do { try await client.call("PUT", "pubsub", "/v1/\(subscription)", body: subscriptionBody) } catch {
                        guard error.gcpAPI?.isAlreadyExists == true else { throw error }
                    }
                }
                try await configuration.backoff.untilPropagated({ $0.gcpAPI.map { $0.code == 409 || $0.isAccountPropagating } == true }) {
                    var policy = try await client.call("GET", "pubsub", "/v1/\(topic):getIamPolicy")
                    guard Self.add(["roles/pubsub.subscriber"], member: member, to: &policy) else { return }
                    try await client.call("POST", "pubsub", "/v1/\(topic):setIamPolicy", body: ["policy": policy])
                }
                records.append(.subscription(name: subscription, topic: topic, member: member))
            }
        }
        // Imports removed (or changed) since the last apply: undo what they had.
        try await unwire(try WiredResources.stale(in: identity, keeping: records, cloud: .gcp, read: GCPWiredResource.init(stored:)))
        return WiredResources.storing(records, in: identity)
    }

    /// Undoes what `wireImports` recorded, newest first (already-gone is fine).
    func unwire(_ identity: PartitionIdentity) async throws {
        for (key, value) in WiredResources.newestFirst(in: identity) {
            guard let resource = GCPWiredResource(stored: value) else {
                throw ImportWiringError.unreadableRecord(cloud: .gcp, key: key, value: value)
            }
            switch resource {
            case .invoker(let project, let member):
                try await editProjectPolicy(project) { policy in Self.remove(member: member, role: "roles/run.invoker", from: &policy) }
            case .dnsRecord(let project, let zone, let name):
                do { try await client.call("DELETE", "dns", "/dns/v1/projects/\(project)/managedZones/\(zone)/rrsets/\(name)/A") } catch {
                    guard error.api?.isNotFound == true else { throw error }
                }
            case .pscEndpoint(let project, let region, let name):
                for kind in ["forwardingRules", "addresses"] {
                    do {
                        let operation = try await client.call(
                            "DELETE", "compute", "/compute/v1/projects/\(project)/regions/\(region)/\(kind)/\(name)")
                        try await client.waitCompute(operation: operation, what: "deleting \(kind) \(name)")
                    } catch let error as GCPCallError {
                        guard error.api?.isNotFound == true else { throw error }
                    }
                }
            case .subscription(let name, let topic, let member):
                do { try await client.call("DELETE", "pubsub", "/v1/\(name)") } catch { guard error.api?.isNotFound == true else { throw error } }
                var policy = try await client.call("GET", "pubsub", "/v1/\(topic):getIamPolicy")
                if Self.remove(member: member, role: "roles/pubsub.subscriber", from: &policy) {
                    try await client.call("POST", "pubsub", "/v1/\(topic):setIamPolicy", body: ["policy": policy])
                }
            }
        }
    }
}
