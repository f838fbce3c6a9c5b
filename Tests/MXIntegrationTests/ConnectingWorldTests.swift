import XCTest
import MXCore
import MXAdapters
import MXTestSupport

/// Issue 12, "Connecting and fetching", against the loopback test world
/// (scripts/scenarios/standard.json): address order, SRV shuffling, CNAME SRV targets, Happy
/// Eyeballs, redirects, the well-known budget, DNS fail-over, the hosts file and the proxy.
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
        let box = PthreadMutex<Result<Resolution, ResolutionFailure>?>(nil)
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
    /// The world's daemon flags name the world's own hosts file (never the machine's).
    func testHostsFileAnswersAddressLookups() throws {
        let r = try daemon.ask("resolve hosts-only.test:8448")
        XCTAssertEqual(r.status, "ok")
        XCTAssertTrue(r.all("target").contains { $0.contains("127.0.0.80") }, "\(r.all("target"))")
        XCTAssertEqual(try daemon.ask("statistics")["hosts_file_answers"], "1")
    }

    func testCNAMESRVTargetIsCountedInStatistics() throws {
        XCTAssertEqual(try daemon.ask("resolve srv-cname.test").status, "ok")
        XCTAssertEqual(try daemon.ask("statistics")["warning_srv_target_cname"], "1")
    }

    /// RFC 8305 through the daemon: two AAAA on which SYNs are dropped and one good A.
    func testTheDaemonDelegatesPastTwoBlackholedIPv6AddressesWithinASecond() throws {
        let started = Date()
        let r = try daemon.ask("resolve wk-blackhole6.test")
        let took = Date().timeIntervalSince(started)
        XCTAssertEqual(r.status, "ok", "\(r.fields)")
        XCTAssertEqual(r["step"], "3.2")
        XCTAssertEqual(r["host"], "target.test:8451")
        XCTAssertLessThan(took, 1.0, "delegated within 1 s")
    }

    func testTheDaemonFollowsRelativeAndIPLiteralRedirects() throws {
        try Self.world.resetCounts()
        XCTAssertEqual(try daemon.ask("resolve wk-relative.test")["host"], "target.test:8452")
        XCTAssertEqual(try daemon.ask("resolve wk-toip.test")["host"], "target.test:8453")
        let c = try Self.world.counts()
        XCTAssertEqual(c.wellKnown[Self.world.httpsIP], 1, "\(c.wellKnown)")
        XCTAssertEqual(c.dns.keys.filter { $0.hasPrefix(Self.world.httpsIP) }, [], "no DNS query for an IP literal")
    }

    /// Four redirects of 700 ms against a 2.5 s deadline: the well-known phase ends with its budget
    /// (1.5 s, `--wellknown-timeout-ms`), and step 4 answers in time.
    func testASlowRedirectChainEndsInStep4NotInTimeout() throws {
        daemon.stop()
        daemon = DaemonProcess(world: Self.world, name: "chain", extraArgs: ["--resolution-timeout-ms", "2500"])
        try daemon.start()
        let r = try daemon.ask("resolve wk-slowchain.test trace=yes")
        XCTAssertEqual(r.status, "ok", "\(r.fields)")
        XCTAssertEqual(r["step"], "4")
        XCTAssertTrue(r.all("trace").contains { $0.contains("wellknown_timeout") }, "\(r.all("trace"))")
    }

    func testASERVFAILingDNSServerIsFollowedByTheNextOne() throws {
        daemon.stop()
        daemon = DaemonProcess(world: Self.world, name: "failover", dnsServers: [Self.world.servfailDNSServer, Self.world.dnsServer])
        try daemon.start()
        let r = try daemon.ask("resolve srv-fed.test")
        XCTAssertEqual(r.status, "ok", "\(r.fields)")
        XCTAssertEqual(r["step"], "4")
        // AAAA and A of the well-known host, the SRV, the target's AAAA and A: each handed on once.
        XCTAssertGreaterThanOrEqual(Int(try daemon.ask("statistics")["dns_failovers"] ?? "") ?? 0, 5)
    }

    /// The proxy from the environment (https_proxy, no_proxy), and `no-proxy` in the config over it.
    func testWellKnownFetchesTunnelThroughTheEnvironmentsProxy() throws {
        daemon.stop()
        let env = ProcessInfo.processInfo.environment.merging(["https_proxy": Self.world.proxy, "no_proxy": "elsewhere.test"]) { $1 }
        daemon = DaemonProcess(world: Self.world, name: "proxy", environment: env)
        try daemon.start()
        let before = Self.world.proxyLogLines().count
        XCTAssertEqual(try daemon.ask("resolve wk-proxy.test")["host"], "target.test:8454")
        let added = Self.world.proxyLogLines().dropFirst(before)
        XCTAssertEqual(added.count, 1, "\(added)")
        XCTAssertTrue(added.first?.contains("\"target\": \"\(Self.world.httpsIP):443\"") ?? false, "\(added)")

        daemon.stop()
        daemon = DaemonProcess(world: Self.world, name: "noproxy", extraArgs: ["--no-proxy", "wk-proxy.test"], environment: env)
        try daemon.start()
        let direct = Self.world.proxyLogLines().count
        XCTAssertEqual(try daemon.ask("resolve wk-proxy.test")["host"], "target.test:8454")
        XCTAssertEqual(Self.world.proxyLogLines().count, direct, "no-proxy: fetched directly")
    }
}

