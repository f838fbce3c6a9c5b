import MXCore

/// The Matrix spec's canonical JSON ("Signing JSON"): no insignificant whitespace, keys sorted by
/// Unicode code point, UTF-8 without needless escapes, integers only in [-(2^53)+1, 2^53-1].
/// Signatures cover these bytes, so this is what a signature is checked against.
extension JSONValue {
    public struct NotCanonical: Error, Sendable, CustomStringConvertible {
        public let reason: String
        public var description: String { "cannot be canonical JSON: \(reason)" }
    }

    static let canonicalIntegers: ClosedRange<Int64> = -(1 << 53) + 1 ... (1 << 53) - 1

    /// The canonical bytes; refuses what canonical JSON cannot hold (fractions, huge integers).
    public func canonicalBytes() throws(NotCanonical) -> [UInt8] {
        var out: [UInt8] = []
        try write(into: &out, strict: true)
        return out
    }

    /// Compact sorted text for reports: like `canonicalBytes`, with fractions written as they are.
    public var text: String {
        var out: [UInt8] = []
        try? write(into: &out, strict: false)
        return String(decoding: out, as: UTF8.self)
    }

    private func write(into out: inout [UInt8], strict: Bool) throws(NotCanonical) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .integer(let v):
            if strict && !Self.canonicalIntegers.contains(v) { throw NotCanonical(reason: "integer \(v) is out of range") }
            out += Array(String(v).utf8)
        case .fraction(let d):
            if strict { throw NotCanonical(reason: "number \(d) is not an integer") }
            out += Array((d.isFinite ? "\(d)" : "null").utf8)
        case .string(let s): Self.writeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (n, item) in items.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                try item.write(into: &out, strict: strict)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            let keys = members.keys.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) { $0.value < $1.value } }
            for (n, key) in keys.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                try members[key]!.write(into: &out, strict: strict)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Only `"`, `\` and control characters are escaped, with the short forms where JSON has them.
    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        for byte in s.utf8 {
            switch byte {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x08: out += [0x5C, UInt8(ascii: "b")]
            case 0x0C: out += [0x5C, UInt8(ascii: "f")]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0x0D: out += [0x5C, UInt8(ascii: "r")]
            case 0x09: out += [0x5C, UInt8(ascii: "t")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: out.append(byte)
            }
        }
        out.append(0x22)
    }
}
