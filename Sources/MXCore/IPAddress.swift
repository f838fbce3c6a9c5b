#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address as bytes (4 or 16), printed in its canonical text form.
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public let bytes: [UInt8]
    public var isIPv6: Bool { bytes.count == 16 }

    // A NUL would end the C string early: "::1\0anything" must not read as ::1.
    public init?(ipv4 text: String) {
        var a = in_addr()
        guard !text.utf8.contains(0), inet_pton(AF_INET, text, &a) == 1 else { return nil }
        bytes = withUnsafeBytes(of: &a) { Array($0) }
    }

    public init?(ipv6 text: String) {
        var a = in6_addr()
        guard !text.utf8.contains(0), inet_pton(AF_INET6, text, &a) == 1 else { return nil }
        bytes = withUnsafeBytes(of: &a) { Array($0) }
    }

    /// Either family, without brackets.
    public init?(_ text: String) {
        if let v4 = IPAddress(ipv4: text) { self = v4 } else if let v6 = IPAddress(ipv6: text) { self = v6 } else { return nil }
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isIPv6 ? AF_INET6 : AF_INET
        return bytes.withUnsafeBytes { raw in
            buffer.withUnsafeMutableBufferPointer { out in
                guard inet_ntop(family, raw.baseAddress, out.baseAddress, socklen_t(out.count)) != nil else { return "?" }
                return String(cString: out.baseAddress!)
            }
        }
    }

    /// The IPv4 address embedded in an IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d)
    /// or 6to4 (2002:aabb:ccdd::/16) IPv6 address, so policy checks cannot be dodged by re-encoding.
    public var embeddedIPv4: IPAddress? {
        guard isIPv6 else { return nil }
        if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
            return IPAddress(bytes: Array(bytes[12..<16]))
        }
        if bytes[0..<12].allSatisfy({ $0 == 0 }) && !(bytes[12..<15].allSatisfy { $0 == 0 }) {
            return IPAddress(bytes: Array(bytes[12..<16]))
        }
        if bytes[0] == 0x20 && bytes[1] == 0x02 {
            return IPAddress(bytes: Array(bytes[2..<6]))
        }
        return nil
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let ip = IPAddress(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad IP \(text)"))
        }
        self = ip
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// An address range in CIDR notation (`10.0.0.0/8`, `fc00::/7`).
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let ip = IPAddress(String(parts[0])) else { return nil }
        let maxBits = ip.bytes.count * 8
        if parts.count == 2 {
            guard let n = Int(parts[1]), (0...maxBits).contains(n) else { return nil }
            prefixLength = n
        } else {
            prefixLength = maxBits
        }
        network = ip
    }

    public var description: String { "\(network)/\(prefixLength)" }

    public func contains(_ ip: IPAddress) -> Bool {
        guard ip.bytes.count == network.bytes.count else { return false }
        var bits = prefixLength
        for i in 0..<ip.bytes.count where bits > 0 {
            let mask: UInt8 = bits >= 8 ? 0xff : ~(0xff >> UInt8(bits))
            if ip.bytes[i] & mask != network.bytes[i] & mask { return false }
            bits -= 8
        }
        return true
    }
}

/// Which addresses mxresolved may hand out as targets or contact for a well-known fetch.
/// The default deny list is Synapse's `DEFAULT_IP_RANGE_BLOCKLIST` plus `0.0.0.0` and `::`;
/// IPv4 ranges also apply to their IPv4-mapped, IPv4-compatible and 6to4 forms.
/// `allowed` ranges (`--allow-ip`) are exempt from the deny list.
public struct IPPolicy: Sendable {
    public static let defaultDenied: [CIDR] = [
        "0.0.0.0/32", "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
        "192.0.0.0/24", "169.254.0.0/16", "192.88.99.0/24", "198.18.0.0/15", "192.0.2.0/24",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
        "::/128", "::1/128", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8", "fec0::/10",
    ].map { CIDR($0)! }

    public var denied: [CIDR]
    public var allowed: [CIDR]

    public init(denied: [CIDR] = IPPolicy.defaultDenied, allowed: [CIDR] = []) {
        self.denied = denied
        self.allowed = allowed
    }

    /// The deny rule that refuses `ip`, or nil when it may be used.
    public func denyingRange(_ ip: IPAddress) -> CIDR? {
        if allowed.contains(where: { $0.contains(ip) }) { return nil }
        if let hit = denied.first(where: { $0.contains(ip) }) { return hit }
        if let v4 = ip.embeddedIPv4 {
            if allowed.contains(where: { $0.contains(v4) }) { return nil }
            return denied.first(where: { $0.contains(v4) })
        }
        return nil
    }

    public func permits(_ ip: IPAddress) -> Bool { denyingRange(ip) == nil }
}
