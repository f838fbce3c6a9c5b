import XCTest
@testable import MXCore

/// The well-known body as the spec reads it: JSON regardless of content type, `m.server` a server name.
final class WellKnownBodyTests: XCTestCase {
    private func read(_ text: String) -> Result<ServerName, WellKnownBody.Problem> {
        WellKnownBody.delegation(from: Array(text.utf8))
    }

    func testDelegationAndItsProblems() throws {
        XCTAssertEqual(try read(#" {"m.server": "b.test:443", "other": [1, 2.5e-3, null, true, {"x": "\u00e9\ud83d\ude00"}]} "#).get(),
                       try ServerName(parsing: "b.test:443"))
        XCTAssertEqual(read(#"["m.server"]"#), .failure(.notAnObject))
        XCTAssertEqual(read(#""b.test""#), .failure(.notAnObject))
        XCTAssertEqual(read(#"{"m.homeserver": {}}"#), .failure(.missingMServer))
        XCTAssertEqual(read(#"{"m.server": 8448}"#), .failure(.mServerNotAString))
        XCTAssertEqual(read(#"{"m.server": "b test"}"#).problemCode, "wellknown_invalid_m_server")
        XCTAssertEqual(WellKnownBody.delegation(from: [0x7B, 0xFF, 0x7D]), .failure(.notUTF8))
        XCTAssertEqual(read(String(repeating: "[", count: 40) + String(repeating: "]", count: 40)), .failure(.tooDeep))
    }

    /// A later duplicate key wins, as in Python's `json` (what Synapse reads the body with).
    func testALaterDuplicateKeyWins() throws {
        XCTAssertEqual(try read(#"{"m.server": "a.test", "m.server": "b.test"}"#).get(), try ServerName(parsing: "b.test"))
    }

    /// RFC 8259's grammar, numbers included: what is not JSON is an invalid well-known.
    func testWhatIsNotJSONIsInvalid() {
        for bad in [#"{"m.server": "a.test",}"#, #"{"m.server": "a.test"} x"#, #"{'m.server': "a.test"}"#,
                    #"{"m.server": "a.test", "n": 1.}"#, #"{"m.server": "a.test", "n": .5}"#,
                    #"{"m.server": "a.test", "n": 01}"#, #"{"m.server": "a.test", "n": 1e}"#,
                    #"{"m.server": "a.test", "n": +1}"#, #"{"m.server": "a.test", "n": NaN}"#,
                    #"{"m.server": "a\ud800.test"}"#, "{\"m.server\": \"a\u{01}.test\"}", "\u{FEFF}{\"m.server\": \"a.test\"}", ""] {
            XCTAssertEqual(read(bad), .failure(.invalidJSON), bad)
        }
        XCTAssertEqual(try read(#"{"m.server": "a.test", "n": [-0, 0.5, 1E+2, -1e-2, 123456789012345678901234567890]}"#).get(),
                       try ServerName(parsing: "a.test"))
    }
}

private extension Result where Failure == WellKnownBody.Problem {
    var problemCode: String? { if case .failure(let p) = self { return p.code }; return nil }
}
