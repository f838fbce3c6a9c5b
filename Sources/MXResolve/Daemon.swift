#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import MXCore
import MXAdapters
import MXProtocol
import CLinux

/// Wires the daemon together: LMDB store, network backend, resolver, cache service, socket server,
/// signals. The `mxresolved` executable only parses its flags and calls `run`.
public final class Daemon: Sendable {
    public let config: DaemonConfig
    let logger: Logger
    let stats = Statistics()
    let store: LMDBStore
    let backend: NetworkBackend
    let service: ResolutionService
    let handler: RequestHandler
    let server: SocketServer
    /// The Prometheus endpoint (`metrics-listen`), when configured.
    let metricsServer: MetricsServer?
    let sources = SourceBox()
    /// Runs the signal handlers one at a time.
    let signalQueue = DispatchQueue(label: "mxresolved.signals")
    /// systemd's notification socket (READY, RELOADING, STOPPING, WATCHDOG); nil outside systemd.
    let notifier = SystemdNotifier()
    /// The settings in force: `config` plus what reloads applied.
    let runningConfig: PthreadMutex<DaemonConfig>
    /// Reads the settings again for a reload (SIGHUP): the config file and the same flags.
    let reread: (@Sendable () throws -> DaemonConfig)?
    let logLevel: LogLevelSwitch?

    /// `logLevel`: the level every logger of the process follows, changed by reloads.
    public init(config: DaemonConfig, logger: Logger, logLevel: LogLevelSwitch? = nil,
                reread: (@Sendable () throws -> DaemonConfig)? = nil) throws {
        _ = clinux_limit_malloc_arenas(2)
        self.config = config
        self.logger = logger
        self.runningConfig = PthreadMutex(config)
        self.reread = reread
        self.logLevel = logLevel
        try makeDirectories(config.stateDir)
        // A cache not closed cleanly is verified by this program run as `--verify-cache` first, so
        // that a damaged page crashes the child, not the daemon; writes that fail are logged once per episode.
        store = try LMDBStore(directory: config.cacheDir, mapSizeBytes: config.cacheMapSizeMB << 20,
                              verifier: CacheVerifier(arguments: ["--verify-cache"]),
                              report: { [logger] event in
                                  if case .writesRecovered = event { logger.notice("\(event)") } else { logger.error("\(event)") }
                              })
        if let moved = store.movedAsidePath {
            logger.error("\(store.rebuildReason ?? "the cache file was damaged"); moved it to \(moved) and started an empty cache")
        } else if let reason = store.rebuildReason {
            logger.warning("\(reason); started an empty cache", metadata: ["dir": "\(config.cacheDir)"])
        }
        var net = NetworkConfig()
        net.dnsServers = config.dnsServers.compactMap(DaemonConfig.parseDNSServer)
        net.dnsTimeoutMs = config.dnsTimeoutMs
        net.dnsTries = config.dnsTries
        net.maxDNSInFlight = config.maxDNSInFlight
        net.maxHTTPSInFlight = config.maxHTTPSInFlight
        net.ioThreads = config.ioThreads
        net.extraCAFile = config.caFile
        net.hostsFile = config.hostsFile.isEmpty ? nil : config.hostsFile
        net.proxy = try config.outboundProxy(environment: ProcessEnvironment.proxyVariables())
        net.userAgent = "mxresolved/\(Wire.serverVersion)"
        backend = try NetworkBackend(config: net)
        var settings = ResolverSettings(ipPolicy: config.ipPolicy)
        settings.wellKnownTotalTimeoutMs = config.wellKnownTimeoutMs
        settings.resolutionTimeoutMs = config.resolutionTimeoutMs
        settings.dnsLookupMaxMs = config.dnsLookupMaxMs
        let resolver = ServerResolver(backend: backend, settings: settings, scheduler: DispatchScheduler())
        service = ResolutionService(resolver: resolver, store: store, stats: stats, logger: logger,
                                    memoryLimit: config.memoryCacheEntries)
        let backend = self.backend
        handler = RequestHandler(service: service, stats: stats, store: store, adminGroup: config.adminGroupID, caFile: { backend.extraCAFile },
                                 upstream: { backend.counterSnapshot })

        if let address = config.metricsListen {
            let handler = self.handler
            metricsServer = MetricsServer(listenFD: try MetricsServer.bind(address), logger: logger, render: { handler.metrics.text })
        } else {
            metricsServer = nil
        }

        // systemd socket activation: fd 3 is ours when LISTEN_PID is this process.
        if let fds = getenv("LISTEN_FDS").map({ String(cString: $0) }), Int(fds) ?? 0 >= 1,
           let pid = getenv("LISTEN_PID").map({ String(cString: $0) }), Int32(pid) == getpid() {
            server = try SocketServer(listenFD: 3, path: nil, ownsPath: false, handler: handler, stats: stats, logger: logger,
                                      threads: config.socketThreads)
            logger.info("using the socket passed by systemd (LISTEN_FDS)")
        } else {
            let fd = try SocketServer.bind(path: config.socketPath, mode: config.socketMode)
            server = try SocketServer(listenFD: fd, path: config.socketPath, ownsPath: true, handler: handler, stats: stats, logger: logger,
                                      threads: config.socketThreads)
        }
    }

