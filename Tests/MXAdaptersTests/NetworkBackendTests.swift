import XCTest
import Foundation
import MXCore
import MXTestSupport
@testable import MXAdapters

/// The real c-ares/libcurl backend against real servers on loopback only: a `scripts/testworld`
/// world (dnsmasq + python fault DNS + nginx, throwaway CA) on the block 127.0.66.0/24, brought
/// up once for this class and torn down in `tearDown` (and by testworld's --watch-pid when the
/// test process exits however it exits). Never the system resolver.
final class NetworkBackendTests: XCTestCase {
    static let block = "127.0.66"
    nonisolated(unsafe) static var world: TestWorld?
    nonisolated(unsafe) static var worldError: String?

    static let scenario = """
    {"ttl": 300, "negative_ttl": 60, "names": {
      "srv.nb.test":   {"a": ["127.0.0.20"], "srv": {"_matrix-fed._tcp": {"ttl": 120, "records": [
                          {"priority": 10, "weight": 60, "port": 8448, "target": "a.nb.test"},
                          {"priority": 20, "weight": 0, "port": 8449, "target": "b.nb.test"}]}}},
      "dot.nb.test":   {"a": ["127.0.0.20"], "srv": {"_matrix-fed._tcp": [{"target": "."}]}},
      "host.nb.test":  {"a": ["127.0.0.21", "127.0.0.22"], "aaaa": ["::1"], "ttl": 77},
      "alias.nb.test": {"cname": "host.nb.test"},
      "v6only.nb.test": {"aaaa": ["::1"]},
      "servfail.nb.test": {"dns_fault": "servfail"},
      "refused.nb.test":  {"dns_fault": "refused"},
      "stall.nb.test":    {"dns_fault": "stall"},
      "srvfail.nb.test":  {"a": ["127.0.0.9"], "srv": {"_matrix-fed._tcp": {"dns_fault": "servfail"}}},
      "srvrefused.nb.test": {"a": ["127.0.0.9"], "srv": {"_matrix-fed._tcp": {"dns_fault": "refused"}}},
      "srvstall.nb.test": {"a": ["127.0.0.9"], "srv": {"_matrix-fed._tcp": {"dns_fault": "stall"}}},
      "half.nb.test":     {"a": ["127.0.0.9"], "dns_fault": {"AAAA": "servfail"}},
      "trunc.nb.test":    {"a": ["127.0.0.9"], "srv": {"_matrix-fed._tcp": {"dns_fault": "trunc", "records": [
                          {"priority": 10, "weight": 0, "port": 8448, "target": "a.nb.test"}]}}},
      "wk.nb.test":    {"wellknown": {"json": {"m.server": "x.test:443"}, "headers": {"Cache-Control": "public, max-age=3600"}}},
      "big.nb.test":   {"wellknown": {"size": 70000, "json": {"m.server": "x.test:443"}}},
      "selfsigned.nb.test": {"wellknown": {"cert": "self-signed", "json": {"m.server": "x.test:443"}}},
      "slow.nb.test":  {"wellknown": {"delay_ms": 5000, "json": {"m.server": "x.test:443"}}}
    }}
    """

    override class func setUp() {
        super.setUp()
        do { world = try TestWorld.up(scenarioJSON: scenario, ipBlock: block, name: "swift-network-backend") } catch {
            worldError = "\(error)"
        }
    }

    override class func tearDown() {
        world?.down()
        world = nil
        super.tearDown()
    }

    func requireWorld() throws -> TestWorld {
        if let w = Self.world { return w }
        XCTFail(Self.worldError ?? "no test world")
        throw XCTSkip("no test world")
    }

    func backend(_ configure: (inout NetworkConfig) -> Void = { _ in }) throws -> NetworkBackend {
        var c = try requireWorld().networkConfig
        configure(&c)
        let b = try NetworkBackend(config: c)
        addTeardownBlock { b.stop() }
        return b
    }

    static func srv(_ b: NetworkBackend, _ name: String) async -> Result<[SRVRecord], DNSError> {
        await withCheckedContinuation { c in b.querySRV(name) { c.resume(returning: $0) } }
    }

    static func addresses(_ b: NetworkBackend, _ host: String) async -> Result<AddressSet, DNSError> {
        await withCheckedContinuation { c in b.queryAddresses(host) { c.resume(returning: $0) } }
    }

