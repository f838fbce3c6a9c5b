import MXCore
import MXProtocol
import MXRender

/// The text answer to `resolve NAME [id=ID]` while its cache entry is plainly fresh (no refresh
/// due, nothing stale), rendered once per cached answer: a hit then only adds its id and `ttl`.
/// Byte for byte what `Render.resolveReply` writes for the same reply (`HitTextTests`).
final class HitText: Sendable {
    /// ` name=… step=… source=cache ttl=`
    let head: [UInt8]
    /// ` host=… tls_name=… sni= target=…` (what `Reply.renderedFields` carries on the general path).
    let fields: [UInt8]
    let expiresAt: Double
    /// `CacheRules.plainlyFreshUntil`: at or after it a hit goes through `CacheRules.serving`.
    let freshUntil: Double

    /// Nil when the entry is never plainly fresh, or when its targets are reordered per hit (SRV weights).
    init?(name: String, entry: CacheEntry) {
        guard let until = CacheRules.plainlyFreshUntil(entry), let answer = entry.answer,
              let fields = AnswerRender.fixedAnswerFields(answer) else { return nil }
        var b = ResponseLine.Builder("", id: nil)
        b.field("name", name)
        b.field("step", answer.step.rawValue)
        b.field("source", ResolutionService.Source.cache.rawValue)
        // Kept as long as the entry: exact-size copies, not the builder's 256-byte reservation
        // (two of those were ~600 bytes per cached name, as much as the entry itself).
        head = Self.exactCopy(b.bytes + Self.ttlKey)
        self.fields = Self.exactCopy(fields)
        expiresAt = entry.expiresAt
        freshUntil = until
    }

    /// A copy whose buffer is its size (`Array(whole[...])` would share the original's buffer).
    static func exactCopy(_ bytes: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: bytes.count) { buffer, count in
            count = buffer.initialize(fromContentsOf: bytes)
        }
    }

    static let ok: [UInt8] = Array("ok".utf8)
    static let idKey: [UInt8] = Array(" id=".utf8)
    static let ttlKey: [UInt8] = Array(" ttl=".utf8)

    /// Appends the answer line; `id` is a valid request id, which never needs escaping. Assembled
    /// on the stack and appended once.
    func write(id: ArraySlice<UInt8>?, now: Double, into out: inout [UInt8]) {
        let idBytes = id.map { Self.idKey.count + $0.count } ?? 0
        let capacity = Self.ok.count + idBytes + head.count + 20 + fields.count + 1
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { buf in
            var n = 0
            func put(_ bytes: UnsafeBufferPointer<UInt8>) {
                UnsafeMutableRawPointer(buf.baseAddress! + n).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                n += bytes.count
            }
            Self.ok.withUnsafeBufferPointer(put)
            if let id {
                Self.idKey.withUnsafeBufferPointer(put)
                id.withUnsafeBufferPointer(put)
            }
            head.withUnsafeBufferPointer(put)
            n += Self.writeDecimal(max(0, Int(expiresAt - now)), at: buf.baseAddress! + n)
            fields.withUnsafeBufferPointer(put)
            buf[n] = 0x0A
            out.append(contentsOf: UnsafeBufferPointer(rebasing: buf[0...n]))
        }
    }

    /// Writes a non-negative integer in decimal (at most 20 digits); returns how many bytes.
    static func writeDecimal(_ value: Int, at p: UnsafeMutablePointer<UInt8>) -> Int {
        var count = 1
        var rest = UInt64(value) / 10
        while rest > 0 { count += 1; rest /= 10 }
        var v = UInt64(value)
        for i in stride(from: count - 1, through: 0, by: -1) {
            p[i] = 0x30 + UInt8(v % 10)
            v /= 10
        }
        return count
    }
}
