/// A `CacheEntry` as stored: a compact, versioned binary value under the server name as key. Each
/// fact is written once: the key is the name (not repeated inside), the answer's well-known is the
/// entry's, a success's last good answer is the answer itself, the TLS name and SNI are tags when
/// they repeat the Host header; traces are not kept.
///
/// Layout 4, little-endian. A fixed header the store reads without decoding the rest:
///
///     [0] layout (4)   [1] flags (bit 0: failure)
///     [2..9] lastUsed f64   [10..17] expiresAt f64   [18..25] fetchedAt f64
///
/// then: consecutive failures (LEB128); the answer or the failure; the well-known's outcome,
/// expiry, fetch time and failure count; the kept delegation and its expiry; the last good answer;
/// last, the CRC-32C of every byte
/// before it (u32). Strings are LEB128 length + UTF-8, optionals a presence byte. Decoding checks
/// the checksum first, then every length against the bytes left, and throws `CacheRecordError` on
/// anything a writer does not produce.
public enum CacheRecord {
    public static let version: UInt8 = 4
    static let headerSize = 26
    static let checksumSize = 4
    static let lastUsedOffset = 2
    static let expiresAtOffset = 10

    /// The header fields eviction and flushes need, read without decoding the record.
    public struct Header: Sendable, Equatable {
        public var isFailure: Bool
        public var lastUsed: Double
        public var expiresAt: Double
    }

    public static func encode(_ entry: CacheEntry, lastUsed: Double) -> [UInt8] {
        var w = ByteWriter()
        w.u8(version)
        w.u8(entry.isFailure ? 1 : 0)
        w.f64(lastUsed)
        w.f64(entry.expiresAt)
        w.f64(entry.fetchedAt)
        w.varint(entry.consecutiveFailures)
        switch entry.outcome {
        case .answer(let a): writeResolution(a, key: entry.serverName, entryWellKnown: entry.wellKnown, &w)
        case .failure(let f): writeFailure(f, entryWellKnown: entry.wellKnown, &w)
        }
        w.optional(entry.wellKnown) { w, wk in writeWellKnown(wk, &w) }
        w.optional(entry.wellKnownExpiresAt) { $0.f64($1) }
        w.optional(entry.wellKnownFetchedAt) { $0.f64($1) }
        w.varint(entry.wellKnownFailures)
        if let delegation = entry.delegation {
            if delegation == entry.wellKnown, entry.delegationExpiresAt == entry.wellKnownExpiresAt {
                w.u8(Delegation.theWellKnown.rawValue)
            } else {
                w.u8(Delegation.own.rawValue)
                writeWellKnown(delegation, &w)
                w.optional(entry.delegationExpiresAt) { $0.f64($1) }
            }
        } else {
            w.u8(Delegation.none.rawValue)
        }
        if let good = entry.lastGood {
            if good == entry.answer, entry.lastGoodExpiresAt == entry.expiresAt {
                w.u8(LastGood.theAnswer.rawValue)
            } else {
                w.u8(LastGood.own.rawValue)
                writeResolution(good, key: entry.serverName, entryWellKnown: entry.wellKnown, &w)
                w.optional(entry.lastGoodExpiresAt) { $0.f64($1) }
            }
        } else {
            w.u8(LastGood.none.rawValue)
        }
        return sealed(w.bytes)
    }

    /// `body` with its checksum appended.
    static func sealed(_ body: [UInt8]) -> [UInt8] {
        var w = ByteWriter(capacity: body.count + checksumSize)
        w.raw(body)
        w.u32(CRC32C.checksum(body))
        return w.bytes
    }

