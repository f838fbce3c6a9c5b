import XCTest
@testable import MXAdapters

final class OutboundProxyTests: XCTestCase {
    func testURLFormsAsSynapseTakesThem() throws {
        XCTAssertEqual(try OutboundProxy(proxy: "proxy.example.com", noProxy: "").url, "http://proxy.example.com:1080")
        XCTAssertEqual(try OutboundProxy(proxy: "https://u:p@proxy.example.com:3128/", noProxy: "").url, "https://u:p@proxy.example.com:3128")
        XCTAssertEqual(try OutboundProxy(proxy: "http://[2001:db8::1]", noProxy: "").url, "http://[2001:db8::1]:1080")
        XCTAssertThrowsError(try OutboundProxy(proxy: "socks5://proxy:1080", noProxy: ""))
        XCTAssertThrowsError(try OutboundProxy(proxy: "http://", noProxy: ""))
    }

    func testNoProxyNamesAddressesRangesAndStar() throws {
        let p = try OutboundProxy(proxy: "http://proxy:3128", noProxy: " Example.COM, .internal.test ,10.0.0.0/8, 192.0.2.7, [2001:db8::1], host.test:8443")
        for host in ["example.com", "matrix.example.com", "a.internal.test", "internal.test", "10.1.2.3", "192.0.2.7", "2001:db8::1", "host.test"] {
            XCTAssertTrue(p.bypasses(host), host)
        }
        for host in ["notexample.com", "example.com.evil", "11.0.0.1", "192.0.2.8", "other.test"] {
            XCTAssertFalse(p.bypasses(host), host)
        }
        XCTAssertTrue(try OutboundProxy(proxy: "proxy", noProxy: "*").bypasses("anything.test"))
        XCTAssertThrowsError(try OutboundProxy(proxy: "proxy", noProxy: "10.0.0.0/99"))
    }

    func testEnvironmentLowerCaseWins() {
        let e = OutboundProxy.fromEnvironment(["HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "NO_PROXY": "a.test"])
        XCTAssertEqual(e.proxy, "http://lower:2")
        XCTAssertEqual(e.noProxy, "a.test")
        XCTAssertNil(OutboundProxy.fromEnvironment(["https_proxy": "  "]).proxy)
    }
}
