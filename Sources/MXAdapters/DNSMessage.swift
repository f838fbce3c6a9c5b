import MXCore

// A small, pure DNS message parser (RFC 1035) for the answers c-ares hands back raw.
// It reads the header, the question, the answer and the authority sections; the additional
// section is ignored. Hostile input never crashes or loops: every read is bounds-checked,
// compression pointers must point strictly backwards, jumps are bounded, names are capped at
// 255 octets, and record counts are capped by what the packet can possibly hold.

public enum DNSParseError: Error, Sendable, Hashable, CustomStringConvertible {
    case truncated(at: Int)
    case badPointer(at: Int)
    case tooManyJumps
    case nameTooLong
    case badLabelType(at: Int)
    case badRecordData(type: UInt16, at: Int)

    public var description: String {
        switch self {
        case .truncated(let at): return "DNS message truncated at offset \(at)"
        case .badPointer(let at): return "bad compression pointer at offset \(at)"
        case .tooManyJumps: return "too many compression pointers in one name"
        case .nameTooLong: return "name longer than 255 octets"
        case .badLabelType(let at): return "unsupported label type at offset \(at)"
        case .badRecordData(let type, let at): return "bad RDATA for type \(type) at offset \(at)"
        }
    }
}

public enum DNSRecordType {
    public static let a: UInt16 = 1
    public static let cname: UInt16 = 5
    public static let soa: UInt16 = 6
    public static let aaaa: UInt16 = 28
    public static let srv: UInt16 = 33
}

/// The response codes of RFC 1035 §4.1.1, numbered from 0 in this order; the later ones
/// (RFC 2136 and on) have no name here and count as other errors.
public enum DNSRcode: UInt8, Sendable {
    case noError = 0, formErr, servFail, nxDomain, notImp, refused
}

public enum DNSRecordData: Sendable, Hashable {
    case address(IPAddress)
    case cname(String)
    case srv(priority: UInt16, weight: UInt16, port: UInt16, target: String)
    case soa(mname: String, rname: String, serial: UInt32, refresh: UInt32, retry: UInt32, expire: UInt32, minimum: UInt32)
    case other([UInt8])
}

public struct DNSResourceRecord: Sendable, Hashable {
    /// Owner name in presentation form, without the trailing dot ("." for the root).
    public var name: String
    public var type: UInt16
    public var rclass: UInt16
    /// RFC 2181 §8: a TTL with the top bit set is read as 0.
    public var ttl: UInt32
    public var data: DNSRecordData
}

public struct DNSMessage: Sendable, Hashable {
    public var flags: UInt16
    public var answers: [DNSResourceRecord]
    public var authority: [DNSResourceRecord]

    public var rcode: UInt8 { UInt8(flags & 0x000F) }

    public static let maxNameLength = 255
    public static let maxPointerJumps = 64
    public static let maxCNAMEChain = 16

    public init(parsing bytes: [UInt8]) throws(DNSParseError) {
        var r = DNSReader(bytes)
        _ = try r.u16()  // id: c-ares has matched it to the query
        flags = try r.u16()
        let qd = Int(try r.u16()), an = Int(try r.u16()), ns = Int(try r.u16())
        _ = try r.u16()  // additional: not read
        // The question is c-ares's to check; it is only skipped (its name must still parse).
        for _ in 0..<qd {
            _ = try r.readName()
            _ = try r.u32()
        }
        // Each record needs at least 11 octets; a count the packet cannot hold fails below
        // anyway, but never reserve more than the bytes allow.
        answers = []
        answers.reserveCapacity(min(an, bytes.count / 11))
        for _ in 0..<an { answers.append(try r.record()) }
        authority = []
        for _ in 0..<ns { authority.append(try r.record()) }
    }

    /// The CNAME chain starting at `name`, as [name, target1, target2, ...] (empty when `name`
    /// has no CNAME), and the canonical name at its end. Stops at loops and after 16 links.
    public func cnameChain(from name: String) -> (chain: [String], canonical: String) {
        var current = name
        var chain: [String] = []
        var seen: Set<String> = [Self.fold(name)]
        for _ in 0..<Self.maxCNAMEChain {
            let key = Self.fold(current)
            guard let next = answers.first(where: { $0.type == DNSRecordType.cname && Self.fold($0.name) == key }),
                  case .cname(let target) = next.data else { break }
            if chain.isEmpty { chain.append(next.name) }
            chain.append(target)
            current = target
            if !seen.insert(Self.fold(target)).inserted { break }
        }
        return (chain, current)
    }

    /// Answer records of `type` owned by `name` or by the end of its CNAME chain.
    public func records(ofType type: UInt16, for name: String) -> (records: [DNSResourceRecord], cnameChain: [String]) {
        let (chain, canonical) = cnameChain(from: name)
        let key = Self.fold(canonical)
        let found = answers.filter { $0.type == type && Self.fold($0.name) == key }
        return (found, chain)
    }

    /// RFC 2308 §5: the negative-caching TTL is min(SOA TTL, SOA MINIMUM) of the authority SOA.
    public var negativeTTL: UInt32? {
        for rr in authority where rr.type == DNSRecordType.soa {
            if case .soa(_, _, _, _, _, _, let minimum) = rr.data { return min(rr.ttl, minimum) }
        }
        return nil
    }

