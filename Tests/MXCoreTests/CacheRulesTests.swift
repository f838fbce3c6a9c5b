import XCTest
@testable import MXCore

/// The entry-level cache rules with a fixed clock and fixed jitter (docs/caching.md §3–§5).
final class CacheRulesTests: XCTestCase {
    typealias R = CacheRules

    static func answer(_ wellKnown: WellKnownResult?, headerLifetime: Double? = nil, addressTTL: UInt32 = 300) -> Resolution {
        Resolution(serverName: "x.test", step: wellKnown.map { if case .delegated = $0 { .delegatedExplicitPort } else { .defaultPort } } ?? .explicitPort,
                   targets: [Target(host: "x.test", port: 8448, addresses: [IPAddress("1.2.3.4")!])],
                   hostHeader: "x.test", tlsServerName: "x.test", sni: "x.test",
                   wellKnown: wellKnown.map { WellKnownOutcome(result: $0, headerLifetime: headerLifetime) },
                   srvTTL: nil, addressTTL: addressTTL, trace: ["a trace line"])
    }

    static let delegated = WellKnownResult.delegated("d.test:443")
    static let refused = WellKnownResult.failed(code: "wellknown_connect", message: "refused", temporary: true)
    static let notFound = WellKnownResult.failed(code: "wellknown_http_404", message: "404", temporary: false)

    func update(_ previous: CacheEntry?, _ result: Result<Resolution, ResolutionFailure>, reused: Bool = false,
                now: Double, jitter: Double = 0) -> CacheEntry {
        let found: WellKnownOutcome?
        switch result {
        case .success(let a): found = a.wellKnown
        case .failure(let f): found = f.wellKnown
        }
        return R.updated(previous, serverName: "x.test", result: result, fetched: reused ? nil : found, now: now, jitter: jitter)
    }

    // MARK: Failure kinds

    func testEveryFailureCodeIsExactlyOneOfTemporaryPermanentOrUncached() {
        let kinds = [R.temporaryFailureCodes, R.permanentFailureCodes, R.uncachedFailureCodes]
        for code in FailureCode.allCases {
            XCTAssertEqual(kinds.filter { $0.contains(code) }.count, 1, code.rawValue)
        }
        XCTAssertFalse(R.isCached(ResolutionFailure(code: .invalidServerName, message: "")))
        XCTAssertFalse(R.isCached(ResolutionFailure(code: .cancelled, message: "")))
        XCTAssertTrue(R.isCached(ResolutionFailure(code: .noAddress, message: "")))
    }

    // MARK: Updating

    func testAnAnswerIsStoredWithoutItsTraceAndIsItsOwnLastGoodAnswer() {
        let e = update(nil, .success(Self.answer(nil, addressTTL: 900)), now: 1000)
        XCTAssertEqual(e.answer?.trace, [])
        XCTAssertEqual(e.expiresAt, 1900)
        XCTAssertEqual(e.lastGood, e.answer)
        XCTAssertEqual(e.lastGoodExpiresAt, e.expiresAt)
        XCTAssertEqual(e.consecutiveFailures, 0)
    }

    func testTheWellKnownsHeaderLifetimeBoundsTheAnswer() {
        let e = update(nil, .success(Self.answer(Self.delegated, headerLifetime: 600, addressTTL: 3600)), now: 0)
        XCTAssertEqual(e.expiresAt, 600)
        XCTAssertEqual(e.wellKnownExpiresAt, 600)
        XCTAssertEqual(e.wellKnownFetchedAt, 0)
        // A later resolution that reused it keeps the well-known's own expiry: 100 s are left.
        let again = update(e, .success(Self.answer(Self.delegated, headerLifetime: 600, addressTTL: 3600)), reused: true, now: 500)
        XCTAssertEqual(again.wellKnownExpiresAt, 600)
        XCTAssertEqual(again.expiresAt, 500 + 100)
    }

    func testPermanentWellKnownFailureIsRememberedForAboutAnHourTemporaryOneBacksOff() {
        for jitter in [-1.0, 0, 1] {
            let perm = update(nil, .success(Self.answer(Self.notFound)), now: 0, jitter: jitter)
            XCTAssertLessThanOrEqual(perm.wellKnownExpiresAt!, 3600, "never more than the spec's hour")
            XCTAssertGreaterThanOrEqual(perm.wellKnownExpiresAt!, 3600 * 0.8)
            let temp = update(nil, .success(Self.answer(Self.refused)), now: 0, jitter: jitter)
            XCTAssertLessThanOrEqual(temp.wellKnownExpiresAt!, 60 * 1.2)
        }
        let twice = update(update(nil, .success(Self.answer(Self.refused)), now: 0), .success(Self.answer(Self.refused)), now: 100)
        XCTAssertEqual(twice.wellKnownFailures, 2)
        XCTAssertEqual(twice.wellKnownExpiresAt, 100 + 120, "the second failure waits 2 min")
    }