    /// The bytes before the checksum, when the layout is this one and the checksum matches.
    static func verifiedBody(_ bytes: UnsafeRawBufferPointer) throws(CacheRecordError) -> UnsafeRawBufferPointer {
        guard let layout = bytes.first else { throw .truncated(field: "layout") }
        guard layout == version else { throw .unknownVersion(layout) }
        guard bytes.count >= headerSize + checksumSize else { throw .truncated(field: "header") }
        let body = UnsafeRawBufferPointer(rebasing: bytes[..<(bytes.count - checksumSize)])
        var r = ByteReader(UnsafeRawBufferPointer(rebasing: bytes[body.count...]))
        guard try r.u32("checksum") == CRC32C.checksum(body) else { throw .checksumMismatch }
        return body
    }

    /// Checks the layout and checksum only (what a verification pass needs), without decoding.
    public static func verify(_ bytes: UnsafeRawBufferPointer) throws(CacheRecordError) {
        _ = try verifiedBody(bytes)
    }

    public static func decode(key: String, _ bytes: UnsafeRawBufferPointer) throws(CacheRecordError) -> CacheEntry {
        try decodeBody(key: key, try verifiedBody(bytes))
    }

    /// Decodes the bytes before the checksum.
    static func decodeBody(key: String, _ bytes: UnsafeRawBufferPointer) throws(CacheRecordError) -> CacheEntry {
        var r = ByteReader(bytes)
        let layout = try r.u8("layout")
        guard layout == version else { throw .unknownVersion(layout) }
        let flags = try r.u8("flags")
        guard flags & ~1 == 0 else { throw .invalid(field: "flags") }
        _ = try r.f64("lastUsed")
        let expiresAt = try r.f64("expiresAt")
        let fetchedAt = try r.f64("fetchedAt")
        let consecutiveFailures = try r.varint("consecutiveFailures")
        // The outcome refers to the entry's well-known, which follows it: read it as a reference first.
        let outcome: PendingOutcome = flags & 1 == 0
            ? .answer(try readResolution(key: key, &r))
            : .failure(try readFailure(&r))
        let wellKnown = try r.optional("wellKnown") { (r: inout ByteReader) throws(CacheRecordError) in try readWellKnown(&r) }
        let wellKnownExpiresAt = try r.optional("wellKnownExpiresAt") { (r: inout ByteReader) throws(CacheRecordError) in try r.f64("wellKnownExpiresAt") }
        let wellKnownFetchedAt = try r.optional("wellKnownFetchedAt") { (r: inout ByteReader) throws(CacheRecordError) in try r.f64("wellKnownFetchedAt") }
        let wellKnownFailures = try r.varint("wellKnownFailures")
        var delegation: WellKnownOutcome?
        var delegationExpiresAt: Double?
        switch Delegation(rawValue: try r.u8("delegation")) {
        case .none?: break
        case .theWellKnown?:
            guard let wellKnown else { throw .invalid(field: "delegation") }
            delegation = wellKnown
            delegationExpiresAt = wellKnownExpiresAt
        case .own?:
            delegation = try readWellKnown(&r)
            delegationExpiresAt = try r.optional("delegationExpiresAt") { (r: inout ByteReader) throws(CacheRecordError) in try r.f64("delegationExpiresAt") }
        case nil: throw .invalid(field: "delegation")
        }
        var entry = CacheEntry(serverName: key, outcome: try outcome.resolved(wellKnown), fetchedAt: fetchedAt, expiresAt: expiresAt,
                               wellKnown: wellKnown, wellKnownExpiresAt: wellKnownExpiresAt, wellKnownFetchedAt: wellKnownFetchedAt,
                               wellKnownFailures: wellKnownFailures, delegation: delegation, delegationExpiresAt: delegationExpiresAt,
                               consecutiveFailures: consecutiveFailures)
        switch LastGood(rawValue: try r.u8("lastGood")) {
        case .none?: break
        case .theAnswer?:
            guard let answer = entry.answer else { throw .invalid(field: "lastGood") }
            entry.lastGood = answer
            entry.lastGoodExpiresAt = expiresAt
        case .own?:
            entry.lastGood = try readResolution(key: key, &r).resolved(wellKnown)
            entry.lastGoodExpiresAt = try r.optional("lastGoodExpiresAt") { (r: inout ByteReader) throws(CacheRecordError) in try r.f64("lastGoodExpiresAt") }
        case nil: throw .invalid(field: "lastGood")
        }
        guard r.remaining == 0 else { throw .trailingBytes(r.remaining) }
        return entry
    }

