import XCTest
@testable import MXCore

/// A scripted backend for pure-logic tests of the algorithm (the real servers are in MXIntegrationTests).
final class FakeBackend: LookupBackend {
    struct World: Sendable {
        var srv: [String: Result<[SRVRecord], DNSError>] = [:]
        var addresses: [String: Result<AddressSet, DNSError>] = [:]
        var https: [String: Result<HTTPSResponse, HTTPSError>] = [:]
    }
    let world: World
    let log = PthreadMutex<[String]>([])
    init(_ world: World) { self.world = world }

    func querySRV(_ name: String, completion: @escaping @Sendable (Result<[SRVRecord], DNSError>) -> Void) {
        log.withLock { $0.append("SRV \(name)") }
        completion(world.srv[name] ?? .failure(.nxdomain(negativeTTL: nil)))
    }
    func queryAddresses(_ host: String, completion: @escaping @Sendable (Result<AddressSet, DNSError>) -> Void) {
        log.withLock { $0.append("ADDR \(host)") }
        completion(world.addresses[host] ?? .failure(.nxdomain(negativeTTL: nil)))
    }
    func httpsGet(_ request: HTTPSRequest, completion: @escaping @Sendable (Result<HTTPSResponse, HTTPSError>) -> Void) {
        log.withLock { $0.append("GET \(request.url) @\(request.connectTo.map(\.description).joined(separator: ","))") }
        completion(world.https[request.url] ?? .failure(.connect("refused")))
    }
}

func v4(_ s: String, ttl: UInt32 = 300) -> AddressSet { AddressSet(ipv6: [], ipv4: [ResolvedAddress(address: IPAddress(s)!, ttl: ttl)]) }
func wk(_ host: String) -> String { "https://\(host)/.well-known/matrix/server" }
func json(_ body: String, headers: [HTTPHeader] = []) -> Result<HTTPSResponse, HTTPSError> {
    .success(HTTPSResponse(status: 200, headers: headers, body: Array(body.utf8)))
}

final class ResolverTests: XCTestCase {
    let allowAll = IPPolicy(denied: [], allowed: [])

    func resolve(_ name: String, _ world: FakeBackend.World, policy: IPPolicy? = nil,
                 known: WellKnownOutcome? = nil) -> (Result<Resolution, ResolutionFailure>, [String]) {
        let backend = FakeBackend(world)
        let resolver = ServerResolver(backend: backend, settings: ResolverSettings(ipPolicy: policy ?? allowAll, now: { 1_000_000 },
                                                                                   randomBelow: { _ in 0 }),
                                      scheduler: ManualScheduler())
        let box = PthreadMutex<Result<Resolution, ResolutionFailure>?>(nil)
        resolver.resolve(name, knownWellKnown: known) { r in box.withLock { $0 = r } }
        let result = box.withLock { $0 }
        XCTAssertNotNil(result, "fake backend completes synchronously")
        return (result!, backend.log.withLock { $0 })
    }

    func assertAnswer(_ r: Result<Resolution, ResolutionFailure>, step: ResolutionStep, targets: [String], host: String,
                      tls: String, sni: String?, file: StaticString = #filePath, line: UInt = #line) {
        guard case .success(let a) = r else { return XCTFail("expected an answer, got \(r)", file: file, line: line) }
        XCTAssertEqual(a.step, step, file: file, line: line)
        XCTAssertEqual(a.targets.map { "\($0.host):\($0.port)=\($0.addresses.map(\.description).joined(separator: ","))" }, targets, file: file, line: line)
        XCTAssertEqual(a.hostHeader, host, file: file, line: line)
        XCTAssertEqual(a.tlsServerName, tls, file: file, line: line)
        XCTAssertEqual(a.sni, sni, file: file, line: line)
    }

    func testStep1IPLiteralsNeedNoLookupAndSendNoSNI() {
        let (r, log) = resolve("1.2.3.4", .init())
        assertAnswer(r, step: .ipLiteral, targets: ["1.2.3.4:8448=1.2.3.4"], host: "1.2.3.4", tls: "1.2.3.4", sni: nil)
        XCTAssertEqual(log, [])
        let (r6, _) = resolve("[2a01:4f8::1]:80", .init())
        assertAnswer(r6, step: .ipLiteral, targets: ["2a01:4f8::1:80=2a01:4f8::1"], host: "[2a01:4f8::1]:80", tls: "2a01:4f8::1", sni: nil)
    }

