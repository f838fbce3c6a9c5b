/// A Matrix server name, parsed and validated per the spec's grammar (appendices §"Server Name"):
///
///     server_name = hostname [ ":" port ]
///     hostname    = IPv4address / "[" IPv6address "]" / dns-name
///
/// Validation happens before any network traffic. The same parser validates a well-known's
/// `m.server`, which "uses the same grammar as server names".
public struct ServerName: Sendable, Hashable, CustomStringConvertible {
    public enum Host: Sendable, Hashable {
        case ipv4(IPAddress)
        case ipv6(IPAddress)
        /// A DNS name, exactly as written (server names are case-sensitive identifiers).
        case dns(String)
    }

    /// The name exactly as given: the cache key and, for some steps, the Host header.
    public let raw: String
    public let host: Host
    public let port: UInt16?

    public var description: String { raw }

    /// The host as it appears in a URL or Host header (`[::1]` for IPv6).
    public var hostForURL: String {
        switch host {
        case .ipv4(let ip): return ip.description
        case .ipv6(let ip): return "[\(ip.description)]"
        case .dns(let name): return name
        }
    }

    /// The host without brackets: what a certificate must be valid for.
    public var hostForTLS: String {
        switch host {
        case .ipv4(let ip), .ipv6(let ip): return ip.description
        case .dns(let name): return name
        }
    }

    public var isIPLiteral: Bool {
        if case .dns = host { return false }
        return true
    }

    /// Lower-cased DNS name for DNS queries (DNS is case-insensitive; identifiers are not).
    public var dnsName: String? {
        if case .dns(let name) = host { return name.lowercased() }
        return nil
    }

    public init(parsing text: String) throws(ServerNameError) {
        self = try ServerNameParser.parse(text)
    }

    init(raw: String, host: Host, port: UInt16?) {
        self.raw = raw
        self.host = host
        self.port = port
    }
}

/// Why a string is not a valid server name. Each form has its own message, so an admin
/// reading a log or `mxresolvectl query` output knows exactly what to fix.
public enum ServerNameError: Error, Sendable, Equatable, CustomStringConvertible {
    case empty
    case nonASCII
    case badCharacter(Character)
    case emptyLabel
    case labelTooLong(String)
    case labelHyphen(String)
    case nameTooLong(Int)
    case unbracketedIPv6
    case badIPv6(String)
    case badIPv4(String)
    case badPort(String)
    case portOutOfRange(String)

    public var description: String {
        switch self {
        case .empty: return "server name is empty"
        case .nonASCII: return "server name contains non-ASCII characters: use the punycode A-label (xn--…) form"
        case .badCharacter(let c): return "server name contains the character \(c.debugDescription), which is not allowed in a hostname"
        case .emptyLabel: return "server name has an empty DNS label (leading, trailing or doubled dot)"
        case .labelTooLong(let l): return "DNS label '\(l.prefix(20))…' is \(l.utf8.count) characters; a label may have at most 63"
        case .labelHyphen(let l): return "DNS label '\(l)' starts or ends with a hyphen"
        case .nameTooLong(let n): return "server name is \(n) characters; at most 255 are allowed"
        case .unbracketedIPv6: return "IPv6 literal must be enclosed in brackets, e.g. [2001:db8::1]:8448"
        case .badIPv6(let s): return "'\(s)' is not a valid IPv6 address"
        case .badIPv4(let s): return "'\(s)' looks like an IPv4 address but is not a valid one"
        case .badPort(let s): return "port '\(s)' is not a number of 1 to 5 digits"
        case .portOutOfRange(let s): return "port \(s) is out of range: ports are 1 to 65535"
        }
    }
}

enum ServerNameParser {
    static let maxNameLength = 255
    /// The longest name DNS can carry, in text form without the trailing dot (RFC 1035 §3.1: 255
    /// octets on the wire).
    static let maxDNSNameLength = 253
    static let maxLabelLength = 63

    static func parse(_ text: String) throws(ServerNameError) -> ServerName {
        if text.isEmpty { throw .empty }
        if !text.utf8.allSatisfy({ $0 < 0x80 }) { throw .nonASCII }
        if text.utf8.count > maxNameLength { throw .nameTooLong(text.utf8.count) }

        // Split off the port: after "]" for IPv6, otherwise after the only ":".
        var hostPart = Substring(text)
        var portPart: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .badIPv6(text) }
            hostPart = text[text.startIndex...close]
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { throw .badIPv6(text) }
                portPart = rest.dropFirst()
            }
        } else {
            let colons = text.filter { $0 == ":" }.count
            if colons > 1 { throw .unbracketedIPv6 }
            if let colon = text.firstIndex(of: ":") {
                hostPart = text[..<colon]
                portPart = text[text.index(after: colon)...]
            }
        }

        let port = try portPart.map { p throws(ServerNameError) -> UInt16 in try parsePort(p) }
        let host = try parseHost(hostPart)
        return ServerName(raw: text, host: host, port: port)
    }

    static func parsePort(_ p: Substring) throws(ServerNameError) -> UInt16 {
        guard (1...5).contains(p.count), p.allSatisfy({ $0.isASCII && $0.isNumber }) else { throw .badPort(String(p)) }
        guard let value = Int(p), (1...65535).contains(value) else { throw .portOutOfRange(String(p)) }
        return UInt16(value)
    }

    static func parseHost(_ h: Substring) throws(ServerNameError) -> ServerName.Host {
        if h.isEmpty { throw .empty }
        if h.hasPrefix("[") {
            let inner = h.dropFirst().dropLast()
            // IPv6address = 2*45IPv6char
            guard (2...45).contains(inner.count), let ip = IPAddress(ipv6: String(inner)) else { throw .badIPv6(String(inner)) }
            return .ipv6(ip)
        }
        // IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
        let labels = h.split(separator: ".", omittingEmptySubsequences: false)
        if labels.count == 4, labels.allSatisfy({ (1...3).contains($0.count) && $0.allSatisfy { $0.isASCII && $0.isNumber } }) {
            guard let ip = IPAddress(ipv4: String(h)) else { throw .badIPv4(String(h)) }
            return .ipv4(ip)
        }
        // dns-name: hostname-style labels (RFC 1123 §2.1): letters, digits, hyphens.
        for c in h where !(c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == ".")) {
            throw .badCharacter(c)
        }
        // A single trailing dot (fully qualified form) is not part of the grammar's intent: reject it
        // like any other empty label, so "example.com." and "example.com" cannot become two cache keys.
        for label in labels {
            if label.isEmpty { throw .emptyLabel }
            if label.count > maxLabelLength { throw .labelTooLong(String(label)) }
            if label.hasPrefix("-") || label.hasSuffix("-") { throw .labelHyphen(String(label)) }
        }
        return .dns(String(h))
    }
}
