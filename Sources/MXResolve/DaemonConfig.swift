#if canImport(Glibc)
import Glibc
#endif
import MXCore
import MXAdapters

/// Every setting of the daemon, typed, with its default. `DaemonConfig.settings` (Settings.swift)
/// maps each to a config-file key and the `--flag` of the same name.
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
    public var hostsFile = "/etc/hosts"
    public var httpsProxy: String?
    public var noProxy: String?
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
    /// `ADDR:PORT` of the Prometheus endpoint; nil: none.
    public var metricsListen: String?

    public init() {}

    public var socketPath: String { socket ?? "\(stateDir)/mxresolved.sock" }
    public var cacheDir: String { "\(stateDir)/cache" }
    /// The longest one DNS lookup takes once c-ares sent it: the per-try timeout, doubling over the
    /// tries, for each server (resolv.conf lists at most 3).
    public var dnsLookupMaxMs: Int {
        let servers = dnsServers.isEmpty ? 3 : dnsServers.count
        return dnsTimeoutMs * ((1 << min(max(dnsTries, 1), 16)) - 1) * servers
    }

    public struct Problem: Error, CustomStringConvertible, Equatable {
        public var key: String
        public var reason: String
        public var description: String { "config key '\(key)': \(reason)" }
        public init(key: String, reason: String) {
            self.key = key
            self.reason = reason
        }
    }

    public static let keys: [String] = settings.map(\.key)
    private static let settingsByKey = Dictionary(uniqueKeysWithValues: settings.map { ($0.key, $0) })

    public static func setting(_ key: String) -> Setting? { settingsByKey[key] }

    /// Applies one `key = value` setting (from the file or a flag).
    public mutating func set(_ key: String, _ value: String) throws(Problem) {
        guard let setting = Self.setting(key) else {
            throw Problem(key: key, reason: "unknown key (known keys: \(Self.keys.joined(separator: ", ")))")
        }
        do { try setting.apply(&self, value) } catch { throw Problem(key: key, reason: error.reason) }
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

    /// `127.0.0.1:9367`, `[::1]:9367` → (address, port, is IPv6). An IP literal and a port are both
    /// required: the endpoint binds where it is told, no name is looked up.
    public static func parseListenAddress(_ s: String) -> (host: String, port: UInt16, ipv6: Bool)? {
        guard let colon = s.lastIndex(of: ":"), let port = UInt16(s[s.index(after: colon)...]), port > 0 else { return nil }
        let host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            let inner = String(host.dropFirst().dropLast())
            return IPAddress(ipv6: inner) != nil ? (inner, port, true) : nil
        }
        return IPAddress(ipv4: host) != nil ? (host, port, false) : nil
    }

    /// These settings as a config file that loads back to them: every key with its help and
    /// default; what differs from the defaults is set, the rest is shown commented out.
    /// dist/mxresolved.conf is this for the packaged setup.
    public var configFile: String {
        let defaults = DaemonConfig()
        var out = """
        # mxresolved configuration: `key = value` lines, `#` starts a comment, repeatable keys repeat.
        # Every key is also a --flag of the same name (mxresolved --help); flags override this file.
        # Written by `mxresolved --dump-config`: lines starting with `#` leave the default in force.

        """
        for setting in Self.settings {
            out += "\n"
            for line in Self.wrap(setting.helpWithDefault, width: 98) {
                out += "# \(line)\n"
            }
            let values = setting.values(self)
            if values != setting.values(defaults) {
                for value in values { out += "\(setting.key) = \(value)\n" }
            } else if let shown = setting.defaultValue ?? setting.example {
                out += "# \(setting.key) = \(shown)\n"
            }
        }
        return out
    }

    /// Words of `text` in lines of at most `width` characters (a longer word gets a line of its own).
    static func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty && line.count + 1 + word.count > width {
                lines.append(line)
                line = ""
            }
            line += (line.isEmpty ? "" : " ") + word
        }
        if !line.isEmpty { lines.append(line) }
        return lines
    }

    public var ipPolicy: IPPolicy {
        IPPolicy(denied: IPPolicy.defaultDenied + denyIP.compactMap(CIDR.init), allowed: allowIP.compactMap(CIDR.init))
    }

    /// The outbound proxy: `https-proxy`/`no-proxy` from the config, each falling back to its
    /// environment variable (as Synapse reads them); off when neither sets a proxy.
    public func outboundProxy(environment: [String: String]) throws -> OutboundProxy? {
        let fromEnvironment = OutboundProxy.fromEnvironment(environment)
        guard let proxy = httpsProxy ?? fromEnvironment.proxy else { return nil }
        return try OutboundProxy(proxy: proxy, noProxy: noProxy ?? fromEnvironment.noProxy ?? "")
    }

    public var adminGroupID: UInt32? {
        guard let g = adminGroup else { return nil }
        if let gr = getgrnam(g) { return gr.pointee.gr_gid }
        return UInt32(g)
    }
}

/// The process environment's proxy variables (the only ones the daemon reads).
enum ProcessEnvironment {
    static func proxyVariables() -> [String: String] {
        var out: [String: String] = [:]
        for name in ["https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"] {
            if let value = getenv(name) { out[name] = String(cString: value) }
        }
        return out
    }
}