    public static func decode(key: String, _ bytes: [UInt8]) throws(CacheRecordError) -> CacheEntry {
        // (`withUnsafeBytes` rethrows untyped errors: carry the typed one out in a Result)
        try bytes.withUnsafeBytes { raw in Result { () throws(CacheRecordError) in try decode(key: key, raw) } }.get()
    }

    /// The fixed header; nil when `bytes` is not a record of this layout or its checksum does not match.
    public static func header(_ bytes: UnsafeRawBufferPointer) -> Header? {
        guard let body = try? verifiedBody(bytes), bytes[1] & ~1 == 0 else { return nil }
        var r = ByteReader(body)
        _ = try? r.take(lastUsedOffset, "header")
        guard let lastUsed = try? r.f64("lastUsed"), let expiresAt = try? r.f64("expiresAt") else { return nil }
        return Header(isFailure: bytes[1] & 1 != 0, lastUsed: lastUsed, expiresAt: expiresAt)
    }

    /// `bytes` with its last-use time replaced and the checksum renewed (the store raises it in
    /// place, without decoding); nil when `bytes` is not a sound record of this layout.
    public static func settingLastUsed(_ lastUsed: Double, in bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        guard header(bytes) != nil else { return nil }
        var w = ByteWriter(capacity: 8)
        w.f64(lastUsed)
        var body = Array(bytes.dropLast(checksumSize))
        body.replaceSubrange(lastUsedOffset..<lastUsedOffset + 8, with: w.bytes)
        return sealed(body)
    }

    // MARK: Parts

    enum LastGood: UInt8 { case none = 0, theAnswer = 1, own = 2 }
    /// The kept delegation is almost always the entry's own well-known with the same expiry.
    enum Delegation: UInt8 { case none = 0, theWellKnown = 1, own = 2 }
    /// How an answer or failure refers to a well-known outcome.
    enum WellKnownRef: UInt8 { case none = 0, theEntrys = 1, own = 2 }

    /// A resolution or failure read before the entry's well-known it may refer to.
    enum PendingOutcome {
        case answer(PendingResolution)
        case failure(PendingFailure)

        func resolved(_ entryWellKnown: WellKnownOutcome?) throws(CacheRecordError) -> CacheEntry.Outcome {
            switch self {
            case .answer(let a): return .answer(try a.resolved(entryWellKnown))
            case .failure(let f):
                var failure = f.failure
                failure.wellKnown = try f.wellKnown.resolved(entryWellKnown)
                return .failure(failure)
            }
        }
    }

    enum PendingWellKnown {
        case none, theEntrys, own(WellKnownOutcome)

        func resolved(_ entryWellKnown: WellKnownOutcome?) throws(CacheRecordError) -> WellKnownOutcome? {
            switch self {
            case .none: return nil
            case .own(let wk): return wk
            case .theEntrys:
                guard let entryWellKnown else { throw .invalid(field: "well-known reference") }
                return entryWellKnown
            }
        }
    }

    struct PendingResolution {
        var resolution: Resolution
        var wellKnown: PendingWellKnown

        func resolved(_ entryWellKnown: WellKnownOutcome?) throws(CacheRecordError) -> Resolution {
            var r = resolution
            r.wellKnown = try wellKnown.resolved(entryWellKnown)
            return r
        }
    }

    struct PendingFailure {
        var failure: ResolutionFailure
        var wellKnown: PendingWellKnown
    }

    /// A string that often equals one written just before it.
    enum Repeat: UInt8 { case none = 0, same = 1, own = 2 }

