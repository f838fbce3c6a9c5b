import Foundation
import XCTest
import Logging
import MXCore
import MXAdapters
@testable import MXResolve

/// The cache service's rules over time: a scripted backend (whose answers change during a test),
/// a controllable clock, and an in-memory store. Real-server behaviour is in DaemonTests; the LMDB
/// store's own tests are LMDBStoreTests.
final class CacheServiceTests: XCTestCase {
    final class ScriptedBackend: LookupBackend {
        struct World: Sendable {
            var srv: [String: Result<[SRVRecord], DNSError>] = [:]
            var addresses: [String: Result<AddressSet, DNSError>] = [:]
            var https: [String: Result<HTTPSResponse, HTTPSError>] = [:]
        }
        let world = PthreadMutex(World())
        let clock: Clock
        let gets = PthreadMutex<[(url: String, at: Double)]>([])
        /// URLs whose fetches hang until `release` (a well-known host that stalls).
        let stalled = PthreadMutex<Set<String>>([])
        let held = PthreadMutex<[@Sendable (Result<HTTPSResponse, HTTPSError>) -> Void]>([])
        init(clock: Clock) { self.clock = clock }

        /// Ends every hanging fetch with `result`; returns how many there were.
        @discardableResult
        func release(_ result: Result<HTTPSResponse, HTTPSError> = .failure(.timeout)) -> Int {
            let waiting = held.withLock { h in defer { h = [] }; return h }
            waiting.forEach { $0(result) }
            return waiting.count
        }

        func querySRV(_ name: String, completion: @escaping @Sendable (Result<[SRVRecord], DNSError>) -> Void) {
            completion(world.withLock { $0.srv[name] } ?? .failure(.nxdomain(negativeTTL: nil)))
        }
        func queryAddresses(_ host: String, completion: @escaping @Sendable (Result<AddressSet, DNSError>) -> Void) {
            completion(world.withLock { $0.addresses[host] } ?? .failure(.nxdomain(negativeTTL: nil)))
        }
        func httpsGet(_ request: HTTPSRequest, completion: @escaping @Sendable (Result<HTTPSResponse, HTTPSError>) -> Void) {
            let t = clock.now
            gets.withLock { $0.append((request.url, t)) }
            if stalled.withLock({ $0.contains(request.url) }) {
                held.withLock { $0.append(completion) }
                return
            }
            completion(world.withLock { $0.https[request.url] } ?? .failure(.connect("refused")))
        }
        func getTimes(_ host: String) -> [Double] {
            gets.withLock { $0.filter { $0.url == "https://\(host)/.well-known/matrix/server" }.map(\.at) }
        }
    }

    final class Clock: Sendable {
        private let t = PthreadMutex(1_800_000_000.0)
        var now: Double { t.withLock { $0 } }
        func advance(_ s: Double) { t.withLock { $0 += s } }
    }

    var clock: Clock!
    var backend: ScriptedBackend!
    var service: ResolutionService!
    var store: InMemoryCacheStore!

    override func setUpWithError() throws {
        clock = Clock()
        backend = ScriptedBackend(clock: clock)
        store = InMemoryCacheStore()
        service = makeService()
    }

    /// A service over the test's store, backend and clock (a second one is the daemon restarted).
    func makeService() -> ResolutionService {
        let c = clock!
        let settings = ResolverSettings(ipPolicy: IPPolicy(denied: [], allowed: []), now: { c.now })
        return ResolutionService(resolver: ServerResolver(backend: backend, settings: settings, scheduler: DispatchScheduler()),
                                 store: store, stats: Statistics(), logger: Logger(label: "test"), now: { c.now })
    }

    func set(_ change: (inout ScriptedBackend.World) -> Void) { backend.world.withLock { change(&$0) } }

    /// What a worker gets now: a cached reply, or a network one.
    func ask(_ name: String) -> ResolutionService.Reply {
        // A hit may start a background refresh (refresh-ahead); it must land before the test moves
        // the clock or changes the world, or it would resolve against the next step's state.
        defer { settle() }
        if let hit = service.cachedReply(for: name) { return hit }
        let done = DispatchSemaphore(value: 0)
        let box = PthreadMutex<ResolutionService.Reply?>(nil)
        service.resolve(name) { r in box.withLock { $0 = r }; done.signal() }
        XCTAssertEqual(done.wait(timeout: .now() + 5), .success)
        return box.withLock { $0 }!
    }

    /// Waits until no resolution is in flight (background refreshes included).
    func settle() {
        let end = Date().addingTimeInterval(5)
        while service.inflightCount > 0 && Date() < end { usleep(200) }
        XCTAssertEqual(service.inflightCount, 0, "background resolutions settle")
    }

    static func a(_ ip: String, ttl: UInt32) -> Result<AddressSet, DNSError> {
        .success(AddressSet(ipv6: [], ipv4: [ResolvedAddress(address: IPAddress(ip)!, ttl: ttl)]))
    }
    static func wellKnown(_ body: String, headers: [HTTPHeader] = []) -> Result<HTTPSResponse, HTTPSError> {
        .success(HTTPSResponse(status: 200, headers: headers, body: Array(body.utf8)))
    }

