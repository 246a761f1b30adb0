import Crypto
import Foundation

// Thin, typed wrappers over the calls the AWS driver makes. Each keeps AWS's own names so a
// reader can look the call up in the AWS API reference.

public struct OrganizationsAccount: Sendable, Equatable {
    public let id: String
    public let name: String
    public let email: String
    public let status: String
}

public struct CreateAccountStatus: Sendable, Equatable {
    public let requestID: String
    public let state: String
    public let accountID: String?
    public let failureReason: String?
}

public struct Organizations: Sendable {
    let client: AWSClient
    public init(client: AWSClient) { self.client = client }

    func call(_ action: String, _ body: [String: Any] = [:]) async throws(AWSCallError) -> [String: Any] {
        try await client.json(.organizations, targetPrefix: "AWSOrganizationsV20161128", action: action, body)
    }

    public func listAccounts() async throws(AWSCallError) -> [OrganizationsAccount] {
        var accounts: [OrganizationsAccount] = []
        var token: String? = nil
        repeat {
            let page = try await call("ListAccounts", token.map { ["NextToken": $0] } ?? [:])
            for item in page["Accounts"] as? [[String: Any]] ?? [] {
                accounts.append(
                    OrganizationsAccount(
                        id: item["Id"] as? String ?? "", name: item["Name"] as? String ?? "",
                        email: item["Email"] as? String ?? "", status: item["Status"] as? String ?? ""))
            }
            token = page["NextToken"] as? String
        } while token != nil
        return accounts
    }

    public func createAccount(email: String, name: String, tags: [String: String]) async throws(AWSCallError) -> CreateAccountStatus {
        let body: [String: Any] = [
            "Email": email, "AccountName": name, "Tags": tags.sorted { $0.key < $1.key }.map { ["Key": $0.key, "Value": $0.value] },
        ]
        return Self.status(try await call("CreateAccount", body)["CreateAccountStatus"])
    }

    public func describeCreateAccountStatus(_ requestID: String) async throws(AWSCallError) -> CreateAccountStatus {
        Self.status(try await call("DescribeCreateAccountStatus", ["CreateAccountRequestId": requestID])["CreateAccountStatus"])
    }

    static func status(_ value: Any?) -> CreateAccountStatus {
        let object = value as? [String: Any] ?? [:]
        return CreateAccountStatus(
            requestID: object["Id"] as? String ?? "", state: object["State"] as? String ?? "UNKNOWN",
            accountID: object["AccountId"] as? String, failureReason: object["FailureReason"] as? String)
    }

    /// The account's parent (a root `r-…` or an OU `ou-…`).
    public func parent(of accountID: String) async throws(AWSCallError) -> String? {
        let parents = try await call("ListParents", ["ChildId": accountID])["Parents"] as? [[String: Any]]
        return parents?.first?["Id"] as? String
    }

    public func moveAccount(_ accountID: String, from source: String, to destination: String) async throws(AWSCallError) {
        _ = try await call("MoveAccount", ["AccountId": accountID, "SourceParentId": source, "DestinationParentId": destination])
    }

    public func closeAccount(_ accountID: String) async throws(AWSCallError) {
        _ = try await call("CloseAccount", ["AccountId": accountID])
    }

    public func describeAccount(_ accountID: String) async throws(AWSCallError) -> OrganizationsAccount {
        let item = try await call("DescribeAccount", ["AccountId": accountID])["Account"] as? [String: Any] ?? [:]
        return OrganizationsAccount(
            id: item["Id"] as? String ?? accountID, name: item["Name"] as? String ?? "",
            email: item["Email"] as? String ?? "", status: item["Status"] as? String ?? "")
    }
}

public struct TemporaryCredentials: Sendable {
    public let credentials: AWSCredentials
    public let assumedRoleARN: String
}

public struct STS: Sendable {
    let client: AWSClient
    public init(client: AWSClient) { self.client = client }

