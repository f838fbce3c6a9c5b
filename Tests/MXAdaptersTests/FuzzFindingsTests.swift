import XCTest
import MXCore
@testable import MXAdapters

/// Inputs the fuzz targets (Fuzz/, docs/fuzzing.md) found mishandled in the adapters, kept as regression tests.
final class AdapterFuzzFindingsTests: XCTestCase {
    func headers(_ lines: [String]) -> [HTTPHeader] {
        var headers: [HTTPHeader] = []
        for line in lines {
            Array(line.utf8).withUnsafeBytes { CurlHTTPS.headerLine($0, into: &headers) }
        }
        return headers
    }

    /// fuzz-http-headers: a folded continuation line of only whitespace left a trailing space on the
    /// value, and a fold after an empty value a leading one (RFC 9112 §5.2: fields are trimmed).
    func testFoldedLinesKeepTheValueTrimmed() {
        XCTAssertEqual(headers(["HTTP/1.1 200 OK\r\n", "Expires: 0\r\n", " \t \r\n"]), [HTTPHeader("expires", "0")])
        XCTAssertEqual(headers(["X-A:\r\n", "  later\r\n"]), [HTTPHeader("x-a", "later")])
        XCTAssertEqual(headers(["Cache-Control: max-age=60,\r\n", "\tpublic  \r\n"]),
                       [HTTPHeader("cache-control", "max-age=60, public")])
    }

    /// fuzz-http-headers: a colon followed by a combining mark (U+AAEB) is one Character with it, so a
    /// search by Character skipped that colon and took the name up to a later one.
    func testAColonBeforeACombiningMarkStillEndsTheName() {
        XCTAssertEqual(headers(["Cache-Control:\u{AAEB}/1l: n\r\n"]), [HTTPHeader("cache-control", "\u{AAEB}/1l: n")])
    }
}