    func testAStep4To6AnswerLivesNoLongerThanTheBackOffOfTheWellKnownFailureThatProducedIt() {
        for jitter in [-1.0, 0, 1] {
            let perm = update(nil, .success(Self.answer(Self.notFound, addressTTL: 86400)), now: 0, jitter: jitter)
            XCTAssertEqual(perm.expiresAt, perm.wellKnownExpiresAt, "a 404 is refetched within the hour, not after the DNS TTL")
            XCTAssertLessThanOrEqual(perm.expiresAt, 3600)
            let temp = update(nil, .success(Self.answer(Self.refused, addressTTL: 3600)), now: 0, jitter: jitter)
            XCTAssertEqual(temp.expiresAt, temp.wellKnownExpiresAt)
            XCTAssertLessThanOrEqual(temp.expiresAt, 72)
        }
        let shortDNS = update(nil, .success(Self.answer(Self.notFound, addressTTL: 120)), now: 0)
        XCTAssertEqual(shortDNS.expiresAt, 120, "a shorter DNS TTL still wins")
        // A refresh that reuses the remembered failure lives only for what is left of its back-off.
        let reused = update(shortDNS, .success(Self.answer(Self.notFound, addressTTL: 120)), reused: true, now: shortDNS.wellKnownExpiresAt! - 50)
        XCTAssertEqual(reused.expiresAt, shortDNS.wellKnownExpiresAt!, "50 s are left of the back-off")
    }

    func testTheNegativeTTLOfAnSRVLookupThatFoundNothingBoundsTheAnswerAndIsNotKept() {
        var a = Self.answer(nil, addressTTL: 3600)
        a.srvNegativeTTL = 600
        let e = update(nil, .success(a), now: 0)
        XCTAssertEqual(e.expiresAt, 600)
        XCTAssertNil(e.answer?.srvNegativeTTL, "used for the lifetime only")
    }

    func testAFailureCountsUpKeepsTheLastGoodAnswerAndASuccessResets() {
        let ok = update(nil, .success(Self.answer(nil)), now: 0)
        let f1 = update(ok, .failure(ResolutionFailure(code: .dnsServfail, message: "m", trace: ["t"])), now: 400)
        XCTAssertEqual(f1.consecutiveFailures, 1)
        XCTAssertEqual(f1.expiresAt, 460)
        XCTAssertEqual(f1.failure?.trace, [])
        XCTAssertEqual(f1.lastGood, ok.answer)
        XCTAssertEqual(f1.lastGoodExpiresAt, 300)
        let f2 = update(f1, .failure(ResolutionFailure(code: .dnsServfail, message: "m")), now: 500)
        XCTAssertEqual(f2.consecutiveFailures, 2)
        XCTAssertEqual(f2.expiresAt, 620)
        let nx = update(f2, .failure(ResolutionFailure(code: .noAddress, message: "m", negativeTTL: 900)), now: 700)
        XCTAssertEqual(nx.expiresAt, 1600, "the SOA negative TTL when longer than the back-off")
        XCTAssertEqual(update(nx, .success(Self.answer(nil)), now: 2000).consecutiveFailures, 0)
    }

    // MARK: Serving

    func testServingAFreshAnswerAndRefreshAheadInItsLastFifth() {
        let e = update(nil, .success(Self.answer(nil, addressTTL: 1000)), now: 0)
        XCTAssertEqual(R.serving(e, now: 799), .fresh(e.answer!, refreshAhead: false))
        XCTAssertEqual(R.serving(e, now: 800), .fresh(e.answer!, refreshAhead: true))
        XCTAssertEqual(R.serving(e, now: 1000), .expired)
    }

    func testATemporaryFailureServesTheLastGoodAnswerForTheGraceAPermanentOneDoesNot() {
        let ok = update(nil, .success(Self.answer(nil, addressTTL: 300)), now: 0)
        let temp = update(ok, .failure(ResolutionFailure(code: .dnsTimeout, message: "m")), now: 300)
        XCTAssertEqual(R.serving(temp, now: 301), .stale(ok.answer!, revalidate: false))
        XCTAssertTrue(R.mayServeStale(temp, now: 300 + CachePolicy.staleGraceLimit - 1))
        XCTAssertFalse(R.mayServeStale(temp, now: 300 + CachePolicy.staleGraceLimit), "the grace counts from the answer's expiry")
        let perm = update(ok, .failure(ResolutionFailure(code: .noAddress, message: "gone")), now: 300)
        XCTAssertEqual(R.serving(perm, now: 301), .failure(perm.failure!))
        let fresh = update(nil, .failure(ResolutionFailure(code: .dnsTimeout, message: "m")), now: 0)
        XCTAssertEqual(R.serving(fresh, now: 1), .failure(fresh.failure!), "no last good answer to serve")
    }