    public func assumeRole(_ roleARN: String, sessionName: String, seconds: Int = 3600) async throws(AWSCallError) -> TemporaryCredentials {
        let xml = try await client.query(
            .sts, action: "AssumeRole", version: "2011-06-15",
            [("RoleArn", roleARN), ("RoleSessionName", sessionName), ("DurationSeconds", String(seconds))])
        guard let key = xml.value("AccessKeyId"), let secret = xml.value("SecretAccessKey") else {
            throw .unreadable(service: .sts, action: "AssumeRole", reason: "no credentials in the answer")
        }
        let expiration = xml.value("Expiration").flatMap {
            ISO8601DateFormatter.withFractions.date(from: $0) ?? ISO8601DateFormatter().date(from: $0)
        }
        return TemporaryCredentials(
            credentials: AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: xml.value("SessionToken"), expiration: expiration),
            assumedRoleARN: xml.value("Arn") ?? roleARN)
    }

    public func callerAccount() async throws(AWSCallError) -> String {
        let xml = try await client.query(.sts, action: "GetCallerIdentity", version: "2011-06-15", [])
        return xml.value("Account") ?? ""
    }
}

extension ISO8601DateFormatter {
    nonisolated(unsafe) static let withFractions: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()
}

public struct EC2: Sendable {
    let client: AWSClient
    public init(client: AWSClient) { self.client = client }
    static let version = "2016-11-15"

    func call(_ action: String, _ parameters: [(String, String)]) async throws(AWSCallError) -> AWSXML {
        try await client.query(.ec2, action: action, version: Self.version, parameters)
    }

    static func tagSpecification(_ type: String, _ tags: [String: String]) -> [(String, String)] {
        var out = [("TagSpecification.1.ResourceType", type)]
        for (index, tag) in tags.sorted(by: { $0.key < $1.key }).enumerated() {
            out += [("TagSpecification.1.Tag.\(index + 1).Key", tag.key), ("TagSpecification.1.Tag.\(index + 1).Value", tag.value)]
        }
        return out
    }

    static func filters(_ filters: [(String, String)]) -> [(String, String)] {
        filters.enumerated().flatMap { index, filter in [("Filter.\(index + 1).Name", filter.0), ("Filter.\(index + 1).Value.1", filter.1)] }
    }

    public func findVPC(cidr: String, tags: [String: String]) async throws(AWSCallError) -> String? {
        let xml = try await call("DescribeVpcs", Self.filters([("cidr", cidr)] + tags.sorted { $0.key < $1.key }.map { ("tag:\($0.key)", $0.value) }))
        return xml.find("vpcSet")?.all("item").first?["vpcId"]?.text
    }

    public func createVPC(cidr: String, tags: [String: String]) async throws(AWSCallError) -> String {
        let xml = try await call("CreateVpc", [("CidrBlock", cidr)] + Self.tagSpecification("vpc", tags))
        guard let id = xml.value("vpcId") else { throw .unreadable(service: .ec2, action: "CreateVpc", reason: "no vpcId") }
        return id
    }

    public func findSubnet(vpcID: String, cidr: String) async throws(AWSCallError) -> String? {
        let xml = try await call("DescribeSubnets", Self.filters([("vpc-id", vpcID), ("cidr-block", cidr)]))
        return xml.find("subnetSet")?.all("item").first?["subnetId"]?.text
    }

    public func createSubnet(vpcID: String, cidr: String, tags: [String: String]) async throws(AWSCallError) -> String {
        let xml = try await call("CreateSubnet", [("VpcId", vpcID), ("CidrBlock", cidr)] + Self.tagSpecification("subnet", tags))
        guard let id = xml.value("subnetId") else { throw .unreadable(service: .ec2, action: "CreateSubnet", reason: "no subnetId") }
        return id
    }

    public func subnets(ofVPC vpcID: String) async throws(AWSCallError) -> [String] {
        let xml = try await call("DescribeSubnets", Self.filters([("vpc-id", vpcID)]))
        return (xml.find("subnetSet")?.all("item") ?? []).compactMap { $0["subnetId"]?.text }
    }

    public func deleteSubnet(_ id: String) async throws(AWSCallError) {
        do { _ = try await call("DeleteSubnet", [("SubnetId", id)]) } catch  where error.code == "InvalidSubnetID.NotFound" {}
    }

    /// A cheap call that fails with OptInRequired / PendingVerification while a new account's
    /// EC2 is not active in the region yet.
    public func describeAvailabilityZones() async throws(AWSCallError) {
        _ = try await call("DescribeAvailabilityZones", [])
    }

    // Interface endpoints to another account's endpoint service (import wiring).