    static func writeRepeated(_ s: String, of previous: String, _ w: inout ByteWriter) {
        if s == previous { return w.u8(Repeat.same.rawValue) }
        w.u8(Repeat.own.rawValue)
        w.string(s)
    }

    static func readRepeated(of previous: String, _ field: String, _ r: inout ByteReader) throws(CacheRecordError) -> String? {
        switch Repeat(rawValue: try r.u8(field)) {
        case .none?: return nil
        case .same?: return previous
        case .own?: return try r.string(field)
        case nil: throw .invalid(field: field)
        }
    }

    static func writeWellKnownRef(_ wk: WellKnownOutcome?, entryWellKnown: WellKnownOutcome?, _ w: inout ByteWriter) {
        guard let wk else { return w.u8(WellKnownRef.none.rawValue) }
        if wk == entryWellKnown { return w.u8(WellKnownRef.theEntrys.rawValue) }
        w.u8(WellKnownRef.own.rawValue)
        writeWellKnown(wk, &w)
    }

    static func readWellKnownRef(_ r: inout ByteReader) throws(CacheRecordError) -> PendingWellKnown {
        switch WellKnownRef(rawValue: try r.u8("well-known reference")) {
        case .none?: return .none
        case .theEntrys?: return .theEntrys
        case .own?: return .own(try readWellKnown(&r))
        case nil: throw .invalid(field: "well-known reference")
        }
    }

    static func writeWellKnown(_ wk: WellKnownOutcome, _ w: inout ByteWriter) {
        switch wk.result {
        case .delegated(let server):
            w.u8(0)
            w.string(server)
        case .failed(let code, let message, let temporary):
            w.u8(1)
            w.string(code)
            w.string(message)
            w.bool(temporary)
        }
        w.optional(wk.headerLifetime) { $0.f64($1) }
    }

    static func readWellKnown(_ r: inout ByteReader) throws(CacheRecordError) -> WellKnownOutcome {
        let result: WellKnownResult
        switch try r.u8("well-known result") {
        case 0: result = .delegated(try r.string("m.server"))
        case 1: result = .failed(code: try r.string("well-known code"), message: try r.string("well-known message"),
                                 temporary: try r.bool("well-known temporary"))
        default: throw .invalid(field: "well-known result")
        }
        let lifetime = try r.optional("headerLifetime") { (r: inout ByteReader) throws(CacheRecordError) in try r.f64("headerLifetime") }
        return WellKnownOutcome(result: result, headerLifetime: lifetime)
    }

    static func writeResolution(_ a: Resolution, key: String, entryWellKnown: WellKnownOutcome?, _ w: inout ByteWriter) {
        w.optional(a.serverName == key ? nil : a.serverName) { $0.string($1) }
        w.string(a.step.rawValue)
        w.varint(a.targets.count)
        for t in a.targets {
            w.string(t.host)
            w.u16(t.port)
            w.varint(t.addresses.count)
            for ip in t.addresses {
                w.u8(UInt8(ip.bytes.count))
                w.raw(ip.bytes)
            }
            w.optional(t.srvRank?.priority) { $0.u16($1) }
            w.optional(t.srvRank?.weight) { $0.u16($1) }
        }
        w.string(a.hostHeader)
        // The TLS name is usually the Host header, and the SNI the TLS name: a tag says so instead.
        writeRepeated(a.tlsServerName, of: a.hostHeader, &w)
        if let sni = a.sni { writeRepeated(sni, of: a.tlsServerName, &w) } else { w.u8(Repeat.none.rawValue) }
        writeWellKnownRef(a.wellKnown, entryWellKnown: entryWellKnown, &w)
        w.optional(a.srvTTL) { $0.u32($1) }
        w.optional(a.addressTTL) { $0.u32($1) }
    }