/// DNS fail-over, the hosts file and the outbound proxy, through the real adapters.
final class ConnectingBackendTests: XCTestCase {
    static let world = TestWorld.standard

    func backend(dns: [String]? = nil, hostsFile: String? = nil, proxy: OutboundProxy? = nil) throws -> NetworkBackend {
        var c = NetworkConfig()
        c.dnsServers = dns ?? [Self.world.dnsServer]
        c.dnsTimeoutMs = 300
        c.dnsTries = 2
        c.extraCAFile = Self.world.caFile
        c.hostsFile = hostsFile
        c.proxy = proxy
        return try NetworkBackend(config: c)
    }

    func addresses(_ backend: NetworkBackend, _ host: String) -> Result<AddressSet, DNSError>? {
        let done = expectation(description: host)
        let box = PthreadMutex<Result<AddressSet, DNSError>?>(nil)
        backend.queryAddresses(host) { r in
            box.withLock { $0 = r }
            done.fulfill()
        }
        wait(for: [done], timeout: 10)
        return box.withLock { $0 }
    }

    func resolve(_ backend: NetworkBackend, _ name: String, policy: IPPolicy? = nil) -> Result<Resolution, ResolutionFailure>? {
        var s = ResolverSettings(ipPolicy: policy ?? Self.world.policy)
        s.wellKnownConnectTimeoutMs = 1_000
        s.wellKnownTotalTimeoutMs = 1_500
        s.dnsLookupMaxMs = 900
        let done = expectation(description: name)
        let box = PthreadMutex<Result<Resolution, ResolutionFailure>?>(nil)
        ServerResolver(backend: backend, settings: s, scheduler: DispatchScheduler()).resolve(name) { r in
            box.withLock { $0 = r }
            done.fulfill()
        }
        wait(for: [done], timeout: 15)
        return box.withLock { $0 }
    }

    func testSERVFAILOrREFUSEDFromTheFirstServerTriesTheNext() throws {
        for first in [Self.world.servfailDNSServer, Self.world.refusedDNSServer] {
            let b = try backend(dns: [first, Self.world.dnsServer])
            defer { b.stop() }
            guard case .success(let set)? = addresses(b, "a-only.test") else { return XCTFail("a-only.test via \(first)") }
            XCTAssertEqual(set.all.map(\.address.description), ["127.0.0.61"])
            guard case .success(let r)? = resolve(b, "srv-fed.test") else { return XCTFail("srv-fed.test via \(first)") }
            XCTAssertEqual(r.step, .matrixFedSRV)
            XCTAssertGreaterThanOrEqual(b.counterSnapshot.dnsFailovers, 2, "AAAA and A each handed on")
        }
        // Every server failing: the first one's answer is the error.
        let b = try backend(dns: [Self.world.servfailDNSServer, Self.world.refusedDNSServer])
        defer { b.stop() }
        XCTAssertEqual(addresses(b, "a-only.test").map { r -> DNSError? in if case .failure(let e) = r { return e } else { return nil } }, .servfail)
    }

