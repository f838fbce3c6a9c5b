import XCTest
@testable import MXCore

/// The well-known phase's one budget (every redirect hop) on a manual clock: a slow redirect chain
/// ends in step 4 inside the resolution deadline, and a phase that ended in time is not reported
/// as timed out when its budget runs out later.
final class WellKnownBudgetTests: XCTestCase {
    /// FakeBackend's answers, each one `delays[what]` ms late on the manual clock
    /// (`what`: "GET url", "SRV name" or "ADDR host", as FakeBackend logs them).
    final class SlowBackend: LookupBackend {
        let fake: FakeBackend
        let delays: [String: Int]
        let scheduler: ManualScheduler

        init(_ world: FakeBackend.World, delays: [String: Int], scheduler: ManualScheduler) {
            fake = FakeBackend(world)
            self.delays = delays
            self.scheduler = scheduler
        }

        private func later<T: Sendable>(_ what: String, _ completion: @escaping @Sendable (T) -> Void) -> @Sendable (T) -> Void {
            guard let ms = delays[what] else { return completion }
            return { [scheduler] result in scheduler.schedule(afterMilliseconds: ms) { completion(result) } }
        }

        func querySRV(_ name: String, completion: @escaping @Sendable (Result<[SRVRecord], DNSError>) -> Void) {
            fake.querySRV(name, completion: later("SRV \(name)", completion))
        }
        func queryAddresses(_ host: String, completion: @escaping @Sendable (Result<AddressSet, DNSError>) -> Void) {
            fake.queryAddresses(host, completion: later("ADDR \(host)", completion))
        }
        func httpsGet(_ request: HTTPSRequest, completion: @escaping @Sendable (Result<HTTPSResponse, HTTPSError>) -> Void) {
            fake.httpsGet(request, completion: later("GET \(request.url)", completion))
        }
    }

    /// Resolves "testserv" with a 1.5 s well-known budget inside a 2.5 s deadline, moving the clock
    /// 100 ms at a time; returns the result and the clock (ms) when it came.
    func resolve(_ world: FakeBackend.World, delays: [String: Int]) -> (Result<Resolution, ResolutionFailure>?, Int) {
        let scheduler = ManualScheduler()
        var s = ResolverSettings(ipPolicy: IPPolicy(denied: [], allowed: []), now: { 1_000_000 + Double(scheduler.now) / 1000 },
                                 randomBelow: { _ in 0 })
        s.wellKnownTotalTimeoutMs = 1_500
        s.resolutionTimeoutMs = 2_500
        s.dnsLookupMaxMs = 300
        XCTAssertEqual(s.wellKnownBudgetMs, 1_500)
        let resolver = ServerResolver(backend: SlowBackend(world, delays: delays, scheduler: scheduler), settings: s, scheduler: scheduler)
        let box = PthreadMutex<(Result<Resolution, ResolutionFailure>, Int)?>(nil)
        resolver.resolve("testserv") { r in box.withLock { $0 = (r, scheduler.now) } }
        for _ in 0..<40 where box.withLock({ $0 == nil }) { scheduler.advance(milliseconds: 100) }
        let done = box.withLock { $0 }
        return (done?.0, done?.1 ?? -1)
    }

    func redirect(_ to: String) -> Result<HTTPSResponse, HTTPSError> {
        .success(HTTPSResponse(status: 302, headers: [HTTPHeader("Location", to)], body: []))
    }

    func testASlowRedirectChainEndsInStep4WhenThePhasesBudgetDoesNotInTimeout() {
        var w = FakeBackend.World()
        var delays: [String: Int] = [:]
        let hosts = ["testserv", "hop2", "hop3", "hop4"]
        for (i, host) in hosts.enumerated() {
            w.addresses[host] = .success(v4("1.2.3.\(i + 1)"))
            w.https[wk(host)] = i + 1 < hosts.count ? redirect(wk(hosts[i + 1])) : json(#"{"m.server": "deleg:443"}"#)
            delays["GET \(wk(host))"] = 700   // four hops: 2.8 s, past the 2.5 s deadline
        }
        w.srv["_matrix-fed._tcp.testserv"] = .success([SRVRecord(priority: 1, weight: 0, port: 8443, target: "t", ttl: 900)])
        w.addresses["t"] = .success(v4("5.6.7.8"))
        let (r, at) = resolve(w, delays: delays)
        guard case .success(let a)? = r else { return XCTFail("\(String(describing: r))") }
        XCTAssertEqual(a.step, .matrixFedSRV, "\(a.trace)")
        guard case .failed(let code, _, let temporary)? = a.wellKnown?.result else { return XCTFail("\(a.trace)") }
        XCTAssertEqual(code, "wellknown_timeout")
        XCTAssertTrue(temporary)
        XCTAssertEqual(at, 1_500, "answered when the phase's budget ran out")
    }

    func testAPhaseThatEndedInTimeIsNotReportedAsTimedOutWhenItsBudgetRunsOutLater() {
        var w = FakeBackend.World()
        w.addresses["testserv"] = .success(v4("1.2.3.4"))
        w.https[wk("testserv")] = json(#"{"m.server": "deleg"}"#)
        w.srv["_matrix-fed._tcp.deleg"] = .success([SRVRecord(priority: 1, weight: 0, port: 8443, target: "t", ttl: 900)])
        w.addresses["t"] = .success(v4("5.6.7.8"))
        // The delegated name's SRV answers after the budget (1.5 s) but inside the deadline (2.5 s).
        let (r, at) = resolve(w, delays: ["SRV _matrix-fed._tcp.deleg": 2_000])
        guard case .success(let a)? = r else { return XCTFail("\(String(describing: r))") }
        XCTAssertEqual(a.step, .delegatedMatrixFedSRV)
        XCTAssertEqual(a.wellKnown?.result, .delegated("deleg"))
        XCTAssertEqual(at, 2_000)
        XCTAssertFalse(a.trace.contains { $0.contains("wellknown_timeout") }, "\(a.trace)")
    }
}
