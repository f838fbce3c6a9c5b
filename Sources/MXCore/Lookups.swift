/// The three network primitives the algorithm needs. The c-ares / libcurl adapters implement
/// them for real; unit tests implement them with fakes. Every completion is called exactly once,
/// on any thread.
public protocol LookupBackend: Sendable {
    /// An SRV query (`_matrix-fed._tcp.example.com`), with each record's TTL.
    func querySRV(_ name: String, completion: @escaping @Sendable (Result<[SRVRecord], DNSError>) -> Void)
    /// AAAA and A queries for `host`, following CNAMEs (whose chain is reported).
    func queryAddresses(_ host: String, completion: @escaping @Sendable (Result<AddressSet, DNSError>) -> Void)
    /// One HTTPS GET without following redirects, connecting only to the given addresses.
    func httpsGet(_ request: HTTPSRequest, completion: @escaping @Sendable (Result<HTTPSResponse, HTTPSError>) -> Void)
}

public struct SRVRecord: Sendable, Hashable {
    public var priority: UInt16
    public var weight: UInt16
    public var port: UInt16
    /// Target host, without the trailing dot; "." when the service is decidedly not available.
    public var target: String
    public var ttl: UInt32

    public init(priority: UInt16, weight: UInt16, port: UInt16, target: String, ttl: UInt32) {
        self.priority = priority
        self.weight = weight
        self.port = port
        self.target = target
        self.ttl = ttl
    }
}

public struct ResolvedAddress: Sendable, Hashable {
    public var address: IPAddress
    public var ttl: UInt32
    public init(address: IPAddress, ttl: UInt32) {
        self.address = address
        self.ttl = ttl
    }
}

public struct AddressSet: Sendable, Hashable {
    public var ipv6: [ResolvedAddress]
    public var ipv4: [ResolvedAddress]
    /// CNAME owner names followed from the queried name to the canonical name (empty if none).
    public var cnameChain: [String]
    public var source: Source

    /// Where the addresses came from.
    public enum Source: Sendable, Hashable {
        case dns
        /// The hosts file (`hosts-file`), as getaddrinfo reads it before DNS.
        case hostsFile
    }

    public init(ipv6: [ResolvedAddress], ipv4: [ResolvedAddress], cnameChain: [String] = [], source: Source = .dns) {
        self.ipv6 = ipv6
        self.ipv4 = ipv4
        self.cnameChain = cnameChain
        self.source = source
    }

    /// The order handed to workers and to curl: the families interleaved, IPv6 first (RFC 8305 §4),
    /// so a client connecting in order reaches the other family after one failed address, not after all.
    public var all: [ResolvedAddress] { interleavedByFamily(ipv6, ipv4) }
    public var minTTL: UInt32? { all.map(\.ttl).min() }
}

/// DNS outcomes that are not an answer. Only `nxdomain` and `nodata` mean "the record does not
/// exist"; the others are errors that must not be taken as absence.
public enum DNSError: Error, Sendable, Hashable, CustomStringConvertible {
    case nxdomain(negativeTTL: UInt32?)
    case nodata(negativeTTL: UInt32?)
    case servfail
    case refused
    /// NOTIMP: the server does not implement the query.
    case notImplemented
    case timeout
    case other(String)

    public var meansNotFound: Bool {
        switch self {
        case .nxdomain, .nodata: return true
        default: return false
        }
    }

    /// An SRV lookup "found nothing": NXDOMAIN, NODATA, or NOTIMP (a server that does not implement
    /// SRV, such as Tor's resolver for `.onion`; Synapse falls back to port 8448 for it too).
    public var meansSRVNotFound: Bool {
        switch self {
        case .nxdomain, .nodata, .notImplemented: return true
        default: return false
        }
    }

    public var negativeTTL: UInt32? {
        switch self {
        case .nxdomain(let t), .nodata(let t): return t
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .nxdomain: return "NXDOMAIN (no such name)"
        case .nodata: return "no records of that type (NODATA)"
        case .servfail: return "SERVFAIL from the DNS server"
        case .refused: return "REFUSED by the DNS server"
        case .notImplemented: return "NOTIMP (the DNS server does not implement the query)"
        case .timeout: return "DNS timeout (no answer)"
        case .other(let s): return "DNS error: \(s)"
        }
    }
}

public struct HTTPSRequest: Sendable, Hashable {
    /// `https://host[:port]/path`; host is what SNI, Host header and certificate check use.
    public var url: String
    public var host: String
    public var port: UInt16
    /// Where to connect, in order (curl is pinned to these; it never resolves names itself).
    public var connectTo: [IPAddress]
    public var maxBodyBytes: Int
    public var connectTimeoutMs: Int
    public var totalTimeoutMs: Int

    public init(url: String, host: String, port: UInt16, connectTo: [IPAddress], maxBodyBytes: Int, connectTimeoutMs: Int, totalTimeoutMs: Int) {
        self.url = url
        self.host = host
        self.port = port
        self.connectTo = connectTo
        self.maxBodyBytes = maxBodyBytes
        self.connectTimeoutMs = connectTimeoutMs
        self.totalTimeoutMs = totalTimeoutMs
    }
}

public struct HTTPSResponse: Sendable, Hashable {
    public var status: Int
    /// Header names lower-cased, in the order received (a name may repeat).
    public var headers: [HTTPHeader]
    public var body: [UInt8]

    public init(status: Int, headers: [HTTPHeader], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func values(of name: String) -> [String] {
        headers.filter { $0.name == name }.map(\.value)
    }
}

public struct HTTPHeader: Sendable, Hashable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name.lowercased()
        self.value = value
    }
}

public enum HTTPSError: Error, Sendable, Hashable, CustomStringConvertible {
    case connect(String)
    case tls(String)
    case timeout
    case bodyTooLarge(limit: Int)
    case other(String)

    public var description: String {
        switch self {
        case .connect(let s): return "connection failed: \(s)"
        case .tls(let s): return "TLS failed: \(s)"
        case .timeout: return "timed out"
        case .bodyTooLarge(let limit): return "body larger than \(limit) bytes"
        case .other(let s): return s
        }
    }
}

/// RFC 8305 §4: one of the first list, one of the second, and so on; the rest of the longer list at the end.
func interleavedByFamily<T>(_ first: [T], _ second: [T]) -> [T] {
    var out: [T] = []
    out.reserveCapacity(first.count + second.count)
    for i in 0..<max(first.count, second.count) {
        if i < first.count { out.append(first[i]) }
        if i < second.count { out.append(second[i]) }
    }
    return out
}
