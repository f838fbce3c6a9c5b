import XCTest
import MXTestSupport
import MXCore
import MXAdapters

/// The spec's steps against real servers: dnsmasq for DNS, nginx for HTTPS, the fault servers for
/// what real servers will not do on command (scripts/scenarios/standard.json). Each test checks
/// the targets and ports, the Host header, the TLS name, SNI and the step.
final class ResolverWorldTests: XCTestCase {
    static let world = TestWorld.standard
    static let backend = try! NetworkBackend(config: world.networkConfig)

    static func resolver(policy: IPPolicy? = nil) -> ServerResolver {
        var s = ResolverSettings(ipPolicy: policy ?? world.policy)
        s.wellKnownConnectTimeoutMs = 1_000
        s.wellKnownTotalTimeoutMs = 1_500
        s.resolutionTimeoutMs = 10_000
        s.dnsLookupMaxMs = 900  // 300 ms, then 600 ms: the backend's two tries
        return ServerResolver(backend: backend, settings: s, scheduler: DispatchScheduler())
    }

    func resolve(_ name: String, policy: IPPolicy? = nil) -> Result<Resolution, ResolutionFailure> {
        let done = expectation(description: name)
        let box = PthreadMutex<Result<Resolution, ResolutionFailure>?>(nil)
        Self.resolver(policy: policy).resolve(name) { r in
            box.withLock { $0 = r }
            done.fulfill()
        }
        wait(for: [done], timeout: 15)
        return box.withLock { $0 } ?? .failure(ResolutionFailure(code: .timeout, message: "test timeout"))
    }

    /// `targets` as "host:port=addr,addr".
    @discardableResult
    func expect(_ name: String, step: ResolutionStep, targets: [String], host: String, tls: String, sni: String?,
                file: StaticString = #filePath, line: UInt = #line) -> Resolution? {
        guard case .success(let a) = resolve(name) else {
            XCTFail("\(name): expected step \(step.rawValue), got \(resolve(name))", file: file, line: line)
            return nil
        }
        XCTAssertEqual(a.step, step, "\(name) trace: \(a.trace)", file: file, line: line)
        XCTAssertEqual(a.targets.map { "\($0.host):\($0.port)=\($0.addresses.map(\.description).joined(separator: ","))" },
                       targets, name, file: file, line: line)
        XCTAssertEqual(a.hostHeader, host, name, file: file, line: line)
        XCTAssertEqual(a.tlsServerName, tls, name, file: file, line: line)
        XCTAssertEqual(a.sni, sni, name, file: file, line: line)
        return a
    }

    func expectFailure(_ name: String, code: FailureCode, policy: IPPolicy? = nil, file: StaticString = #filePath, line: UInt = #line) {
        switch resolve(name, policy: policy) {
        case .success(let a): XCTFail("\(name): expected \(code.rawValue), got step \(a.step.rawValue) \(a.targets)", file: file, line: line)
        case .failure(let f):
            XCTAssertEqual(f.code, code, "\(name): \(f.message)", file: file, line: line)
            XCTAssertFalse(f.message.isEmpty, file: file, line: line)
        }
    }

    func wellKnownFailure(_ a: Resolution?) -> String? {
        if case .failed(let code, _, _)? = a?.wellKnown?.result { return code }
        return nil
    }

    var https: String { Self.world.httpsIP }

    // MARK: Step 1 and 2

    func testStep1_IPv4LiteralWithoutPort() {
        expect("127.0.0.30", step: .ipLiteral, targets: ["127.0.0.30:8448=127.0.0.30"], host: "127.0.0.30", tls: "127.0.0.30", sni: nil)
    }

    func testStep1_IPv6LiteralWithPort() {
        expect("[::1]:8449", step: .ipLiteral, targets: ["::1:8449=::1"], host: "[::1]:8449", tls: "::1", sni: nil)
    }

    func testStep1_IPv6LiteralWithoutPort() {
        expect("[::1]", step: .ipLiteral, targets: ["::1:8448=::1"], host: "[::1]", tls: "::1", sni: nil)
    }

