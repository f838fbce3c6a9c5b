import XCTest
@testable import MXCore

/// The stored form of a cache entry: exact round trips, each fact once, a compact size, and typed
/// errors (never a trap) for damaged bytes.
final class CacheRecordTests: XCTestCase {
    /// A typical delegated name: well-known + `_matrix-fed` SRV, one target with an IPv6 and an IPv4 address.
    static let srvAnswer = Resolution(
        serverName: "example.org", step: .delegatedMatrixFedSRV,
        targets: [Target(host: "synapse.example.org", port: 8448, addresses: [IPAddress("2a01:4f8::1")!, IPAddress("203.0.113.7")!],
                         srvRank: SRVRank(priority: 10, weight: 5))],
        hostHeader: "matrix.example.org", tlsServerName: "matrix.example.org", sni: "matrix.example.org",
        wellKnown: WellKnownOutcome(result: .delegated("matrix.example.org"), headerLifetime: 3600),
        srvTTL: 300, addressTTL: 60, trace: [])

    func typical(now: Double = 1_800_000_000) -> CacheEntry {
        CacheRules.updated(nil, serverName: "example.org", result: .success(Self.srvAnswer), fetched: Self.srvAnswer.wellKnown,
                           now: now, jitter: 0.37)
    }

    func roundTrip(_ e: CacheEntry, lastUsed: Double = 5) throws -> CacheEntry {
        let bytes = CacheRecord.encode(e, lastUsed: lastUsed)
        return try CacheRecord.decode(key: e.serverName, bytes)
    }

    func testASuccessRoundTripsExactlyAndStaysUnder300Bytes() throws {
        let e = typical()
        XCTAssertEqual(try roundTrip(e), e)
        let bytes = CacheRecord.encode(e, lastUsed: 1_800_000_000)
        XCTAssertLessThanOrEqual(bytes.count + e.serverName.utf8.count, 300, "\(bytes.count) bytes")
        var renamed = e
        renamed.serverName = "a-much-longer-server-name.example.org"
        renamed.outcome = .answer({ var a = Self.srvAnswer; a.serverName = renamed.serverName; return a }())
        renamed.lastGood = renamed.answer
        XCTAssertEqual(CacheRecord.encode(renamed, lastUsed: 0).count, bytes.count, "the key is not repeated inside")
    }

    func testAFailureWithAnOlderLastGoodAnswerAndItsOwnWellKnownRoundTrips() throws {
        let ok = typical()
        let wk = WellKnownOutcome(result: .failed(code: "wellknown_tls", message: "bad cert ünïcode", temporary: true), headerLifetime: nil)
        let failed = CacheRules.updated(ok, serverName: "example.org",
                                        result: .failure(ResolutionFailure(code: .dnsServfail, message: "m", step: .matrixFedSRV,
                                                                           wellKnown: wk, negativeTTL: 42)),
                                        fetched: wk, now: 1_800_000_400, jitter: -0.5)
        let back = try roundTrip(failed)
        XCTAssertEqual(back, failed)
        XCTAssertEqual(back.lastGood, Self.srvAnswer)
        XCTAssertEqual(back.failure?.wellKnown, wk)
    }

    func testAnAnswerServedFromAKeptDelegationRoundTripsWithItsFailureAndLastGoodAnswer() throws {
        let ok = typical()
        XCTAssertEqual(ok.delegation, ok.wellKnown, "a confirmed delegation is stored as a one-byte tag")
        let failure = WellKnownOutcome(result: .failed(code: "wellknown_timeout", message: "timed out", temporary: true), headerLifetime: nil)
        var rebuilt = Self.srvAnswer
        rebuilt.targets[0].addresses = [IPAddress("203.0.113.8")!]
        let stale = CacheRules.updated(ok, serverName: "example.org", result: .success(rebuilt), fetched: failure,
                                       now: 1_800_004_000, jitter: 0)
        XCTAssertTrue(CacheRules.servesKeptDelegation(stale))
        let back = try roundTrip(stale)
        XCTAssertEqual(back, stale)
        XCTAssertEqual(back.delegation, Self.srvAnswer.wellKnown)
        XCTAssertEqual(back.delegationExpiresAt, ok.wellKnownExpiresAt)
        XCTAssertEqual(back.lastGood, Self.srvAnswer)
    }

    func testOddButValidEntriesRoundTrip() throws {
        var a = Self.srvAnswer
        a.serverName = "another.name"      // not the key: stored
        a.sni = nil
        a.srvTTL = nil
        a.targets.append(Target(host: "[::1]", port: 1, addresses: []))
        var e = CacheEntry(serverName: "k", outcome: .answer(a), fetchedAt: -1, expiresAt: .infinity,
                           wellKnown: WellKnownOutcome(result: .delegated("other.example"), headerLifetime: nil),
                           wellKnownExpiresAt: 3, wellKnownFetchedAt: nil, wellKnownFailures: 300, consecutiveFailures: 70_000)
        var distinct = Self.srvAnswer
        distinct.tlsServerName = "tls.example"   // neither the Host header nor the SNI
        distinct.sni = "sni.example"
        e.lastGood = distinct
        e.lastGoodExpiresAt = nil
        XCTAssertEqual(try roundTrip(e), e)
        let bare = CacheEntry(serverName: "ip", outcome: .failure(ResolutionFailure(code: .noAddress, message: "")), fetchedAt: 0, expiresAt: 1)
        XCTAssertEqual(try roundTrip(bare), bare)
    }

