#if canImport(Glibc)
import Glibc
#endif
import MXCore
import MXAdapters

/// One setting of the daemon: a key of the config file and the `--flag` of the same name.
/// `DaemonConfig.settings` lists them all; the file parser, the command line, `--help` and
/// `--dump-config` (which writes dist/mxresolved.conf) all read that one table.
public struct Setting: Sendable {
    public enum Repeats: Sendable, Equatable {
        /// A later value replaces an earlier one.
        case no
        /// Each value adds one. `flagsReplaceFile`: giving the flag drops what the config file listed.
        case yes(flagsReplaceFile: Bool)
    }

    public let key: String
    /// The value's form, for `--help` ("PATH", "50...60000").
    public let valueName: String
    public let repeats: Repeats
    public let help: String
    /// The default, written as a value (what `--dump-config` shows), or nil when the default is
    /// no value at all or depends on the machine.
    public let defaultValue: String?
    /// The default in words, when `defaultValue` cannot say it ("one per core").
    public let defaultDescription: String?
    /// A value to show, commented out, where no default value can be written.
    public let example: String?
    /// Checks a value and stores it.
    let apply: @Sendable (inout DaemonConfig, String) throws(Invalid) -> Void
    /// The values `config` holds, as the config file writes them (empty: unset).
    let values: @Sendable (DaemonConfig) -> [String]
    /// Empties a repeatable setting.
    let clear: @Sendable (inout DaemonConfig) -> Void

    /// Why a value was refused.
    public struct Invalid: Error {
        public var reason: String
    }

    /// The help text and the default, as `--help` and the config file show them.
    public var helpWithDefault: String {
        guard let shown = defaultValue ?? defaultDescription else { return help }
        return "\(help) (default: \(shown))"
    }
}

extension DaemonConfig {
    /// Every setting, in the order `--help` and the config file list them.
    public static let settings: [Setting] = [
        .text("state-dir", \.stateDir, valueName: "PATH",
              help: "Directory for the socket (by default) and the LMDB cache."),
        .optionalText("socket", \.socket, valueName: "PATH", defaultDescription: "STATE_DIR/mxresolved.sock",
                      example: "/run/mxresolved/socket",
                      help: "Socket path. Unused when systemd passes the socket (socket activation, LISTEN_FDS)."),
        Setting(key: "socket-mode", valueName: "MODE", repeats: .no,
                help: "Socket file mode, octal.",
                defaultValue: octal(DaemonConfig().socketMode), defaultDescription: nil, example: nil,
                apply: { config, value throws(Setting.Invalid) in
                    guard let m = mode_t(value, radix: 8), m <= 0o777 else {
                        throw Setting.Invalid(reason: "'\(value)' is not an octal file mode like 0660")
                    }
                    config.socketMode = m
                },
                values: { [octal($0.socketMode)] }, clear: { _ in }),
        .optionalText("admin-group", \.adminGroup, valueName: "GROUP", example: "matrix-synapse",
                      help: "Group (besides root and the daemon's uid) allowed to flush, revalidate and reset statistics.") {
            getgrnam($0) != nil || UInt32($0) != nil ? nil : "no group named '\($0)'"
        },
        .list("dns-server", \.dnsServers, valueName: "ADDR[:PORT]", flagsReplaceFile: true,
              defaultDescription: "the system's resolv.conf", example: "127.0.0.53",
              help: "DNS server ADDR[:PORT] or [IPv6]:PORT; repeatable.") {
            parseDNSServer($0) == nil ? "'\($0)' is not ADDR, ADDR:PORT or [IPv6]:PORT" : nil
        },
        .number("dns-timeout-ms", \.dnsTimeoutMs, in: 50...60_000, help: "Per-try DNS timeout in ms."),
        .number("dns-tries", \.dnsTries, in: 1...10, help: "DNS tries per query."),
        .optionalText("ca-file", \.caFile, valueName: "PATH", example: "/etc/mxresolved/extra-ca.pem",
                      help: "Extra trusted CA file (PEM) for well-known fetches, besides the system store.") {
            access($0, R_OK) == 0 ? nil : "cannot read '\($0)'"
        },
        .text("hosts-file", \.hostsFile, valueName: "PATH",
              help: "hosts(5) file read before DNS for address lookups, as getaddrinfo does for Synapse; empty: none."),
        .optionalText("https-proxy", \.httpsProxy, valueName: "URL", defaultDescription: "the https_proxy environment variable",
                      example: "http://proxy.example.com:3128",
                      help: "Outbound proxy for well-known fetches, [http[s]://][user:password@]host[:port] (port 1080 if none); "
                          + "the deny list still applies.") { value in
            do { _ = try OutboundProxy(proxy: value, noProxy: ""); return nil } catch { return "\(error)" }
        },
        .optionalText("no-proxy", \.noProxy, valueName: "LIST", defaultDescription: "the no_proxy environment variable",
                      example: "internal.example.com,10.0.0.0/8",
                      help: "Hosts fetched without the proxy: names (with their subdomains), IP addresses, CIDR ranges or *, comma-separated.") { value in
            do { _ = try OutboundProxy(proxy: "unused", noProxy: value); return nil } catch { return "\(error)" }
        },
        .list("allow-ip", \.allowIP, valueName: "CIDR", flagsReplaceFile: true,
              defaultDescription: nil, example: "10.20.0.0/16",
              help: "Exempt an address range from the default deny list (private, loopback, link-local and "
                  + "documentation ranges); repeatable.", check: checkCIDR),
        // Flags add to the file's deny list: a flag can deny more, never un-deny what the file denies.
        .list("deny-ip", \.denyIP, valueName: "CIDR", flagsReplaceFile: false,
              defaultDescription: nil, example: "192.0.2.0/24",
              help: "Deny an extra address range; repeatable.", check: checkCIDR),
        .number("cache-map-size-mb", \.cacheMapSizeMB, in: 1...1_048_576,
                help: "LMDB map size in MiB: the cache's upper bound."),
        .number("memory-cache-entries", \.memoryCacheEntries, in: 100...100_000_000,
                help: "Decoded cache entries kept in memory; the rest are read from LMDB on use."),
        .number("socket-threads", \.socketThreads, in: 1...64, machineDependent: "one per core", example: "4",
                help: "Threads watching client sockets."),
        .number("io-threads", \.ioThreads, in: 1...16, machineDependent: "one per core", example: "4",
                help: "I/O threads for well-known fetches; the first also runs DNS."),
        .number("max-dns-inflight", \.maxDNSInFlight, in: 1...10_000, help: "DNS queries in flight at most."),
        .number("max-https-inflight", \.maxHTTPSInFlight, in: 1...10_000, help: "Well-known fetches in flight at most."),
        .number("wellknown-timeout-ms", \.wellKnownTimeoutMs, in: 100...120_000,
                help: "Time for the whole well-known phase (every redirect hop) in ms; cut to leave steps 4-6 their DNS time inside resolution-timeout-ms."),
        .number("resolution-timeout-ms", \.resolutionTimeoutMs, in: 500...600_000,
                help: "Upper bound on one whole resolution in ms."),
        .optionalText("metrics-listen", \.metricsListen, valueName: "ADDR:PORT", defaultDescription: "off", example: "127.0.0.1:9367",
                      help: "Serve Prometheus metrics (GET /metrics, plain HTTP) on this address and port; keep it on loopback "
                          + "or a trusted network.") {
            parseListenAddress($0) == nil ? "'\($0)' is not ADDR:PORT or [IPv6]:PORT with an IP address and a port" : nil
        },
        .text("log-level", \.logLevel, valueName: "LEVEL", help: "trace, debug, info, notice, warning, error or critical.") {
            logLevels.contains($0) ? nil : "'\($0)' is not one of \(logLevels.joined(separator: ", "))"
        },
    ]

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    @Sendable static func checkCIDR(_ value: String) -> String? {
        CIDR(value) == nil ? "'\(value)' is not an address range like 10.0.0.0/8 or fd00::/8" : nil
    }
}

