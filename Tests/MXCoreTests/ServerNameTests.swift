import XCTest
@testable import MXCore

final class ServerNameTests: XCTestCase {
    func testValidForms() throws {
        let cases: [(String, String, UInt16?, Bool)] = [
            ("matrix.org", "matrix.org", nil, false),
            ("matrix.org:8888", "matrix.org", 8888, false),
            ("1.2.3.4", "1.2.3.4", nil, true),
            ("1.2.3.4:1234", "1.2.3.4", 1234, true),
            ("[1234:5678::abcd]", "1234:5678::abcd", nil, true),
            ("[1234:5678::abcd]:5678", "1234:5678::abcd", 5678, true),
            ("xn--bcher-kva.com", "xn--bcher-kva.com", nil, false),
            ("localhost", "localhost", nil, false),
            ("Example.COM", "Example.COM", nil, false),
        ]
        for (text, tlsHost, port, isIP) in cases {
            let name = try ServerName(parsing: text)
            XCTAssertEqual(name.raw, text)
            XCTAssertEqual(name.hostForTLS, tlsHost, text)
            XCTAssertEqual(name.port, port, text)
            XCTAssertEqual(name.isIPLiteral, isIP, text)
        }
        XCTAssertEqual(try ServerName(parsing: "Example.COM").dnsName, "example.com")
    }

    func testEachInvalidFormHasItsOwnError() {
        func error(_ s: String) -> ServerNameError? {
            do { _ = try ServerName(parsing: s); return nil } catch { return error }
        }
        XCTAssertEqual(error(""), .empty)
        XCTAssertEqual(error("exämple.com"), .nonASCII)
        XCTAssertTrue(error("exämple.com")!.description.contains("punycode"))
        XCTAssertEqual(error("bad name"), .badCharacter(" "))
        XCTAssertEqual(error("under_score.com"), .badCharacter("_"))
        XCTAssertEqual(error("a..b"), .emptyLabel)
        XCTAssertEqual(error("example.com."), .emptyLabel)
        XCTAssertEqual(error(String(repeating: "a", count: 64) + ".com"), .labelTooLong(String(repeating: "a", count: 64)))
        XCTAssertEqual(error("-a.com"), .labelHyphen("-a"))
        XCTAssertEqual(error(String(repeating: "a.", count: 128) + "com"), .nameTooLong(259))
        XCTAssertEqual(error("::1"), .unbracketedIPv6)
        XCTAssertEqual(error("2001:db8::1"), .unbracketedIPv6)
        XCTAssertEqual(error("[not:an:ip:x]"), .badIPv6("not:an:ip:x"))
        XCTAssertEqual(error("[::1"), .badIPv6("[::1"))
        XCTAssertEqual(error("1.2.3.400"), .badIPv4("1.2.3.400"))
        XCTAssertEqual(error("example.com:0"), .portOutOfRange("0"))
        XCTAssertEqual(error("example.com:70000"), .portOutOfRange("70000"))
        XCTAssertEqual(error("example.com:123456"), .badPort("123456"))
        XCTAssertEqual(error("example.com:"), .badPort(""))
        XCTAssertEqual(error("example.com:8a"), .badPort("8a"))
        XCTAssertEqual(error(":8448"), .empty)
    }

    func testIPPolicyDefaultDenyListIncludesMappedForms() {
        let policy = IPPolicy()
        for denied in ["127.0.0.1", "10.1.2.3", "192.168.1.1", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1",
                       "::ffff:127.0.0.1", "2002:7f00:1::", "0.0.0.0", "::", "2001:db8::1", "224.0.0.1"] {
            XCTAssertFalse(policy.permits(IPAddress(denied)!), denied)
        }
        for allowed in ["1.2.3.4", "2a01:4f8::1", "8.8.8.8", "::ffff:1.2.3.4"] {
            XCTAssertTrue(policy.permits(IPAddress(allowed)!), allowed)
        }
        let exempt = IPPolicy(allowed: [CIDR("127.0.0.0/8")!])
        XCTAssertTrue(exempt.permits(IPAddress("127.0.0.5")!))
        XCTAssertTrue(exempt.permits(IPAddress("::ffff:127.0.0.5")!))
        XCTAssertFalse(exempt.permits(IPAddress("10.0.0.1")!))
    }
}

final class SRVOrderTests: XCTestCase {
    func testPriorityFirstThenWeight() {
        let records = [
            SRVRecord(priority: 20, weight: 0, port: 1, target: "c", ttl: 1),
            SRVRecord(priority: 10, weight: 60, port: 2, target: "a", ttl: 1),
            SRVRecord(priority: 10, weight: 40, port: 3, target: "b", ttl: 1),
        ]
        // Draw 0 picks the first in the (weight-0-first) list; large draws pick the last.
        let low = SRVOrder.order(records) { _ in 0 }
        XCTAssertEqual(low.map(\.target), ["a", "b", "c"])
        let high = SRVOrder.order(records) { $0 - 1 }
        XCTAssertEqual(high.map(\.target), ["b", "a", "c"])
    }

    func testWeightedDistributionFollowsWeights() {
        let records = [
            SRVRecord(priority: 0, weight: 90, port: 1, target: "heavy", ttl: 1),
            SRVRecord(priority: 0, weight: 10, port: 1, target: "light", ttl: 1),
        ]
        var rng = SplitMix(seed: 42)
        var heavyFirst = 0
        for _ in 0..<10_000 where SRVOrder.order(records, randomBelow: { rng.next() % $0 }).first?.target == "heavy" {
            heavyFirst += 1
        }
        XCTAssertTrue((8_700...9_300).contains(heavyFirst), "heavy first \(heavyFirst) of 10000")
    }

    /// RFC 2782: records that all have weight 0 are equally likely; each order spreads workers over them.
    func testAllZeroWeightsAreShuffledUniformly() {
        let records = ["a", "b", "c"].map { SRVRecord(priority: 0, weight: 0, port: 1, target: $0, ttl: 1) }
        var rng = SplitMix(seed: 7)
        var first: [String: Int] = [:]
        for _ in 0..<9_000 { first[SRVOrder.order(records, randomBelow: { rng.next() % $0 }).first!.target, default: 0] += 1 }
        for t in ["a", "b", "c"] { XCTAssertTrue((2_700...3_300).contains(first[t] ?? 0), "\(t) first \(first[t] ?? 0) of 9000") }
    }
}

final class SRVReorderTests: XCTestCase {
    func testCachedSRVTargetsAreReorderedByWeightEachTime() {
        let targets = [
            Target(host: "a", port: 1, addresses: [], srvRank: SRVRank(priority: 10, weight: 75)),
            Target(host: "b", port: 2, addresses: [], srvRank: SRVRank(priority: 10, weight: 25)),
            Target(host: "backup", port: 3, addresses: [], srvRank: SRVRank(priority: 20, weight: 0)),
        ]
        var firstA = 0
        for _ in 0..<4_000 {
            let o = SRVOrder.reordered(targets)
            XCTAssertEqual(o.last?.host, "backup", "priority still decides first")
            if o.first?.host == "a" { firstA += 1 }
        }
        XCTAssertTrue((2_700...3_300).contains(firstA), "a first \(firstA) of 4000 (weight 75 %)")
        let plain = [Target(host: "x", port: 1, addresses: []), Target(host: "y", port: 2, addresses: [])]
        XCTAssertEqual(SRVOrder.reordered(plain), plain, "non-SRV targets keep their order")
    }
}
