import XCTest
@testable import MXResolve

/// The per-name rate limit of `reresolve`, with a controlled clock.
final class ReresolveLimitTests: XCTestCase {
    func testOncePerIntervalPerNameWithWholeSecondsToWait() {
        let limit = ReresolveLimit(interval: 60, capacity: 8)
        XCTAssertEqual(limit.admit("a.example", now: 1000), .start)
        XCTAssertEqual(limit.admit("b.example", now: 1000), .start, "names are limited separately")
        XCTAssertEqual(limit.admit("a.example", now: 1000), .limited(retryAfter: 60))
        XCTAssertEqual(limit.admit("a.example", now: 1059.2), .limited(retryAfter: 1))
        XCTAssertEqual(limit.admit("a.example", now: 1030.5), .limited(retryAfter: 30))
        XCTAssertEqual(limit.admit("a.example", now: 1060), .start)
        XCTAssertEqual(limit.admit("a.example", now: 1061), .limited(retryAfter: 59), "the interval restarts with each start")
    }

    func testTheTableIsBoundedAndForgetsTheOldestFirst() {
        let limit = ReresolveLimit(interval: 60, capacity: 4)
        for i in 0..<4 { XCTAssertEqual(limit.admit("n\(i)", now: 100 + Double(i)), .start) }
        XCTAssertEqual(limit.admit("n4", now: 105), .start)
        XCTAssertEqual(limit.count, 4)
        XCTAssertEqual(limit.admit("n0", now: 106), .start, "the oldest was dropped to make room")
        XCTAssertEqual(limit.admit("n4", now: 107), .limited(retryAfter: 58), "newer ones are still limited")
        for i in 0..<10_000 { _ = limit.admit("flood\(i)", now: 200 + Double(i) / 1000) }
        XCTAssertEqual(limit.count, 4)
        XCTAssertEqual(limit.admit("n4", now: 400), .start, "expired starts are forgotten")
    }
}