    func testFailingWellKnownIsRefetchedNoMoreOftenThanTheBackOffAndASuccessResetsIt() {
        set { $0.addresses["down.test"] = Self.a("1.2.3.4", ttl: 30) }   // step 6 answer lives 30 s
        // Two simulated hours of a busy name, asked every 5 s.
        for _ in 0..<(2 * 3600 / 5) {
            XCTAssertEqual(ask("down.test").answer?.step, .defaultPort)
            clock.advance(5)
        }
        let times = backend.getTimes("down.test")
        XCTAssertGreaterThanOrEqual(times.count, 5, "retries keep happening")
        XCTAssertLessThanOrEqual(times.count, 9, "60 s, 2, 4, 8, 16, 32 min, then hourly: \(times.count) fetches")
        var expected = CachePolicy.failureFirstDelay
        for (i, gap) in zip(times, times.dropFirst()).map({ $1 - $0 }).enumerated() {
            XCTAssertGreaterThanOrEqual(gap, expected * (1 - CachePolicy.failureJitter), "gap \(i) = \(gap) s")
            XCTAssertLessThanOrEqual(gap, min(expected, CachePolicy.failureMaxDelay) * (1 + CachePolicy.failureJitter) + 35, "gap \(i)")
            expected = min(expected * 2, CachePolicy.failureMaxDelay)
        }
        // The well-known comes back: a success resets the back-off to its first delay.
        set { $0.https["https://down.test/.well-known/matrix/server"] = Self.wellKnown(#"{"m.server":"up.test:443"}"#,
                                                                                       headers: [HTTPHeader("Cache-Control", "max-age=300")])
              $0.addresses["up.test"] = Self.a("5.6.7.8", ttl: 3600) }
        clock.advance(3700)
        XCTAssertEqual(ask("down.test").answer?.step, .delegatedExplicitPort)
        XCTAssertEqual(service.entry(for: "down.test")?.wellKnownFailures, 0)
    }

    /// `name`'s well-known delegates to deleg.test:443 (1.2.3.5) for `maxAge` seconds; `name` has an
    /// address of its own (`ownAddress`), for the spec's step 6 when the delegation is given up.
    func delegate(_ name: String, maxAge: Int, ownAddress: String) {
        set {
            $0.https["https://\(name)/.well-known/matrix/server"] = Self.wellKnown(#"{"m.server":"deleg.test:443"}"#,
                                                                                     headers: [HTTPHeader("Cache-Control", "max-age=\(maxAge)")])
            $0.addresses["deleg.test"] = Self.a("1.2.3.5", ttl: 3600)
            $0.addresses[name] = Self.a(ownAddress, ttl: 3600)
        }
    }

    func testTemporaryFailureKeepsTheLastGoodDelegationForTheGraceThenFallsBack() {
        delegate("good.test", maxAge: 600, ownAddress: "1.2.3.6")
        let first = ask("good.test")
        XCTAssertEqual(first.answer?.step, .delegatedExplicitPort)
        XCTAssertEqual(first.expiresIn, 600, "the well-known's max-age bounds the answer")
        // The well-known host goes down (connection refused: temporary).
        set { $0.https["https://good.test/.well-known/matrix/server"] = .failure(.connect("refused")) }
        clock.advance(700)
        let during = ask("good.test")
        XCTAssertEqual(during.answer?.step, .delegatedExplicitPort, "still the delegation inside the grace")
        XCTAssertEqual(backend.getTimes("good.test").count, 1 + CachePolicy.wellKnownRecentlyValidAttempts,
                       "and the refetch was tried, a few times since the delegation was recently valid")
        clock.advance(CachePolicy.staleGraceLimit)
        let after = ask("good.test")
        XCTAssertEqual(after.answer?.step, .defaultPort, "grace over: the spec's step 6")
    }

    func testPermanentWellKnownFailureReplacesTheDelegationAtOnce() {
        delegate("perm.test", maxAge: 600, ownAddress: "1.2.3.7")
        XCTAssertEqual(ask("perm.test").answer?.step, .delegatedExplicitPort)
        set { $0.https["https://perm.test/.well-known/matrix/server"] = .success(HTTPSResponse(status: 404, headers: [], body: [])) }
        clock.advance(700)
        XCTAssertEqual(ask("perm.test").answer?.step, .defaultPort)
    }