    /// Lets `principal` (an account root ARN) create endpoints to the service.
    public func allowEndpointPrincipal(serviceID: String, principal: String) async throws(AWSCallError) {
        _ = try await call("ModifyVpcEndpointServicePermissions", [("ServiceId", serviceID), ("AddAllowedPrincipals.1", principal)])
    }

    public func removeEndpointPrincipal(serviceID: String, principal: String) async throws(AWSCallError) {
        do { _ = try await call("ModifyVpcEndpointServicePermissions", [("ServiceId", serviceID), ("RemoveAllowedPrincipals.1", principal)]) } catch
            where error.code == "InvalidVpcEndpointServiceId.NotFound"
        {}
    }

    /// The interface endpoint in the VPC to the service, with its first DNS name.
    public func findInterfaceEndpoint(vpcID: String, serviceName: String) async throws(AWSCallError) -> (id: String, dnsName: String)? {
        let xml = try await call("DescribeVpcEndpoints", Self.filters([("vpc-id", vpcID), ("service-name", serviceName)]))
        for item in xml.find("vpcEndpointSet")?.all("item") ?? [] {
            guard let id = item["vpcEndpointId"]?.text, item["state"]?.text.lowercased() != "deleted" else { continue }
            return (id, item.find("dnsEntrySet")?.all("item").first?["dnsName"]?.text ?? "")
        }
        return nil
    }

    public func createInterfaceEndpoint(
        vpcID: String, serviceName: String, subnets: [String], tags: [String: String]
    ) async throws(AWSCallError)
        -> (id: String, dnsName: String)
    {
        // The same request retried (a timeout after AWS made it) must not make a second endpoint.
        let token = SHA256.hash(data: Data("\(vpcID)|\(serviceName)".utf8)).prefix(16).map { String(format: "%02x", $0) }.joined()
        var parameters = [
            ("VpcEndpointType", "Interface"), ("VpcId", vpcID), ("ServiceName", serviceName), ("PrivateDnsEnabled", "false"), ("ClientToken", token),
        ]
        for (index, subnet) in subnets.enumerated() { parameters.append(("SubnetId.\(index + 1)", subnet)) }
        let xml = try await call("CreateVpcEndpoint", parameters + Self.tagSpecification("vpc-endpoint", tags))
        guard let endpoint = xml.find("vpcEndpoint"), let id = endpoint["vpcEndpointId"]?.text else {
            throw .unreadable(service: .ec2, action: "CreateVpcEndpoint", reason: "no vpcEndpointId")
        }
        return (id, endpoint.find("dnsEntrySet")?.all("item").first?["dnsName"]?.text ?? "")
    }

    /// DeleteVpcEndpoints answers 200 even when it could not delete: the failures are items of
    /// `unsuccessful`, each with an error code.
    public func deleteEndpoint(_ id: String) async throws(AWSCallError) {
        let xml: AWSXML
        do { xml = try await call("DeleteVpcEndpoints", [("VpcEndpointId.1", id)]) } catch  where error.code == "InvalidVpcEndpointId.NotFound" {
            return
        }
        for item in xml.find("unsuccessful")?.all("item") ?? [] {
            let code = item.find("error")?["code"]?.text ?? "Unknown"
            guard code != "InvalidVpcEndpointId.NotFound" else { continue }
            throw .api(
                AWSError(
                    service: .ec2, action: "DeleteVpcEndpoints", status: 200, code: code,
                    message:
                        "endpoint \(item["resourceId"]?.text ?? id) was not deleted: \(item.find("error")?["message"]?.text ?? "no reason given")"))
        }
    }

    public func deleteVPC(_ id: String) async throws(AWSCallError) {
        do { _ = try await call("DeleteVpc", [("VpcId", id)]) } catch  where error.code == "InvalidVpcID.NotFound" {}
    }
}

public struct IAM: Sendable {
    let client: AWSClient
    public init(client: AWSClient) { self.client = client }
    static let version = "2010-05-08"

    func call(_ action: String, _ parameters: [(String, String)]) async throws(AWSCallError) -> AWSXML {
        try await client.query(.iam, action: action, version: Self.version, parameters)
    }

    /// The role's ARN, or nil when there is none.
    public func roleARN(_ name: String) async throws(AWSCallError) -> String? {
        do { return try await call("GetRole", [("RoleName", name)]).value("Arn") } catch  where error.code == "NoSuchEntity" { return nil }
    }

