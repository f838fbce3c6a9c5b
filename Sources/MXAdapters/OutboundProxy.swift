import MXCore

/// The outbound proxy for well-known fetches, as Synapse takes it (docs/setup/forward_proxy.md):
/// `https_proxy` is `[scheme://][user:password@]host[:port]` (scheme `http` or `https`, default
/// `http`; port 1080 when none is given), and `no_proxy` is a comma-separated list of host names
/// (a name also covers its subdomains; a leading "." is allowed), IP addresses, CIDR ranges, or `*`.
///
/// The fetch tunnels through the proxy with CONNECT to an address mxresolved resolved and checked
/// against the IP policy itself, never to a name the proxy would resolve: the deny list applies to
/// the final destination, which Synapse leaves to the proxy.
public struct OutboundProxy: Sendable, Hashable {
    /// The proxy URL as libcurl takes it, with its scheme.
    public let url: String
    let bypass: [Bypass]

    enum Bypass: Sendable, Hashable {
        case everything
        case domain(String)
        case address(IPAddress)
        case range(CIDR)
    }

    /// Why a proxy setting was refused.
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// `proxy`: the https_proxy value; `noProxy`: the no_proxy value (empty: none).
    public init(proxy: String, noProxy: String) throws(Invalid) {
        url = try Self.checkedURL(proxy)
        bypass = try Self.bypassRules(noProxy)
    }

    /// https_proxy/HTTPS_PROXY and no_proxy/NO_PROXY from `environment` (lower case wins, as in curl
    /// and Python's urllib). nil proxy: unset or empty.
    public static func fromEnvironment(_ environment: [String: String]) -> (proxy: String?, noProxy: String?) {
        func value(_ name: String) -> String? {
            (environment[name] ?? environment[name.uppercased()]).flatMap { $0.trimmingSpaces.isEmpty ? nil : $0.trimmingSpaces }
        }
        return (value("https_proxy"), value("no_proxy"))
    }

    /// Whether a fetch from `host` (a host name or an IP literal, without brackets) goes direct.
    public func bypasses(_ host: String) -> Bool {
        let name = host.lowercased()
        let ip = IPAddress(name)
        return bypass.contains { rule in
            switch rule {
            case .everything: return true
            case .domain(let d): return name == d || name.hasSuffix("." + d)
            case .address(let a): return ip == a
            case .range(let r): return ip.map(r.contains) ?? false
            }
        }
    }

    static func checkedURL(_ raw: String) throws(Invalid) -> String {
        let value = raw.trimmingSpaces
        var rest = Substring(value)
        var scheme = "http"
        if let end = value.firstRange(of: "://") {
            scheme = value[..<end.lowerBound].lowercased()
            rest = value[end.upperBound...]
        }
        guard scheme == "http" || scheme == "https" else {
            throw Invalid(description: "proxy scheme '\(scheme)' is not http or https (SOCKS is not supported, as in Synapse)")
        }
        let authority = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let hostPort = authority.split(separator: "@").last ?? ""
        guard !hostPort.isEmpty, !hostPort.contains(where: { $0 == " " || $0 == "\t" }) else {
            throw Invalid(description: "'\(value.prefix(200))' is not a proxy URL like http://proxy.example.com:3128")
        }
        // Synapse's default port; curl's is the same, but say it rather than rely on it.
        let hasPort = hostPort.hasPrefix("[") ? hostPort.contains("]:") : hostPort.contains(":")
        return "\(scheme)://\(authority)\(hasPort ? "" : ":1080")"
    }

    static func bypassRules(_ raw: String) throws(Invalid) -> [Bypass] {
        var rules: [Bypass] = []
        for entry in raw.split(separator: ",") {
            let item = String(entry).trimmingSpaces.lowercased()
            if item.isEmpty { continue }
            if item == "*" {
                rules.append(.everything)
            } else if item.contains("/") {
                guard let range = CIDR(item) else { throw Invalid(description: "no_proxy entry '\(item.prefix(100))' is not a CIDR range") }
                rules.append(.range(range))
            } else if let ip = IPAddress(item.hasPrefix("[") && item.hasSuffix("]") ? String(item.dropFirst().dropLast()) : item) {
                rules.append(.address(ip))
            } else {
                // "host:port" entries match the host (a well-known fetch always uses 443 or the redirect's port).
                var name = Substring(item)
                if let colon = name.lastIndex(of: ":") { name = name[..<colon] }
                while name.hasPrefix(".") { name = name.dropFirst() }
                guard !name.isEmpty else { throw Invalid(description: "no_proxy entry '\(item.prefix(100))' names no host") }
                rules.append(.domain(String(name)))
            }
        }
        return rules
    }
}
