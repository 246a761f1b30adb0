import Foundation
import NclavCore
import NclavDrivers

/// Something `wireImports` made in Azure for one import, kept in the importing partition's
/// identity (see `WiredResources`) so that tearing the partition down removes exactly it.
enum AzureWiredResource: Codable, Equatable, Sendable {
    /// A private endpoint (full id) in the importer's resource group.
    case privateEndpoint(id: String)
    /// An A record set (full id) in the importer's private zone.
    case record(id: String)
    /// A role assignment (full id) for the importer partition's identity.
    case roleAssignment(id: String)

    var stored: String { WiredResources.encode(self) }

    init?(stored: String) {
        guard let decoded = WiredResources.decode(Self.self, from: stored) else { return nil }
        self = decoded
    }
}

extension AzureDriver {
    /// Azure's built-in "Azure Service Bus Data Receiver".
    public static let serviceBusReceiverRole = "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"

    /// What Azure can do for an import between Azure enclaves:
    /// - `tcp`: a private endpoint in the importer's first subnet to the exporter's Private
    ///   Link service (exporter output `private_link_service_id`), requested as a manual
    ///   connection that nclav approves on the exporter's side (so the service's auto-approval
    ///   list need not know the importer; its visibility must include the importer's
    ///   subscription, or `*`), and an A record `<alias>` to the endpoint's address in the
    ///   importer's private zone when it has one;
    /// - `queue`: "Azure Service Bus Data Receiver" for the importer partition's identity on the
    ///   exporter's queue (output `queue_id`: a Service Bus queue or topic subscription);
    /// - `http`: when the exporter outputs `role_scope` and `role_definition_id`, that role at
    ///   that scope for the importer partition's identity; without them nothing is granted.
    /// Imports from other clouds are left alone.
    public func wireImports(
        enclave: Enclave, context: EnclaveContext, partition: Partition, identity: PartitionIdentity, imports: [ImportWiring]
    ) async throws -> PartitionIdentity {
        guard let principal = identity["principal_id"] else { return identity }
        var records: [AzureWiredResource] = []
        for wiring in imports where wiring.exporterCloud == .azure {
            switch wiring.export.type {
            case .tcp:
                guard let service = wiring.exporterOutputs["private_link_service_id"] else {
                    throw ImportWiringError.missingExportOutput(
                        cloud: .azure, export: wiring.export.name, enclave: wiring.exporterEnclave, outputs: ["private_link_service_id"], type: .tcp)
                }
                guard let subnet = context.values["subnet_ids"]?.split(separator: ",").first.map(String.init) else {
                    throw ImportWiringError.needsNetwork(cloud: .azure, enclave: enclave.id, alias: wiring.alias, endpoint: "a private endpoint")
                }
                let (endpoint, address) = try await privateEndpoint(
                    to: service, in: subnet, enclave: enclave, context: context, partition: partition.id, alias: wiring.alias)
                records.append(.privateEndpoint(id: endpoint))
                if let zone = context.values["dns_zone_id"], !zone.isEmpty {
                    let record = "\(zone)/A/\(wiring.alias)"
                    try await client.send(
                        "PUT", record, apiVersion: Self.dnsAPI, body: ["properties": ["ttl": 300, "aRecords": [["ipv4Address": address]]]])
                    records.append(.record(id: record))
                }
            case .queue:
                guard let queue = wiring.exporterOutputs["queue_id"] else {
                    throw ImportWiringError.missingExportOutput(
                        cloud: .azure, export: wiring.export.name, enclave: wiring.exporterEnclave, outputs: ["queue_id"], type: .queue)
                }
                let name = Self.assignmentID(queue, enclave.id, partition.id, Self.serviceBusReceiverRole)
                let (path, ours) = try await assign(role: Self.serviceBusReceiverRole, at: queue, to: principal, name: name)
                if ours { records.append(.roleAssignment(id: path)) }
            case .http:
                guard let scope = wiring.exporterOutputs["role_scope"] else { continue }
                guard let role = wiring.exporterOutputs["role_definition_id"].map({ String($0.split(separator: "/").last ?? "") }), !role.isEmpty
                else {
                    throw ImportWiringError.missingExportOutput(
                        cloud: .azure, export: wiring.export.name, enclave: wiring.exporterEnclave, outputs: ["role_scope", "role_definition_id"],
                        type: .http)
                }
                let (path, ours) = try await assign(
                    role: role, at: scope, to: principal, name: Self.assignmentID(scope, enclave.id, partition.id, role))
                if ours { records.append(.roleAssignment(id: path)) }
            }
        }
        // Imports removed (or changed) since the last apply: undo what they had.
        try await unwire(try WiredResources.stale(in: identity, keeping: records, cloud: .azure, read: AzureWiredResource.init(stored:)))
        return WiredResources.storing(records, in: identity)
    }