    static func get(_ b: NetworkBackend, _ host: String, connectTo: [IPAddress], maxBody: Int = 50 * 1024,
             totalMs: Int = 5000, path: String = "/.well-known/matrix/server") async -> Result<HTTPSResponse, HTTPSError> {
        let req = HTTPSRequest(url: "https://\(host)\(path)", host: host, port: 443,
                               connectTo: connectTo, maxBodyBytes: maxBody, connectTimeoutMs: 2000, totalTimeoutMs: totalMs)
        return await withCheckedContinuation { c in b.httpsGet(req) { c.resume(returning: $0) } }
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    // MARK: DNS

    func testSRVWithTTLs() async throws {
        let b = try backend()
        let records = try await Self.srv(b, "_matrix-fed._tcp.srv.nb.test").get().sorted { $0.priority < $1.priority }
        XCTAssertEqual(records, [
            SRVRecord(priority: 10, weight: 60, port: 8448, target: "a.nb.test", ttl: 120),
            SRVRecord(priority: 20, weight: 0, port: 8449, target: "b.nb.test", ttl: 120),
        ])
        XCTAssertEqual(b.counterSnapshot.dnsOK, 1)
    }

    func testSRVDotTarget() async throws {
        let b = try backend()
        let records = try await Self.srv(b, "_matrix-fed._tcp.dot.nb.test").get()
        XCTAssertEqual(records.map(\.target), ["."])
    }

    func testSRVOverTCPAfterTruncation() async throws {
        let b = try backend()
        let records = try await Self.srv(b, "_matrix-fed._tcp.trunc.nb.test").get()
        XCTAssertEqual(records.map(\.target), ["a.nb.test"])
    }

    func testAddressesWithTTLs() async throws {
        let b = try backend()
        let set = try await Self.addresses(b, "host.nb.test").get()
        XCTAssertEqual(Set(set.ipv4.map(\.address)), [IPAddress("127.0.0.21")!, IPAddress("127.0.0.22")!])
        XCTAssertEqual(set.ipv6.map(\.address), [IPAddress("::1")!])
        XCTAssertEqual(Set(set.all.map(\.ttl)), [77])
        XCTAssertEqual(set.cnameChain, [])
        XCTAssertEqual(b.counterSnapshot.dnsOK, 2)
    }

    func testCNAMEChainReported() async throws {
        let b = try backend()
        let set = try await Self.addresses(b, "alias.nb.test").get()
        XCTAssertEqual(set.cnameChain, ["alias.nb.test", "host.nb.test"])
        XCTAssertEqual(set.ipv4.count, 2)
        XCTAssertEqual(set.ipv6.count, 1)
    }

    func testNXDOMAINAndNODATADistinguished() async throws {
        let b = try backend()
        let nx = await Self.addresses(b, "missing.nb.test")
        guard case .failure(.nxdomain) = nx else { return XCTFail("expected NXDOMAIN, got \(nx)") }
        let nodata = await Self.srv(b, "_matrix-fed._tcp.host.nb.test")
        // the name exists under dnsmasq's local zone only as host.nb.test, so the SRV owner is NXDOMAIN
        XCTAssertTrue((try? nodata.get()) == nil)
        let v6only = try await Self.addresses(b, "v6only.nb.test").get()
        XCTAssertEqual(v6only.ipv4, [])
        XCTAssertEqual(v6only.ipv6.map(\.address), [IPAddress("::1")!])
        // A-only query path: NODATA for A is reported per query in the counters
        XCTAssertEqual(b.counterSnapshot.dnsNoData, 1)

        // Negative TTLs come from the authority SOA (the fault server sends one; dnsmasq's
        // local NXDOMAIN has none).
        let w = try requireWorld()
        let direct = try backend { $0.dnsServers = [w.faultDNSServer] }
        let nx2 = await Self.srv(direct, "_matrix-fed._tcp.nosuch.nb.test")
        XCTAssertEqual(nx2.failureValue, .nxdomain(negativeTTL: 60))
        let nodata2 = await Self.addresses(direct, "v6only.nb.test")
        XCTAssertEqual(try nodata2.get().ipv6.count, 1)
        let nodataSRV = await Self.srv(direct, "_matrix-fed._tcp.host.nb.test")
        XCTAssertTrue(nodataSRV.failureValue?.meansNotFound ?? false, "\(nodataSRV)")
        let nodataHost = await Self.srv(direct, "host.nb.test")
        XCTAssertEqual(nodataHost.failureValue, .nodata(negativeTTL: 60))
    }

    func testSERVFAILAndREFUSEDDistinguished() async throws {
        let b = try backend()
        let t0 = Self.now()
        let sf = await Self.srv(b, "_matrix-fed._tcp.srvfail.nb.test")
        XCTAssertEqual(sf.failureValue, .servfail)
        let rf = await Self.srv(b, "_matrix-fed._tcp.srvrefused.nb.test")
        XCTAssertEqual(rf.failureValue, .refused)
        XCTAssertLessThan(Self.now() - t0, 1.0, "SERVFAIL/REFUSED must come back at once, not after retries")
        // AAAA SERVFAIL but A fine: success with the IPv4 addresses
        let half = try await Self.addresses(b, "half.nb.test").get()
        XCTAssertEqual(half.ipv4.map(\.address), [IPAddress("127.0.0.9")!])
        XCTAssertEqual(half.ipv6, [])
        // both SERVFAIL: servfail wins over anything
        let both = await Self.addresses(b, "servfail.nb.test")
        XCTAssertEqual(both.failureValue, .servfail)
        let c = b.counterSnapshot
        XCTAssertEqual(c.dnsServfail, 4)
        XCTAssertEqual(c.dnsRefused, 1)
    }

    func testTimeoutIsBounded() async throws {
        let b = try backend { $0.dnsTimeoutMs = 200; $0.dnsTries = 2 }
        let t0 = Self.now()
        let r = await Self.srv(b, "_matrix-fed._tcp.srvstall.nb.test")
        let elapsed = Self.now() - t0
        XCTAssertEqual(r.failureValue, .timeout)
        // 200 ms + 400 ms (c-ares doubles the per-try timeout)
        XCTAssertGreaterThan(elapsed, 0.5)
        XCTAssertLessThan(elapsed, 1.5)
        XCTAssertEqual(b.counterSnapshot.dnsTimeout, 1)
    }

    func testUnreachableDNSServerFailsFast() async throws {
        let w = try requireWorld()
        // Nothing listens on the closed address: ICMP port unreachable, never a busy loop.
        let b = try backend { $0.dnsServers = ["\(w.closedAddress):53"]; $0.dnsTimeoutMs = 300 }
        let t0 = Self.now()
        let r = await Self.srv(b, "_matrix-fed._tcp.srv.nb.test")
        XCTAssertNotNil(r.failureValue)
        XCTAssertFalse(r.failureValue?.meansNotFound ?? true)
        XCTAssertLessThan(Self.now() - t0, 1.5)
    }

    func testManyConcurrentLookups() async throws {
        let b = try backend { $0.dnsTimeoutMs = 1000 }
        let names = ["host.nb.test", "alias.nb.test", "v6only.nb.test", "missing.nb.test", "srv.nb.test"]
        let n = 500
        let t0 = Self.now()
        let results = await withTaskGroup(of: Result<AddressSet, DNSError>.self) { group in
            for i in 0..<n {
                let name = names[i % names.count]
                group.addTask { await Self.addresses(b, name) }
            }
            var all: [Result<AddressSet, DNSError>] = []
            for await r in group { all.append(r) }
            return all
        }
        let elapsed = Self.now() - t0
        XCTAssertEqual(results.count, n)
        let ok = results.filter { (try? $0.get()) != nil }.count
        XCTAssertEqual(ok, n / 5 * 4)  // all but missing.nb.test
        XCTAssertEqual(results.filter { $0.failureValue?.meansNotFound == true }.count, n / 5)
        let c = b.counterSnapshot
        XCTAssertEqual(c.dnsTotal, 2 * n)
        XCTAssertEqual(c.dnsTimeout + c.dnsOther + c.dnsServfail, 0)
        print("NetworkBackendTests: \(n) concurrent queryAddresses (\(2 * n) DNS queries, 64 in flight) in \(Int(elapsed * 1000)) ms")
        XCTAssertLessThan(elapsed, 5)
    }

    // MARK: HTTPS

    func testWellKnownVerifiedAgainstTestCA() async throws {
        let w = try requireWorld()
        let b = try backend()
        let resp = try await Self.get(b, "wk.nb.test", connectTo: [w.httpsAddress]).get()
        XCTAssertEqual(resp.status, 200)
        let body = String(decoding: resp.body, as: UTF8.self)
        XCTAssertTrue(body.contains("\"m.server\""), body)
        XCTAssertTrue(body.contains("x.test:443"), body)
        XCTAssertEqual(resp.values(of: "cache-control"), ["public, max-age=3600"])
        XCTAssertFalse(resp.values(of: "content-type").isEmpty)
        XCTAssertEqual(b.counterSnapshot.httpsOK, 1)
    }

    /// A fetch is one GET on a connection that is never reused: HTTP/1.1, and the TLS 1.3 suite
    /// browsers prefer (AES-128-GCM), as the server's access log records them.
    func testWellKnownFetchSpeaksHTTP11WithAES128GCM() async throws {
        let w = try requireWorld()
        let b = try backend()
        _ = try await Self.get(b, "wk.nb.test", connectTo: [w.httpsAddress], path: "/.well-known/matrix/server?protocol-probe").get()
        var record: [String: Any]?
        for _ in 0..<100 where record == nil {
            let log = (try? String(contentsOfFile: "\(w.dir)/nginx/access.log", encoding: .utf8)) ?? ""
            record = log.split(separator: "\n").lazy
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                .first { ($0["uri"] as? String)?.hasSuffix("?protocol-probe") == true }
            if record == nil { usleep(20_000) }
        }
        let r = try XCTUnwrap(record, "no access-log record of the fetch")
        XCTAssertEqual(r["proto"] as? String, "HTTP/1.1")
        XCTAssertEqual(r["cipher"] as? String, "TLS_AES_128_GCM_SHA256")
    }

    func testWithoutTheCAItFailsWithTLS() async throws {
        let w = try requireWorld()
        let b = try backend { $0.extraCAFile = nil }
        let r = await Self.get(b, "wk.nb.test", connectTo: [w.httpsAddress])
        guard case .failure(.tls) = r else { return XCTFail("expected .tls, got \(r)") }
        let b2 = try backend()
        let r2 = await Self.get(b2, "selfsigned.nb.test", connectTo: [w.httpsAddress])
        guard case .failure(.tls) = r2 else { return XCTFail("expected .tls, got \(r2)") }
        XCTAssertEqual(b.counterSnapshot.httpsTLS, 1)
    }

    /// The system store is read as a hashed directory (CURLOPT_CAPATH) with no bundle file:
    /// a directory holding only the test CA (as update-ca-certificates would lay it out) works.
    func testSystemStoreIsAHashedDirectory() async throws {
        let w = try requireWorld()
        let dir = NSTemporaryDirectory() + "mxresolved-capath-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (st, hash, _) = try runCommand("/usr/bin/openssl", ["x509", "-hash", "-noout", "-in", w.caFile])
        XCTAssertEqual(st, 0)
        try FileManager.default.copyItem(atPath: w.caFile, toPath: dir + "/" + hash.trimmingCharacters(in: .whitespacesAndNewlines) + ".0")
        let b = try backend { $0.extraCAFile = nil; $0.systemCAPath = dir }
        let resp = try await Self.get(b, "wk.nb.test", connectTo: [w.httpsAddress]).get()
        XCTAssertEqual(resp.status, 200)
    }

    func testBodyCap() async throws {
        let w = try requireWorld()
        let b = try backend()
        let r = await Self.get(b, "big.nb.test", connectTo: [w.httpsAddress], maxBody: 50 * 1024)
        XCTAssertEqual(r.failureValue, .bodyTooLarge(limit: 50 * 1024))
        let full = try await Self.get(b, "big.nb.test", connectTo: [w.httpsAddress], maxBody: 100 * 1024).get()
        XCTAssertEqual(full.body.count, 70000)
        XCTAssertEqual(b.counterSnapshot.httpsBodyTooLarge, 1)
    }

    func testConnectFallsBackToNextAddress() async throws {
        let w = try requireWorld()
        let b = try backend()
        let resp = try await Self.get(b, "wk.nb.test", connectTo: [w.closedAddress, w.httpsAddress]).get()
        XCTAssertEqual(resp.status, 200)
        let r = await Self.get(b, "wk.nb.test", connectTo: [w.closedAddress])
        guard case .failure(.connect(let msg)) = r else { return XCTFail("expected .connect, got \(r)") }
        XCTAssertTrue(msg.contains("\(w.closedAddress)"), msg)
    }

    func testTotalTimeout() async throws {
        let w = try requireWorld()
        let b = try backend()
        let t0 = Self.now()
        let r = await Self.get(b, "slow.nb.test", connectTo: [w.httpsAddress], totalMs: 500)
        XCTAssertEqual(r.failureValue, .timeout)
        XCTAssertLessThan(Self.now() - t0, 2)
    }

    func testConcurrentFetches() async throws {
        let w = try requireWorld()
        let b = try backend { $0.maxHTTPSInFlight = 32 }
        let n = 100
        let t0 = Self.now()
        let statuses = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<n {
                group.addTask { (try? await Self.get(b, "wk.nb.test", connectTo: [w.httpsAddress]).get().status) ?? -1 }
            }
            var all: [Int] = []
            for await s in group { all.append(s) }
            return all
        }
        print("NetworkBackendTests: \(n) HTTPS fetches (32 in flight, fresh TLS each) in \(Int((Self.now() - t0) * 1000)) ms")
        XCTAssertEqual(statuses, Array(repeating: 200, count: n))
    }

