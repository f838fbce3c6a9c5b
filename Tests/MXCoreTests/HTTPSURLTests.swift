import XCTest
@testable import MXCore

/// RFC 3986 §5.4's reference resolution examples, with https for http (the only scheme followed).
final class HTTPSURLTests: XCTestCase {
    let base = HTTPSURL(host: "a", port: nil, path: "/b/c/d;p", query: "q")

    func testNormalAndAbnormalExamples() {
        let cases: [(String, String)] = [
            ("g", "https://a/b/c/g"), ("./g", "https://a/b/c/g"), ("g/", "https://a/b/c/g/"), ("/g", "https://a/g"),
            ("//g", "https://g/"), ("?y", "https://a/b/c/d;p?y"), ("g?y", "https://a/b/c/g?y"), ("#s", "https://a/b/c/d;p?q"),
            ("g#s", "https://a/b/c/g"), ("g?y#s", "https://a/b/c/g?y"), (";x", "https://a/b/c/;x"), ("g;x", "https://a/b/c/g;x"),
            ("", "https://a/b/c/d;p?q"), (".", "https://a/b/c/"), ("./", "https://a/b/c/"), ("..", "https://a/b/"),
            ("../", "https://a/b/"), ("../g", "https://a/b/g"), ("../..", "https://a/"), ("../../", "https://a/"),
            ("../../g", "https://a/g"),
            ("../../../g", "https://a/g"), ("../../../../g", "https://a/g"), ("/./g", "https://a/g"), ("/../g", "https://a/g"),
            ("g.", "https://a/b/c/g."), (".g", "https://a/b/c/.g"), ("g..", "https://a/b/c/g.."), ("..g", "https://a/b/c/..g"),
            ("./../g", "https://a/b/g"), ("./g/.", "https://a/b/c/g/"), ("g/./h", "https://a/b/c/g/h"), ("g/../h", "https://a/b/c/h"),
            ("g;x=1/./y", "https://a/b/c/g;x=1/y"), ("g;x=1/../y", "https://a/b/c/y"),
            ("g?y/./x", "https://a/b/c/g?y/./x"), ("g?y/../x", "https://a/b/c/g?y/../x"), ("g#s/./x", "https://a/b/c/g"),
            // "://" inside a query is not a scheme; a scheme-relative and an absolute URL with a port.
            ("/x?next=https://evil.test/", "https://a/x?next=https://evil.test/"),
            ("HTTPS://Other.Test:8443/p", "https://other.test:8443/p"), ("https://[::1]:8443/p", "https://[::1]:8443/p"),
        ]
        for (reference, expected) in cases {
            switch base.resolving(reference) {
            case .success(let url): XCTAssertEqual(url.text, expected, "reference '\(reference)'")
            case .failure(let p): XCTFail("reference '\(reference)': \(p.message)")
            }
        }
    }

    func testRefusedReferences() {
        let cases: [(String, String)] = [
            ("http://a/g", "wellknown_redirect_not_https"), ("g:h", "wellknown_redirect_not_https"),
            ("https://user@a/g", "wellknown_bad_redirect"), ("https:///g", "wellknown_bad_redirect"),
            ("/a b", "wellknown_bad_redirect"), ("/é", "wellknown_bad_redirect"), ("https://bad_host!/", "wellknown_bad_redirect"),
        ]
        for (reference, code) in cases {
            if case .failure(let p) = base.resolving(reference) {
                XCTAssertEqual(p.code, code, "reference '\(reference)'")
            } else {
                XCTFail("reference '\(reference)' should be refused")
            }
        }
    }

    func testIPLiteralHost() {
        guard case .success(let url) = base.resolving("https://192.0.2.7/x") else { return XCTFail() }
        XCTAssertEqual(url.ipLiteral, IPAddress("192.0.2.7"))
        XCTAssertNil(base.ipLiteral)
    }
}
