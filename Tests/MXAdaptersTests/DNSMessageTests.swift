import XCTest
import MXCore
@testable import MXAdapters

/// Pure tests of the DNS message parser on hand-built packets, hostile ones included.
final class DNSMessageTests: XCTestCase {
    // MARK: packet builder

    struct Packet {
        var bytes: [UInt8] = []

        init(id: UInt16 = 0x1234, flags: UInt16 = 0x8180, qd: Int = 1, an: Int, ns: Int = 0, ar: Int = 0) {
            u16(id); u16(flags); u16(UInt16(qd)); u16(UInt16(an)); u16(UInt16(ns)); u16(UInt16(ar))
        }

        mutating func u16(_ v: UInt16) { bytes += [UInt8(v >> 8), UInt8(v & 0xFF)] }
        mutating func u32(_ v: UInt32) { u16(UInt16(v >> 16)); u16(UInt16(v & 0xFFFF)) }

        /// Writes a name uncompressed, returns its offset.
        @discardableResult mutating func name(_ s: String) -> Int {
            let at = bytes.count
            for label in s.split(separator: ".") {
                bytes.append(UInt8(label.utf8.count))
                bytes += Array(label.utf8)
            }
            bytes.append(0)
            return at
        }

        mutating func pointer(_ offset: Int) { u16(0xC000 | UInt16(offset)) }

        mutating func question(_ s: String, type: UInt16) -> Int {
            let at = name(s)
            u16(type); u16(1)
            return at
        }

        /// Record header with a placeholder RDLENGTH; call `endRData` after writing the RDATA.
        mutating func rrHeader(nameAt: Int, type: UInt16, ttl: UInt32) -> Int {
            pointer(nameAt)
            u16(type); u16(1); u32(ttl)
            u16(0)
            return bytes.count
        }

        /// A CNAME record owned by the name at `owner`, its target written in full; returns the target's offset.
        mutating func cname(at owner: Int, to target: String) -> Int {
            let s = rrHeader(nameAt: owner, type: DNSRecordType.cname, ttl: 30)
            let at = name(target)
            endRData(s)
            return at
        }

        mutating func endRData(_ start: Int) {
            let len = bytes.count - start
            bytes[start - 2] = UInt8(len >> 8)
            bytes[start - 1] = UInt8(len & 0xFF)
        }
    }

    func srvPacket() -> [UInt8] {
        var p = Packet(an: 2, ns: 0)
        let q = p.question("_matrix-fed._tcp.example.com", type: DNSRecordType.srv)
        var s = p.rrHeader(nameAt: q, type: DNSRecordType.srv, ttl: 120)
        p.u16(10); p.u16(60); p.u16(8448)
        p.name("a.example.com")
        p.endRData(s)
        s = p.rrHeader(nameAt: q, type: DNSRecordType.srv, ttl: 300)
        p.u16(20); p.u16(0); p.u16(8449)
        // "b." + pointer to "example.com" inside the question (offset of "example" label)
        p.bytes += [1, UInt8(ascii: "b")]
        p.pointer(q + 1 + 11 + 1 + 4)
        p.endRData(s)
        return p.bytes
    }

    // MARK: well-formed

    func testSRVWithCompressionAndTTLs() throws {
        let m = try DNSMessage(parsing: srvPacket())
        XCTAssertEqual(m.rcode, DNSRcode.noError.rawValue)
        let (rrs, chain) = m.records(ofType: DNSRecordType.srv, for: "_matrix-fed._tcp.EXAMPLE.com")
        XCTAssertEqual(chain, [])
        XCTAssertEqual(rrs.count, 2)
        XCTAssertEqual(rrs[0].ttl, 120)
        XCTAssertEqual(rrs[0].data, .srv(priority: 10, weight: 60, port: 8448, target: "a.example.com"))
        XCTAssertEqual(rrs[1].ttl, 300)
        XCTAssertEqual(rrs[1].data, .srv(priority: 20, weight: 0, port: 8449, target: "b.example.com"))
    }

