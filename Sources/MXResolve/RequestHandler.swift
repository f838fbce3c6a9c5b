#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import MXCore
import Synchronization
import MXProtocol
import MXRender
import MXAdapters

/// The verbs of proto/PROTOCOL.md over a ResolutionService.
public final class RequestHandler: RequestHandling {
    let service: ResolutionService
    let stats: Statistics
    let store: any CacheStore
    /// Extra group allowed to change state (besides root and the daemon's own uid).
    let adminGroup: UInt32?
    /// The extra CA file trusted for well-known fetches (`version` reports it for `mxresolvectl check`).
    let caFile: @Sendable () -> String?
    let ownUID = getuid()
    public let shuttingDown = Atomic<Bool>(false)
    let reresolveLimit = ReresolveLimit()
    /// Where the work that walks the store runs (listings page by page, flushes): one page at a time
    /// daemon-wide, never on a reactor, so a hit on any connection does not wait for a walk.
    let scans = DispatchQueue(label: "mxr-scan", qos: .utility)

    /// Upstream counters since start (DNS queries and well-known fetches by outcome), and their
    /// values at the last `reset-statistics`, which the `statistics` verb counts from.
    let upstream: @Sendable () -> NetworkCounters
    let upstreamAtReset = PthreadMutex(NetworkCounters())

    public init(service: ResolutionService, stats: Statistics, store: any CacheStore, adminGroup: UInt32?, caFile: @escaping @Sendable () -> String? = { nil },
                upstream: @escaping @Sendable () -> NetworkCounters = { NetworkCounters() }) {
        self.upstream = upstream
        self.service = service
        self.stats = stats
        self.store = store
        self.adminGroup = adminGroup
        self.caFile = caFile
    }

    public func handle(_ request: Request, peer: PeerCredentials, reply: @escaping @Sendable (Reply) -> Void) {
        let respond: @Sendable ([UInt8]) -> Void = { reply(.answer($0)) }
        let id = request.id
        func error(_ code: ErrorCode, _ message: String) {
            respond(ResponseLine.error(code, message, id: id, json: request.json))
        }
        if shuttingDown.load(ordering: .relaxed) {
            error(.shuttingDown, "mxresolved is stopping; reconnect and retry")
            return
        }
        if request.verb.adminOnly && !mayChangeState(peer) {
            error(.forbidden, "\(request.verb.rawValue) is for admins; peer uid \(peer.uid) is neither root, uid \(ownUID), nor in the admin group")
            return
        }
        switch request.verb {
        case .hello:
            let offered = request.arguments[0].split(separator: ",").map { Int($0) }
            if offered.contains(where: { $0 == nil }) || offered.isEmpty {
                error(.badRequest, "hello takes a comma-separated list of protocol versions")
            } else if offered.contains(Wire.protocolVersion) {
                var b = ResponseLine.Builder("ok", id: id)
                b.field("proto", Wire.protocolVersion)
                b.field("server", "mxresolved/\(Wire.serverVersion)")
                b.field("max_line", Wire.maxLineBytes)
                b.field("max_inflight", Wire.maxInFlight)
                respond(b.line())
            } else {
                var b = ResponseLine.Builder("err", id: id)
                b.field("code", ErrorCode.unsupportedVersion.rawValue)
                b.field("msg", "this daemon speaks protocol version \(Wire.protocolVersion)")
                b.field("supported", "\(Wire.protocolVersion)")
                respond(b.line())
            }
        case .ping:
            var b = ResponseLine.Builder("ok", id: id)
            b.field("pong", 1)
            respond(b.line())
        case .version:
            var b = ResponseLine.Builder("ok", id: id)
            b.field("version", Wire.serverVersion)
            b.field("proto", Wire.protocolVersion)
            if let caFile = caFile() { b.field("ca_file", caFile) }
            respond(b.line())
        case .resolve:
            resolve(request, respond: respond)
        case .showCache:
            reply(.stream(listing(request, admin: mayChangeState(peer))))
        case .flushCaches:
            let scope: ResolutionService.FlushScope = request.arguments.isEmpty ? .all : .names(request.arguments)
            scans.async { [service] in
                let n = service.flush(scope, failuresOnly: request.flag(.failures))
                var b = ResponseLine.Builder("ok", id: id)
                b.field("flushed", n)
                respond(b.line())
            }
        case .revalidate:
            if let refusal = invalidName(in: request) { return respond(refusal) }
            for name in request.arguments { service.revalidate(name) }
            var b = ResponseLine.Builder("ok", id: id)
            b.field("queued", request.arguments.count)
            respond(b.line())
        case .reresolve:
            reresolve(request, respond: respond)
        case .statistics where request.options[.format] == "prometheus":
            respond(prometheusReply(id: id))
        case .statistics:
            let fields = stats.snapshot(extra: storeFields())
            if request.json {
                var inner = JSONObject()
                for (k, v) in fields { inner.int(k, v) }
                var o = JSONObject()
                o.bool("ok", true)
                if let id { o.string("id", id) }
                o.raw("statistics", inner.text)
                respond(Array((o.text + "\n").utf8))
            } else {
                var b = ResponseLine.Builder("ok", id: id)
                for (k, v) in fields { b.field(k, v) }
                respond(b.line())
            }
        case .resetStatistics:
            stats.reset()
            upstreamAtReset.withLock { $0 = upstream() }
            respond(ResponseLine.Builder("ok", id: id).line())
        }
    }