    public func createRole(_ name: String, trustPolicy: String, tags: [String: String]) async throws(AWSCallError) -> String {
        var parameters = [("RoleName", name), ("AssumeRolePolicyDocument", trustPolicy), ("Description", "nclav partition identity")]
        for (index, tag) in tags.sorted(by: { $0.key < $1.key }).enumerated() {
            parameters += [("Tags.member.\(index + 1).Key", tag.key), ("Tags.member.\(index + 1).Value", tag.value)]
        }
        do {
            return try await call("CreateRole", parameters).value("Arn") ?? ""
        } catch  where error.code == "EntityAlreadyExists" {
            return try await roleARN(name) ?? ""
        }
    }

    public func attachedPolicies(_ role: String) async throws(AWSCallError) -> [String] {
        let xml = try await call("ListAttachedRolePolicies", [("RoleName", role)])
        return (xml.find("AttachedPolicies")?.all("member") ?? []).compactMap { $0["PolicyArn"]?.text }
    }

    public func attachPolicy(_ policyARN: String, to role: String) async throws(AWSCallError) {
        _ = try await call("AttachRolePolicy", [("RoleName", role), ("PolicyArn", policyARN)])
    }

    public func detachPolicy(_ policyARN: String, from role: String) async throws(AWSCallError) {
        do { _ = try await call("DetachRolePolicy", [("RoleName", role), ("PolicyArn", policyARN)]) } catch  where error.code == "NoSuchEntity" {}
    }

    /// An inline policy on a role (import wiring for http: invoke the exporter's API).
    public func putRolePolicy(role: String, name: String, document: String) async throws(AWSCallError) {
        _ = try await call("PutRolePolicy", [("RoleName", role), ("PolicyName", name), ("PolicyDocument", document)])
    }

    public func deleteRolePolicy(role: String, name: String) async throws(AWSCallError) {
        do { _ = try await call("DeleteRolePolicy", [("RoleName", role), ("PolicyName", name)]) } catch  where error.code == "NoSuchEntity" {}
    }

    public func rolePolicies(_ role: String) async throws(AWSCallError) -> [String] {
        let xml = try await call("ListRolePolicies", [("RoleName", role)])
        return (xml.find("PolicyNames")?.all("member") ?? []).map(\.text)
    }

    public func deleteRole(_ name: String) async throws(AWSCallError) {
        do { _ = try await call("DeleteRole", [("RoleName", name)]) } catch  where error.code == "NoSuchEntity" {}
    }
}

public struct Route53: Sendable {
    let client: AWSClient
    public init(client: AWSClient) { self.client = client }
    static let base = "/2013-04-01"

    /// A private hosted zone with this name attached to the VPC, if one exists.
    public func findPrivateZone(name: String) async throws(AWSCallError) -> String? {
        let wanted = name.hasSuffix(".") ? name : name + "."
        let xml = try await client.restXML(
            .route53, action: "ListHostedZonesByName", method: "GET", path: Self.base + "/hostedzonesbyname",
            query: [("dnsname", wanted)])
        for zone in xml?.find("HostedZones")?.all("HostedZone") ?? [] where zone["Name"]?.text == wanted {
            if zone.find("PrivateZone")?.text == "true", let id = zone["Id"]?.text { return id.replacingOccurrences(of: "/hostedzone/", with: "") }
        }
        return nil
    }

    public func createPrivateZone(name: String, vpcID: String, region: String, callerReference: String) async throws(AWSCallError) -> String {
        let body = """
            <?xml version="1.0" encoding="UTF-8"?>
            <CreateHostedZoneRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/">\
            <Name>\(Self.escape(name))</Name><VPC><VPCRegion>\(Self.escape(region))</VPCRegion><VPCId>\(Self.escape(vpcID))</VPCId></VPC>\
            <CallerReference>\(Self.escape(callerReference))</CallerReference>\
            <HostedZoneConfig><Comment>nclav enclave zone</Comment><PrivateZone>true</PrivateZone></HostedZoneConfig>\
            </CreateHostedZoneRequest>
            """
        let xml = try await client.restXML(.route53, action: "CreateHostedZone", method: "POST", path: Self.base + "/hostedzone", body: body)
        guard let id = xml?.find("HostedZone")?["Id"]?.text else {
            throw .unreadable(service: .route53, action: "CreateHostedZone", reason: "no zone id")
        }
        return id.replacingOccurrences(of: "/hostedzone/", with: "")
    }

