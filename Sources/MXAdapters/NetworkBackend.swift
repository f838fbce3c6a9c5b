import Synchronization
import MXCore

/// Settings for the real network backend.
public struct NetworkConfig: Sendable, Hashable {
    /// DNS servers as "ADDR:PORT" or "[V6]:PORT" (e.g. "127.0.0.53:53", "[::1]:5353"). Empty means
    /// the system's resolv.conf (production only; tests always pass servers).
    public var dnsServers: [String] = []
    /// c-ares per-try timeout; it doubles on each further try (2 tries, 1000 ms: 3 s in total).
    public var dnsTimeoutMs: Int = 1000
    public var dnsTries: Int = 2
    /// Queries (AAAA and A count one each) and fetches outstanding at once; the rest wait in FIFO order.
    public var maxDNSInFlight: Int = 64
    public var maxHTTPSInFlight: Int = 128
    /// A PEM file of extra trusted CAs, trusted in addition to the system store.
    public var extraCAFile: String? = nil
    /// The system store as an OpenSSL hashed directory (c_rehash / update-ca-certificates), read
    /// lazily per issuer. nil: OpenSSL's default directory.
    public var systemCAPath: String? = "/etc/ssl/certs"
    /// How often at most a handshake checks whether the CA file or directory changed (then the
    /// one shared trust store is rebuilt).
    public var trustCheckIntervalMs: Int = 5000
    public var userAgent: String = "mxresolved"
    /// I/O threads owning curl (and, on the first, c-ares); one per core suits a cold start.
    public var ioThreads: Int = 1
    /// RFC 8305's Connection Attempt Delay: how long a well-known fetch waits on one address family
    /// before it also tries the other (250 ms, the RFC's recommendation).
    public var happyEyeballsDelayMs: Int = 250
    /// The outbound proxy for well-known fetches (nil: direct).
    public var proxy: OutboundProxy? = nil
    /// A hosts(5) file consulted before DNS for address lookups (nil: none; the daemon's default
    /// is /etc/hosts, tests pass their own).
    public var hostsFile: String? = nil

    public init() {}
}

/// Outcome counters since start: one per DNS query (AAAA and A count separately) and one per HTTPS
/// fetch (an HTTP error status is a successful fetch). They only grow; `statistics` subtracts its
/// own reset point.
public struct NetworkCounters: Sendable, Hashable {
    public var dnsOK = 0, dnsNXDomain = 0, dnsNoData = 0, dnsServfail = 0, dnsRefused = 0, dnsTimeout = 0, dnsOther = 0
    /// Queries handed on to a further DNS server after a SERVFAIL, REFUSED or timeout; address
    /// lookups answered from the hosts file (no query sent).
    public var dnsFailovers = 0, hostsFileAnswers = 0
    public var httpsOK = 0, httpsConnect = 0, httpsTLS = 0, httpsTimeout = 0, httpsBodyTooLarge = 0, httpsOther = 0

    public init() {}

    public var dnsTotal: Int { dnsOK + dnsNXDomain + dnsNoData + dnsServfail + dnsRefused + dnsTimeout + dnsOther }

    /// DNS queries by result.
    public var dnsByResult: [(String, Int)] {
        [("ok", dnsOK), ("nxdomain", dnsNXDomain), ("nodata", dnsNoData), ("servfail", dnsServfail),
         ("refused", dnsRefused), ("timeout", dnsTimeout), ("other", dnsOther)]
    }

    /// Well-known fetches by result.
    public var httpsByResult: [(String, Int)] {
        [("ok", httpsOK), ("connect", httpsConnect), ("tls", httpsTLS), ("timeout", httpsTimeout),
         ("body_too_large", httpsBodyTooLarge), ("other", httpsOther)]
    }

    /// `name=value` pairs for the statistics command.
    public var fields: [(String, Int)] {
        dnsByResult.map { ("dns_queries_\($0.0)", $0.1) } + [("dns_failovers", dnsFailovers), ("hosts_file_answers", hostsFileAnswers)]
            + httpsByResult.map { ("https_fetches_\($0.0)", $0.1) }
    }
}

