import Foundation
import NclavDrivers

/// Something `wireImports` made in GCP for one import, kept in the importing partition's
/// identity (under `wired.<n>`) so that tearing the partition down removes exactly it.
enum GCPWiredResource: Codable, Equatable, Sendable {
    /// `roles/run.invoker` for `member` on the exporter's project.
    case invoker(project: String, member: String)
    /// A Private Service Connect endpoint: a forwarding rule and its reserved address, both
    /// named `name`.
    case pscEndpoint(project: String, region: String, name: String)
    /// An A record in the importer's private zone.
    case dnsRecord(project: String, zone: String, name: String)
    /// A Pub/Sub subscription (full name) on `topic`, with `roles/pubsub.subscriber` for
    /// `member` on the topic.
    case subscription(name: String, topic: String, member: String)

    /// The identity value: JSON.
    var stored: String { WiredResources.encode(self) }

    /// Reads an identity value: JSON, or the `kind|field|…` form identities recorded before
    /// the JSON one (still in stores written by earlier versions). Nil when it is neither,
    /// which teardown reports rather than skips.
    init?(stored: String) {
        if stored.hasPrefix("{") {
            guard let decoded = WiredResources.decode(Self.self, from: stored) else { return nil }
            self = decoded
            return
        }
        let parts = stored.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        switch (parts.first, parts.count) {
        case ("invoker", 3): self = .invoker(project: parts[1], member: parts[2])
        case ("psc", 4): self = .pscEndpoint(project: parts[1], region: parts[2], name: parts[3])
        case ("dns", 4): self = .dnsRecord(project: parts[1], zone: parts[2], name: parts[3])
        case ("subscription", 4): self = .subscription(name: parts[1], topic: parts[2], member: parts[3])
        default: return nil
        }
    }
}
