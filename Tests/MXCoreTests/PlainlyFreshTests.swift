import XCTest
@testable import MXCore

/// `plainlyFreshUntil` is the boundary the daemon answers hits from pre-rendered text before:
/// it must agree with `serving` at every moment, for every kind of entry.
final class PlainlyFreshTests: XCTestCase {
    func entries() -> [(String, CacheEntry)] {
        let now = 1_800_000_000.0
        let ok = CacheRules.updated(nil, serverName: "example.org", result: .success(CacheRecordTests.srvAnswer),
                                    fetched: CacheRecordTests.srvAnswer.wellKnown, now: now, jitter: 0.37)
        let wkFailure = WellKnownOutcome(result: .failed(code: "wellknown_timeout", message: "timed out", temporary: true), headerLifetime: nil)
        var rebuilt = CacheRecordTests.srvAnswer
        rebuilt.targets[0].addresses = [IPAddress("203.0.113.8")!]
        let kept = CacheRules.updated(ok, serverName: "example.org", result: .success(rebuilt), fetched: wkFailure, now: now + 4000, jitter: 0)
        let failed = CacheRules.updated(ok, serverName: "example.org",
                                        result: .failure(ResolutionFailure(code: .dnsServfail, message: "m", step: .matrixFedSRV)),
                                        fetched: nil, now: now + 400, jitter: -0.5)
        let permanent = CacheRules.updated(nil, serverName: "example.org",
                                           result: .failure(ResolutionFailure(code: .noAddress, message: "m", step: .delegatedDefaultPort)),
                                           fetched: nil, now: now, jitter: 0.2)
        var noLifetime = ok
        noLifetime.expiresAt = noLifetime.fetchedAt
        var backwards = ok
        backwards.fetchedAt = ok.expiresAt + 5
        return [("answer", ok), ("kept delegation", kept), ("temporary failure with last good", failed),
                ("permanent failure", permanent), ("no lifetime", noLifetime), ("fetched after expiry", backwards)]
    }

    func testItIsExactlyWhereServingIsFreshWithoutARefreshDue() {
        var rng = SplitMix(seed: 14)
        for (what, e) in entries() {
            let until = CacheRules.plainlyFreshUntil(e)
            var moments = [e.fetchedAt, e.expiresAt, e.fetchedAt - 1, e.expiresAt + 1]
            if let until { moments += [until, until.nextDown, until.nextUp] }
            let span = max(1, e.expiresAt - e.fetchedAt)
            moments += (0..<500).map { _ in e.fetchedAt - span + Double.random(in: 0...(3 * span + CachePolicy.staleGraceLimit), using: &rng) }
            for t in moments {
                let plain: Bool
                if case .fresh(_, refreshAhead: false) = CacheRules.serving(e, now: t) { plain = true } else { plain = false }
                XCTAssertEqual(until.map { t < $0 } ?? false, plain, "\(what) at \(t - e.fetchedAt) s after it was fetched")
            }
        }
    }

    func testOnlyAnAnswerTheEntryStandsBehindIsEverPlainlyFresh() {
        let byKind = Dictionary(uniqueKeysWithValues: entries().map { ($0.0, CacheRules.plainlyFreshUntil($0.1)) })
        XCTAssertNotNil(byKind["answer"]!)
        XCTAssertNil(byKind["kept delegation"]!, "served as stale")
        XCTAssertNil(byKind["temporary failure with last good"]!)
        XCTAssertNil(byKind["permanent failure"]!)
    }
}