    /// A private endpoint to `service`, its connection approved on the service's side, and the
    /// endpoint's private address (read from its network interface, as azurerm does).
    func privateEndpoint(
        to service: String, in subnet: String, enclave: Enclave, context: EnclaveContext, partition: String, alias: String
    ) async throws -> (id: String, address: String) {
        let subscription = context.values["subscription_id"] ?? ""
        let group = context.values["resource_group"] ?? Self.resourceGroup(enclave.id)
        let name = "nclav-\(partition)-\(alias)"
        let path = "/subscriptions/\(subscription)/resourceGroups/\(group)/providers/Microsoft.Network/privateEndpoints/\(name)"
        let endpoint = try await client.putAndWait(
            path, apiVersion: Self.networkAPI,
            body: [
                "location": context.values["region"] ?? location(enclave), "tags": tags(enclave, partition: partition),
                "properties": [
                    "subnet": ["id": subnet],
                    "manualPrivateLinkServiceConnections": [
                        [
                            "name": name,
                            "properties": ["privateLinkServiceId": service, "requestMessage": "nclav: \(enclave.id)/\(partition) imports \(alias)"],
                        ]
                    ],
                ],
            ],
            what: "creating private endpoint \(name)")
        let id = endpoint["id"] as? String ?? path
        // The connection shows on the service's side shortly after the endpoint exists.
        let connection = try await configuration.backoff.untilPropagated({ ($0 as? AzureDriverError)?.isConnectionNotFound == true }) {
            () async throws -> [String: Any] in
            let list = try await client.send("GET", service + "/privateEndpointConnections", apiVersion: Self.networkAPI).json
            let connections = list["value"] as? [[String: Any]] ?? []
            func endpointID(_ connection: [String: Any]) -> String? {
                (((connection["properties"] as? [String: Any])?["privateEndpoint"] as? [String: Any])?["id"] as? String)?.lowercased()
            }
            guard let found = connections.first(where: { endpointID($0) == id.lowercased() }) else {
                throw AzureDriverError.connectionNotFound(service: service, endpoint: id)
            }
            return found
        }
        var properties = connection["properties"] as? [String: Any] ?? [:]
        let state = properties["privateLinkServiceConnectionState"] as? [String: Any] ?? [:]
        if state["status"] as? String != "Approved", let connectionName = connection["name"] as? String {
            properties["privateLinkServiceConnectionState"] = [
                "status": "Approved", "description": "approved by nclav for \(enclave.id)/\(partition)", "actionsRequired": "None",
            ]
            try await client.putAndWait(
                service + "/privateEndpointConnections/\(connectionName)", apiVersion: Self.networkAPI,
                body: ["name": connectionName, "properties": properties], what: "approving the private endpoint connection")
        }
        let interfaces = (endpoint["properties"] as? [String: Any])?["networkInterfaces"] as? [[String: Any]] ?? []
        guard let interface = interfaces.first?["id"] as? String else {
            throw AzureCallError.operationFailed(call: "PUT \(path)", message: "the private endpoint has no network interface")
        }
        let nic = try await client.send("GET", interface, apiVersion: Self.networkAPI).json
        let configurations = (nic["properties"] as? [String: Any])?["ipConfigurations"] as? [[String: Any]] ?? []
        guard let address = (configurations.first?["properties"] as? [String: Any])?["privateIPAddress"] as? String else {
            throw AzureCallError.operationFailed(call: "GET \(interface)", message: "the endpoint's network interface has no private address")
        }
        return (id, address)
    }

    /// Undoes what `wireImports` recorded, newest first (already-gone is fine).
    func unwire(_ identity: PartitionIdentity) async throws {
        for (key, value) in WiredResources.newestFirst(in: identity) {
            guard let resource = AzureWiredResource(stored: value) else {
                throw ImportWiringError.unreadableRecord(cloud: .azure, key: key, value: value)
            }
            let (path, apiVersion): (String, String)
            switch resource {
            case .privateEndpoint(let id): (path, apiVersion) = (id, Self.networkAPI)
            case .record(let id): (path, apiVersion) = (id, Self.dnsAPI)
            case .roleAssignment(let id): (path, apiVersion) = (id, Self.authorizationAPI)
            }
            do {
                let answer = try await client.send("DELETE", path, apiVersion: apiVersion)
                try await client.waitFor(answer, what: "deleting \(path)")
            } catch let error where error.azureAPI?.status == 404 {}
        }
    }
}
