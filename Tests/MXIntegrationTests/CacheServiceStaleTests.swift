import Foundation
import XCTest
import Logging
import MXCore
import MXAdapters
@testable import MXResolve

/// How long failures bound answers, and stale-while-revalidate during a delegated domain's outage,
/// over the controllable clock (docs/caching.md §2–§4).
extension CacheServiceTests {
    func wellKnownURL(_ host: String) -> String { "https://\(host)/.well-known/matrix/server" }

    func waitUntilIdle(file: StaticString = #filePath, line: UInt = #line) {
        let deadline = Date().addingTimeInterval(5)
        while service.inflightCount > 0 && Date() < deadline { usleep(5_000) }
        XCTAssertEqual(service.inflightCount, 0, "background resolution finished", file: file, line: line)
    }

    func testAFixedDelegationIsFollowedOnceTheBackOffOfTheFailedWellKnownEnds() {
        // A 404 (permanent): the step 6 answer lives at most the hour, not its 24 h DNS TTL.
        set { $0.addresses["fix.test"] = Self.a("1.2.3.4", ttl: 86400)
              $0.https[wellKnownURL("fix.test")] = .success(HTTPSResponse(status: 404, headers: [], body: [])) }
        let before = ask("fix.test")
        XCTAssertEqual(before.answer?.step, .defaultPort)
        XCTAssertLessThanOrEqual(before.expiresIn, 3600)
        set { $0.https[wellKnownURL("fix.test")] = Self.wellKnown(#"{"m.server":"deleg.test:443"}"#)
              $0.addresses["deleg.test"] = Self.a("5.6.7.8", ttl: 86400) }
        clock.advance(3601)
        XCTAssertEqual(ask("fix.test").answer?.step, .delegatedExplicitPort, "the delegation is followed within the hour")

        // A refused connection (temporary): the first back-off is a minute.
        set { $0.addresses["blip.test"] = Self.a("1.2.3.5", ttl: 86400) }
        let blip = ask("blip.test")
        XCTAssertEqual(blip.answer?.step, .defaultPort)
        XCTAssertLessThanOrEqual(Double(blip.expiresIn), CachePolicy.failureFirstDelay * (1 + CachePolicy.failureJitter))
        set { $0.https[wellKnownURL("blip.test")] = Self.wellKnown(#"{"m.server":"deleg.test:443"}"#) }
        clock.advance(CachePolicy.failureFirstDelay * (1 + CachePolicy.failureJitter) + 1)
        XCTAssertEqual(ask("blip.test").answer?.step, .delegatedExplicitPort)
    }

    func testDuringAnOutageTheLastDelegationIsServedStaleAtOnceAndRevalidatedBehindWithBackOff() {
        let url = wellKnownURL("out.test")
        set { $0.https[url] = Self.wellKnown(#"{"m.server":"deleg.test:443"}"#, headers: [HTTPHeader("Cache-Control", "max-age=600")])
              $0.addresses["deleg.test"] = Self.a("1.2.3.5", ttl: 3600)
              $0.addresses["out.test"] = Self.a("1.2.3.6", ttl: 3600) }
        XCTAssertEqual(ask("out.test").answer?.step, .delegatedExplicitPort)

        // The host goes down. The first request after the delegation expired finds out (and waits).
        set { $0.https[url] = .failure(.connect("refused")) }
        clock.advance(700)
        let first = ask("out.test")
        XCTAssertEqual(first.source, .stale)
        XCTAssertEqual(first.answer?.step, .delegatedExplicitPort, "not moved to port 8448")
        XCTAssertEqual(service.stats.stale.sinceStart, 1)

        // From now on the host hangs, and nobody waits for it.
        backend.stalled.withLock { _ = $0.insert(url) }
        let fetchesSoFar = backend.getTimes("out.test").count
        clock.advance(30)
        XCTAssertEqual(ask("out.test").source, .stale)
        XCTAssertEqual(backend.getTimes("out.test").count, fetchesSoFar, "inside the back-off nothing is fetched")

        clock.advance(60)   // past the first back-off (60 s ± 20 %)
        let started = Date()
        let during = service.cachedReply(for: "out.test")
        let waited = Date().timeIntervalSince(started)
        XCTAssertEqual(during?.source, .stale)
        XCTAssertEqual(during?.answer?.step, .delegatedExplicitPort)
        XCTAssertLessThan(waited, 0.5, "served from the cache while the fetch hangs (it never ends by itself)")
        XCTAssertEqual(service.inflightCount, 1, "the revalidation runs behind the answer")
        XCTAssertEqual(service.stats.staleRevalidations.sinceStart, 1)
        XCTAssertEqual(service.cachedReply(for: "out.test")?.source, .stale)
        XCTAssertEqual(service.stats.staleRevalidations.sinceStart, 1, "one revalidation at a time")
        XCTAssertEqual(backend.getTimes("out.test").count, fetchesSoFar + 1, "one fetch, no retries for a name known to be failing")

        XCTAssertEqual(backend.release(), 1)
        waitUntilIdle()
        let entry = service.entry(for: "out.test")
        XCTAssertEqual(entry?.wellKnownFailures, 2)
        let second = (entry?.wellKnownExpiresAt ?? 0) - clock.now
        XCTAssertGreaterThanOrEqual(second, 120 * (1 - CachePolicy.failureJitter), "the back-off doubled")
        XCTAssertLessThanOrEqual(second, 120 * (1 + CachePolicy.failureJitter))
        clock.advance(120 * (1 - CachePolicy.failureJitter) - 1)
        XCTAssertEqual(service.cachedReply(for: "out.test")?.source, .stale)
        XCTAssertEqual(service.inflightCount, 0, "not revalidated before the doubled back-off ends")
        clock.advance(120 * 2 * CachePolicy.failureJitter + 2)
        XCTAssertEqual(service.cachedReply(for: "out.test")?.source, .stale)
        XCTAssertEqual(service.stats.staleRevalidations.sinceStart, 2)
        XCTAssertEqual(backend.release(), 1)
        waitUntilIdle()

        // Still down after the grace (2 h past the delegation's own expiry): the delegation is given up.
        backend.stalled.withLock { $0 = [] }
        clock.advance(600 + CachePolicy.staleGraceLimit)
        let after = ask("out.test")
        XCTAssertEqual(after.source, .network)
        XCTAssertEqual(after.answer?.step, .defaultPort, "the spec's step 6")
        XCTAssertEqual(service.stats.staleGivenUp.sinceStart, 1)
        XCTAssertNil(service.entry(for: "out.test")?.delegation)
    }

    func testATimeoutSpentInTheDaemonsOwnQueueIsNotCachedAsTheNamesFailure() {
        let c = clock!
        var settings = ResolverSettings(ipPolicy: IPPolicy(denied: [], allowed: []), now: { c.now })
        settings.resolutionTimeoutMs = 300
        service = ResolutionService(resolver: ServerResolver(backend: backend, settings: settings, scheduler: DispatchScheduler()),
                                    store: store, stats: Statistics(), logger: Logger(label: "test"), now: { c.now })
        set { $0.addresses["busy.test"] = Self.a("1.2.3.7", ttl: 300)
              $0.addresses["slow.test"] = Self.a("1.2.3.8", ttl: 300) }
        backend.stalled.withLock { $0 = [wellKnownURL("busy.test"), wellKnownURL("slow.test")] }
        defer { backend.release() }

        // The fetch has been outstanding 20 s by the deadline, twice what a sent fetch can take.
        let done = DispatchSemaphore(value: 0)
        let box = PthreadMutex<ResolutionService.Reply?>(nil)
        service.resolve("busy.test") { r in box.withLock { $0 = r }; done.signal() }
        clock.advance(20)
        XCTAssertEqual(done.wait(timeout: .now() + 5), .success)
        XCTAssertEqual(box.withLock { $0 }?.failure?.code, .timeout)
        XCTAssertNil(store.get("busy.test"), "a busy daemon is not the name's failure")
        XCTAssertNil(service.cachedReply(for: "busy.test"), "the next request tries again")

        // Without queueing (the fetch has been out only for the resolution's own 0.3 s) it is remembered.
        XCTAssertEqual(ask("slow.test").failure?.code, .timeout)
        XCTAssertEqual(store.get("slow.test")?.failure?.code, .timeout)
    }
}
