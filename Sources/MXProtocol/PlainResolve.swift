#if canImport(Glibc)
import Glibc
#endif

/// The hot path's common line, `resolve NAME` or `resolve NAME id=ID`, in plain visible ASCII with
/// no escapes, read in one pass without allocating: its name and id are slices of the line.
/// Anything else is nil and goes through `Request.parse`, which reads these lines the same way (the
/// vectors check both).
public struct PlainResolve {
    public var name: ArraySlice<UInt8>
    /// 1 to 64 bytes of `[A-Za-z0-9._-]` (so it needs no escaping in the answer).
    public var id: ArraySlice<UInt8>?

    static let prefix: [UInt8] = Array("resolve ".utf8)

    /// `line` without its LF; a trailing CR is dropped here.
    public init?(_ line: ArraySlice<UInt8>) {
        guard let (nameEnd, idStart, end) = line.withUnsafeBufferPointer(Self.scan) else { return nil }
        let base = line.startIndex
        name = line[(base + Self.prefix.count)..<(base + nameEnd)]
        id = idStart.map { line[(base + $0)..<(base + end)] }
    }

    /// One pass over the line: where the name ends, where the id's value starts (nil without one)
    /// and where the line ends (before a CR); nil when the line is not plain.
    static func scan(_ b: UnsafeBufferPointer<UInt8>) -> (nameEnd: Int, idStart: Int?, end: Int)? {
        var end = b.count
        if end > 0 && b[end - 1] == 0x0D { end -= 1 }
        let p = prefix.count
        guard end > p, prefix.withUnsafeBufferPointer({ memcmp($0.baseAddress!, b.baseAddress!, p) == 0 }) else { return nil }
        var i = p
        while i < end && b[i] != 0x20 {
            let c = b[i]
            // Visible ASCII except "%" (an escape) and "=" (an option, not a name).
            guard c > 0x20 && c < 0x7F && c != 0x25 && c != 0x3D else { return nil }
            i += 1
        }
        let nameEnd = i
        guard nameEnd > p else { return nil }
        guard nameEnd < end else { return (nameEnd, nil, end) }
        // " id=" and 1 to 64 bytes of [A-Za-z0-9._-]
        let idStart = nameEnd + 4
        guard end > idStart, end - idStart <= 64, b[nameEnd + 1] == 0x69, b[nameEnd + 2] == 0x64, b[nameEnd + 3] == 0x3D else { return nil }
        for k in idStart..<end where !Wire.isIDByte(b[k]) { return nil }
        return (nameEnd, idStart, end)
    }

    public var request: Request {
        Request(.resolve, [String(decoding: name, as: UTF8.self)], id: id.map { String(decoding: $0, as: UTF8.self) })
    }
}