    /// Case-folded comparison key (ASCII only, as DNS does), without a trailing dot.
    static func fold(_ name: String) -> String {
        var s = name.lowercased()
        if s.count > 1, s.hasSuffix(".") { s.removeLast() }
        return s
    }
}

struct DNSReader {
    let bytes: [UInt8]
    var pos = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func u8() throws(DNSParseError) -> UInt8 {
        guard pos < bytes.count else { throw .truncated(at: pos) }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func u16() throws(DNSParseError) -> UInt16 {
        guard pos + 2 <= bytes.count else { throw .truncated(at: pos) }
        defer { pos += 2 }
        return UInt16(bytes[pos]) << 8 | UInt16(bytes[pos + 1])
    }

    mutating func u32() throws(DNSParseError) -> UInt32 {
        guard pos + 4 <= bytes.count else { throw .truncated(at: pos) }
        defer { pos += 4 }
        return UInt32(bytes[pos]) << 24 | UInt32(bytes[pos + 1]) << 16 | UInt32(bytes[pos + 2]) << 8 | UInt32(bytes[pos + 3])
    }

    mutating func take(_ n: Int) throws(DNSParseError) -> [UInt8] {
        guard n >= 0, pos + n <= bytes.count else { throw .truncated(at: pos) }
        defer { pos += n }
        return Array(bytes[pos..<pos + n])
    }

    /// Reads a possibly compressed name at `pos` and leaves `pos` after its in-place part.
    mutating func readName() throws(DNSParseError) -> String {
        var labels: [String] = []
        var wireLength = 1  // the root octet
        var cursor = pos
        var resumeAt: Int? = nil
        var jumps = 0
        while true {
            guard cursor < bytes.count else { throw .truncated(at: cursor) }
            let len = Int(bytes[cursor])
            switch len & 0xC0 {
            case 0x00:
                if len == 0 {
                    pos = resumeAt ?? (cursor + 1)
                    return labels.isEmpty ? "." : labels.joined(separator: ".")
                }
                guard cursor + 1 + len <= bytes.count else { throw .truncated(at: cursor) }
                wireLength += len + 1
                guard wireLength <= DNSMessage.maxNameLength else { throw .nameTooLong }
                labels.append(Self.presentation(bytes[(cursor + 1)..<(cursor + 1 + len)]))
                cursor += 1 + len
            case 0xC0:
                guard cursor + 2 <= bytes.count else { throw .truncated(at: cursor) }
                let target = (len & 0x3F) << 8 | Int(bytes[cursor + 1])
                // Strictly backwards: a pointer can only refer to something already seen, which
                // rules out loops; the jump cap bounds the work regardless.
                guard target < cursor else { throw .badPointer(at: cursor) }
                jumps += 1
                guard jumps <= DNSMessage.maxPointerJumps else { throw .tooManyJumps }
                if resumeAt == nil { resumeAt = cursor + 2 }
                cursor = target
            default:
                throw .badLabelType(at: cursor)
            }
        }
    }

    /// Letters, digits, '-' and '_' as they are; anything else (including '.') as \DDD, so a
    /// label can never smuggle a dot or a control character into a host name.
    static func presentation(_ label: ArraySlice<UInt8>) -> String {
        var out = ""
        out.reserveCapacity(label.count)
        for b in label {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let d = String(b)
                out += "\\" + String(repeating: "0", count: 3 - d.count) + d
            }
        }
        return out
    }

    mutating func record() throws(DNSParseError) -> DNSResourceRecord {
        let name = try readName()
        let type = try u16()
        let rclass = try u16()
        let rawTTL = try u32()
        let rdlength = Int(try u16())
        let start = pos
        guard start + rdlength <= bytes.count else { throw .truncated(at: start) }
        let end = start + rdlength
        let data: DNSRecordData
        switch type {
        case DNSRecordType.a, DNSRecordType.aaaa:
            let want = type == DNSRecordType.a ? 4 : 16
            guard rdlength == want, let ip = IPAddress(bytes: try take(want)) else { throw .badRecordData(type: type, at: start) }
            data = .address(ip)
        case DNSRecordType.cname:
            data = .cname(try readName())
        case DNSRecordType.srv:
            guard rdlength >= 7 else { throw .badRecordData(type: type, at: start) }
            let priority = try u16(), weight = try u16(), port = try u16()
            data = .srv(priority: priority, weight: weight, port: port, target: try readName())
        case DNSRecordType.soa:
            let mname = try readName(), rname = try readName()
            data = .soa(mname: mname, rname: rname, serial: try u32(), refresh: try u32(), retry: try u32(),
                        expire: try u32(), minimum: try u32())
        default:
            data = .other(try take(rdlength))
        }
        // The RDATA must be exactly rdlength long (names inside it included).
        guard pos == end else { throw .badRecordData(type: type, at: start) }
        return DNSResourceRecord(name: name, type: type, rclass: rclass,
                                 ttl: rawTTL & 0x8000_0000 != 0 ? 0 : rawTTL, data: data)
    }
}
