/// Little-endian bytes for the cache record: fixed-width integers and doubles, LEB128 counts and
/// lengths, length-prefixed UTF-8 strings. No Foundation, no reflection.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    mutating func u8(_ v: UInt8) { bytes.append(v) }

    mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
    }

    mutating func u32(_ v: UInt32) {
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) }
    }

    mutating func f64(_ v: Double) {
        let bits = v.bitPattern
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
    }

    mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }

    /// LEB128: 7 bits a byte, low bits first; one byte below 128.
    mutating func varint(_ v: Int) {
        var rest = UInt64(clamping: max(v, 0))
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    mutating func string(_ s: String) {
        varint(s.utf8.count)
        bytes.append(contentsOf: s.utf8)
    }

    mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }

    /// A presence byte, then the value when there is one.
    mutating func optional<T>(_ v: T?, _ write: (inout ByteWriter, T) -> Void) {
        guard let v else { return u8(0) }
        u8(1)
        write(&self, v)
    }
}

/// Why a cache record could not be read. Decoding never traps: every read is bounds-checked.
public enum CacheRecordError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The record ends before `field` does.
    case truncated(field: String)
    /// A layout this build does not read.
    case unknownVersion(UInt8)
    /// A tag, enum value or length that no writer produces.
    case invalid(field: String)
    /// Bytes left after the last field.
    case trailingBytes(Int)
    /// The bytes do not match their CRC-32C: damaged after they were written.
    case checksumMismatch

    public var description: String {
        switch self {
        case .truncated(let f): return "cache record truncated in \(f)"
        case .unknownVersion(let v): return "cache record layout \(v) is not \(CacheRecord.version)"
        case .invalid(let f): return "cache record has an invalid \(f)"
        case .trailingBytes(let n): return "cache record has \(n) bytes after its last field"
        case .checksumMismatch: return "cache record does not match its checksum"
        }
    }
}

/// Reads what `ByteWriter` wrote, from a buffer it does not own (an LMDB value is read in place).
struct ByteReader {
    let buffer: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    var remaining: Int { buffer.count - offset }

    mutating func take(_ n: Int, _ field: String) throws(CacheRecordError) -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else { throw .truncated(field: field) }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + n])
    }

    mutating func u8(_ field: String) throws(CacheRecordError) -> UInt8 { try take(1, field)[0] }

    mutating func u16(_ field: String) throws(CacheRecordError) -> UInt16 {
        let b = try take(2, field)
        return UInt16(b[0]) | UInt16(b[1]) << 8
    }

    mutating func u32(_ field: String) throws(CacheRecordError) -> UInt32 {
        let b = try take(4, field)
        var v: UInt32 = 0
        for i in 0..<4 { v |= UInt32(b[i]) << (8 * UInt32(i)) }
        return v
    }

    mutating func f64(_ field: String) throws(CacheRecordError) -> Double {
        let b = try take(8, field)
        var bits: UInt64 = 0
        for i in 0..<8 { bits |= UInt64(b[i]) << (8 * UInt64(i)) }
        return Double(bitPattern: bits)
    }

    mutating func bool(_ field: String) throws(CacheRecordError) -> Bool {
        switch try u8(field) {
        case 0: return false
        case 1: return true
        default: throw .invalid(field: field)
        }
    }

    /// At most 9 bytes (63 bits), so no shift overflows and no value exceeds `Int.max`.
    mutating func varint(_ field: String) throws(CacheRecordError) -> Int {
        var value: UInt64 = 0
        for i in 0..<9 {
            let byte = try u8(field)
            value |= UInt64(byte & 0x7f) << (7 * UInt64(i))
            if byte & 0x80 == 0 { return Int(value) }
        }
        throw .invalid(field: field)
    }

    /// A count of items that take at least one byte each: never more than the bytes left, so a
    /// garbage count cannot make the caller reserve memory.
    mutating func count(_ field: String) throws(CacheRecordError) -> Int {
        let n = try varint(field)
        guard n <= remaining else { throw .truncated(field: field) }
        return n
    }

    mutating func string(_ field: String) throws(CacheRecordError) -> String {
        let n = try varint(field)
        let b = try take(n, field)
        guard let s = String(validating: b, as: UTF8.self) else { throw .invalid(field: field) }
        return s
    }

    mutating func optional<T>(_ field: String, _ read: (inout ByteReader) throws(CacheRecordError) -> T)
        throws(CacheRecordError) -> T? {
        guard try bool(field) else { return nil }
        return try read(&self)
    }
}