    /// `err name=NAME code=invalid_server_name` for the first argument that is not a server name.
    func invalidName(in request: Request) -> [UInt8]? {
        for name in request.arguments {
            if case .failure(let e) = Result(catching: { try ServerName(parsing: name) }) {
                var b = ResponseLine.Builder("err", id: request.id)
                b.field("name", name)
                b.field("code", FailureCode.invalidServerName.rawValue)
                b.field("msg", "\(e)")
                return b.line()
            }
        }
        return nil
    }

    /// Every target of the name's answer failed to connect: start a fresh resolution in the
    /// background (at most once a minute per name); the answer does not wait for it.
    func reresolve(_ request: Request, respond: @escaping @Sendable ([UInt8]) -> Void) {
        if let refusal = invalidName(in: request) { return respond(refusal) }
        let name = request.arguments[0]
        var b = ResponseLine.Builder("ok", id: request.id)
        b.field("name", name)
        switch reresolveLimit.admit(name, now: wallClockSeconds()) {
        case .start:
            stats.reresolveStarted.add(1)
            service.revalidate(name)
            b.field("started", "yes")
        case .limited(let retryAfter):
            stats.reresolveLimited.add(1)
            b.field("started", "no")
            b.field("retry_after", retryAfter)
        }
        respond(b.line())
    }

    /// The Prometheus exposition as `entry text=LINE` lines, then `ok count=N` (§5.6).
    func prometheusReply(id: String?) -> [UInt8] {
        var out: [UInt8] = []
        var count = 0
        for line in metrics.text.split(separator: "\n") {
            var b = ResponseLine.Builder("entry", id: id)
            b.field("text", String(line))
            out += b.line()
            count += 1
        }
        var b = ResponseLine.Builder("ok", id: id)
        b.field("count", count)
        return out + b.line()
    }

    /// Everything Prometheus reads, now.
    public var metrics: DaemonMetrics {
        DaemonMetrics(stats: stats, network: upstream(), cache: store.statistics, cacheMemoryEntries: service.memoryCount,
                      resolutionsInflight: service.inflightCount)
    }

    func storeFields() -> [(String, Int)] {
        let s = store.statistics
        let base = upstreamAtReset.withLock { $0 }.fields
        let sinceReset = zip(upstream().fields, base).map { now, then in (now.0, max(0, now.1 - then.1)) }
        return sinceReset + [("resolutions_inflight", service.inflightCount), ("cache_entries", s.entries),
                       ("cache_memory_entries", service.memoryCount), ("cache_bytes", s.usedBytes),
                       ("cache_map_bytes", s.capacityBytes), ("cache_evictions", s.evictions)]
    }

    func mayChangeState(_ peer: PeerCredentials) -> Bool {
        if peer.uid == 0 || peer.uid == ownUID { return true }
        guard let group = adminGroup else { return false }
        if peer.gid == group { return true }
        return PeerGroups.supplementaryGroups(pid: peer.pid).contains(group)
    }

    // MARK: resolve

    public func answerHit(_ request: PlainResolve, into output: inout [UInt8]) -> Bool {
        guard !shuttingDown.load(ordering: .relaxed) else { return false }
        let started = wallClockSeconds()
        let now = service.now()
        guard let hit = service.plainlyFreshHit(for: String(decoding: request.name, as: UTF8.self), now: now) else { return false }
        hit.write(id: request.id, now: now, into: &output)
        stats.hits.add(1)
        stats.hitLatency.record(seconds: wallClockSeconds() - started)
        return true
    }

    func resolve(_ request: Request, respond: @escaping @Sendable ([UInt8]) -> Void) {
        let name = request.arguments[0]
        let started = wallClockSeconds()
        let useCache = request.options[.cache] != "no"
        let wantTrace = request.flag(.trace)
        // The hot path: a fresh cached answer is rendered and written on this thread.
        if useCache && !wantTrace, let reply = service.cachedReply(for: name) {
            stats.hits.add(1)
            if reply.source == .stale { stats.stale.add(1) }
            respond(Render.resolveReply(reply, request: request, trace: false))
            stats.hitLatency.record(seconds: wallClockSeconds() - started)
            return
        }
        stats.misses.add(1)
        let stats = self.stats
        let completion: ResolutionService.Completion = { reply in
            if reply.failure != nil { stats.errors.add(1) }
            respond(Render.resolveReply(reply, request: request, trace: wantTrace))
            stats.missLatency.record(seconds: wallClockSeconds() - started)
        }
        if useCache {
            service.resolve(name, completion: completion)
        } else {
            service.resolveFresh(name, completion: completion)
        }
    }

    /// The `show-cache` answer: every entry for an admin, at most `Wire.maxListedEntries` per call
    /// for any other peer (PROTOCOL.md §5.2).
    func listing(_ request: Request, admin: Bool) -> CacheListing {
        let asked = request.options[.limit].flatMap { Int($0) }
        let limit = admin ? asked : min(asked ?? Wire.maxListedEntries, Wire.maxListedEntries)
        let what = CacheListing.Request(name: request.arguments.first, failures: request.flag(.failures), json: request.json,
                                        id: request.id, after: request.options[.after], limit: limit)
        return CacheListing(what, store: store, service: service, queue: scans)
    }
}

enum PeerGroups {
    /// Supplementary groups of a process, from /proc (SO_PEERCRED gives only the primary gid).
    static func supplementaryGroups(pid: Int32) -> [UInt32] {
        guard let f = fopen("/proc/\(pid)/status", "r") else { return [] }
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>?
        var cap = 0
        defer { free(line) }
        while getline(&line, &cap, f) > 0 {
            let s = String(cString: line!)
            if s.hasPrefix("Groups:") {
                return s.dropFirst(7).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { UInt32($0) }
            }
        }
        return []
    }
}