    // MARK: Reusing the well-known

    func testAFreshDelegationIsReusedUntilItsLastFifthAFailureUntilItsBackOffEnds() {
        let e = update(nil, .success(Self.answer(Self.delegated, headerLifetime: 1000, addressTTL: 3600)), now: 0)
        XCTAssertEqual(R.reusableWellKnown(e, now: 799)?.result, Self.delegated)
        XCTAssertNil(R.reusableWellKnown(e, now: 800), "refresh-ahead refetches it")
        XCTAssertNil(R.reusableWellKnown(nil, now: 0))
        let failed = update(nil, .success(Self.answer(Self.refused)), now: 0)
        XCTAssertEqual(R.reusableWellKnown(failed, now: 59)?.result, Self.refused, "not retried early")
        XCTAssertNil(R.reusableWellKnown(failed, now: 60))
    }

    func testATemporaryWellKnownFailureKeepsThePreviousDelegationWithinTheGraceOnly() {
        let prev = update(nil, .success(Self.answer(Self.delegated, headerLifetime: 600, addressTTL: 3600)), now: 0)
        let refused = WellKnownOutcome(result: Self.refused, headerLifetime: nil)
        let kept = R.delegationToKeep(previous: prev, reused: nil, fetched: refused, now: 700)
        XCTAssertEqual(kept?.result, Self.delegated)
        XCTAssertNil(R.delegationToKeep(previous: prev, reused: nil, fetched: refused, now: 600 + CachePolicy.staleGraceLimit),
                     "grace over: the fallback stands")
        XCTAssertNil(R.delegationToKeep(previous: prev, reused: nil, fetched: WellKnownOutcome(result: Self.notFound, headerLifetime: nil),
                                        now: 700), "a 404 is the server's answer")
        XCTAssertNil(R.delegationToKeep(previous: prev, reused: prev.wellKnown, fetched: refused, now: 700), "nothing was fetched")
        XCTAssertNil(R.delegationToKeep(previous: nil, reused: nil, fetched: refused, now: 700))
    }

    // MARK: Stale-while-revalidate

    static let refusedOutcome = WellKnownOutcome(result: refused, headerLifetime: nil)

    /// The entry after the well-known host of a delegated name (confirmed at 0 for 600 s, DNS TTL
    /// 3600) failed temporarily at `now` and the answer was rebuilt from the kept delegation.
    func keptThroughFailure(_ previous: CacheEntry, now: Double, jitter: Double = 0) -> CacheEntry {
        R.updated(previous, serverName: "x.test", result: .success(Self.answer(Self.delegated, headerLifetime: 600, addressTTL: 3600)),
                  fetched: Self.refusedOutcome, now: now, jitter: jitter)
    }

    func testAKeptDelegationIsServedStaleAtOnceAndRevalidatedWhenItsBackOffEnds() {
        let ok = update(nil, .success(Self.answer(Self.delegated, headerLifetime: 600, addressTTL: 3600)), now: 0)
        XCTAssertEqual(ok.delegation?.result, Self.delegated)
        XCTAssertEqual(ok.delegationExpiresAt, 600)
        XCTAssertFalse(R.holdsStale(ok))
        let stale = keptThroughFailure(ok, now: 700)
        XCTAssertTrue(R.servesKeptDelegation(stale))
        XCTAssertEqual(stale.wellKnown?.result, Self.refused, "the entry remembers the failure…")
        XCTAssertEqual(stale.answer?.wellKnown?.result, Self.delegated, "…and the answer the delegation it was built from")
        XCTAssertEqual(stale.wellKnownFailures, 1)
        XCTAssertEqual(stale.wellKnownExpiresAt, 760, "first back-off: 60 s")
        XCTAssertEqual(stale.expiresAt, 760, "the answer lives until the back-off ends, not for its DNS TTL")
        XCTAssertEqual(stale.lastGood, ok.answer, "the last confirmed answer stays the last good one")
        XCTAssertEqual(stale.lastGoodExpiresAt, 600)
        XCTAssertEqual(stale.delegationExpiresAt, 600, "keeping the delegation does not extend it")
        XCTAssertEqual(R.serving(stale, now: 701), .stale(stale.answer!, revalidate: false))
        XCTAssertEqual(R.serving(stale, now: 760), .stale(stale.answer!, revalidate: true), "served at once; revalidated behind")
        XCTAssertTrue(R.isStale(stale, now: 701))
        XCTAssertEqual(R.reusableWellKnown(stale, now: 701)?.result, Self.delegated, "a DNS refresh inside the back-off keeps it")
        XCTAssertNil(R.reusableWellKnown(stale, now: 760), "after the back-off the well-known is fetched again")
        XCTAssertEqual(R.serving(stale, now: 600 + CachePolicy.staleGraceLimit - 1), .stale(stale.answer!, revalidate: true))
        XCTAssertEqual(R.serving(stale, now: 600 + CachePolicy.staleGraceLimit), .expired, "the grace is bounded")
        XCTAssertFalse(R.isStale(stale, now: 600 + CachePolicy.staleGraceLimit))
    }