    func testStep2_ExplicitPortSkipsWellKnownAndSRV() throws {
        try Self.world.resetCounts()
        expect("srv-fed.test:9000", step: .explicitPort, targets: ["srv-fed.test:9000=127.0.0.40"],
               host: "srv-fed.test:9000", tls: "srv-fed.test", sni: "srv-fed.test")
        let c = try Self.world.counts()
        XCTAssertEqual(c.wellKnown["srv-fed.test"] ?? 0, 0)
        XCTAssertEqual(c.dns("_matrix-fed._tcp.srv-fed.test", "SRV"), 0)
    }

    func testStep2_CNAMEIsFollowedForAHostname() {
        expect("cname.test:8448", step: .explicitPort, targets: ["cname.test:8448=::1,127.0.0.20"], host: "cname.test:8448", tls: "cname.test", sni: "cname.test")
    }

    func testStep2_AAAAOnlyAndAOnly() {
        expect("aaaa-only.test:443", step: .explicitPort, targets: ["aaaa-only.test:443=::1"], host: "aaaa-only.test:443", tls: "aaaa-only.test", sni: "aaaa-only.test")
        expect("a-only.test:443", step: .explicitPort, targets: ["a-only.test:443=127.0.0.61"], host: "a-only.test:443", tls: "a-only.test", sni: "a-only.test")
    }

    // MARK: Step 3 (well-known delegation)

    func testStep3_2_WellKnownWithPort() {
        let a = expect("wk-port.test", step: .delegatedExplicitPort, targets: ["target.test:8449=::1,127.0.0.20"],
                       host: "target.test:8449", tls: "target.test", sni: "target.test")
        XCTAssertEqual(a?.wellKnown?.result, .delegated("target.test:8449"))
    }

    func testStep3_3_WellKnownThenMatrixFedSRVInPriorityOrder() {
        let a = expect("wk-noport.test", step: .delegatedMatrixFedSRV,
                       targets: ["srvtarget.test:8443=::1,127.0.0.22", "srvtarget2.test:8444=127.0.0.23"],
                       host: "delegated.test", tls: "delegated.test", sni: "delegated.test")
        XCTAssertEqual(a?.srvTTL, 300)
    }

    func testStep3_4_WellKnownThenOnlyLegacyMatrixSRV() {
        expect("wk-legacy.test", step: .delegatedLegacyMatrixSRV, targets: ["srvtarget.test:8445=::1,127.0.0.22"],
               host: "legacy-deleg.test", tls: "legacy-deleg.test", sni: "legacy-deleg.test")
    }

    func testStep3_5_WellKnownNoSRVDefaultPort() {
        expect("wk-plain.test", step: .delegatedDefaultPort, targets: ["plain-deleg.test:8448=::1,127.0.0.25"],
               host: "plain-deleg.test", tls: "plain-deleg.test", sni: "plain-deleg.test")
    }

    func testStep3_1_WellKnownDelegatesToIPLiterals() {
        expect("wk-ip.test", step: .delegatedIPLiteral, targets: ["127.0.0.30:8448=127.0.0.30"], host: "127.0.0.30:8448", tls: "127.0.0.30", sni: nil)
        expect("wk-ip6.test", step: .delegatedIPLiteral, targets: ["::1:8448=::1"], host: "[::1]", tls: "::1", sni: nil)
    }

    func testRedirectChainIsFollowed() throws {
        try Self.world.resetCounts()
        expect("wk-redirect.test", step: .delegatedExplicitPort, targets: ["target.test:8450=::1,127.0.0.20"],
               host: "target.test:8450", tls: "target.test", sni: "target.test")
        let c = try Self.world.counts()
        XCTAssertEqual(c.wellKnown["wk-redirect.test"], 1)
        XCTAssertEqual(c.wellKnown["wk-redirect2.test"], 1)
        XCTAssertEqual(c.wellKnown["wk-final.test"], 1)
    }

    // MARK: Well-known errors → step 4, 5 or 6

    func testWellKnownErrorsFallToStep4WhenMatrixFedExists() {
        for name in ["wk-404.test", "wk-500.test"] {
            let a = expect(name, step: .matrixFedSRV, targets: ["target.test:8448=::1,127.0.0.20"], host: name, tls: name, sni: name)
            XCTAssertEqual(wellKnownFailure(a), name == "wk-404.test" ? "wellknown_http_404" : "wellknown_http_500")
        }
    }

