import ArgumentParser
import Logging
import MXResolve
#if canImport(Glibc)
import Glibc
#endif

@main
struct MXResolvedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mxresolved",
        abstract: "Resolve Matrix server names for homeserver workers, with one shared persistent cache.",
        discussion: """
        Every option is also a key of the config file (--config), written `key = value`, one per line, \
        `#` for comments; repeatable keys repeat. Flags override the file. Without any option the daemon \
        listens on ./.mxresolved/mxresolved.sock and keeps its cache in ./.mxresolved/cache.
        """)

    @Option(help: "Config file of `key = value` lines.") var config: String?
    @Option(help: "Directory for the socket (by default) and the LMDB cache (default ./.mxresolved).") var stateDir: String?
    @Option(help: "Socket path (default STATE_DIR/mxresolved.sock; packaged setup: /run/mxresolved/socket).") var socket: String?
    @Option(help: "Socket file mode, octal (default 0660).") var socketMode: String?
    @Option(help: "Group (besides root and the daemon's uid) allowed to flush, revalidate and reset statistics.") var adminGroup: String?
    @Option(help: "DNS server ADDR[:PORT] or [IPv6]:PORT; repeatable (default: the system's resolv.conf).") var dnsServer: [String] = []
    @Option(help: "Per-try DNS timeout in ms (default 1000).") var dnsTimeoutMs: String?
    @Option(help: "DNS tries per query (default 2).") var dnsTries: String?
    @Option(help: "Extra trusted CA file (PEM) for well-known fetches, besides the system store.") var caFile: String?
    @Option(help: "Exempt an address range (CIDR) from the default deny list; repeatable.") var allowIP: [String] = []
    @Option(help: "Deny an extra address range (CIDR); repeatable.") var denyIP: [String] = []
    @Option(help: "LMDB map size in MiB: the cache's upper bound (default 256).") var cacheMapSizeMb: String?
    @Option(help: "Decoded cache entries kept in memory; the rest are read from LMDB on use (default 100000).") var memoryCacheEntries: String?
    @Option(help: "Threads watching client sockets (default: one per core).") var socketThreads: String?
    @Option(help: "I/O threads for well-known fetches; the first also runs DNS (default: one per core).") var ioThreads: String?
    @Option(help: "DNS queries in flight at most (default 64).") var maxDnsInflight: String?
    @Option(help: "Well-known fetches in flight at most (default 128).") var maxHttpsInflight: String?
    @Option(help: "Total timeout of one well-known fetch in ms (default 10000).") var wellknownTimeoutMs: String?
    @Option(help: "Upper bound on one whole resolution in ms (default 30000).") var resolutionTimeoutMs: String?
    @Option(help: "trace, debug, info, notice, warning, error or critical (default info).") var logLevel: String?

    func run() throws {
        var cfg = DaemonConfig()
        do {
            if let path = config {
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                    throw DaemonConfig.Problem(key: "config", reason: "cannot read '\(path)'")
                }
                try cfg.load(file: text, path: path)
            }
            let flags: [(String, String?)] = [
                ("state-dir", stateDir), ("socket", socket), ("socket-mode", socketMode), ("admin-group", adminGroup),
                ("dns-timeout-ms", dnsTimeoutMs), ("dns-tries", dnsTries), ("ca-file", caFile),
                ("cache-map-size-mb", cacheMapSizeMb), ("memory-cache-entries", memoryCacheEntries), ("socket-threads", socketThreads), ("io-threads", ioThreads), ("max-dns-inflight", maxDnsInflight),
                ("max-https-inflight", maxHttpsInflight), ("wellknown-timeout-ms", wellknownTimeoutMs),
                ("resolution-timeout-ms", resolutionTimeoutMs), ("log-level", logLevel),
            ]
            for case let (key, value?) in flags { try cfg.set(key, value) }
            if !dnsServer.isEmpty { cfg.dnsServers = []; for s in dnsServer { try cfg.set("dns-server", s) } }
            if !allowIP.isEmpty { cfg.allowIP = []; for s in allowIP { try cfg.set("allow-ip", s) } }
            for s in denyIP { try cfg.set("deny-ip", s) }
        } catch let problem as DaemonConfig.Problem {
            FileHandleStderr.write("mxresolved: \(problem)\n")
            throw ExitCode(2)
        }
        let level = Logger.Level(rawValue: cfg.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "mxresolved")
        let daemon: Daemon
        do {
            daemon = try Daemon(config: cfg, logger: logger)
        } catch {
            FileHandleStderr.write("mxresolved: \(error)\n")
            throw ExitCode(1)
        }
        daemon.run()
    }
}

enum FileHandleStderr {
    static func write(_ s: String) {
        let bytes = Array(s.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
