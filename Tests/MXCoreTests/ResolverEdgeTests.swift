import XCTest
@testable import MXCore

/// The algorithm where DNS or the well-known host misbehave in ways that must not fail or
/// mis-remember a name: over-long SRV owners, NOTIMP, negative TTLs, the host's own DNS failing,
/// and the retries of a recently valid delegation.
extension ResolverTests {
    func testAnSRVOwnerLongerThanDNSAllowsIsNotQueriedAndTheNameStillResolves() {
        // 245 characters: _matrix-fed._tcp. (17) and _matrix._tcp. (13) would make 262 and 258.
        let long = [String](repeating: String(repeating: "l", count: 63), count: 3).joined(separator: ".") + "." + String(repeating: "x", count: 48) + ".test"
        XCTAssertEqual(long.count, 245)
        var w = FakeBackend.World()
        w.addresses[long] = .success(v4("1.2.3.4"))
        let (r, log) = resolve(long, w)
        assertAnswer(r, step: .defaultPort, targets: ["\(long):8448=1.2.3.4"], host: long, tls: long, sni: long)
        XCTAssertFalse(log.contains { $0.hasPrefix("SRV") }, "no query a DNS server would have to refuse: \(log)")
        // 237 characters: only _matrix-fed is too long; _matrix (250) is still asked.
        let mid = String(long.dropFirst(8))
        w.addresses[mid] = .success(v4("1.2.3.4"))
        let (_, midLog) = resolve(mid, w)
        XCTAssertEqual(midLog.filter { $0.hasPrefix("SRV") }, ["SRV _matrix._tcp.\(mid)"])
    }