/// The shapes of setting the table uses. `check` returns why a value is refused, or nil.
extension Setting {
    typealias Check = @Sendable (String) -> String?

    /// A whole number in `range`. `machineDependent`: the default in words, when it differs per machine.
    static func number(_ key: String, _ property: WritableKeyPath<DaemonConfig, Int> & Sendable, in range: ClosedRange<Int>,
                       machineDependent: String? = nil, example: String? = nil, help: String) -> Setting {
        Setting(key: key, valueName: "\(range.lowerBound)...\(range.upperBound)", repeats: .no, help: help,
                defaultValue: machineDependent == nil ? String(DaemonConfig()[keyPath: property]) : nil,
                defaultDescription: machineDependent, example: example,
                apply: { config, value throws(Invalid) in
                    guard let n = Int(value), range.contains(n) else {
                        throw Invalid(reason: "'\(value)' is not a whole number in \(range.lowerBound)...\(range.upperBound)")
                    }
                    config[keyPath: property] = n
                },
                values: { [String($0[keyPath: property])] }, clear: { _ in })
    }

    static func text(_ key: String, _ property: WritableKeyPath<DaemonConfig, String> & Sendable, valueName: String,
                     help: String, check: @escaping Check = { _ in nil }) -> Setting {
        Setting(key: key, valueName: valueName, repeats: .no, help: help,
                defaultValue: DaemonConfig()[keyPath: property], defaultDescription: nil, example: nil,
                apply: { config, value throws(Invalid) in
                    if let reason = check(value) { throw Invalid(reason: reason) }
                    config[keyPath: property] = value
                },
                values: { [$0[keyPath: property]] }, clear: { _ in })
    }

    /// Unset by default.
    static func optionalText(_ key: String, _ property: WritableKeyPath<DaemonConfig, String?> & Sendable, valueName: String,
                             defaultDescription: String? = nil, example: String, help: String,
                             check: @escaping Check = { _ in nil }) -> Setting {
        Setting(key: key, valueName: valueName, repeats: .no, help: help,
                defaultValue: nil, defaultDescription: defaultDescription, example: example,
                apply: { config, value throws(Invalid) in
                    if let reason = check(value) { throw Invalid(reason: reason) }
                    config[keyPath: property] = value
                },
                values: { $0[keyPath: property].map { [$0] } ?? [] }, clear: { _ in })
    }

    /// Repeatable, empty by default.
    static func list(_ key: String, _ property: WritableKeyPath<DaemonConfig, [String]> & Sendable, valueName: String,
                     flagsReplaceFile: Bool, defaultDescription: String?, example: String, help: String,
                     check: @escaping Check) -> Setting {
        Setting(key: key, valueName: valueName, repeats: .yes(flagsReplaceFile: flagsReplaceFile), help: help,
                defaultValue: nil, defaultDescription: defaultDescription, example: example,
                apply: { config, value throws(Invalid) in
                    if let reason = check(value) { throw Invalid(reason: reason) }
                    config[keyPath: property].append(value)
                },
                values: { $0[keyPath: property] }, clear: { $0[keyPath: property] = [] })
    }
}