    func testInvalidWellKnownBodiesFallToStep6() {
        let cases = ["wk-badjson.test": "wellknown_invalid_json", "wk-array.test": "wellknown_not_object",
                     "wk-missing.test": "wellknown_missing_m_server", "wk-nonstring.test": "wellknown_m_server_not_string",
                     "wk-invalid.test": "wellknown_invalid_m_server", "wk-html.test": "wellknown_invalid_json",
                     "wk-big.test": "wellknown_too_large"]
        for (name, code) in cases.sorted(by: { $0.key < $1.key }) {
            let a = expect(name, step: .defaultPort, targets: ["\(name):8448=\(https)"], host: name, tls: name, sni: name)
            XCTAssertEqual(wellKnownFailure(a), code, name)
        }
    }

    func testRedirectLoopAndRedirectToHTTPAreRefused() throws {
        try Self.world.resetCounts()
        let loop = expect("wk-loop.test", step: .defaultPort, targets: ["wk-loop.test:8448=\(https)"], host: "wk-loop.test", tls: "wk-loop.test", sni: "wk-loop.test")
        XCTAssertEqual(wellKnownFailure(loop), "wellknown_redirect_loop")
        let toHTTP = expect("wk-tohttp.test", step: .defaultPort, targets: ["wk-tohttp.test:8448=\(https)"], host: "wk-tohttp.test", tls: "wk-tohttp.test", sni: "wk-tohttp.test")
        XCTAssertEqual(wellKnownFailure(toHTTP), "wellknown_redirect_not_https")
        XCTAssertEqual(try Self.world.counts().wellKnownHTTP["wk-tohttp.test"] ?? 0, 0, "plain http must never be requested")
    }

    func testStalledSlowRefusedAndBadCertificateWellKnowns() {
        let fault = Self.world.faultHTTPSIP
        let cases: [(String, String, String)] = [
            ("wk-stall.test", fault, "wellknown_timeout"), ("wk-noanswer.test", fault, "wellknown_timeout"),
            ("wk-slow.test", https, "wellknown_timeout"), ("wk-refused.test", Self.world.closedIP, "wellknown_connect"),
            ("wk-wrongcert.test", https, "wellknown_tls"), ("wk-selfsigned.test", https, "wellknown_tls"),
        ]
        for (name, address, code) in cases {
            let a = expect(name, step: .defaultPort, targets: ["\(name):8448=\(address)"], host: name, tls: name, sni: name)
            XCTAssertEqual(wellKnownFailure(a), code, name)
        }
    }

    // MARK: SRV without well-known

    func testStep4_MatrixFedSRV() {
        expect("srv-fed.test", step: .matrixFedSRV, targets: ["a.srv-fed.test:8448=::1,127.0.0.41"], host: "srv-fed.test", tls: "srv-fed.test", sni: "srv-fed.test")
    }

    func testStep4_OnlyMatrixFedIsUsedWhenBothExist() throws {
        try Self.world.resetCounts()
        expect("srv-both.test", step: .matrixFedSRV, targets: ["a.srv-both.test:8448=127.0.0.43"], host: "srv-both.test", tls: "srv-both.test", sni: "srv-both.test")
        XCTAssertEqual(try Self.world.counts().dns("_matrix._tcp.srv-both.test", "SRV"), 0)
    }

    func testStep5_LegacyMatrixSRV() {
        expect("srv-legacy.test", step: .legacyMatrixSRV, targets: ["a.srv-legacy.test:8448=127.0.0.46"], host: "srv-legacy.test", tls: "srv-legacy.test", sni: "srv-legacy.test")
    }

    func testStep6_NoWellKnownNoSRV() {
        expect("a-only.test", step: .defaultPort, targets: ["a-only.test:8448=127.0.0.61"], host: "a-only.test", tls: "a-only.test", sni: "a-only.test")
    }

    func testSRVWeightsAndPriorities() {
        guard case .success(let a) = resolve("srv-weights.test") else { return XCTFail() }
        XCTAssertEqual(a.step, .matrixFedSRV)
        XCTAssertEqual(Set(a.targets.map(\.host)), ["a.srv-weights.test", "b.srv-weights.test", "c.srv-weights.test", "d.srv-weights.test"])
        XCTAssertEqual(a.hostHeader, "srv-weights.test")
        XCTAssertEqual(a.tlsServerName, "srv-weights.test")
    }