    func testEachFailedRevalidationDoublesTheBackOffToTheHourWithJitter() {
        var e = update(nil, .success(Self.answer(Self.delegated, headerLifetime: 600, addressTTL: 3600)), now: 0)
        var t = 600.0
        var delays: [Double] = []
        for _ in 0..<8 {
            e = keptThroughFailure(e, now: t)
            delays.append(e.wellKnownExpiresAt! - t)
            t = e.wellKnownExpiresAt!
        }
        XCTAssertEqual(delays, [60, 120, 240, 480, 960, 1920, 3600, 3600].prefix(delays.count).map { $0 })
        let jittered = keptThroughFailure(update(nil, .success(Self.answer(Self.delegated, headerLifetime: 600)), now: 0), now: 600, jitter: 1)
        XCTAssertEqual(jittered.wellKnownExpiresAt! - 600, 72, accuracy: 0.001)
    }

    func testAStaleDelegationIsGivenUpAfterTheGraceAndCountedOnce() {
        let ok = update(nil, .success(Self.answer(Self.delegated, headerLifetime: 600, addressTTL: 3600)), now: 0)
        let stale = keptThroughFailure(ok, now: 700)
        let end = 600 + CachePolicy.staleGraceLimit
        XCTAssertNil(R.delegationToKeep(previous: stale, reused: nil, fetched: Self.refusedOutcome, now: end))
        // Still failing after the grace: steps 4–6 without the delegation.
        let fallback = update(stale, .success(Self.answer(Self.refused)), now: end)
        XCTAssertNil(fallback.delegation)
        XCTAssertFalse(R.holdsStale(fallback))
        XCTAssertTrue(R.givesUpStale(previous: stale, next: fallback))
        XCTAssertFalse(R.givesUpStale(previous: fallback, next: update(fallback, .success(Self.answer(Self.refused)), now: end + 100)))
        // Recovering is not giving up.
        let fixed = update(stale, .success(Self.answer(Self.delegated, headerLifetime: 600)), now: 800)
        XCTAssertFalse(R.givesUpStale(previous: stale, next: fixed))
        XCTAssertFalse(R.holdsStale(fixed))
        // A failed resolution drops a last good answer past its grace, once.
        let failing = update(ok, .failure(ResolutionFailure(code: .dnsTimeout, message: "m")), now: 700)
        XCTAssertTrue(R.holdsStale(failing))
        let past = update(failing, .failure(ResolutionFailure(code: .dnsTimeout, message: "m")), now: 600 + CachePolicy.staleGraceLimit)
        XCTAssertNil(past.lastGood)
        XCTAssertTrue(R.givesUpStale(previous: failing, next: past))
        XCTAssertFalse(R.givesUpStale(previous: past, next: update(past, .failure(ResolutionFailure(code: .dnsTimeout, message: "m")), now: 9e4)))
    }

    func testARecentlyValidDelegationRetriesItsFetchANameAlreadyFailingDoesNot() {
        XCTAssertEqual(R.wellKnownAttempts(nil, now: 0), 1)
        let ok = update(nil, .success(Self.answer(Self.delegated, headerLifetime: 600, addressTTL: 3600)), now: 0)
        XCTAssertEqual(R.wellKnownAttempts(ok, now: 600), CachePolicy.wellKnownRecentlyValidAttempts)
        XCTAssertEqual(R.wellKnownAttempts(ok, now: 600 + CachePolicy.staleGraceLimit), 1, "no longer recent")
        XCTAssertEqual(R.wellKnownAttempts(keptThroughFailure(ok, now: 700), now: 800), 1, "already known to be failing")
        XCTAssertEqual(R.wellKnownAttempts(update(nil, .success(Self.answer(Self.notFound)), now: 0), now: 4000), 1)
    }
}