    func testHostsFileIsReadBeforeDNSForAddresses() throws {
        let b = try backend(hostsFile: Self.world.hostsFile)
        defer { b.stop() }
        try Self.world.resetCounts()
        guard case .success(let only)? = addresses(b, "hosts-only.test") else { return XCTFail("hosts-only.test") }
        XCTAssertEqual(only.all.map(\.address.description), ["::1", "127.0.0.80"])
        XCTAssertEqual(only.source, .hostsFile)
        guard case .success(let override)? = addresses(b, "hosts-override.test") else { return XCTFail("hosts-override.test") }
        XCTAssertEqual(override.all.map(\.address.description), ["127.0.0.83"])
        guard case .success(let r)? = resolve(b, "hosts-only.test:8448") else { return XCTFail("resolve hosts-only.test:8448") }
        XCTAssertTrue(r.trace.contains { $0.contains("(from the hosts file)") }, "\(r.trace)")
        let c = try Self.world.counts()
        XCTAssertEqual(c.dnsTotal(under: "hosts-only.test") + c.dnsTotal(under: "hosts-override.test"), 0, "\(c.dns)")
        XCTAssertEqual(b.counterSnapshot.hostsFileAnswers, 3)
        // Without a hosts file, DNS answers (and the name the file alone lists does not exist).
        let plain = try backend()
        defer { plain.stop() }
        guard case .success(let dns)? = addresses(plain, "hosts-override.test") else { return XCTFail() }
        XCTAssertEqual(dns.all.map(\.address.description), ["127.0.0.82"])
    }

    func testWellKnownFetchTunnelsThroughTheProxyToTheCheckedAddress() throws {
        let b = try backend(proxy: try OutboundProxy(proxy: Self.world.proxy, noProxy: "elsewhere.test"))
        defer { b.stop() }
        let before = Self.world.proxyLogLines().count
        guard case .success(let r)? = resolve(b, "wk-proxy.test") else { return XCTFail("wk-proxy.test") }
        XCTAssertEqual(r.wellKnown?.result, .delegated("target.test:8454"), "\(r.trace)")
        let added = Self.world.proxyLogLines().dropFirst(before)
        XCTAssertEqual(added.count, 1, "\(added)")
        XCTAssertTrue(added.first?.contains("\"target\": \"\(Self.world.httpsIP):443\"") ?? false,
                      "CONNECT to the address mxresolved resolved and checked, not to the name: \(added)")

        // The deny list still applies: a denied address is never asked for, through the proxy or not.
        let deniedBefore = Self.world.proxyLogLines().count
        // (Steps 4-6 then find the same denied address: the resolution fails as a whole.)
        guard case .failure(let denied)? = resolve(b, "wk-proxy.test", policy: IPPolicy()) else { return XCTFail() }
        XCTAssertEqual(denied.code, .addressDenied)
        if case .failed(let code, _, _)? = denied.wellKnown?.result { XCTAssertEqual(code, "wellknown_address_denied") } else { XCTFail("\(denied)") }
        XCTAssertEqual(Self.world.proxyLogLines().count, deniedBefore)
    }

    func testNoProxyHostsAreFetchedDirectly() throws {
        let b = try backend(proxy: try OutboundProxy(proxy: Self.world.proxy, noProxy: ".test"))
        defer { b.stop() }
        let before = Self.world.proxyLogLines().count
        guard case .success(let r)? = resolve(b, "wk-proxy.test") else { return XCTFail("wk-proxy.test") }
        XCTAssertEqual(r.wellKnown?.result, .delegated("target.test:8454"))
        XCTAssertEqual(Self.world.proxyLogLines().count, before, "no_proxy .test: no CONNECT")
    }
}
