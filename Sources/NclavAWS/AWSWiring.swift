import Crypto
import Foundation
import NclavCore
import NclavDrivers

/// Something `wireImports` made in AWS for one import, kept in the importing partition's
/// identity (under `wired.<n>`, as JSON) so that tearing the partition down removes exactly it.
enum AWSWiredResource: Codable, Equatable, Sendable {
    /// The importer's account allowed on the exporter's endpoint service.
    case endpointPermission(account: String, region: String, serviceID: String, principal: String)
    /// An interface endpoint in the importer's VPC.
    case interfaceEndpoint(account: String, region: String, id: String)
    /// A record in the importer's private zone.
    case record(account: String, zone: String, name: String, type: String, value: String)
    /// A statement (by Sid) in the exporter's queue policy.
    case queueStatement(account: String, region: String, queueURL: String, sid: String)
    /// An inline policy on the importer's partition role.
    case rolePolicy(account: String, role: String, name: String)

    var stored: String { WiredResources.encode(self) }

    init?(stored: String) {
        guard let decoded = WiredResources.decode(Self.self, from: stored) else { return nil }
        self = decoded
    }
}

/// The queue actions an importer of a `queue` export is granted on the exporter's queue.
let queueConsumerActions = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]

extension AWSDriver {
    /// What AWS can do for an import between AWS enclaves:
    /// - `tcp`: the importer's account allowed on the exporter's VPC endpoint service (exporter
    ///   output `service_name`), an interface endpoint to it in the importer's VPC, and a
    ///   CNAME `<alias>.<zone>` to the endpoint in the importer's private zone when it has one;
    /// - `queue`: a statement in the exporter's SQS queue policy letting the importer
    ///   partition's role (its ARN, not the account) receive and delete messages (exporter
    ///   outputs `queue_url` and `queue_arn`);
    /// - `http`: when the exporter outputs `execute_api_arn` (an API Gateway API with IAM
    ///   authorization), an inline policy on the importer's role allowing `execute-api:Invoke`
    ///   on it; the API's own resource policy must admit the importer's account (the
    ///   exporter's terraform owns it). Without that output nothing is granted.
    /// Imports from other clouds are left alone. Each thing made is recorded so
    /// `teardownPartition` removes it.
    public func wireImports(
        enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity, imports: [ImportWiring]
    ) async throws -> PartitionIdentity {
        guard let account = context.values["account_id"], let roleARN = identity["role_arn"], let roleName = identity["role_name"] else {
            return identity
        }
        var records: [AWSWiredResource] = []
        let inside = try accountClient(context, enclave: enclave)
        let region = context.values["region"] ?? region(enclave)
        for wiring in imports where wiring.exporterCloud == .aws {
            guard let exporterAccount = wiring.exporterContext["account_id"] else { continue }
            let exporterRegion = wiring.exporterContext["region"] ?? configuration.defaultRegion
            switch wiring.export.type {
            case .tcp:
                guard let serviceName = wiring.exporterOutputs["service_name"] else {
                    throw ImportWiringError.missingExportOutput(
                        cloud: .aws, export: wiring.export.name, enclave: wiring.exporterEnclave, outputs: ["service_name"], type: .tcp)
                }
                guard let vpc = context.values["vpc_id"], let subnets = context.values["subnet_ids"]?.split(separator: ",").map(String.init),
                    !subnets.isEmpty
                else {
                    throw ImportWiringError.needsNetwork(cloud: .aws, enclave: enclave.id, alias: wiring.alias, endpoint: "an interface endpoint")
                }
                let serviceID = String(serviceName.split(separator: ".").last ?? "")
                let principal = "arn:aws:iam::\(account):root"
                let exporter = assumed(adminRoleARN(account: exporterAccount), by: managementClient(), region: exporterRegion)
                try await EC2(client: exporter).allowEndpointPrincipal(serviceID: serviceID, principal: principal)
                records.append(.endpointPermission(account: exporterAccount, region: exporterRegion, serviceID: serviceID, principal: principal))
                let ec2 = EC2(client: inside)
                let endpoint: (id: String, dnsName: String)
                if let found = try await ec2.findInterfaceEndpoint(vpcID: vpc, serviceName: serviceName) {
                    endpoint = found
                } else {
                    endpoint = try await ec2.createInterfaceEndpoint(
                        vpcID: vpc, serviceName: serviceName, subnets: subnets, tags: tags(enclave, partition: partition.id))
                }
                records.append(.interfaceEndpoint(account: account, region: region, id: endpoint.id))
                if let zone = context.values["dns_zone_id"], let zoneName = enclave.dns?.zone, !endpoint.dnsName.isEmpty {
                    let name = "\(wiring.alias).\(zoneName.hasSuffix(".") ? zoneName : zoneName + ".")"
                    try await Route53(client: inside).upsertRecord(zone: zone, name: name, type: "CNAME", value: endpoint.dnsName)
                    records.append(.record(account: account, zone: zone, name: name, type: "CNAME", value: endpoint.dnsName))
                }
            case .queue:
                guard let queueURL = wiring.exporterOutputs["queue_url"], let queueARN = wiring.exporterOutputs["queue_arn"] else {
                    throw ImportWiringError.missingExportOutput(
                        cloud: .aws, export: wiring.export.name, enclave: wiring.exporterEnclave, outputs: ["queue_url", "queue_arn"], type: .queue)
                }
                let sid = Self.statementID(enclave: enclave.id, partition: partition.id, alias: wiring.alias)
                let exporter = assumed(adminRoleARN(account: exporterAccount), by: managementClient(), region: exporterRegion)
                let statement: [String: Any] = [
                    "Sid": sid, "Effect": "Allow", "Principal": ["AWS": roleARN], "Action": queueConsumerActions, "Resource": queueARN,
                ]
                // SQS checks the principal exists: a role made moments ago is refused while IAM propagates.
                try await configuration.backoff.untilPropagated({ ["InvalidAttributeValue", "InvalidParameterValue"].contains($0.awsCode ?? "") }) {
                    try await Self.editQueuePolicy(SQS(client: exporter), queueURL: queueURL) { statements in
                        statements.removeAll { $0["Sid"] as? String == sid }
                        statements.append(statement)
                    }
                }
                records.append(.queueStatement(account: exporterAccount, region: exporterRegion, queueURL: queueURL, sid: sid))
            case .http:
                guard let api = wiring.exporterOutputs["execute_api_arn"] else { continue }
                let name = String("nclav-import-\(wiring.alias)".prefix(128))
                let document: [String: Any] = [
                    "Version": "2012-10-17",
                    "Statement": [["Effect": "Allow", "Action": "execute-api:Invoke", "Resource": api.hasSuffix("/*") ? api : api + "/*"]],
                ]
                try await IAM(client: inside).putRolePolicy(role: roleName, name: name, document: Self.json(document))
                records.append(.rolePolicy(account: account, role: roleName, name: name))
            }
        }
        // Imports removed (or changed) since the last apply: undo what they had.
        try await unwire(
            try WiredResources.stale(in: identity, keeping: records, cloud: .aws, read: AWSWiredResource.init(stored:)), context: context,
            enclave: enclave)
        return WiredResources.storing(records, in: identity)
    }