    func testSRVDotTarget() throws {
        var p = Packet(an: 1)
        let q = p.question("_matrix-fed._tcp.example.com", type: DNSRecordType.srv)
        let s = p.rrHeader(nameAt: q, type: DNSRecordType.srv, ttl: 60)
        p.u16(0); p.u16(0); p.u16(0); p.bytes.append(0)
        p.endRData(s)
        let m = try DNSMessage(parsing: p.bytes)
        XCTAssertEqual(m.answers.first?.data, .srv(priority: 0, weight: 0, port: 0, target: "."))
    }

    func testCNAMEChainAndAddresses() throws {
        var p = Packet(an: 4)
        let q = p.question("alias.example.com", type: DNSRecordType.a)
        let mid = p.cname(at: q, to: "mid.example.com")
        let real = p.cname(at: mid, to: "real.example.com")
        var s = p.rrHeader(nameAt: real, type: DNSRecordType.a, ttl: 77)
        p.bytes += [127, 0, 0, 20]
        p.endRData(s)
        s = p.rrHeader(nameAt: real, type: DNSRecordType.a, ttl: 0x8000_0001)  // top bit set -> 0
        p.bytes += [127, 0, 0, 21]
        p.endRData(s)
        let m = try DNSMessage(parsing: p.bytes)
        let (rrs, chain) = m.records(ofType: DNSRecordType.a, for: "alias.example.com")
        XCTAssertEqual(chain, ["alias.example.com", "mid.example.com", "real.example.com"])
        XCTAssertEqual(rrs.map(\.ttl), [77, 0])
        XCTAssertEqual(rrs.first?.data, .address(IPAddress("127.0.0.20")!))
        // AAAA for the same name: nothing (NODATA at the canonical name)
        XCTAssertTrue(m.records(ofType: DNSRecordType.aaaa, for: "alias.example.com").records.isEmpty)
    }

    func testCNAMELoopStops() throws {
        var p = Packet(an: 2)
        let q = p.question("a.example.com", type: DNSRecordType.a)
        let b = p.cname(at: q, to: "b.example.com")
        let s = p.rrHeader(nameAt: b, type: DNSRecordType.cname, ttl: 30)
        p.pointer(q)
        p.endRData(s)
        let m = try DNSMessage(parsing: p.bytes)
        let (rrs, chain) = m.records(ofType: DNSRecordType.a, for: "a.example.com")
        XCTAssertTrue(rrs.isEmpty)
        XCTAssertLessThanOrEqual(chain.count, DNSMessage.maxCNAMEChain + 1)
    }

    func testAAAAAndNegativeTTLFromSOA() throws {
        var p = Packet(flags: 0x8183, an: 0, ns: 1)  // NXDOMAIN
        let q = p.question("nope.example.com", type: DNSRecordType.aaaa)
        let s = p.rrHeader(nameAt: q + 5, type: DNSRecordType.soa, ttl: 600)
        p.name("ns.example.com"); p.name("hostmaster.example.com")
        p.u32(1); p.u32(3600); p.u32(600); p.u32(86400); p.u32(60)
        p.endRData(s)
        let m = try DNSMessage(parsing: p.bytes)
        XCTAssertEqual(m.rcode, DNSRcode.nxDomain.rawValue)
        XCTAssertEqual(m.negativeTTL, 60)  // min(SOA TTL 600, MINIMUM 60)
        XCTAssertEqual(AresDNS.classify(status: 4, answer: p.bytes), .failure(.nxdomain(negativeTTL: 60)))

        var p2 = Packet(an: 1)
        let q2 = p2.question("v6.example.com", type: DNSRecordType.aaaa)
        let s2 = p2.rrHeader(nameAt: q2, type: DNSRecordType.aaaa, ttl: 45)
        p2.bytes += IPAddress("2001:db8::1")!.bytes
        p2.endRData(s2)
        let m2 = try DNSMessage(parsing: p2.bytes)
        XCTAssertEqual(m2.answers.first?.data, .address(IPAddress("2001:db8::1")!))
        XCTAssertEqual(m2.answers.first?.ttl, 45)
    }

    func testRcodeClassification() {
        for (rcode, expected) in [(UInt16(2), DNSError.servfail), (5, .refused), (4, .notImplemented), (1, .other("DNS rcode 1")),
                                   (6, .other("DNS rcode 6"))] {
            var p = Packet(flags: 0x8180 | rcode, an: 0)
            _ = p.question("x.example.com", type: DNSRecordType.a)
            XCTAssertEqual(AresDNS.classify(status: 0, answer: p.bytes), .failure(expected))
        }
        XCTAssertEqual(AresDNS.classify(status: 12, answer: nil), .failure(.timeout))  // ARES_ETIMEOUT
    }

