import XCTest
@testable import MXCore

/// The cache policy's rules with a fixed clock and fixed jitter (docs/caching.md).
final class CachePolicyTests: XCTestCase {
    typealias P = CachePolicy
    /// Synapse's test clock for the Expires cases (C6–C8).
    let synapseNow = 1_548_833_700.0

    func lifetime(_ headers: [(String, String)], now: Double = 1_548_833_700) -> Double? {
        P.headerLifetime(headers.map { HTTPHeader($0.0, $0.1) }, now: now)
    }

    // MARK: C1–C8 (Synapse TestCachePeriodFromHeaders)

    func testC1_maxAgeKeyIsCaseInsensitiveWithSpacesAroundEquals() {
        XCTAssertEqual(lifetime([("Cache-Control", "foo, Max-Age = 100, bar")]), 100)
    }

    func testC2_emptyMaxAgeIsIgnored() {
        XCTAssertNil(lifetime([("Cache-Control", "max-age=, bar")]))
    }

    func testC3_semicolonIsNotASeparator() {
        XCTAssertNil(lifetime([("Cache-Control", "private; max-age=0")]))
    }

    func testC4_maxAgeZero_github() {
        XCTAssertEqual(lifetime([("Cache-Control", "max-age=0, private, must-revalidate")]), 0)
    }

    func testC5_lowerCaseHeaderName_google() {
        XCTAssertEqual(lifetime([("cache-control", "private, max-age=0")]), 0)
    }

    func testC6_expiresMinusNow() {
        XCTAssertEqual(lifetime([("Expires", "Wed, 30 Jan 2019 07:35:33 GMT")]), 33)
    }

    func testC7_cacheControlWinsOverExpires() {
        XCTAssertEqual(lifetime([("cache-control", "max-age=10"), ("Expires", "Wed, 30 Jan 2019 07:35:33 GMT")]), 10)
    }

    func testC8_invalidExpiresMeansExpired() {
        XCTAssertEqual(lifetime([("Expires", "0")]), 0)
    }

    // MARK: Beyond Synapse's cases

    func testNoStoreAndNoCacheAreZeroAndWinOverMaxAge() {
        XCTAssertEqual(lifetime([("Cache-Control", "max-age=3600, no-store")]), 0)
        XCTAssertEqual(lifetime([("Cache-Control", "no-cache")]), 0)
        XCTAssertEqual(lifetime([("Cache-Control", "public, max-age=3600"), ("Cache-Control", "No-Cache")]), 0)
    }