    /// Undoes what `wireImports` recorded, newest first (already-gone is fine).
    func unwire(_ identity: PartitionIdentity, context: EnclaveContext, enclave: Enclave) async throws {
        for (key, value) in WiredResources.newestFirst(in: identity) {
            guard let resource = AWSWiredResource(stored: value) else {
                throw ImportWiringError.unreadableRecord(cloud: .aws, key: key, value: value)
            }
            switch resource {
            case .endpointPermission(let account, let region, let serviceID, let principal):
                let exporter = assumed(adminRoleARN(account: account), by: managementClient(), region: region)
                try await EC2(client: exporter).removeEndpointPrincipal(serviceID: serviceID, principal: principal)
            case .interfaceEndpoint(let account, let region, let id):
                try await EC2(client: assumed(adminRoleARN(account: account), by: managementClient(), region: region)).deleteEndpoint(id)
            case .record(let account, let zone, let name, let type, let value):
                let inside = assumed(adminRoleARN(account: account), by: managementClient(), region: context.values["region"] ?? region(enclave))
                try await Route53(client: inside).deleteRecord(zone: zone, name: name, type: type, value: value)
            case .queueStatement(let account, let region, let queueURL, let sid):
                let exporter = assumed(adminRoleARN(account: account), by: managementClient(), region: region)
                do {
                    try await Self.editQueuePolicy(SQS(client: exporter), queueURL: queueURL) { statements in
                        statements.removeAll { $0["Sid"] as? String == sid }
                    }
                } catch let error as AWSCallError where error.code == "AWS.SimpleQueueService.NonExistentQueue" || error.code == "QueueDoesNotExist" {
                }
            case .rolePolicy(let account, let role, let name):
                let inside = assumed(adminRoleARN(account: account), by: managementClient(), region: context.values["region"] ?? region(enclave))
                try await IAM(client: inside).deleteRolePolicy(role: role, name: name)
            }
        }
    }

    /// Read-modify-write of a queue's policy document's statements; a policy left without
    /// statements is removed.
    static func editQueuePolicy(_ sqs: SQS, queueURL: String, _ change: (inout [[String: Any]]) -> Void) async throws {
        var document: [String: Any] = ["Version": "2012-10-17"]
        if let text = try await sqs.policy(queueURL: queueURL), !text.isEmpty,
            let parsed = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
        {
            document = parsed
        }
        var statements = document["Statement"] as? [[String: Any]] ?? (document["Statement"] as? [String: Any]).map { [$0] } ?? []
        change(&statements)
        document["Statement"] = statements
        try await sqs.setPolicy(queueURL: queueURL, policy: statements.isEmpty ? "" : json(document))
    }

    /// A statement id (letters and digits only, as SQS requires) naming the import.
    static func statementID(enclave: String, partition: String, alias: String) -> String {
        "nclav" + SHA256.hash(data: Data("\(enclave)/\(partition)/\(alias)".utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    static func json(_ object: Any) -> String {
        String(
            decoding: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data(), as: UTF8.self)
    }
}