    // MARK: shutdown

    func testStopCompletesEverythingExactlyOnce() async throws {
        let w = try requireWorld()
        var c = NetworkConfig()
        c.dnsServers = [w.dnsServer]
        c.dnsTimeoutMs = 5000
        c.maxDNSInFlight = 4
        c.maxHTTPSInFlight = 2
        c.extraCAFile = w.caFile
        let b = try NetworkBackend(config: c)
        let calls = PthreadMutex<[Int: Int]>([:])
        let done = expectation(description: "all completions")
        let total = 30
        done.expectedFulfillmentCount = total
        for i in 0..<total {
            let record: @Sendable () -> Void = {
                calls.withLock { $0[i, default: 0] += 1 }
                done.fulfill()
            }
            switch i % 3 {
            case 0: b.querySRV("_matrix-fed._tcp.srvstall.nb.test") { _ in record() }
            case 1: b.queryAddresses("stall.nb.test") { _ in record() }
            default:
                let req = HTTPSRequest(url: "https://slow.nb.test/.well-known/matrix/server", host: "slow.nb.test", port: 443,
                                       connectTo: [w.httpsAddress], maxBodyBytes: 1000, connectTimeoutMs: 2000, totalTimeoutMs: 10_000)
                b.httpsGet(req) { _ in record() }
            }
        }
        try await Task.sleep(nanoseconds: 200_000_000)
        let t0 = Self.now()
        b.stop()
        XCTAssertLessThan(Self.now() - t0, 1)
        await fulfillment(of: [done], timeout: 2)
        XCTAssertEqual(calls.withLock { $0 }, Dictionary(uniqueKeysWithValues: (0..<total).map { ($0, 1) }))
        // after stop: completes at once with an error
        let late = await Self.srv(b, "_matrix-fed._tcp.srv.nb.test")
        XCTAssertNotNil(late.failureValue)
        b.stop()  // idempotent
    }
}

extension NetworkBackendTests {
    /// `stop()` from a completion (on the loop thread) must not deadlock; a later `stop()` from
    /// another thread waits for the shutdown and returns.
    func testStopFromACompletion() async throws {
        let w = try requireWorld()
        var c = NetworkConfig()
        c.dnsServers = [w.dnsServer]
        let b = try NetworkBackend(config: c)
        let done = expectation(description: "stopped from completion")
        b.querySRV("_matrix-fed._tcp.srv.nb.test") { _ in
            b.stop()
            done.fulfill()
        }
        await fulfillment(of: [done], timeout: 2)
        b.stop()
        let late = await Self.srv(b, "_matrix-fed._tcp.srv.nb.test")
        XCTAssertEqual(late.failureValue, .other("network backend stopped"))
    }
}

fileprivate extension Result {
    var failureValue: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