/// The real `LookupBackend`: c-ares for DNS and libcurl for HTTPS, driven by I/O threads (DNS on the
/// first, fetches spread over all). Completions run on those threads and must be cheap (hop elsewhere
/// for real work).
///
/// THREADING RULE (`@unchecked Sendable`): the C handles live in `IOLoop`'s `AresDNS` and
/// `CurlHTTPS` and are touched only on the loop thread; this class only submits jobs to the loop
/// (PthreadMutex inbox) and updates atomics.
public final class NetworkBackend: LookupBackend, @unchecked Sendable {
    /// I/O threads. DNS goes to the first (the one c-ares channel, one in-flight bound); well-known
    /// fetches are spread over all of them, because TLS set-up is CPU work that one thread cannot
    /// keep up with on a cold start (BENCHMARKS.md, cold resolution profile).
    private let loops: [IOLoop]
    private var dnsLoop: IOLoop { loops[0] }
    private let nextHTTPSLoop = Synchronization.Atomic<Int>(0)
    private let counters = Counters()
    private let hostsFile: HostsFile?
    /// The CAs every I/O thread's TLS contexts share.
    let trust: TrustStore

    public init(config: NetworkConfig) throws {
        hostsFile = config.hostsFile.map(HostsFile.init(path:))
        var made: [IOLoop] = []
        let count = max(1, config.ioThreads)
        trust = try TrustStore(caFile: config.extraCAFile, caDirectory: config.systemCAPath,
                               checkIntervalMs: config.trustCheckIntervalMs)
        do {
            for index in 0..<count {
                let dns = index == 0 ? try AresDNS(servers: config.dnsServers, timeoutMs: config.dnsTimeoutMs,
                                                   tries: config.dnsTries, maxInFlight: config.maxDNSInFlight,
                                                   onFailover: { [counters] in counters.countFailover() }) : nil
                let https: CurlHTTPS
                do {
                    https = try CurlHTTPS(maxInFlight: max(1, config.maxHTTPSInFlight / count), userAgent: config.userAgent,
                                          trust: trust, happyEyeballsDelayMs: config.happyEyeballsDelayMs, proxy: config.proxy)
                } catch {
                    dns?.shutdown()
                    throw error
                }
                do {
                    made.append(try IOLoop(dns: dns, https: https, name: "mxr-io-\(index)"))
                } catch {
                    https.shutdown()
                    dns?.shutdown()
                    throw error
                }
            }
        } catch {
            made.forEach { $0.stop() }
            throw error
        }
        loops = made
    }

    deinit { loops.forEach { $0.stop() } }

    /// Fails everything pending or in flight (each completion is called exactly once), frees the
    /// handles and ends the I/O threads. Later calls complete at once with an error.
    public func stop() { loops.forEach { $0.stop() } }

    /// Later DNS queries go to `servers` (non-empty), set on the DNS thread; `completion` gets why
    /// the list was refused, or nil.
    public func setDNSServers(_ servers: [String], completion: @escaping @Sendable (String?) -> Void) {
        dnsLoop.submit(IOLoop.Job(run: { loop in completion(loop.dns.setServers(servers)) },
                                  cancel: { completion("the DNS thread has stopped") }))
    }

    /// Trusts `path` (nil: none) as the extra CA file from the next handshake on; returns why it
    /// could not be loaded, in which case the trusted CAs stay as they were.
    public func setExtraCAFile(_ path: String?) -> String? { trust.replaceCAFile(path) }
    /// The extra CA file trusted now (the one a reload last put in place).
    public var extraCAFile: String? { trust.caFile }

    /// Every I/O thread runs a no-op job; `completion` runs once when all have (a liveness probe).
    public func probe(_ completion: @escaping @Sendable () -> Void) {
        let left = Synchronization.Atomic<Int>(loops.count)
        let done: @Sendable () -> Void = { if left.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { completion() } }
        for loop in loops { loop.submit(IOLoop.Job(run: { _ in done() }, cancel: {})) }
    }

    public var counterSnapshot: NetworkCounters { counters.snapshot() }

    // MARK: LookupBackend