    func testTheHeaderIsReadAndTheLastUseRaisedWithoutDecoding() throws {
        let e = typical()
        let bytes = CacheRecord.encode(e, lastUsed: 7)
        let header = bytes.withUnsafeBytes { CacheRecord.header($0) }
        XCTAssertEqual(header, CacheRecord.Header(isFailure: false, lastUsed: 7, expiresAt: e.expiresAt))
        let raised = try XCTUnwrap(bytes.withUnsafeBytes { CacheRecord.settingLastUsed(9, in: $0) })
        XCTAssertEqual(raised.withUnsafeBytes { CacheRecord.header($0) }?.lastUsed, 9)
        XCTAssertEqual(try CacheRecord.decode(key: "example.org", raised), e)
        XCTAssertNil([UInt8](repeating: 3, count: 10).withUnsafeBytes { CacheRecord.header($0) })
    }

    func testDamagedRecordsAreTypedErrorsNeverTraps() {
        let bytes = CacheRecord.encode(typical(), lastUsed: 1)
        for n in 0..<bytes.count {
            XCTAssertThrowsError(try CacheRecord.decode(key: "example.org", Array(bytes.prefix(n))), "prefix \(n)")
        }
        let body = Array(bytes.dropLast(4))
        XCTAssertThrowsError(try CacheRecord.decode(key: "k", CacheRecord.sealed(body + [0]))) {
            XCTAssertEqual($0 as? CacheRecordError, .trailingBytes(1))
        }
        var old = bytes
        old[0] = 2
        XCTAssertThrowsError(try CacheRecord.decode(key: "k", old)) { XCTAssertEqual($0 as? CacheRecordError, .unknownVersion(2)) }
        // The parser behind the checksum, on every single-byte corruption and random garbage (sealed
        // with a matching checksum, as a writer bug would be): an error or some entry, never a crash or a huge allocation.
        for i in 0..<body.count {
            for v: UInt8 in [0, 1, 0x7f, 0x80, 0xff] {
                var b = body
                b[i] = v
                _ = try? CacheRecord.decode(key: "k", CacheRecord.sealed(b))
            }
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var b = (0..<Int.random(in: 0..<80, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if !b.isEmpty { b[0] = CacheRecord.version }
            if b.count > 1 { b[1] &= 1 }
            _ = try? CacheRecord.decode(key: "k", CacheRecord.sealed(b))
        }
        let hugeCount: [UInt8] = Array(bytes.prefix(26)) + [0, 0, 1, 0x31, 0xff, 0xff, 0xff, 0xff, 0x0f]
        XCTAssertThrowsError(try CacheRecord.decode(key: "k", CacheRecord.sealed(hugeCount)), "a count larger than the bytes left")
    }

    func testEveryFlippedBitIsCaughtByTheChecksum() throws {
        let bytes = CacheRecord.encode(typical(), lastUsed: 1)
        try bytes.withUnsafeBytes { XCTAssertNoThrow(try CacheRecord.verify($0)) }
        for i in 1..<bytes.count {
            for bit in 0..<8 {
                var b = bytes
                b[i] ^= 1 << bit
                XCTAssertThrowsError(try CacheRecord.decode(key: "example.org", b), "byte \(i) bit \(bit)") {
                    XCTAssertEqual($0 as? CacheRecordError, .checksumMismatch)
                }
                XCTAssertNil(b.withUnsafeBytes { CacheRecord.header($0) }, "eviction sees a damaged header as unreadable")
                XCTAssertNil(b.withUnsafeBytes { CacheRecord.settingLastUsed(5, in: $0) })
            }
        }
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283, "the CRC-32C check value")
    }

    func testATargetsSRVPriorityAndWeightAreReadTogetherOrNotAtAll() throws {
        func rank(_ priority: UInt16?, _ weight: UInt16?) throws -> SRVRank? {
            var w = ByteWriter()
            w.optional(priority) { $0.u16($1) }
            w.optional(weight) { $0.u16($1) }
            return try w.bytes.withUnsafeBytes { raw throws(CacheRecordError) in
                var r = ByteReader(raw)
                return try CacheRecord.readSRVRank(&r)
            }
        }
        XCTAssertEqual(try rank(10, 5), SRVRank(priority: 10, weight: 5))
        XCTAssertNil(try rank(nil, nil))
        XCTAssertThrowsError(try rank(10, nil)) { XCTAssertEqual($0 as? CacheRecordError, .invalid(field: "srvWeight")) }
        XCTAssertThrowsError(try rank(nil, 5)) { XCTAssertEqual($0 as? CacheRecordError, .invalid(field: "srvWeight")) }
    }

    func testByteCodingLimits() throws {
        var w = ByteWriter()
        for v in [0, 1, 127, 128, 300, Int(UInt32.max), Int.max] { w.varint(v) }
        w.string("ü")
        let bytes = w.bytes
        try bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            for v in [0, 1, 127, 128, 300, Int(UInt32.max), Int.max] { XCTAssertEqual(try r.varint("v"), v) }
            XCTAssertEqual(try r.string("s"), "ü")
            XCTAssertEqual(r.remaining, 0)
            XCTAssertThrowsError(try r.u8("end")) { XCTAssertEqual($0 as? CacheRecordError, .truncated(field: "end")) }
        }
        try [UInt8](repeating: 0xff, count: 12).withUnsafeBytes { raw in
            var r = ByteReader(raw)
            XCTAssertThrowsError(try r.varint("v")) { XCTAssertEqual($0 as? CacheRecordError, .invalid(field: "v")) }
        }
        try [UInt8]([2, 0xc3, 0x28]).withUnsafeBytes { raw in
            var r = ByteReader(raw)
            XCTAssertThrowsError(try r.string("s")) { XCTAssertEqual($0 as? CacheRecordError, .invalid(field: "s")) }
        }
    }
}
