import XCTest
import Synchronization
import MXCore
import MXAdapters

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

    /// RFC 8305: the well-known host has two AAAA on which SYNs are dropped (the test world's
    /// blackholes, IPv4-mapped so they stay on this world's loopback block) and one good A. The
    /// families are raced 250 ms apart, so the delegation is found well before one connect timeout.
    func testBlackholedIPv6DoesNotLoseTheDelegation() {
        let start = wallClockSeconds()
        let a = expect("wk-blackhole6.test", step: .delegatedExplicitPort, targets: ["target.test:8451=::1,127.0.0.20"],
                       host: "target.test:8451", tls: "target.test", sni: "target.test")
        let took = wallClockSeconds() - start
        XCTAssertEqual(a?.wellKnown?.result, .delegated("target.test:8451"), "\(a?.trace ?? [])")
        XCTAssertLessThan(took, 1.0, "delegated within 1 s (took \(took) s)")
    }

    func testRelativeRedirectIsResolvedAsRFC3986Says() {
        let a = expect("wk-relative.test", step: .delegatedExplicitPort, targets: ["target.test:8452=::1,127.0.0.20"],
                       host: "target.test:8452", tls: "target.test", sni: "target.test")
        XCTAssertTrue(a?.trace.contains { $0.hasSuffix("to https://wk-relative.test/alt/server?next=https://elsewhere.test/") } ?? false,
                      "\(a?.trace ?? [])")
    }

    func testIPLiteralRedirectTargetIsFetchedWithoutDNSAndCheckedAgainstTheDenyList() throws {
        try Self.world.resetCounts()
        let a = expect("wk-toip.test", step: .delegatedExplicitPort, targets: ["target.test:8453=::1,127.0.0.20"],
                       host: "target.test:8453", tls: "target.test", sni: "target.test")
        XCTAssertEqual(a?.wellKnown?.result, .delegated("target.test:8453"))
        let c = try Self.world.counts()
        XCTAssertEqual(c.dns.keys.filter { $0.hasPrefix(https) }, [], "no DNS query for an IP literal: \(c.dns)")
        XCTAssertEqual(c.wellKnown[https], 1, "\(c.wellKnown)")
        let denied = expect("wk-todenied.test", step: .defaultPort, targets: ["wk-todenied.test:8448=\(https)"],
                            host: "wk-todenied.test", tls: "wk-todenied.test", sni: "wk-todenied.test")
        XCTAssertEqual(wellKnownFailure(denied), "wellknown_address_denied")
    }

    /// Four redirects of 700 ms each against a 2.5 s resolution deadline: the well-known phase ends
    /// when its budget does (1.5 s here), and the _matrix-fed SRV still answers in time.
    func testSlowRedirectChainEndsInStep4NotInTimeout() {
        var s = ResolverSettings(ipPolicy: Self.world.policy)
        s.wellKnownConnectTimeoutMs = 1_000
        s.wellKnownTotalTimeoutMs = 1_500
        s.resolutionTimeoutMs = 2_500
        s.dnsLookupMaxMs = 300
        let resolver = ServerResolver(backend: Self.backend, settings: s, scheduler: DispatchScheduler())
        let done = expectation(description: "resolved")
        let box = Mutex<Result<Resolution, ResolutionFailure>?>(nil)
        resolver.resolve("wk-slowchain.test") { r in
            box.withLock { $0 = r }
            done.fulfill()
        }
        wait(for: [done], timeout: 10)
        guard case .success(let a)? = box.withLock({ $0 }) else { return XCTFail("\(String(describing: box.withLock { $0 }))") }
        XCTAssertEqual(a.step, .matrixFedSRV, "\(a.trace)")
        XCTAssertEqual(wellKnownFailure(a), "wellknown_timeout")
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