    func testStep1DeniedIPLiteral() {
        let (r, _) = resolve("10.1.2.3", .init(), policy: IPPolicy())
        guard case .failure(let f) = r else { return XCTFail() }
        XCTAssertEqual(f.code, .addressDenied)
        XCTAssertTrue(f.message.contains("10.0.0.0/8"))
    }

    func testStep2ExplicitPortSkipsWellKnownAndSRV() {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("1.2.3.4"))
        let (r, log) = resolve("testserv:8448", w)
        assertAnswer(r, step: .explicitPort, targets: ["testserv:8448=1.2.3.4"], host: "testserv:8448", tls: "testserv", sni: "testserv")
        XCTAssertEqual(log, ["ADDR testserv"])
    }

    func testStep3_3WellKnownThenMatrixFedSRV() {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("1.2.3.4"))
        w.https[wk("testserv")] = json(#"{"m.server": "target-server"}"#, headers: [HTTPHeader("Cache-Control", "max-age=1000")])
        w.srv["_matrix-fed._tcp.target-server"] = .success([SRVRecord(priority: 0, weight: 0, port: 8443, target: "srvtarget", ttl: 60)])
        w.addresses["srvtarget"] = .success(v4("5.6.7.8", ttl: 30))
        let (r, log) = resolve("testserv", w)
        assertAnswer(r, step: .delegatedMatrixFedSRV, targets: ["srvtarget:8443=5.6.7.8"], host: "target-server", tls: "target-server", sni: "target-server")
        XCTAssertEqual(log, ["ADDR testserv", "GET https://testserv/.well-known/matrix/server @1.2.3.4",
                             "SRV _matrix-fed._tcp.target-server", "ADDR srvtarget"])
        if case .success(let a) = r {
            XCTAssertEqual(a.wellKnown?.result, .delegated("target-server"))
            XCTAssertEqual(a.wellKnown?.headerLifetime, 1000)
            XCTAssertEqual(a.srvTTL, 60)
            XCTAssertEqual(a.addressTTL, 30)
            XCTAssertFalse(a.trace.isEmpty)
        }
    }

    func testStep3_4LegacySRVOnlyWhenMatrixFedAbsent() {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("1.2.3.4"))
        w.https[wk("testserv")] = json(#"{"m.server": "target-server"}"#)
        w.srv["_matrix-fed._tcp.target-server"] = .success([])
        w.srv["_matrix._tcp.target-server"] = .success([SRVRecord(priority: 0, weight: 0, port: 8443, target: "srvtarget", ttl: 60)])
        w.addresses["srvtarget"] = .success(v4("5.6.7.8"))
        let (r, _) = resolve("testserv", w)
        assertAnswer(r, step: .delegatedLegacyMatrixSRV, targets: ["srvtarget:8443=5.6.7.8"], host: "target-server", tls: "target-server", sni: "target-server")
    }

    func testStep3_1And3_2And3_5() {
        var w = FakeBackend.World()
        w.addresses["a"] = .success(v4("1.1.1.1"))
        w.https[wk("a")] = json(#"{"m.server": "[2a01:4f8::1]:8449"}"#)
        assertAnswer(resolve("a", w).0, step: .delegatedIPLiteral, targets: ["2a01:4f8::1:8449=2a01:4f8::1"],
                     host: "[2a01:4f8::1]:8449", tls: "2a01:4f8::1", sni: nil)
        w.https[wk("a")] = json(#"{"m.server": "Target.Example:443"}"#)
        w.addresses["target.example"] = .success(v4("2.2.2.2"))
        assertAnswer(resolve("a", w).0, step: .delegatedExplicitPort, targets: ["Target.Example:443=2.2.2.2"],
                     host: "Target.Example:443", tls: "Target.Example", sni: "Target.Example")
        w.https[wk("a")] = json(#"{"m.server": "target.example"}"#)
        assertAnswer(resolve("a", w).0, step: .delegatedDefaultPort, targets: ["target.example:8448=2.2.2.2"],
                     host: "target.example", tls: "target.example", sni: "target.example")
    }

    func testInvalidWellKnownBodiesTakeStep4() {
        let bodies = ["NOT JSON", "[\"m.server\"]", "{}", #"{"m.server": 42}"#, #"{"m.server": "bad name!"}"#,
                      "<html>hi</html>", String(repeating: "[", count: 5000)]
        for body in bodies {
            var w = FakeBackend.World()
            w.addresses["testserv"] = .success(v4("1.2.3.4"))
            w.https[wk("testserv")] = json(body)
            w.srv["_matrix-fed._tcp.testserv"] = .success([SRVRecord(priority: 0, weight: 0, port: 8443, target: "srvtarget", ttl: 60)])
            w.addresses["srvtarget"] = .success(v4("1.2.3.5"))
            let (r, _) = resolve("testserv", w)
            assertAnswer(r, step: .matrixFedSRV, targets: ["srvtarget:8443=1.2.3.5"], host: "testserv", tls: "testserv", sni: "testserv")
            if case .success(let a) = r, case .failed(_, _, let temporary)? = a.wellKnown?.result {
                XCTAssertFalse(temporary, body)
            } else { XCTFail("well-known failure recorded for \(body.prefix(20))") }
        }
    }

    func testNoWellKnownNoSRVIsStep6() {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("1.2.3.4"))
        let (r, log) = resolve("testserv", w)
        assertAnswer(r, step: .defaultPort, targets: ["testserv:8448=1.2.3.4"], host: "testserv", tls: "testserv", sni: "testserv")
        XCTAssertEqual(log, ["ADDR testserv", "GET https://testserv/.well-known/matrix/server @1.2.3.4",
                             "SRV _matrix-fed._tcp.testserv", "SRV _matrix._tcp.testserv", "ADDR testserv"])
    }

    func testSRVServfailIsAnErrorNotAFallback() {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("1.2.3.4"))
        w.srv["_matrix-fed._tcp.testserv"] = .failure(.servfail)
        let (r, log) = resolve("testserv", w)
        guard case .failure(let f) = r else { return XCTFail("\(r)") }
        XCTAssertEqual(f.code, .dnsServfail)
        XCTAssertEqual(f.step, .matrixFedSRV)
        XCTAssertFalse(log.contains("SRV _matrix._tcp.testserv"))
    }

    func testSRVDotTargetAndCNAMETarget() {
        var w = FakeBackend.World()
        w.srv["_matrix-fed._tcp.testserv"] = .success([SRVRecord(priority: 0, weight: 0, port: 0, target: ".", ttl: 60)])
        guard case .failure(let f) = resolve("testserv", w).0 else { return XCTFail() }
        XCTAssertEqual(f.code, .srvServiceUnavailable)

        w.srv["_matrix-fed._tcp.testserv"] = .success([SRVRecord(priority: 0, weight: 0, port: 8443, target: "alias", ttl: 60)])
        w.addresses["alias"] = .success(AddressSet(ipv6: [], ipv4: [ResolvedAddress(address: IPAddress("1.2.3.4")!, ttl: 1)], cnameChain: ["alias", "real"]))
        let (r, _) = resolve("testserv", w)
        assertAnswer(r, step: .matrixFedSRV, targets: ["alias:8443=1.2.3.4"], host: "testserv", tls: "testserv", sni: "testserv")
        guard case .success(let a) = r else { return }
        XCTAssertEqual(a.warnings, [.srvTargetIsCNAME])
        XCTAssertTrue(a.trace.contains { $0.hasPrefix("warning: SRV target alias is a CNAME") }, "\(a.trace)")
    }

    func testAddressesInterleaveByFamily() {
        func addrs(_ s: [String]) -> [ResolvedAddress] { s.map { ResolvedAddress(address: IPAddress($0)!, ttl: 60) } }
        let set = AddressSet(ipv6: addrs(["2001:db8::1", "2001:db8::2", "2001:db8::3"]), ipv4: addrs(["192.0.2.1"]))
        XCTAssertEqual(set.all.map(\.address.description), ["2001:db8::1", "192.0.2.1", "2001:db8::2", "2001:db8::3"])
        let v4first = AddressSet(ipv6: [], ipv4: addrs(["192.0.2.1", "192.0.2.2"]))
        XCTAssertEqual(v4first.all.map(\.address.description), ["192.0.2.1", "192.0.2.2"])
    }

    func testKnownWellKnownFailureGoesStraightToStep4() {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("1.2.3.4"))
        let known = WellKnownOutcome(result: .failed(code: "wellknown_http_404", message: "", temporary: false), headerLifetime: nil)
        let (r, log) = resolve("testserv", w, known: known)
        assertAnswer(r, step: .defaultPort, targets: ["testserv:8448=1.2.3.4"], host: "testserv", tls: "testserv", sni: "testserv")
        XCTAssertFalse(log.contains { $0.hasPrefix("GET") })
    }

    func testRedirectsAreFollowedButLoopsAndHTTPAreRefused() {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("1.2.3.4"))
        w.addresses["other"] = .success(v4("1.2.3.9"))
        w.addresses["target"] = .success(v4("5.5.5.5"))
        w.https[wk("testserv")] = .success(HTTPSResponse(status: 302, headers: [HTTPHeader("Location", "https://other/even_better_known")], body: []))
        w.https["https://other/even_better_known"] = json(#"{"m.server": "target:1"}"#)
        assertAnswer(resolve("testserv", w).0, step: .delegatedExplicitPort, targets: ["target:1=5.5.5.5"], host: "target:1", tls: "target", sni: "target")

        w.https["https://other/even_better_known"] = .success(HTTPSResponse(status: 301, headers: [HTTPHeader("Location", "/.well-known/matrix/server")], body: []))
        w.https[wk("other")] = .success(HTTPSResponse(status: 308, headers: [HTTPHeader("Location", "https://testserv/.well-known/matrix/server")], body: []))
        if case .success(let a) = resolve("testserv", w).0, case .failed(let code, _, _)? = a.wellKnown?.result {
            XCTAssertEqual(code, "wellknown_redirect_loop")
            XCTAssertEqual(a.step, .defaultPort)
        } else { XCTFail() }

        w.https[wk("testserv")] = .success(HTTPSResponse(status: 301, headers: [HTTPHeader("Location", "http://other/x")], body: []))
        if case .success(let a) = resolve("testserv", w).0, case .failed(let code, _, _)? = a.wellKnown?.result {
            XCTAssertEqual(code, "wellknown_redirect_not_https")
        } else { XCTFail() }
    }

    func testWellKnownToDeniedAddressIsNotFetched() {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("10.0.0.1"))
        let (r, log) = resolve("testserv", w, policy: IPPolicy())
        XCTAssertFalse(log.contains { $0.hasPrefix("GET") })
        guard case .failure(let f) = r else { return XCTFail() }
        XCTAssertEqual(f.code, .addressDenied) // step 6 target is denied too
        XCTAssertEqual(f.step, .defaultPort)
    }

    func testInvalidNameMakesNoLookup() {
        let (r, log) = resolve("bad name", .init())
        guard case .failure(let f) = r else { return XCTFail() }
        XCTAssertEqual(f.code, .invalidServerName)
        XCTAssertEqual(log, [])
    }
}