    var statusLine: String { "serving on \(config.socketPath)" }

    /// The signals the daemon handles through Dispatch signal sources.
    static let handledSignals = [SIGTERM, SIGINT, SIGHUP]

    /// Blocks the handled signals in the calling thread; call it first, before any thread exists, so
    /// every thread inherits the mask. On Linux libdispatch receives signals through a signalfd and
    /// blocks them only on its own thread: a signal the kernel handed to any other thread would be
    /// lost, and one sent before the sources exist must wait, pending, until they do.
    public static func blockHandledSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for sig in handledSignals { sigaddset(&set, sig) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Serves until SIGTERM/SIGINT, then shuts down cleanly and exits; SIGHUP reloads.
    public func run() -> Never {
        signal(SIGPIPE, SIG_IGN)
        // Every worker holds a connection: lift the soft descriptor limit to the hard one.
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        // Before the socket answers: a SIGTERM sent as soon as it does must not be ignored.
        for sig in Self.handledSignals {
            #if !os(Linux)
            // kqueue reports signals beside their disposition; on Linux they stay blocked (see above),
            // and SIG_IGN would discard one already pending.
            signal(sig, SIG_IGN)
            #endif
            // One queue for all three: a reload never overlaps another or a shutdown.
            let s = DispatchSource.makeSignalSource(signal: sig, queue: signalQueue)
            s.setEventHandler { [self] in if sig == SIGHUP { reload() } else { shutdown(signal: sig) } }
            s.resume()
            sources.set(s)
        }
        server.start()
        metricsServer?.start()
        logger.info("mxresolved \(Wire.serverVersion) listening", metadata: [
            "socket": "\(config.socketPath)", "cache": "\(config.cacheDir)",
            "metrics": "\(config.metricsListen.map { "http://\($0)/metrics" } ?? "off")",
            "dns": "\(config.dnsServers.isEmpty ? "system resolv.conf" : config.dnsServers.joined(separator: ","))",
        ])
        let t = DispatchSource.makeTimerSource(queue: .global())
        t.schedule(deadline: .now() + 10, repeating: 10)
        t.setEventHandler { [service] in service.flushTouches() }
        t.resume()
        sources.set(t)
        notifier?.send("READY=1\nSTATUS=\(statusLine)")
        startWatchdog()
        dispatchMain()
    }

    /// Stop accepting, answer what is in flight (bounded), sync and close LMDB, remove the socket.
    func shutdown(signal: Int32) -> Never {
        notifier?.send("STOPPING=1\nSTATUS=stopping")
        logger.info("stopping", metadata: ["signal": "\(signal)"])
        server.stopAccepting()
        let deadline = wallClockSeconds() + 5
        while service.inflightCount > 0 && wallClockSeconds() < deadline { usleep(10_000) }
        handler.shuttingDown.store(true, ordering: .relaxed)
        // Let answers that just completed reach their sockets.
        usleep(50_000)
        server.closeAll()
        service.flushTouches()
        service.drainWrites()
        store.sync()
        store.close()
        backend.stop()
        logger.info("stopped")
        exit(0)
    }
}

/// Holds Dispatch sources (not Sendable) so they live as long as their owner; locked.
final class SourceBox: @unchecked Sendable {
    private let lock = PthreadMutex(())
    private var sources: [any DispatchSourceProtocol] = []
    func set(_ s: any DispatchSourceProtocol) { lock.withLock { _ in sources.append(s) } }
}