    public func deleteZone(_ id: String) async throws(AWSCallError) {
        do { _ = try await client.restXML(.route53, action: "DeleteHostedZone", method: "DELETE", path: Self.base + "/hostedzone/\(id)") } catch
            where error.code == "NoSuchHostedZone"
        {}
    }

    /// Creates or replaces one record (import wiring: `<alias>.<zone>` to an endpoint).
    public func upsertRecord(zone: String, name: String, type: String, value: String) async throws(AWSCallError) {
        try await change(zone: zone, action: "UPSERT", name: name, type: type, value: value)
    }

    public func deleteRecord(zone: String, name: String, type: String, value: String) async throws(AWSCallError) {
        do { try await change(zone: zone, action: "DELETE", name: name, type: type, value: value) } catch
            where error.code == "InvalidChangeBatch" || error.code == "NoSuchHostedZone"
        {}  // already gone
    }

    func change(zone: String, action: String, name: String, type: String, value: String) async throws(AWSCallError) {
        let body = """
            <?xml version="1.0" encoding="UTF-8"?>
            <ChangeResourceRecordSetsRequest xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><ChangeBatch><Changes><Change>\
            <Action>\(action)</Action><ResourceRecordSet><Name>\(Self.escape(name))</Name><Type>\(type)</Type><TTL>300</TTL>\
            <ResourceRecords><ResourceRecord><Value>\(Self.escape(value))</Value></ResourceRecord></ResourceRecords></ResourceRecordSet>\
            </Change></Changes></ChangeBatch></ChangeResourceRecordSetsRequest>
            """
        _ = try await client.restXML(
            .route53, action: "ChangeResourceRecordSets", method: "POST", path: Self.base + "/hostedzone/\(zone)/rrset", body: body)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

public struct TaggedResource: Sendable, Equatable, Codable {
    public let arn: String
    public let tags: [String: String]
}

public struct ResourceTagging: Sendable {
    let client: AWSClient
    public init(client: AWSClient) { self.client = client }

    /// Every resource in the account and region carrying all of these tags.
    public func resources(tagged filters: [String: String]) async throws(AWSCallError) -> [TaggedResource] {
        var found: [TaggedResource] = []
        var token = ""
        repeat {
            var body: [String: Any] = ["TagFilters": filters.sorted { $0.key < $1.key }.map { ["Key": $0.key, "Values": [$0.value]] }]
            if !token.isEmpty { body["PaginationToken"] = token }
            let page = try await client.json(.tagging, targetPrefix: "ResourceGroupsTaggingAPI_20170126", action: "GetResources", body)
            for item in page["ResourceTagMappingList"] as? [[String: Any]] ?? [] {
                var tags: [String: String] = [:]
                for tag in item["Tags"] as? [[String: Any]] ?? [] { if let key = tag["Key"] as? String { tags[key] = tag["Value"] as? String ?? "" } }
                found.append(TaggedResource(arn: item["ResourceARN"] as? String ?? "", tags: tags))
            }
            token = page["PaginationToken"] as? String ?? ""
        } while !token.isEmpty
        return found
    }
}

/// SQS queue attributes (query protocol), for the queue policy an import is granted through.
public struct SQS: Sendable {
    let client: AWSClient
    public init(client: AWSClient) { self.client = client }
    static let version = "2012-11-05"

    /// The queue's access policy document, or nil when it has none.
    public func policy(queueURL: String) async throws(AWSCallError) -> String? {
        let xml = try await client.query(
            .sqs, action: "GetQueueAttributes", version: Self.version, [("QueueUrl", queueURL), ("AttributeName.1", "Policy")])
        for attribute in xml.find("GetQueueAttributesResult")?.all("Attribute") ?? [] where attribute["Name"]?.text == "Policy" {
            return attribute["Value"]?.text
        }
        return nil
    }

    public func setPolicy(queueURL: String, policy: String) async throws(AWSCallError) {
        _ = try await client.query(
            .sqs, action: "SetQueueAttributes", version: Self.version,
            [("QueueUrl", queueURL), ("Attribute.1.Name", "Policy"), ("Attribute.1.Value", policy)])
    }
}
