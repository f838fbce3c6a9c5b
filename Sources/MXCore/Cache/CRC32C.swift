/// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78, as in iSCSI, ext4 and SCTP): the cache
/// record's checksum. It detects every error burst of up to 32 bits and all but 1 in 2^32 others,
/// so a damaged page is not read back as a plausible entry. Table-driven, one byte at a time:
/// records are a few hundred bytes.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { (i: UInt32) -> UInt32 in
        var c = i
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return ~c
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
}
