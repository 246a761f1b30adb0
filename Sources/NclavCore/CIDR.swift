/// An IPv4 network in CIDR notation (`10.0.0.0/16`), enough to check that declared
/// subnets are well formed and lie inside the enclave's VPC range.
public struct IPv4CIDR: Sendable, Hashable, CustomStringConvertible {
    public let address: UInt32
    public let prefixLength: Int

    public init?(_ text: String) {
        let pieces = text.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count == 2, let prefix = Int(pieces[1]), (0...32).contains(prefix),
            pieces[1].allSatisfy(\.isNumber)
        else { return nil }
        let octets = pieces[0].split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var address: UInt32 = 0
        for octet in octets {
            guard !octet.isEmpty, octet.count <= 3, octet.allSatisfy(\.isNumber), let value = UInt32(octet), value <= 255 else {
                return nil
            }
            address = address << 8 | value
        }
        self.address = address
        self.prefixLength = prefix
    }

    /// The block with its host bits cleared (`10.0.0.1/16` → `10.0.0.0/16`).
    public var network: IPv4CIDR { IPv4CIDR(address: address & mask, prefixLength: prefixLength) }

    private init(address: UInt32, prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    public var mask: UInt32 { prefixLength == 0 ? 0 : UInt32.max << (32 - UInt32(prefixLength)) }

    /// True when host bits are set (`10.0.0.1/16`), which clouds reject.
    public var hasHostBits: Bool { address & ~mask != 0 }

    public func contains(_ other: IPv4CIDR) -> Bool {
        other.prefixLength >= prefixLength && (other.address & mask) == (address & mask)
    }

    public func overlaps(_ other: IPv4CIDR) -> Bool { contains(other) || other.contains(self) }

    public var description: String {
        let octets = [24, 16, 8, 0].map { String((address >> UInt32($0)) & 0xff) }
        return octets.joined(separator: ".") + "/\(prefixLength)"
    }
}