    /// Hits answered from the pre-rendered text and hits through `CacheRules` both record the last
    /// use; the store learns it in one batch, also for a name dropped from memory meanwhile.
    func testEveryHitRecordsItsLastUseAndTheStoreGetsItInABatch() {
        let c = clock!
        let settings = ResolverSettings(ipPolicy: IPPolicy(denied: [], allowed: []), now: { c.now })
        service = ResolutionService(resolver: ServerResolver(backend: backend, settings: settings, scheduler: DispatchScheduler()),
                                    store: store, stats: Statistics(), logger: Logger(label: "test"), memoryLimit: 8, now: { c.now })
        let t0 = clock.now
        XCTAssertEqual(ask("192.0.2.1").source, .network)
        service.drainWrites()
        XCTAssertEqual(store.lastUsed(of: "192.0.2.1"), t0)

        clock.advance(10)
        XCTAssertNotNil(service.plainlyFreshHit(for: "192.0.2.1", now: clock.now))
        XCTAssertNil(service.plainlyFreshHit(for: "192.0.2.2", now: clock.now), "not cached")
        XCTAssertEqual(store.lastUsed(of: "192.0.2.1"), t0, "not written per hit")
        service.flushTouches()
        service.drainWrites()
        XCTAssertEqual(store.lastUsed(of: "192.0.2.1"), t0 + 10)

        clock.advance(10)
        XCTAssertEqual(service.cachedReply(for: "192.0.2.1")?.source, .cache)
        for i in 2...40 { XCTAssertEqual(ask("192.0.2.\(i)").source, .network) }
        XCTAssertLessThanOrEqual(service.memoryCount, 8)
        service.flushTouches()
        service.drainWrites()
        XCTAssertEqual(store.lastUsed(of: "192.0.2.1"), t0 + 20, "kept across being dropped from memory")
    }

    func testRefreshAheadStartsInTheLastFifthOfTheLifetime() {
        delegate("busy.test", maxAge: 1000, ownAddress: "1.2.3.8")
        XCTAssertEqual(ask("busy.test").source, .network)
        clock.advance(790)
        XCTAssertEqual(ask("busy.test").source, .cache)
        usleep(100_000)
        XCTAssertEqual(backend.getTimes("busy.test").count, 1, "no refresh before 80 % of the lifetime")
        clock.advance(20)
        XCTAssertEqual(ask("busy.test").source, .cache, "the hit is answered at once")
        let deadline = Date().addingTimeInterval(3)
        while backend.getTimes("busy.test").count < 2 && Date() < deadline { usleep(10_000) }
        XCTAssertEqual(backend.getTimes("busy.test").count, 2, "a background refresh ran")
        while service.inflightCount > 0 && Date() < deadline { usleep(10_000) }
        XCTAssertGreaterThan(ask("busy.test").expiresIn, 900, "the refreshed answer has a new lifetime")
    }

    func testFailedResolutionIsCachedWithBackOffAndNXDOMAINUsesTheNegativeTTL() {
        set { $0.srv["_matrix-fed._tcp.sf.test"] = .failure(.servfail) }
        XCTAssertEqual(ask("sf.test").failure?.code, .dnsServfail)
        clock.advance(30)
        let cached = ask("sf.test")
        XCTAssertEqual(cached.source, .cache)
        XCTAssertEqual(cached.failure?.code, .dnsServfail)
        clock.advance(60 * 1.2 + 1)
        XCTAssertEqual(ask("sf.test").source, .network)

        set { $0.addresses["gone.test"] = .failure(.nxdomain(negativeTTL: 900)) }
        XCTAssertEqual(ask("gone.test").failure?.code, .noAddress)
        clock.advance(800)
        XCTAssertEqual(ask("gone.test").source, .cache, "the SOA's negative TTL is honoured")
    }

    func testEveryResultIsInTheStoreBeforeTheReplyAndARestartedServiceServesIt() {
        set { $0.addresses["kept.test"] = Self.a("1.2.3.9", ttl: 600)
              $0.srv["_matrix-fed._tcp.bad.test"] = .failure(.servfail) }
        XCTAssertEqual(ask("kept.test:8448").source, .network)
        XCTAssertEqual(store.get("kept.test:8448")?.answer?.targets.first?.addresses, [IPAddress("1.2.3.9")!])
        XCTAssertEqual(ask("bad.test").failure?.code, .dnsServfail)
        XCTAssertEqual(store.get("bad.test")?.consecutiveFailures, 1)
        XCTAssertNil(store.get("!invalid"), "nothing is stored for a name that is not valid")
        XCTAssertEqual(ask("!invalid").failure?.code, .invalidServerName)
        XCTAssertNil(store.get("!invalid"))

        service = makeService()
        clock.advance(100)
        let hit = service.cachedReply(for: "kept.test:8448")
        XCTAssertEqual(hit?.source, .cache, "read from the store, not resolved again")
        XCTAssertEqual(hit?.expiresIn, 500)
        XCTAssertEqual(store.scan(after: nil, limit: .max).entries.map(\.serverName), ["bad.test", "kept.test:8448"])
        XCTAssertEqual(service.flush(.all, failuresOnly: true), 1)
        XCTAssertEqual(store.statistics.entries, 1, "flushing failures keeps answers")
        XCTAssertEqual(service.flush(.names(["kept.test:8448"]), failuresOnly: false), 1)
        XCTAssertNil(service.cachedReply(for: "kept.test:8448"))
        XCTAssertEqual(store.statistics.entries, 0)
    }
}