/// A backend whose lookups never answer, for cancellation and deadline tests.
final class StalledBackend: LookupBackend {
    func querySRV(_ name: String, completion: @escaping @Sendable (Result<[SRVRecord], DNSError>) -> Void) {}
    func queryAddresses(_ host: String, completion: @escaping @Sendable (Result<AddressSet, DNSError>) -> Void) {}
    func httpsGet(_ request: HTTPSRequest, completion: @escaping @Sendable (Result<HTTPSResponse, HTTPSError>) -> Void) {}
}

final class ResolverCancellationTests: XCTestCase {
    func testCancelCompletesOnceWithCancelled() {
        let scheduler = ManualScheduler()
        let resolver = ServerResolver(backend: StalledBackend(), settings: ResolverSettings(), scheduler: scheduler)
        let calls = PthreadMutex<[FailureCode]>([])
        let handle = resolver.resolve("stalled.example") { r in
            if case .failure(let f) = r { calls.withLock { $0.append(f.code) } }
        }
        handle.cancel()
        handle.cancel()
        XCTAssertEqual(calls.withLock { $0 }, [.cancelled])
        // The deadline still fires later; it must not complete the resolution a second time.
        scheduler.advance(milliseconds: ResolverSettings().resolutionTimeoutMs)
        XCTAssertEqual(calls.withLock { $0 }, [.cancelled])
    }

