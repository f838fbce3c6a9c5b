import XCTest
@testable import MXCore

/// Inputs the fuzz targets (Fuzz/, docs/fuzzing.md) found mishandled, each kept as a regression test.
final class FuzzFindingsTests: XCTestCase {
    /// fuzz-server-name: inet_pton reads a C string, so an embedded NUL hid the rest of the literal
    /// and "[::ff\0...]" was accepted as a valid server name for ::ff.
    func testAnIPLiteralWithANulIsNotAnAddress() {
        XCTAssertNil(IPAddress(ipv6: "::1\0garbage"))
        XCTAssertNil(IPAddress(ipv4: "192.0.2.1\0garbage"))
        XCTAssertNil(IPAddress("::1\0"))
        XCTAssertThrowsError(try ServerName(parsing: "[::ff\0\0\0ffa0.2.3.4]")) { error in
            XCTAssertEqual(error as? ServerNameError, .badIPv6("::ff\0\0\0ffa0.2.3.4"))
        }
        XCTAssertThrowsError(try ServerName(parsing: "[2001:db8::1\0evil]:8448"))
        XCTAssertEqual(try ServerName(parsing: "[2001:db8::1]:8448").port, 8448)
    }

    /// The same through a well-known body, where JSON can carry a NUL as \u0000.
    func testAWellKnownDelegationWithANulIsInvalid() {
        let body = Array(#"{"m.server": "[::1\u0000x]"}"#.utf8)
        guard case .failure(.invalidMServer(let text, .badIPv6)) = WellKnownBody.delegation(from: body) else {
            return XCTFail("accepted \(WellKnownBody.delegation(from: body))")
        }
        XCTAssertEqual(text, "[::1\0x]")
    }
}