    func testNoCacheNamingFieldsOnlyConcernsThoseFieldsNotTheResponse() {
        XCTAssertEqual(lifetime([("Cache-Control", #"no-cache="Set-Cookie", max-age=3600"#)]), 3600)
        XCTAssertEqual(lifetime([("Cache-Control", #"max-age=600, no-cache="set-cookie, x-trace""#)]), 600,
                       "a comma inside the quoted field list does not split the directive")
        XCTAssertEqual(lifetime([("Cache-Control", #"no-cache="a\"b, c", max-age=60"#)]), 60, "escaped quotes stay inside")
        XCTAssertNil(lifetime([("Cache-Control", #"no-cache="set-cookie""#)]))
        XCTAssertEqual(lifetime([("Cache-Control", #"no-cache="set-cookie", no-cache, max-age=60"#)]), 0, "a bare no-cache still counts")
    }

    func testAllCacheControlInstancesAreReadAndTheLaterDirectiveWins() {
        XCTAssertEqual(lifetime([("Cache-Control", "public"), ("Cache-Control", "max-age=600")]), 600)
        XCTAssertEqual(lifetime([("Cache-Control", "max-age=600, max-age=60")]), 60)
    }

    func testUnparsableMaxAgeFallsThroughToExpires() {
        XCTAssertNil(lifetime([("Cache-Control", "max-age=\"100\"")]))
        XCTAssertEqual(lifetime([("Cache-Control", "max-age=abc"), ("Expires", "Wed, 30 Jan 2019 07:35:33 GMT")]), 33)
        XCTAssertEqual(lifetime([("Cache-Control", "max-age=-5")]), -5)
        XCTAssertEqual(lifetime([("Cache-Control", "max-age=+5")]), 5)
    }

    func testExpiresUsesDateHeaderWhenPresentAndTheLastExpires() {
        let headers = [("Date", "Wed, 30 Jan 2019 07:00:00 GMT"), ("Expires", "Wed, 30 Jan 2019 07:10:00 GMT"),
                       ("Expires", "Wed, 30 Jan 2019 08:00:00 GMT")]
        XCTAssertEqual(lifetime(headers, now: 0), 3600)
        // An invalid Date falls back to our clock.
        XCTAssertEqual(lifetime([("Date", "yesterday"), ("Expires", "Wed, 30 Jan 2019 07:35:33 GMT")]), 33)
    }

    func testPastExpiresIsNegativeRaw() {
        XCTAssertEqual(lifetime([("Expires", "Wed, 30 Jan 2019 07:34:00 GMT")]), -60)
    }

    func testNoCacheHeadersIsNil() {
        XCTAssertNil(lifetime([("Content-Type", "application/json"), ("Cache-Control", "public, s-maxage=10")]))
        XCTAssertNil(lifetime([]))
    }

    // MARK: Well-known lifetime clamps and default

    func testHeaderLifetimesClampToFiveMinutesAndFortyEightHours() {
        XCTAssertEqual(P.wellKnownLifetime(headerLifetime: 0, jitter: 1), 300)
        XCTAssertEqual(P.wellKnownLifetime(headerLifetime: -60, jitter: 0), 300)
        XCTAssertEqual(P.wellKnownLifetime(headerLifetime: 299, jitter: 0), 300)
        XCTAssertEqual(P.wellKnownLifetime(headerLifetime: 3600, jitter: -1), 3600, "no jitter on header lifetimes")
        XCTAssertEqual(P.wellKnownLifetime(headerLifetime: 172_800, jitter: 0), 172_800)
        XCTAssertEqual(P.wellKnownLifetime(headerLifetime: 10_000_000, jitter: 0), 172_800)
    }

    func testDefaultIsTwentyFourHoursPlusMinusTenPercent() {
        XCTAssertEqual(P.wellKnownLifetime(headerLifetime: nil, jitter: 0), 86_400)
        XCTAssertEqual(P.wellKnownLifetime(headerLifetime: nil, jitter: -1), 77_760, accuracy: 1e-6)
        XCTAssertEqual(P.wellKnownLifetime(headerLifetime: nil, jitter: 1), 95_040, accuracy: 1e-6)
        XCTAssertEqual(P.wellKnownLifetime(headerLifetime: nil, jitter: 7), 95_040, accuracy: 1e-6, "jitter is clamped")
        var rng = SplitMix(seed: 42)
        var seen = (low: Double.infinity, high: -Double.infinity)
        for _ in 0..<2000 {
            let t = P.wellKnownLifetime(headerLifetime: nil, jitter: P.randomJitter(using: &rng))
            XCTAssert((77_760...95_040).contains(t))
            seen = (min(seen.low, t), max(seen.high, t))
        }
        XCTAssertLessThan(seen.low, 79_000, "jitter spreads downwards")
        XCTAssertGreaterThan(seen.high, 94_000, "jitter spreads upwards")
    }

    // MARK: Answer lifetime: never longer than the DNS TTLs used

    func testAnswerLivesAsLongAsItsShortestIngredient() {
        XCTAssertEqual(P.answerLifetime(wellKnown: 86_400, srvTTL: 300, addressTTL: 3600), 300)
        XCTAssertEqual(P.answerLifetime(wellKnown: 600, srvTTL: 3600, addressTTL: 7200), 600)
        XCTAssertEqual(P.answerLifetime(wellKnown: 86_400, srvTTL: nil, addressTTL: 120), 120)
        XCTAssertEqual(P.answerLifetime(wellKnown: nil, srvTTL: nil, addressTTL: 900), 900)
        XCTAssertEqual(P.answerLifetime(wellKnown: 86_400, srvTTL: nil, addressTTL: 3600, srvNegativeTTL: 600), 600)
    }

    func testAnswerLifetimeFloorAndCap() {
        XCTAssertEqual(P.answerLifetime(wellKnown: 86_400, srvTTL: 0, addressTTL: 300), 30, "TTL 0 is not a miss per request")
        XCTAssertEqual(P.answerLifetime(wellKnown: 5, srvTTL: nil, addressTTL: 300), 30)
        XCTAssertEqual(P.answerLifetime(wellKnown: nil, srvTTL: nil, addressTTL: UInt32.max), 172_800)
        XCTAssertEqual(P.answerLifetime(wellKnown: nil, srvTTL: nil, addressTTL: nil), 86_400, "IP literal")
    }

    // MARK: Back-off

    func testBackoffScheduleDoublesFromOneMinuteToOneHour() {
        let schedule = (1...9).map { P.failureDelay(consecutiveFailures: $0, jitter: 0) }
        XCTAssertEqual(schedule, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600])
        XCTAssertEqual(P.failureDelay(consecutiveFailures: Int.max, jitter: 0), 3600)
        XCTAssertEqual(P.failureDelay(consecutiveFailures: 0, jitter: 0), 60)
    }

    func testBackoffJitterBoundsAndNeverAboveOneHour() {
        XCTAssertEqual(P.failureDelay(consecutiveFailures: 1, jitter: -1), 48, accuracy: 1e-9)
        XCTAssertEqual(P.failureDelay(consecutiveFailures: 1, jitter: 1), 72, accuracy: 1e-9)
        XCTAssertEqual(P.failureDelay(consecutiveFailures: 6, jitter: 1), 2304, accuracy: 1e-9)
        XCTAssertEqual(P.failureDelay(consecutiveFailures: 7, jitter: 1), 3600)
        XCTAssertEqual(P.failureDelay(consecutiveFailures: 7, jitter: -1), 2880, accuracy: 1e-9)
        var rng = SplitMix(seed: 7)
        for n in 1...20 {
            for _ in 0..<100 {
                let d = P.failureDelay(consecutiveFailures: n, jitter: P.randomJitter(using: &rng))
                XCTAssert(d >= 48 && d <= 3600, "\(n): \(d)")
            }
        }
    }

    func testSuccessResetsTheBackoff() {
        // The daemon's counter: +1 per failure, 0 after a success.
        var failures = 0
        var delays: [Double] = []
        for outcome in [false, false, false, true, false] {
            failures = outcome ? 0 : failures + 1
            if !outcome { delays.append(P.failureDelay(consecutiveFailures: failures, jitter: 0)) }
        }
        XCTAssertEqual(delays, [60, 120, 240, 60])
    }

    func testPermanentWellKnownFailureIsRememberedForAboutTheSpecsHourNeverMore() {
        XCTAssertEqual(P.permanentWellKnownFailureLifetime(jitter: -1), 3600)
        XCTAssertEqual(P.permanentWellKnownFailureLifetime(jitter: 0), 3240, accuracy: 1e-9)
        XCTAssertEqual(P.permanentWellKnownFailureLifetime(jitter: 1), 2880, accuracy: 1e-9)
        XCTAssertEqual(P.permanentWellKnownFailureLifetime(jitter: 5), 2880, accuracy: 1e-9, "jitter is clamped")
    }

    func testFailureLifetimeUsesNegativeTTLWithinBounds() {
        XCTAssertEqual(P.failureLifetime(consecutiveFailures: 1, negativeTTL: nil, jitter: 0), 60)
        XCTAssertEqual(P.failureLifetime(consecutiveFailures: 1, negativeTTL: 900, jitter: 0), 900)
        XCTAssertEqual(P.failureLifetime(consecutiveFailures: 1, negativeTTL: 5, jitter: 0), 60, "raised to the first delay")
        XCTAssertEqual(P.failureLifetime(consecutiveFailures: 1, negativeTTL: 86_400, jitter: 0), 3600, "capped at an hour")
        XCTAssertEqual(P.failureLifetime(consecutiveFailures: 5, negativeTTL: 300, jitter: 0), 960, "back-off wins when longer")
    }

    // MARK: Grace and refresh ahead

    func testStaleAnswersOnlyForTemporaryFailuresWithinTheGrace() {
        let expired = 10_000.0
        XCTAssertTrue(P.canServeStale(lastGoodExpiresAt: expired, now: expired - 1, failureIsTemporary: true))
        XCTAssertTrue(P.canServeStale(lastGoodExpiresAt: expired, now: expired + 7199, failureIsTemporary: true))
        XCTAssertFalse(P.canServeStale(lastGoodExpiresAt: expired, now: expired + 7200, failureIsTemporary: true))
        XCTAssertFalse(P.canServeStale(lastGoodExpiresAt: expired, now: expired - 1, failureIsTemporary: false),
                       "a 404 or an invalid body replaces the answer")
    }

    func testRefreshAheadInTheLastFifthOfTheLifetime() {
        let (fetched, expires) = (1000.0, 2000.0)
        XCTAssertFalse(P.shouldRefreshAhead(fetchedAt: fetched, expiresAt: expires, now: 1000))
        XCTAssertFalse(P.shouldRefreshAhead(fetchedAt: fetched, expiresAt: expires, now: 1799.9))
        XCTAssertTrue(P.shouldRefreshAhead(fetchedAt: fetched, expiresAt: expires, now: 1800))
        XCTAssertTrue(P.shouldRefreshAhead(fetchedAt: fetched, expiresAt: expires, now: 1999.9))
        XCTAssertFalse(P.shouldRefreshAhead(fetchedAt: fetched, expiresAt: expires, now: 2000), "expired: a miss, not a refresh")
        XCTAssertFalse(P.shouldRefreshAhead(fetchedAt: fetched, expiresAt: fetched, now: fetched))
    }

    // MARK: HTTP dates

    func testTheThreeHTTPDateFormats() {
        let expected = 784_111_777.0 // Sun, 06 Nov 1994 08:49:37 GMT
        XCTAssertEqual(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT"), expected)
        XCTAssertEqual(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT", now: 1_700_000_000), expected)
        XCTAssertEqual(HTTPDate.parse("Sun Nov  6 08:49:37 1994"), expected)
        XCTAssertEqual(HTTPDate.parse("  sun, 06 nov 1994 08:49:37 gmt "), expected)
        XCTAssertEqual(HTTPDate.parse("Thu, 01 Jan 1970 00:00:00 GMT"), 0)
        XCTAssertEqual(HTTPDate.parse("Tue, 29 Feb 2000 23:59:59 GMT"), 951_868_799)
    }

    func testRFC850TwoDigitYearIsNeverMoreThanFiftyYearsAhead() {
        let in2024 = 1_704_067_200.0 // 2024-01-01
        XCTAssertEqual(HTTPDate.parse("Monday, 01-Jan-74 00:00:00 GMT", now: in2024).map { HTTPDate.year(ofEpochSeconds: $0) }, 2074)
        XCTAssertEqual(HTTPDate.parse("Tuesday, 01-Jan-75 00:00:00 GMT", now: in2024).map { HTTPDate.year(ofEpochSeconds: $0) }, 1975)
        XCTAssertEqual(HTTPDate.parse("Friday, 01-Jan-99 00:00:00 GMT").map { HTTPDate.year(ofEpochSeconds: $0) }, 1999)
    }

    func testInvalidHTTPDates() {
        for bad in ["0", "", "-1", "Wed, 30 Feb 2019 07:35:33 GMT", "Wed, 30 Jan 2019 24:00:00 GMT",
                    "Wed, 30 Foo 2019 07:35:33 GMT", "Wed, 30 Jan 2019 07:35:33 PST", "Wed, 30 Jan 2019 07:35:33 GMT x",
                    "Wed 30 Jan 2019 07:35:33 GMT", "Xyz, 30 Jan 2019 07:35:33 GMT", "Wed, 30 Jan 19 07:35:33 GMT",
                    "Wed, 30 Jan 2019 7:35:33 GMT", "2019-01-30T07:35:33Z"] {
            XCTAssertNil(HTTPDate.parse(bad), bad)
        }
    }

    func testCivilDaysRoundTrip() {
        for (y, m, d, days) in [(1970, 1, 1, 0), (2000, 3, 1, 11_017), (1969, 12, 31, -1), (2038, 1, 19, 24_855)] {
            XCTAssertEqual(HTTPDate.daysFromCivil(year: y, month: m, day: d), days)
            XCTAssertEqual(HTTPDate.year(ofEpochSeconds: Double(days) * 86_400 + 1), y)
        }
    }
}