    func testNOTIMPForAnSRVQueryMeansNotFoundLikeTorsOnionResolver() {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("1.2.3.4"))
        w.srv["_matrix-fed._tcp.testserv"] = .failure(.notImplemented)
        w.srv["_matrix._tcp.testserv"] = .failure(.notImplemented)
        assertAnswer(resolve("testserv", w).0, step: .defaultPort, targets: ["testserv:8448=1.2.3.4"],
                     host: "testserv", tls: "testserv", sni: "testserv")
        w.addresses["testserv"] = .failure(.notImplemented)
        guard case .failure(let f) = resolve("testserv", w).0 else { return XCTFail() }
        XCTAssertEqual(f.code, .dnsError, "for an address query NOTIMP stays an error")
    }

    func testTheSmallestNegativeTTLOfTheSRVLookupsThatFoundNothingIsReported() {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("1.2.3.4", ttl: 3600))
        w.srv["_matrix-fed._tcp.testserv"] = .failure(.nxdomain(negativeTTL: 300))
        w.srv["_matrix._tcp.testserv"] = .failure(.nodata(negativeTTL: 120))
        guard case .success(let a) = resolve("testserv", w).0 else { return XCTFail() }
        XCTAssertEqual(a.srvNegativeTTL, 120)
        w.srv["_matrix._tcp.testserv"] = .success([SRVRecord(priority: 1, weight: 0, port: 8443, target: "testserv", ttl: 900)])
        guard case .success(let legacy) = resolve("testserv", w).0 else { return XCTFail() }
        XCTAssertEqual(legacy.step, .legacyMatrixSRV)
        XCTAssertEqual(legacy.srvNegativeTTL, 300, "the missing _matrix-fed record bounds a _matrix answer too")
        w.srv["_matrix-fed._tcp.testserv"] = .success([SRVRecord(priority: 1, weight: 0, port: 8443, target: "testserv", ttl: 900)])
        guard case .success(let fed) = resolve("testserv", w).0 else { return XCTFail() }
        XCTAssertNil(fed.srvNegativeTTL)
    }

    func testADNSFailureOfTheWellKnownHostItselfIsATemporaryWellKnownFailure() {
        for error: DNSError in [.nxdomain(negativeTTL: 60), .nodata(negativeTTL: 60), .servfail] {
            var w = FakeBackend.World()
            w.addresses["testserv"] = .failure(error)
            w.srv["_matrix-fed._tcp.testserv"] = .success([SRVRecord(priority: 1, weight: 0, port: 8443, target: "t", ttl: 900)])
            w.addresses["t"] = .success(v4("1.2.3.4"))
            guard case .success(let a) = resolve("testserv", w).0,
                  case .failed(let code, _, let temporary)? = a.wellKnown?.result else { return XCTFail("\(error)") }
            XCTAssertEqual(code, "wellknown_dns")
            XCTAssertTrue(temporary, "\(error): a delegated domain whose zone hiccups keeps its delegation")
        }
        var denied = FakeBackend.World()
        denied.addresses["testserv"] = .success(v4("10.0.0.1"))
        denied.srv["_matrix-fed._tcp.testserv"] = .success([SRVRecord(priority: 1, weight: 0, port: 8443, target: "t", ttl: 900)])
        denied.addresses["t"] = .success(v4("1.2.3.4"))
        let policy = IPPolicy(allowed: [CIDR("1.2.3.4/32")!])
        guard case .success(let a) = resolve("testserv", denied, policy: policy).0,
              case .failed(let code, _, let temporary)? = a.wellKnown?.result else { return XCTFail() }
        XCTAssertEqual(code, "wellknown_address_denied")
        XCTAssertFalse(temporary, "our own deny list does not heal by itself")
    }

    // MARK: Retries of a recently valid delegation

    /// Resolves with `attempts`; the pauses between attempts pass on a manual clock. Returns the
    /// result and the clock (ms) at each fetch.
    func resolveRetrying(_ backend: SequencedWellKnownBackend, attempts: Int) -> (Result<Resolution, ResolutionFailure>?, [Int]) {
        let scheduler = ManualScheduler()
        backend.clock.withLock { $0 = { scheduler.now } }
        let resolver = ServerResolver(backend: backend, settings: ResolverSettings(ipPolicy: allowAll, randomBelow: { _ in 0 }),
                                      scheduler: scheduler)
        let box = PthreadMutex<Result<Resolution, ResolutionFailure>?>(nil)
        resolver.resolve("testserv", wellKnownAttempts: attempts) { r in box.withLock { $0 = r } }
        for _ in 0..<10 where box.withLock({ $0 == nil }) { scheduler.advance(milliseconds: 100) }
        return (box.withLock { $0 }, backend.fetchTimes.withLock { $0 })
    }

    func testARecentlyValidDelegationIsFetchedUpToThreeTimesHalfASecondApart() throws {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("1.2.3.4"))
        w.addresses["deleg"] = .success(v4("5.6.7.8"))
        let flaky = SequencedWellKnownBackend(w, wellKnown: [.failure(.connect("refused")), .success(
            HTTPSResponse(status: 502, headers: [], body: [])), json(#"{"m.server":"deleg:443"}"#)])
        let (r, times) = resolveRetrying(flaky, attempts: 3)
        guard case .success(let a)? = r else { return XCTFail("\(String(describing: r))") }
        XCTAssertEqual(a.step, .delegatedExplicitPort, "the third attempt got through")
        XCTAssertEqual(times, [0, 500, 1000], "paused half a second between attempts")
        XCTAssertTrue(a.trace.contains { $0.contains("trying again") }, "\(a.trace)")
    }

    func testOnlyTemporaryFailuresAreRetriedAndOnlyAsOftenAsAsked() {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("1.2.3.4"))
        let notFound = SequencedWellKnownBackend(w, wellKnown: [.success(HTTPSResponse(status: 404, headers: [], body: []))])
        XCTAssertEqual(resolveRetrying(notFound, attempts: 3).1.count, 1, "a 404 is the server's answer")
        let (r, times) = resolveRetrying(SequencedWellKnownBackend(w, wellKnown: []), attempts: 3)
        guard case .success(let a)? = r, case .failed(_, _, true)? = a.wellKnown?.result else { return XCTFail() }
        XCTAssertEqual(times.count, 3)
        XCTAssertEqual(a.step, .defaultPort)
        XCTAssertEqual(resolveRetrying(SequencedWellKnownBackend(w, wellKnown: []), attempts: 1).1.count, 1)
        let stalled = SequencedWellKnownBackend(w, wellKnown: [.failure(.timeout), json(#"{"m.server":"deleg:443"}"#)])
        XCTAssertEqual(resolveRetrying(stalled, attempts: 3).1.count, 1, "a fetch that timed out used its whole budget")
    }
}

/// A fake whose well-known answers come from a list, one per fetch (then connection refused).
final class SequencedWellKnownBackend: LookupBackend {
    let fake: FakeBackend
    let answers: PthreadMutex<[Result<HTTPSResponse, HTTPSError>]>
    let fetchTimes = PthreadMutex<[Int]>([])
    /// The test clock (ms) each fetch is stamped with.
    let clock = PthreadMutex<@Sendable () -> Int>({ 0 })

    init(_ world: FakeBackend.World, wellKnown: [Result<HTTPSResponse, HTTPSError>]) {
        fake = FakeBackend(world)
        answers = PthreadMutex(wellKnown)
    }

    func querySRV(_ name: String, completion: @escaping @Sendable (Result<[SRVRecord], DNSError>) -> Void) {
        fake.querySRV(name, completion: completion)
    }
    func queryAddresses(_ host: String, completion: @escaping @Sendable (Result<AddressSet, DNSError>) -> Void) {
        fake.queryAddresses(host, completion: completion)
    }
    func httpsGet(_ request: HTTPSRequest, completion: @escaping @Sendable (Result<HTTPSResponse, HTTPSError>) -> Void) {
        let t = clock.withLock { $0 }()
        fetchTimes.withLock { $0.append(t) }
        let next = answers.withLock { $0.isEmpty ? nil : $0.removeFirst() }
        completion(next ?? .failure(.connect("refused")))
    }
}
