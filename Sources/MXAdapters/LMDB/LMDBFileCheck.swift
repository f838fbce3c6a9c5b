// What `data.mdb` claims about itself, read with pread from its two meta pages (the layout of
// LMDB 0.9's MDB_meta on a 64-bit build) and compared with the file's size. Never through a map: a
// file shorter than its meta pages claim is exactly what turns a mapped read into SIGBUS.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum LMDBFileCheck {
    enum Result: Equatable {
        /// No file, or an empty one (LMDB starts a new environment).
        case absent
        case sound(Meta)
        case damaged(String)
    }

    struct Meta: Equatable {
        var pageSize: Int
        /// The last page the newer meta page says is in use (pages 0...lastPage make up the file).
        var lastPage: Int
        var transaction: UInt64
        var fileSize: Int
    }

    // Offsets in a meta page: a 16-byte page header (pgno, pad, flags), then MDB_meta: magic,
    // version, address, mapsize, two MDB_db of 48 bytes (the free list's md_pad is the page
    // size; md_root is each one's last field), last page, transaction id.
    static let flagsOffset = 10
    static let magicOffset = 16
    static let versionOffset = 20
    static let pageSizeOffset = 40
    static let freeRootOffset = 80
    static let mainRootOffset = 128
    static let lastPageOffset = 136
    static let transactionOffset = 144
    static let metaBytes = 152
    static let magic: UInt32 = 0xBEEF_C0DE
    static let dataVersion: UInt32 = 1
    static let metaPageFlag: UInt16 = 0x08
    static let invalidPage = UInt64.max

    static func inspect(_ path: String) -> Result {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno == ENOENT ? .absent : .damaged("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .damaged("cannot stat \(path)") }
        let size = Int(st.st_size)
        if size == 0 { return .absent }
        guard let first = readMeta(fd, at: 0) else { return .damaged("\(size) bytes is shorter than LMDB's first meta page") }
        if let problem = first.problem(0) { return .damaged(problem) }
        let pageSize = Int(first.u32(pageSizeOffset))
        guard pageSize >= 512, pageSize <= 65536, pageSize & (pageSize - 1) == 0 else {
            return .damaged("the first meta page gives page size \(pageSize)")
        }
        guard let second = readMeta(fd, at: pageSize) else {
            return .damaged("\(size) bytes is shorter than LMDB's two meta pages of \(pageSize) bytes")
        }
        if let problem = second.problem(1) { return .damaged(problem) }
        // LMDB uses the meta page with the higher transaction id.
        let meta = first.u64(transactionOffset) >= second.u64(transactionOffset) ? first : second
        let lastPage = meta.u64(lastPageOffset)
        guard lastPage >= 1, lastPage < UInt64(Int.max / pageSize) else { return .damaged("the meta page gives last page \(lastPage)") }
        for (name, offset) in [("free list", freeRootOffset), ("main database", mainRootOffset)] {
            let root = meta.u64(offset)
            guard root == invalidPage || (root >= 2 && root <= lastPage) else {
                return .damaged("the \(name)'s root page \(root) is outside pages 2...\(lastPage)")
            }
        }
        let needed = (Int(lastPage) + 1) * pageSize
        guard size >= needed else {
            return .damaged("the file is \(size) bytes but its meta page says pages 0...\(lastPage) of \(pageSize) bytes (\(needed) bytes) are in use: truncated")
        }
        return .sound(Meta(pageSize: pageSize, lastPage: Int(lastPage), transaction: meta.u64(transactionOffset), fileSize: size))
    }

    struct MetaBytes {
        var bytes: [UInt8]
        func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) } }

        /// Why this is not meta page `n` of an LMDB file of our data version; nil if it is one.
        func problem(_ n: Int) -> String? {
            guard u16(flagsOffset) & metaPageFlag != 0, u32(magicOffset) == magic else { return "meta page \(n) is not an LMDB meta page" }
            guard u32(versionOffset) == dataVersion else { return "meta page \(n) has data version \(u32(versionOffset))" }
            return nil
        }
    }

    static func readMeta(_ fd: Int32, at offset: Int) -> MetaBytes? {
        var buf = [UInt8](repeating: 0, count: metaBytes)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, metaBytes, off_t(offset)) }
        return n == metaBytes ? MetaBytes(bytes: buf) : nil
    }
}