    public func querySRV(_ name: String, completion: @escaping @Sendable (Result<[SRVRecord], DNSError>) -> Void) {
        query(name, type: DNSRecordType.srv) { result in
            completion(result.flatMap { message in
                let (rrs, _) = message.records(ofType: DNSRecordType.srv, for: name)
                let records = rrs.compactMap { rr -> SRVRecord? in
                    guard case .srv(let priority, let weight, let port, let target) = rr.data else { return nil }
                    return SRVRecord(priority: priority, weight: weight, port: port, target: target, ttl: rr.ttl)
                }
                return records.isEmpty ? .failure(.nodata(negativeTTL: message.negativeTTL)) : .success(records)
            })
        }
    }

    public func queryAddresses(_ host: String, completion: @escaping @Sendable (Result<AddressSet, DNSError>) -> Void) {
        if let listed = hostsFile?.addresses(of: host) {
            counters.countHostsFileAnswer()
            completion(.success(listed))
            return
        }
        let join = AddressJoin(completion)
        let cancelled: @Sendable () -> Void = { [counters] in
            counters.count(dns: .other("stopped"))
            counters.count(dns: .other("stopped"))
            completion(.failure(.other("network backend stopped")))
        }
        dnsLoop.submit(IOLoop.Job(run: { [counters] loop in
            for type in [DNSRecordType.aaaa, DNSRecordType.a] {
                loop.dns.enqueue(AresDNS.Pending(name: host, type: type) { result in
                    let mapped = Self.addresses(result, type: type, host: host)
                    counters.count(dns: mapped)
                    join.deliver(type == DNSRecordType.aaaa, mapped)
                })
            }
        }, cancel: cancelled))
    }

    public func httpsGet(_ request: HTTPSRequest, completion: @escaping @Sendable (Result<HTTPSResponse, HTTPSError>) -> Void) {
        let counted: @Sendable (Result<HTTPSResponse, HTTPSError>) -> Void = { [counters] result in
            counters.count(https: result)
            completion(result)
        }
        let target = loops[nextHTTPSLoop.wrappingAdd(1, ordering: .relaxed).oldValue % loops.count]
        target.submit(IOLoop.Job(run: { loop in loop.https.enqueue(request, counted) },
                               cancel: { counted(.failure(.other("network backend stopped"))) }))
    }

    // MARK: internals

    /// One raw query; NOERROR answers come back as messages (the caller decides NODATA), and the
    /// outcome is counted once the caller's mapping is known.
    private func query(_ name: String, type: UInt16, completion: @escaping @Sendable (Result<DNSMessage, DNSError>) -> Void) {
        let counters = self.counters
        let counted: @Sendable (Result<DNSMessage, DNSError>) -> Void = { result in
            switch result {
            case .success(let m) where m.records(ofType: type, for: name).records.isEmpty: counters.count(dns: .nodata(negativeTTL: nil))
            case .success: counters.count(dns: Result<Void, DNSError>.success(()))
            case .failure(let e): counters.count(dns: e)
            }
            completion(result)
        }
        dnsLoop.submit(IOLoop.Job(run: { loop in loop.dns.enqueue(AresDNS.Pending(name: name, type: type, completion: counted)) },
                               cancel: { counted(.failure(.other("network backend stopped"))) }))
    }

    /// AAAA or A answer → addresses (with the CNAME chain), or NODATA when there are none.
    static func addresses(_ result: Result<DNSMessage, DNSError>, type: UInt16, host: String) -> Result<([ResolvedAddress], [String]), DNSError> {
        result.flatMap { message in
            let (rrs, chain) = message.records(ofType: type, for: host)
            let addrs = rrs.compactMap { rr -> ResolvedAddress? in
                guard case .address(let ip) = rr.data else { return nil }
                return ResolvedAddress(address: ip, ttl: rr.ttl)
            }
            return addrs.isEmpty ? .failure(.nodata(negativeTTL: message.negativeTTL)) : .success((addrs, chain))
        }
    }