    func testWholeResolutionDeadline() {
        var settings = ResolverSettings()
        settings.resolutionTimeoutMs = 100
        let scheduler = ManualScheduler()
        let resolver = ServerResolver(backend: StalledBackend(), settings: settings, scheduler: scheduler)
        let codes = PthreadMutex<[FailureCode]>([])
        resolver.resolve("stalled.example:8448") { r in
            if case .failure(let f) = r { codes.withLock { $0.append(f.code) } }
        }
        XCTAssertEqual(scheduler.pendingCount, 1, "one deadline per resolution")
        scheduler.advance(milliseconds: 99)
        XCTAssertEqual(codes.withLock { $0 }, [], "not before the deadline")
        scheduler.advance(milliseconds: 1)
        XCTAssertEqual(codes.withLock { $0 }, [.timeout])
        XCTAssertEqual(scheduler.pendingCount, 0)
    }

    /// A finished resolution keeps nothing scheduled: its deadline and its well-known budget are
    /// cancelled, and with them the closures that hold the run (not kept until the deadline).
    func testAFinishedResolutionCancelsItsTimers() {
        var w = FakeBackend.World()
        w.https[wk("testserv")] = json(#"{"m.server":"deleg:443"}"#)
        w.addresses["testserv"] = .success(v4("1.2.3.4"))
        w.addresses["deleg"] = .success(v4("5.6.7.8"))
        let scheduler = ManualScheduler()
        let resolver = ServerResolver(backend: FakeBackend(w), settings: ResolverSettings(ipPolicy: IPPolicy(denied: [], allowed: [])),
                                      scheduler: scheduler)
        weak var run: Run?
        let box = PthreadMutex<Result<Resolution, ResolutionFailure>?>(nil)
        do { run = resolver.resolve("testserv") { r in box.withLock { $0 = r } }.run }
        guard case .success(let a)? = box.withLock({ $0 }) else { return XCTFail("\(String(describing: box.withLock { $0 }))") }
        XCTAssertEqual(a.step, .delegatedExplicitPort, "the well-known phase ran (and scheduled its budget)")
        XCTAssertEqual(scheduler.pendingCount, 0, "deadline and well-known budget cancelled")
        XCTAssertNil(run, "nothing holds the finished run")
    }

    func testADeadlineThatFiredCancelsTheBudgetTooAndFreesTheRun() {
        var settings = ResolverSettings()
        settings.resolutionTimeoutMs = 100
        let scheduler = ManualScheduler()
        weak var run: Run?
        do { run = ServerResolver(backend: StalledBackend(), settings: settings, scheduler: scheduler).resolve("stalled.example") { _ in }.run }
        scheduler.advance(milliseconds: 100)
        XCTAssertEqual(scheduler.pendingCount, 0, "the well-known budget, still running, is cancelled with the run")
        XCTAssertNil(run, "the stalled backend dropped its callbacks; nothing else holds the run")
    }

    /// The deadline's failure, with `now` following the manual clock.
    func deadlineFailure(resolutionMs: Int, dnsLookupMaxMs: Int) -> ResolutionFailure? {
        let scheduler = ManualScheduler()
        var settings = ResolverSettings(now: { Double(scheduler.now) / 1000 })
        settings.resolutionTimeoutMs = resolutionMs
        settings.dnsLookupMaxMs = dnsLookupMaxMs
        let box = PthreadMutex<ResolutionFailure?>(nil)
        ServerResolver(backend: StalledBackend(), settings: settings, scheduler: scheduler).resolve("stalled.example:8448") { r in
            if case .failure(let f) = r { box.withLock { $0 = f } }
        }
        scheduler.advance(milliseconds: resolutionMs)
        return box.withLock { $0 }
    }

    func testADeadlineReachedWhileALookupWaitedInTheDaemonsOwnQueueIsNotTheNamesFailure() throws {
        // The address lookup has been outstanding 30 s; sent, it takes at most 3 s: it was queued.
        let queued = try XCTUnwrap(deadlineFailure(resolutionMs: 30_000, dnsLookupMaxMs: 3_000))
        XCTAssertEqual(queued.code, .timeout)
        XCTAssertTrue(queued.localQueueTimeout)
        XCTAssertTrue(queued.message.contains("queue"), queued.message)
        XCTAssertFalse(CacheRules.isCached(queued))
        // Outstanding 2 s of at most 3 s: the name (or its servers) is slow; that is remembered.
        let slow = try XCTUnwrap(deadlineFailure(resolutionMs: 2_000, dnsLookupMaxMs: 3_000))
        XCTAssertFalse(slow.localQueueTimeout)
        XCTAssertTrue(CacheRules.isCached(slow))
    }
}