    /// A target's SRV priority and weight, each behind its own presence tag: written together, so
    /// one without the other is damage.
    static func readSRVRank(_ r: inout ByteReader) throws(CacheRecordError) -> SRVRank? {
        let priority = try r.optional("srvPriority") { (r: inout ByteReader) throws(CacheRecordError) in try r.u16("srvPriority") }
        let weight = try r.optional("srvWeight") { (r: inout ByteReader) throws(CacheRecordError) in try r.u16("srvWeight") }
        switch (priority, weight) {
        case let (priority?, weight?): return SRVRank(priority: priority, weight: weight)
        case (nil, nil): return nil
        default: throw .invalid(field: "srvWeight")
        }
    }

    static func readResolution(key: String, _ r: inout ByteReader) throws(CacheRecordError) -> PendingResolution {
        let serverName = try r.optional("serverName") { (r: inout ByteReader) throws(CacheRecordError) in try r.string("serverName") } ?? key
        guard let step = ResolutionStep(rawValue: try r.string("step")) else { throw .invalid(field: "step") }
        var targets: [Target] = []
        for _ in 0..<(try r.count("targets")) {
            let host = try r.string("target host")
            let port = try r.u16("target port")
            var addresses: [IPAddress] = []
            for _ in 0..<(try r.count("addresses")) {
                let n = try r.u8("address length")
                guard n == 4 || n == 16, let ip = IPAddress(bytes: Array(try r.take(Int(n), "address"))) else {
                    throw .invalid(field: "address")
                }
                addresses.append(ip)
            }
            targets.append(Target(host: host, port: port, addresses: addresses, srvRank: try readSRVRank(&r)))
        }
        let hostHeader = try r.string("hostHeader")
        guard let tlsServerName = try readRepeated(of: hostHeader, "tlsServerName", &r) else { throw .invalid(field: "tlsServerName") }
        let sni = try readRepeated(of: tlsServerName, "sni", &r)
        let wellKnown = try readWellKnownRef(&r)
        let srvTTL = try r.optional("srvTTL") { (r: inout ByteReader) throws(CacheRecordError) in try r.u32("srvTTL") }
        let addressTTL = try r.optional("addressTTL") { (r: inout ByteReader) throws(CacheRecordError) in try r.u32("addressTTL") }
        return PendingResolution(
            resolution: Resolution(serverName: serverName, step: step, targets: targets, hostHeader: hostHeader,
                                   tlsServerName: tlsServerName, sni: sni, wellKnown: nil, srvTTL: srvTTL,
                                   addressTTL: addressTTL, trace: []),
            wellKnown: wellKnown)
    }

    static func writeFailure(_ f: ResolutionFailure, entryWellKnown: WellKnownOutcome?, _ w: inout ByteWriter) {
        w.string(f.code.rawValue)
        w.string(f.message)
        w.optional(f.step) { $0.string($1.rawValue) }
        writeWellKnownRef(f.wellKnown, entryWellKnown: entryWellKnown, &w)
        w.optional(f.negativeTTL) { $0.u32($1) }
    }

    static func readFailure(_ r: inout ByteReader) throws(CacheRecordError) -> PendingFailure {
        guard let code = FailureCode(rawValue: try r.string("failure code")) else { throw .invalid(field: "failure code") }
        let message = try r.string("failure message")
        let step = try r.optional("failure step") { (r: inout ByteReader) throws(CacheRecordError) -> ResolutionStep in
            guard let s = ResolutionStep(rawValue: try r.string("failure step")) else { throw .invalid(field: "failure step") }
            return s
        }
        let wellKnown = try readWellKnownRef(&r)
        let negativeTTL = try r.optional("negativeTTL") { (r: inout ByteReader) throws(CacheRecordError) in try r.u32("negativeTTL") }
        return PendingFailure(failure: ResolutionFailure(code: code, message: message, step: step, negativeTTL: negativeTTL),
                              wellKnown: wellKnown)
    }
}
