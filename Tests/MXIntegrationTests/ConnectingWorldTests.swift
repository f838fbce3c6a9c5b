import XCTest
import MXCore

/// Issue 12, "Connecting and fetching", against the loopback test world
/// (scripts/scenarios/standard.json): address order, SRV shuffling, CNAME SRV targets.
extension ResolverWorldTests {
    func testAnswersInterleaveAddressFamilies() {
        guard case .success(let a) = resolve("mixed.test:8448") else { return XCTFail("mixed.test did not resolve") }
        let addresses = a.targets.flatMap(\.addresses)
        // Within a family the DNS server's order is kept; the families alternate, IPv6 first.
        XCTAssertEqual(addresses.map(\.isIPv6), [true, false, true, false], "\(addresses)")
        XCTAssertEqual(Set(addresses.map(\.description)), ["::1", "::ffff:127.0.0.71", "127.0.0.70", "127.0.0.72"])
    }

    func testZeroWeightSRVTargetsAreShuffledPerAnswer() {
        var firsts: Set<String> = []
        for _ in 0..<30 {
            guard case .success(let a) = resolve("srv-zero.test") else { return XCTFail("srv-zero.test did not resolve") }
            XCTAssertEqual(Set(a.targets.map(\.host)), ["a.srv-zero.test", "b.srv-zero.test", "c.srv-zero.test"])
            firsts.insert(a.targets[0].host)
        }
        // 30 answers all starting with the same one of three: (1/3)^29 when shuffled.
        XCTAssertEqual(firsts.count, 3, "first targets seen: \(firsts)")
    }

    func testSRVTargetThatIsACNAMEIsFollowedWithAWarning() {
        let a = expect("srv-cname.test", step: .matrixFedSRV, targets: ["alias.srv-cname.test:8448=::1,127.0.0.20"],
                       host: "srv-cname.test", tls: "srv-cname.test", sni: "srv-cname.test")
        XCTAssertEqual(a?.warnings, [.srvTargetIsCNAME])
        XCTAssertTrue(a?.trace.contains { $0.contains("alias.srv-cname.test is a CNAME") } ?? false, "\(a?.trace ?? [])")
        let d = expect("wk-srvcname.test", step: .delegatedMatrixFedSRV, targets: ["alias.srv-cname.test:8448=::1,127.0.0.20"],
                       host: "srv-cname.test", tls: "srv-cname.test", sni: "srv-cname.test")
        XCTAssertEqual(d?.warnings, [.srvTargetIsCNAME])
    }
}

extension DaemonTests {
    func testCNAMESRVTargetIsCountedInStatistics() throws {
        XCTAssertEqual(try daemon.ask("resolve srv-cname.test").status, "ok")
        XCTAssertEqual(try daemon.ask("statistics")["warning_srv_target_cname"], "1")
    }
}