    func testTruncatedSRVAnswerRetriedOverTCP() {
        guard case .success(let a) = resolve("trunc.test") else { return XCTFail() }
        XCTAssertEqual(a.step, .matrixFedSRV)
        XCTAssertEqual(Set(a.targets.map { "\($0.host):\($0.port)" }), ["target.test:8448", "srvtarget.test:8449"])
    }

    func testSRVRecordTTLIsReported() {
        guard case .success(let a) = resolve("srv-ttl.test") else { return XCTFail() }
        XCTAssertEqual(a.srvTTL, 30)
    }

    // MARK: Failures with clear codes, no silent fallback

    func testSRVServfailRefusedTimeoutFailWithoutFallback() throws {
        try Self.world.resetCounts()
        expectFailure("srv-servfail.test", code: .dnsServfail)
        expectFailure("srv-refused.test", code: .dnsRefused)
        expectFailure("srv-timeout.test", code: .dnsTimeout)
        let c = try Self.world.counts()
        XCTAssertEqual(c.dns("_matrix._tcp.srv-servfail.test", "SRV"), 0, "no fallback to the legacy record")
        XCTAssertEqual(c.dns("_matrix._tcp.srv-timeout.test", "SRV"), 0)
    }

    func testSRVTargetDot() {
        expectFailure("srv-dot.test", code: .srvServiceUnavailable)
    }

    func testDeniedAddressesAndNXDOMAIN() {
        expectFailure("denied.test:8448", code: .addressDenied)
        expectFailure("nothing-here.test", code: .noAddress)
        expectFailure("servfail.test:8448", code: .dnsServfail)
        expectFailure("timeout.test:8448", code: .dnsTimeout)
        // With the production policy, loopback itself is denied.
        expectFailure("target.test:8448", code: .addressDenied, policy: IPPolicy())
        expectFailure("127.0.0.30", code: .addressDenied, policy: IPPolicy())
    }

    func testInvalidNamesMakeNoTraffic() throws {
        try Self.world.resetCounts()
        for bad in ["bad name", "exämple.test", "wk-port.test:0", "::1", String(repeating: "a", count: 64) + ".test"] {
            expectFailure(bad, code: .invalidServerName)
        }
        XCTAssertEqual(try Self.world.counts().dns.values.reduce(0, +), 0)
    }

    // MARK: Concurrency

    /// 2,000 resolutions at once, one of whose servers stalls: all complete, the stalled one is
    /// bounded by its timeout, the rest are not held up by it.
    func testTwoThousandConcurrentResolutionsWithOneStalledServer() {
        let resolver = Self.resolver()
        let total = 2_000
        let group = DispatchGroup()
        let results = PthreadMutex<(ok: Int, failed: Int, slowest: Double, stalledTook: Double)>((0, 0, 0, 0))
        let start = wallClockSeconds()
        group.enter()
        resolver.resolve("wk-stall.test") { r in
            let took = wallClockSeconds() - start
            results.withLock { $0.stalledTook = took; if case .success = r { $0.ok += 1 } else { $0.failed += 1 } }
            group.leave()
        }
        let names = ["target.test", "srvtarget.test", "a-only.test", "plain-deleg.test"]
        for i in 1..<total {
            group.enter()
            resolver.resolve("\(names[i % names.count]):\(1000 + i)") { r in
                let took = wallClockSeconds() - start
                results.withLock {
                    if case .success = r { $0.ok += 1 } else { $0.failed += 1 }
                    $0.slowest = max($0.slowest, took)
                }
                group.leave()
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 30), .success, "every resolution completed")
        let r = results.withLock { $0 }
        XCTAssertEqual(r.ok, total, "all succeeded (failed: \(r.failed))")
        XCTAssertLessThan(r.stalledTook, 1.5 + 1.0 + 1.0, "the stalled well-known is bounded by its timeout")
        print("2000 concurrent resolutions: slowest non-stalled \(r.slowest) s, stalled \(r.stalledTook) s")
    }
}
