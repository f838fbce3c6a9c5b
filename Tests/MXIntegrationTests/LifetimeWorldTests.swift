import Foundation
import XCTest
import MXTestSupport
import MXCore
import MXAdapters

/// Issue 12, "Lifetimes and back-off", and issue 13 item 7 against the loopback test world
/// (scripts/scenarios/standard.json) and the real daemon.
extension ResolverWorldTests {
    func testNOTIMPForAnSRVQueryFallsThroughToStep6() {
        let a = expect("srv-notimp.test", step: .defaultPort, targets: ["srv-notimp.test:8448=127.0.0.65"],
                       host: "srv-notimp.test", tls: "srv-notimp.test", sni: "srv-notimp.test")
        XCTAssertTrue(a?.trace.contains { $0.contains("_matrix-fed._tcp.srv-notimp.test: NOTIMP") } ?? false, "\(a?.trace ?? [])")
    }

    func testANameTooLongForItsSRVOwnersSkipsTheSRVStepsInsteadOfFailing() {
        let long = [String](repeating: String(repeating: "l", count: 63), count: 3).joined(separator: ".") + "." + String(repeating: "x", count: 48) + ".test"
        XCTAssertEqual(long.count, 245)
        expect(long, step: .defaultPort, targets: ["\(long):8448=127.0.0.66"], host: long, tls: long, sni: long)
    }

    func testTheWellKnownHostHavingNoAddressIsATemporaryWellKnownFailure() {
        // srv-zero.test has SRV records but no A/AAAA of its own: the fetch cannot even start.
        guard case .success(let a) = resolve("srv-zero.test"), case .failed(let code, _, let temporary)? = a.wellKnown?.result else {
            return XCTFail("srv-zero.test did not resolve with a well-known failure")
        }
        XCTAssertEqual(code, "wellknown_dns")
        XCTAssertTrue(temporary, "as in Synapse: a delegated domain whose DNS hiccups keeps its delegation")
        XCTAssertEqual(a.step, .matrixFedSRV)
    }
}

extension DaemonTests {
    /// The cache as a delegated domain's outage leaves it: the delegation to target.test:8448
    /// expired 200 s ago, its first refetch failed 100 s ago and that failure's back-off is over.
    static func seedOutage(of name: String, in stateDir: String) throws {
        let now = wallClockSeconds()
        let delegated = WellKnownOutcome(result: .delegated("target.test:8448"), headerLifetime: 300)
        let answer = Resolution(serverName: name, step: .delegatedExplicitPort,
                                targets: [Target(host: "target.test", port: 8448, addresses: [IPAddress("127.0.0.20")!])],
                                hostHeader: "target.test:8448", tlsServerName: "target.test", sni: "target.test",
                                wellKnown: delegated, srvTTL: nil, addressTTL: 300, trace: [])
        let confirmed = CacheRules.updated(nil, serverName: name, result: .success(answer), fetched: delegated, now: now - 500, jitter: 0)
        let timeout = WellKnownOutcome(result: .failed(code: "wellknown_timeout", message: "timed out", temporary: true), headerLifetime: nil)
        let outage = CacheRules.updated(confirmed, serverName: name, result: .success(answer), fetched: timeout, now: now - 100, jitter: 0)
        XCTAssertEqual(CacheRules.serving(outage, now: now), .stale(answer, revalidate: true), "the seed is what the test needs")
        let store = try LMDBStore(directory: "\(stateDir)/cache", mapSizeBytes: 16 << 20)
        try store.put(outage, lastUsed: now)
        store.close()
    }

    /// A name answered by step 6 after its well-known said 404 an hour and a second ago, with an
    /// address TTL of a day; its well-known (wk-port.test's) delegates now. The answer lived no longer
    /// than the failure's back-off (at most the hour), so the daemon fetches again and follows.
    func testAFixedDelegationIsFollowedOnceTheBackOffOfTheFailedWellKnownEnds() throws {
        daemon.stop()
        let now = wallClockSeconds()
        let notFound = WellKnownOutcome(result: .failed(code: "wellknown_http_404", message: "404", temporary: false), headerLifetime: nil)
        let step6 = Resolution(serverName: "wk-port.test", step: .defaultPort,
                               targets: [Target(host: "wk-port.test", port: 8448, addresses: [IPAddress(Self.world.httpsIP)!])],
                               hostHeader: "wk-port.test", tlsServerName: "wk-port.test", sni: "wk-port.test",
                               wellKnown: notFound, srvTTL: nil, addressTTL: 86400, trace: [])
        let entry = CacheRules.updated(nil, serverName: "wk-port.test", result: .success(step6), fetched: notFound, now: now - 3601, jitter: 0)
        let store = try LMDBStore(directory: "\(daemon.stateDir)/cache", mapSizeBytes: 16 << 20)
        try store.put(entry, lastUsed: now)
        store.close()
        try daemon.start()
        try Self.world.resetCounts()

        let r = try daemon.ask("resolve wk-port.test")
        XCTAssertEqual(r["step"], "3.2", "\(r.fields)")
        XCTAssertEqual(r["host"], "target.test:8449")
        XCTAssertEqual(try Self.world.counts().wellKnown["wk-port.test"], 1)
    }

    func testAStaleDelegationIsServedAtOnceWhileTheWellKnownHostNeverAnswers() throws {
        daemon.stop()
        try Self.seedOutage(of: "wk-noanswer.test", in: daemon.stateDir)   // its host accepts and never answers
        try daemon.start()
        try Self.world.resetCounts()

        let started = Date()
        let reply = try daemon.ask("resolve wk-noanswer.test")
        let waited = Date().timeIntervalSince(started)
        XCTAssertEqual(reply.status, "ok")
        XCTAssertEqual(reply["source"], "stale")
        XCTAssertEqual(reply["host"], "target.test:8448", "the last delegation, not port 8448 of the name")
        XCTAssertLessThan(waited, 0.75, "served without waiting for the 1.5 s well-known timeout")
        let stats = try daemon.ask("statistics")
        XCTAssertEqual(stats["resolutions_inflight"], "1", "the revalidation runs behind the answer")
        XCTAssertEqual(stats["stale_revalidations"], "1")

        // More workers during the outage: all served at once from the same stale delegation.
        var took: [Double] = []
        for _ in 0..<20 {
            let asked = Date()
            XCTAssertEqual(try daemon.ask("resolve wk-noanswer.test")["source"], "stale")
            took.append(Date().timeIntervalSince(asked))
        }
        let median = took.sorted()[took.count / 2]
        XCTAssertLessThan(median, 0.005, "a worker is served from the stale delegation in < 5 ms (each a new connection): \(took)")
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, try daemon.ask("statistics")["resolutions_inflight"] != "0" { usleep(50_000) }
        let after = try daemon.ask("statistics")
        XCTAssertEqual(after["stale"], "21")
        XCTAssertEqual(after["stale_revalidations"], "1", "one background revalidation, not one per request")
        XCTAssertEqual(try Self.world.counts().wellKnown["wk-noanswer.test"], 1, "one fetch: the host is known to be failing")
        // The revalidation failed again: still the delegation, still stale, next try after a doubled back-off.
        XCTAssertEqual(try daemon.ask("resolve wk-noanswer.test")["source"], "stale")
        XCTAssertEqual(try daemon.ask("statistics")["stale_revalidations"], "1")
        let shown = try daemon.client().request("show-cache wk-noanswer.test")
        XCTAssertTrue(shown.first?.contains("stale=yes") ?? false, "show-cache marks it as resolve serves it: \(shown)")
    }
}