    func testLabelWithDotIsEscaped() throws {
        var p = Packet(an: 1)
        let q = p.question("x.example.com", type: DNSRecordType.cname)
        let s = p.rrHeader(nameAt: q, type: DNSRecordType.cname, ttl: 1)
        p.bytes += [5] + Array("ev.il".utf8) + [3] + Array("com".utf8) + [0]
        p.endRData(s)
        let m = try DNSMessage(parsing: p.bytes)
        XCTAssertEqual(m.answers.first?.data, .cname("ev\\046il.com"))
    }

    // MARK: hostile

    func testCompressionPointerToItself() {
        var p = Packet(qd: 1, an: 0)
        p.pointer(12)  // the question name points at itself
        p.u16(1); p.u16(1)
        XCTAssertThrowsError(try DNSMessage(parsing: p.bytes)) { XCTAssertEqual($0 as? DNSParseError, .badPointer(at: 12)) }
    }

    func testCompressionLoopBetweenTwoNames() {
        // Name at 12: label "a" then pointer to 17; name at 17: pointer back to 12 -> loop.
        var p = Packet(qd: 2, an: 0)
        p.bytes += [1, UInt8(ascii: "a")]
        p.pointer(17)  // forward pointer
        p.u16(1)
        p.pointer(12)
        p.u16(1); p.u16(1)
        XCTAssertThrowsError(try DNSMessage(parsing: p.bytes))
    }

    func testPointerPastEnd() {
        var p = Packet(qd: 1, an: 0)
        p.pointer(0x3FFF)
        p.u16(1); p.u16(1)
        XCTAssertThrowsError(try DNSMessage(parsing: p.bytes))
    }

    func testLongPointerChainIsBounded() {
        // 200 names, each a label + pointer to the previous: a long (but acyclic) chain.
        var p = Packet(qd: 1, an: 0)
        var prev = p.name("x")
        for _ in 0..<200 {
            let at = p.bytes.count
            p.bytes += [1, UInt8(ascii: "y")]
            p.pointer(prev)
            prev = at
        }
        let q = p.bytes.count
        p.pointer(prev)
        p.u16(1); p.u16(1)
        p.bytes.replaceSubrange(4..<6, with: [0, 0])  // no question at the start...
        var reader = DNSReader(p.bytes)
        reader.pos = q
        XCTAssertThrowsError(try reader.readName())  // too long or too many jumps, never a hang
    }

    func testEveryTruncationFailsCleanly() {
        let full = srvPacket()
        XCTAssertNoThrow(try DNSMessage(parsing: full))
        for n in 0..<full.count {
            XCTAssertThrowsError(try DNSMessage(parsing: Array(full[0..<n])), "prefix \(n)")
        }
    }

    func testHugeCountsWithTinyPacket() {
        var p = Packet(qd: 0, an: 0xFFFF, ns: 0xFFFF)
        p.bytes += [0, 0, 1]
        XCTAssertThrowsError(try DNSMessage(parsing: p.bytes))
    }

    func testRDLengthMismatch() {
        var p = Packet(an: 1)
        let q = p.question("x.example.com", type: DNSRecordType.a)
        let s = p.rrHeader(nameAt: q, type: DNSRecordType.a, ttl: 1)
        p.bytes += [1, 2, 3, 4, 5]  // 5 bytes for an A record
        p.endRData(s)
        XCTAssertThrowsError(try DNSMessage(parsing: p.bytes))
        XCTAssertEqual(AresDNS.classify(status: 0, answer: p.bytes).isMalformed, true)
    }

    func testRandomBytesNeverCrash() {
        var rng = SystemRandomNumberGenerator()
        let base = srvPacket()
        for i in 0..<20_000 {
            var bytes: [UInt8]
            if i % 2 == 0 {
                bytes = (0..<Int.random(in: 0..<300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                bytes = base
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            _ = try? DNSMessage(parsing: bytes)
        }
    }
}

private extension Result where Failure == DNSError {
    var isMalformed: Bool {
        if case .failure(.other(let s)) = self { return s.hasPrefix("malformed") }
        return false
    }
}
