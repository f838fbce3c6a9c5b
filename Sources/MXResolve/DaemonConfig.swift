#if canImport(Glibc)
import Glibc
#endif
import MXCore

/// Every setting of the daemon. Each key is both a config-file key and a `--flag` of the same name.
///
/// The config file is `key = value` lines with `#` comments (repeatable keys repeat), the shape of
/// systemd's resolved.conf and unbound.conf that admins of a resolver sidecar already edit; it
/// needs no parser dependency and has no indentation traps.
public struct DaemonConfig: Sendable, Equatable {
    public var stateDir = "./.mxresolved"
    public var socket: String?
    public var socketMode: mode_t = 0o660
    public var adminGroup: String?
    public var dnsServers: [String] = []
    public var dnsTimeoutMs = 1_000
    public var dnsTries = 2
    public var caFile: String?
    public var allowIP: [String] = []
    public var denyIP: [String] = []
    public var cacheMapSizeMB = 256
    public var memoryCacheEntries = 100_000
    /// Reactor threads watching client sockets (one per core by default).
    public var socketThreads = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    /// I/O threads for curl (the first also owns c-ares): TLS set-up is CPU work on a cold start.
    public var ioThreads = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    public var maxDNSInFlight = 64
    public var maxHTTPSInFlight = 128
    public var wellKnownTimeoutMs = 10_000
    public var resolutionTimeoutMs = 30_000
    public var logLevel = "info"

    public init() {}

    public var socketPath: String { socket ?? "\(stateDir)/mxresolved.sock" }
    public var cacheDir: String { "\(stateDir)/cache" }

    public struct Problem: Error, CustomStringConvertible, Equatable {
        public var key: String
        public var reason: String
        public var description: String { "config key '\(key)': \(reason)" }
        public init(key: String, reason: String) {
            self.key = key
            self.reason = reason
        }
    }

    public static let keys: [String] = ["state-dir", "socket", "socket-mode", "admin-group", "dns-server", "dns-timeout-ms",
                                        "dns-tries", "ca-file", "allow-ip", "deny-ip", "cache-map-size-mb", "memory-cache-entries", "socket-threads", "io-threads",
                                        "max-dns-inflight", "max-https-inflight", "wellknown-timeout-ms",
                                        "resolution-timeout-ms", "log-level"]

    /// Applies one `key = value` setting (from the file or a flag).
    public mutating func set(_ key: String, _ value: String) throws(Problem) {
        func int(_ range: ClosedRange<Int>) throws(Problem) -> Int {
            guard let v = Int(value), range.contains(v) else { throw Problem(key: key, reason: "'\(value)' is not a whole number in \(range.lowerBound)...\(range.upperBound)") }
            return v
        }
        switch key {
        case "state-dir": stateDir = value
        case "socket": socket = value
        case "socket-mode":
            guard let m = mode_t(value, radix: 8), m <= 0o777 else { throw Problem(key: key, reason: "'\(value)' is not an octal file mode like 0660") }
            socketMode = m
        case "admin-group":
            guard getgrnam(value) != nil || UInt32(value) != nil else { throw Problem(key: key, reason: "no group named '\(value)'") }
            adminGroup = value
        case "dns-server":
            guard Self.parseDNSServer(value) != nil else { throw Problem(key: key, reason: "'\(value)' is not ADDR, ADDR:PORT or [IPv6]:PORT") }
            dnsServers.append(value)
        case "dns-timeout-ms": dnsTimeoutMs = try int(50...60_000)
        case "dns-tries": dnsTries = try int(1...10)
        case "ca-file":
            guard access(value, R_OK) == 0 else { throw Problem(key: key, reason: "cannot read '\(value)'") }
            caFile = value
        case "allow-ip":
            guard CIDR(value) != nil else { throw Problem(key: key, reason: "'\(value)' is not an address range like 10.0.0.0/8 or fd00::/8") }
            allowIP.append(value)
        case "deny-ip":
            guard CIDR(value) != nil else { throw Problem(key: key, reason: "'\(value)' is not an address range like 10.0.0.0/8 or fd00::/8") }
            denyIP.append(value)
        case "cache-map-size-mb": cacheMapSizeMB = try int(1...1_048_576)
        case "socket-threads": socketThreads = try int(1...64)
        case "io-threads": ioThreads = try int(1...16)
        case "memory-cache-entries": memoryCacheEntries = try int(100...100_000_000)
        case "max-dns-inflight": maxDNSInFlight = try int(1...10_000)
        case "max-https-inflight": maxHTTPSInFlight = try int(1...10_000)
        case "wellknown-timeout-ms": wellKnownTimeoutMs = try int(100...120_000)
        case "resolution-timeout-ms": resolutionTimeoutMs = try int(500...600_000)
        case "log-level":
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(value) else {
                throw Problem(key: key, reason: "'\(value)' is not one of trace, debug, info, notice, warning, error, critical")
            }
            logLevel = value
        default:
            throw Problem(key: key, reason: "unknown key (known keys: \(Self.keys.joined(separator: ", ")))")
        }
    }

    /// Reads a config file's settings into self.
    public mutating func load(file text: String, path: String) throws(Problem) {
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = String(line).trimmingSpaces
            if trimmed.isEmpty { continue }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw Problem(key: "\(path):\(number + 1)", reason: "expected 'key = value', got '\(trimmed.prefix(60))'")
            }
            let key = String(trimmed[..<eq]).trimmingSpaces
            let value = String(trimmed[trimmed.index(after: eq)...]).trimmingSpaces
            do { try set(key, value) } catch {
                throw Problem(key: key, reason: "\(error.reason) (\(path):\(number + 1))")
            }
        }
    }

    /// `127.0.0.53`, `127.0.0.53:5353`, `[::1]:53`, `::1` → c-ares "host:port" form.
    public static func parseDNSServer(_ s: String) -> String? {
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]"), IPAddress(ipv6: String(s[s.index(after: s.startIndex)..<close])) != nil else { return nil }
            let rest = s[s.index(after: close)...]
            if rest.isEmpty { return s + ":53" }
            guard rest.hasPrefix(":"), let p = UInt16(rest.dropFirst()), p > 0 else { return nil }
            return s
        }
        if IPAddress(ipv6: s) != nil { return "[\(s)]:53" }
        let parts = s.split(separator: ":")
        guard IPAddress(ipv4: String(parts[0])) != nil else { return nil }
        if parts.count == 1 { return s + ":53" }
        guard parts.count == 2, let p = UInt16(parts[1]), p > 0 else { return nil }
        return s
    }

    public var ipPolicy: IPPolicy {
        IPPolicy(denied: IPPolicy.defaultDenied + denyIP.compactMap(CIDR.init), allowed: allowIP.compactMap(CIDR.init))
    }

    public var adminGroupID: UInt32? {
        guard let g = adminGroup else { return nil }
        if let gr = getgrnam(g) { return gr.pointee.gr_gid }
        return UInt32(g)
    }
}
