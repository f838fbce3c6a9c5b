/// The constants and the %-escaping of the line protocol (proto/PROTOCOL.md).
public enum Wire {
    public static let protocolVersion = 1
    /// Longest request line, without its LF (and the CR before it, if any).
    public static let maxLineBytes = 4096
    /// Requests a connection may have in flight (§2 "In-flight limit"), announced by `hello`.
    public static let maxInFlight = 256
    /// Most entries one `show-cache` lists for a peer that is not an admin (§5.2); more by paging.
    public static let maxListedEntries = 1000
    public static let serverVersion = "0.1.0"

    /// Escapes a response value: bytes outside 0x21–0x7E and `%` become %XX (upper-case hex).
    public static func escape(_ s: String, into out: inout [UInt8]) {
        escape(s, alsoEscaping: nil, into: &out)
    }

    public static func escape(_ s: String) -> String {
        var out: [UInt8] = []
        escape(s, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Escapes a request argument: as a value, and `=` too, so an argument is never read as an option
    /// (`flush-caches id%3Dx` names the server `id=x`).
    public static func escapeArgument(_ s: String) -> String {
        var out: [UInt8] = []
        escape(s, alsoEscaping: 0x3D, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private static func escape(_ s: String, alsoEscaping extra: UInt8?, into out: inout [UInt8]) {
        for b in s.utf8 {
            if b > 0x20 && b < 0x7F && b != 0x25 && b != extra {
                out.append(b)
            } else {
                out.append(0x25); out.append(upperHexDigit(b >> 4)); out.append(upperHexDigit(b & 0xF))
            }
        }
    }

    /// 0...15 as an upper-case hex digit (computed: a table would be an array built per call).
    static func upperHexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x41 + v - 10 }

    /// Decodes %XX escapes (either hex case); nil for a bad escape or bytes that are not UTF-8.
    public static func percentDecode(_ s: Substring) -> String? {
        guard s.utf8.contains(0x25) else { return String(s) }
        var out: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == 0x25 {
                guard let h = it.popFirst().flatMap(hexValue), let l = it.popFirst().flatMap(hexValue) else { return nil }
                out.append(h << 4 | l)
            } else {
                out.append(b)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x41...0x46: return b - 0x41 + 10
        case 0x61...0x66: return b - 0x61 + 10
        default: return nil
        }
    }

    /// A request id: 1 to 64 characters of `[A-Za-z0-9._-]`.
    public static func isValidID(_ s: String) -> Bool { isValidID(s.utf8) }

    public static func isValidID<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> Bool {
        (1...64).contains(bytes.count) && bytes.allSatisfy(isIDByte)
    }

    static func isIDByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x5F || b == 0x2D
    }
}