    /// Both families failed: the more informative error wins. A real failure (servfail, refused,
    /// timeout, other) beats "does not exist"; NXDOMAIN beats NODATA; negative TTLs take the minimum.
    static func mergeFailures(_ a: DNSError, _ b: DNSError) -> DNSError {
        func rank(_ e: DNSError) -> Int {
            switch e {
            case .servfail: return 6
            case .refused: return 5
            case .timeout: return 4
            case .other, .notImplemented: return 3
            case .nxdomain: return 2
            case .nodata: return 1
            }
        }
        func minTTL(_ x: UInt32?, _ y: UInt32?) -> UInt32? {
            switch (x, y) {
            case let (x?, y?): return min(x, y)
            default: return x ?? y
            }
        }
        switch (a, b) {
        case let (.nodata(x), .nodata(y)):
            return .nodata(negativeTTL: minTTL(x, y))
        case let (.nxdomain(x), .nxdomain(y)), let (.nxdomain(x), .nodata(y)), let (.nodata(x), .nxdomain(y)):
            return .nxdomain(negativeTTL: minTTL(x, y))
        default:
            return rank(a) >= rank(b) ? a : b
        }
    }

    static func merge(aaaa: Result<([ResolvedAddress], [String]), DNSError>,
                      a: Result<([ResolvedAddress], [String]), DNSError>) -> Result<AddressSet, DNSError> {
        switch (aaaa, a) {
        case let (.failure(e6), .failure(e4)):
            return .failure(mergeFailures(e6, e4))
        default:
            let v6 = (try? aaaa.get()) ?? ([], [])
            let v4 = (try? a.get()) ?? ([], [])
            let chain = v6.1.count >= v4.1.count ? v6.1 : v4.1
            return .success(AddressSet(ipv6: v6.0, ipv4: v4.0, cnameChain: chain))
        }
    }
}

/// Joins the AAAA and A answers of one `queryAddresses` (each may arrive on the loop thread, or
/// on a stopping thread); completes exactly once when both are in.
private final class AddressJoin: Sendable {
    typealias Partial = Result<([ResolvedAddress], [String]), DNSError>
    private let state = PthreadMutex<(aaaa: Partial?, a: Partial?)>((nil, nil))
    private let completion: @Sendable (Result<AddressSet, DNSError>) -> Void

    init(_ completion: @escaping @Sendable (Result<AddressSet, DNSError>) -> Void) {
        self.completion = completion
    }

    func deliver(_ isAAAA: Bool, _ partial: Partial) {
        let both = state.withLock { s -> (Partial, Partial)? in
            if isAAAA { s.aaaa = partial } else { s.a = partial }
            guard let v6 = s.aaaa, let v4 = s.a else { return nil }
            return (v6, v4)
        }
        if let (v6, v4) = both { completion(NetworkBackend.merge(aaaa: v6, a: v4)) }
    }
}

/// Outcome counters, updated from the loop thread and read from anywhere. One uncontended lock
/// per completed query/fetch (Atomic<Int> fields cannot be iterated or reset as a group).
private final class Counters: Sendable {
    private let state = PthreadMutex(NetworkCounters())

    func count<T>(dns result: Result<T, DNSError>) {
        state.withLock { c in
            switch result {
            case .success: c.dnsOK += 1
            case .failure(.nxdomain): c.dnsNXDomain += 1
            case .failure(.nodata): c.dnsNoData += 1
            case .failure(.servfail): c.dnsServfail += 1
            case .failure(.refused): c.dnsRefused += 1
            case .failure(.timeout): c.dnsTimeout += 1
            case .failure(.other), .failure(.notImplemented): c.dnsOther += 1
            }
        }
    }

    func count(dns error: DNSError) { count(dns: Result<Void, DNSError>.failure(error)) }

    func count(https result: Result<HTTPSResponse, HTTPSError>) {
        state.withLock { c in
            switch result {
            case .success: c.httpsOK += 1
            case .failure(.connect): c.httpsConnect += 1
            case .failure(.tls): c.httpsTLS += 1
            case .failure(.timeout): c.httpsTimeout += 1
            case .failure(.bodyTooLarge): c.httpsBodyTooLarge += 1
            case .failure(.other): c.httpsOther += 1
            }
        }
    }

    func countFailover() { state.withLock { $0.dnsFailovers += 1 } }
    func countHostsFileAnswer() { state.withLock { $0.hostsFileAnswers += 1 } }

    func snapshot() -> NetworkCounters { state.withLock { $0 } }
}
