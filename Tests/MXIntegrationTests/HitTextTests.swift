import XCTest
import MXCore
import MXProtocol
@testable import MXResolve

/// The pre-rendered hit is byte for byte the general path's answer, and exists only where a hit
/// needs no decision and no per-hit ordering.
final class HitTextTests: XCTestCase {
    static func resolution(targets: [Target], step: ResolutionStep = .delegatedMatrixFedSRV) -> Resolution {
        Resolution(serverName: "example.org", step: step, targets: targets,
                   hostHeader: "matrix.example.org", tlsServerName: "matrix.example.org", sni: "matrix.example.org",
                   wellKnown: WellKnownOutcome(result: .delegated("matrix.example.org"), headerLifetime: 3600),
                   srvTTL: 300, addressTTL: 60, trace: ["not in a hit"])
    }
    static let fixed = resolution(targets: [
        Target(host: "a.example.org", port: 8448, addresses: [IPAddress("2a01:4f8::1")!, IPAddress("203.0.113.7")!], srvRank: SRVRank(priority: 10, weight: 5)),
        Target(host: "b.example.org", port: 443, addresses: [IPAddress("203.0.113.9")!], srvRank: SRVRank(priority: 20, weight: 0)),
    ])
    static let weighted = resolution(targets: [
        Target(host: "a.example.org", port: 8448, addresses: [IPAddress("203.0.113.7")!], srvRank: SRVRank(priority: 10, weight: 5)),
        Target(host: "b.example.org", port: 8448, addresses: [IPAddress("203.0.113.9")!], srvRank: SRVRank(priority: 10, weight: 1)),
    ])

    func entry(_ r: Resolution, now: Double) -> CacheEntry {
        CacheRules.updated(nil, serverName: r.serverName, result: .success(r), fetched: r.wellKnown, now: now, jitter: 0.3)
    }

    func testTheHitTextIsTheGeneralPathsAnswerByteForByte() throws {
        let t0 = 1_800_000_000.0
        let e = entry(Self.fixed, now: t0)
        let hit = try XCTUnwrap(HitText(name: "example.org", entry: e))
        for id in [nil, "1", "a-Z_9.x", String(repeating: "i", count: 64)] {
            for t in [t0, t0 + 0.4, t0 + 59.999, hit.freshUntil.nextDown] {
                var out: [UInt8] = Array("earlier bytes stay\n".utf8)
                hit.write(id: id.map { Array($0.utf8)[...] }, now: t, into: &out)
                let reply = ResolutionService.Reply(serverName: "example.org", answer: Self.fixed, failure: nil, source: .cache,
                                                    expiresIn: Int(e.expiresAt - t), trace: [])
                let general = Render.resolveReply(reply, request: Request(.resolve, ["example.org"], id: id), trace: false)
                XCTAssertEqual(String(decoding: out, as: UTF8.self), "earlier bytes stay\n" + String(decoding: general, as: UTF8.self),
                               "id \(id ?? "none") at +\(t - t0) s")
            }
        }
    }

    /// Held for as long as the name is cached: the text's buffers are about its size, not the
    /// response builder's 256-byte reservation.
    func testTheHitTextKeepsNoSpareCapacity() throws {
        let hit = try XCTUnwrap(HitText(name: "example.org", entry: entry(Self.fixed, now: 1_800_000_000)))
        for bytes in [hit.head, hit.fields] {
            XCTAssertLessThan(bytes.capacity, bytes.count + 32, "\(bytes.count) bytes held in \(bytes.capacity)")
        }
    }

    func testNoHitTextWhereAHitNeedsADecisionOrItsOwnOrder() {
        let t0 = 1_800_000_000.0
        XCTAssertNil(HitText(name: "example.org", entry: entry(Self.weighted, now: t0)), "equal-priority SRV targets are reordered per hit")
        let failed = CacheRules.updated(entry(Self.fixed, now: t0), serverName: "example.org",
                                        result: .failure(ResolutionFailure(code: .dnsServfail, message: "m")), fetched: nil, now: t0 + 600, jitter: 0)
        XCTAssertNil(HitText(name: "example.org", entry: failed), "a stale answer is served through CacheRules")
    }

    func testDecimalsAreWrittenWhole() {
        for v in [0, 7, 10, 99, 100, 86_399, Int(Int32.max), Int.max] {
            var buf = [UInt8](repeating: 0, count: 24)
            let n = buf.withUnsafeMutableBufferPointer { HitText.writeDecimal(v, at: $0.baseAddress!) }
            XCTAssertEqual(String(decoding: buf[..<n], as: UTF8.self), String(v))
        }
    }
}
