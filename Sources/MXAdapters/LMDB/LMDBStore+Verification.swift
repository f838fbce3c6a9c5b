// Verification: a full walk of a cache file that may be damaged. A damaged LMDB page can make a
// mapped read crash (SIGSEGV, SIGBUS) instead of returning an error, so the daemon runs this in a
// child process (`mxresolved --verify-cache DIR`, see CacheVerifier) and only opens a file that
// passed; it is also what `mxresolvectl verify-cache` prints.
import CLMDB
import MXCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The outcome of verifying a cache file.
public enum CacheVerdict: Sendable, Equatable, CustomStringConvertible {
    case sound(entries: Int, pages: Int)
    case damaged(String)
    /// Verification could not run (the verifier could not be started); nothing is known.
    case unavailable(String)

    public var isSound: Bool {
        if case .sound = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .sound(let entries, let pages): return "sound: \(entries) entries in \(pages) pages"
        case .damaged(let why): return "damaged: \(why)"
        case .unavailable(let why): return "not verified: \(why)"
        }
    }
}

extension LMDBStore {
    /// Walks every database of the cache in `directory` without writing anything (not even the lock
    /// file): the meta pages against the file size, every record of every database, each entry's
    /// checksum, the free list's page numbers, and that used and free pages add up to the file's
    /// pages (LMDB's own audit). Must not run while a writer has the cache open.
    public static func verify(directory: String) -> CacheVerdict {
        let meta: LMDBFileCheck.Meta
        switch LMDBFileCheck.inspect(directory + "/data.mdb") {
        case .absent: return .sound(entries: 0, pages: 0)
        case .damaged(let why): return .damaged(why)
        case .sound(let m): meta = m
        }
        // Map exactly the pages in use: a damaged map size cannot make the map fail or overreach.
        let env: OpaquePointer
        do {
            env = try openEnv(directory, mapSize: (meta.lastPage + 1) * meta.pageSize,
                              flags: UInt32(MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS))
        } catch {
            return .damaged("\(error)")
        }
        defer { mdb_env_close(env) }
        guard let txn = try? begin(env, readOnly: true) else { return .damaged("cannot begin a read transaction") }
        defer { mdb_txn_abort(txn) }
        let walk = Walk(lastPage: meta.lastPage)
        do {
            var main: MDB_dbi = 0
            try walk.check(mdb_dbi_open(txn, nil, 0, &main), "open the main database")
            var names: [String] = []
            try walk.records(txn, main, "main database") { key, _ in
                names.append(String(decoding: key, as: UTF8.self))
            }
            guard Set(names).isSubset(of: [metaName, dataName]) else {
                throw Walk.Damage("the file holds databases other than \(metaName) and \(dataName): \(names.prefix(5))")
            }
            var format: String?
            var dbis = [MDB_dbi(0), main]
            if names.contains(metaName) {
                var dbi: MDB_dbi = 0
                try walk.check(mdb_dbi_open(txn, metaName, 0, &dbi), "open \(metaName)")
                dbis.append(dbi)
                try walk.records(txn, dbi, metaName) { key, value in
                    if String(decoding: key, as: UTF8.self) == "format_version" { format = String(decoding: value, as: UTF8.self) }
                }
            }
            var entries = 0
            if names.contains(dataName) {
                var dbi: MDB_dbi = 0
                try walk.check(mdb_dbi_open(txn, dataName, 0, &dbi), "open \(dataName)")
                dbis.append(dbi)
                // Records of another format are dropped by the writer unread; only this format's are checked.
                let checkRecords = format == formatVersion
                entries = try walk.records(txn, dbi, dataName) { key, value in
                    guard checkRecords else { return }
                    do throws(CacheRecordError) {
                        try CacheRecord.verify(value)
                    } catch {
                        throw Walk.Damage("the record of '\(String(decoding: key.prefix(100), as: UTF8.self))': \(error)")
                    }
                }
            }
            let free = try walk.freePages(txn)
            var used = 2 // the meta pages
            for dbi in dbis {
                var st = MDB_stat()
                try walk.check(mdb_stat(txn, dbi, &st), "read the statistics of database \(dbi)")
                used += Int(st.ms_branch_pages) + Int(st.ms_leaf_pages) + Int(st.ms_overflow_pages)
            }
            guard used + free == meta.lastPage + 1 else {
                throw Walk.Damage("\(used) pages in use and \(free) free do not add up to the \(meta.lastPage + 1) pages of the file")
            }
            return .sound(entries: entries, pages: meta.lastPage + 1)
        } catch let damage as Walk.Damage {
            return .damaged(damage.description)
        } catch {
            return .damaged("\(error)")
        }
    }

    /// One verification walk: every failure is a `Damage`.
    struct Walk {
        struct Damage: Error, CustomStringConvertible {
            var description: String
            init(_ description: String) { self.description = description }
        }

        let lastPage: Int

        func check(_ rc: Int32, _ what: String) throws {
            guard rc == 0 else { throw Damage("\(what): \(String(cString: mdb_strerror(rc)))") }
        }

        /// Calls `body` on every record of `dbi` in key order; returns how many there were, which
        /// must be what the database's own statistics say.
        @discardableResult
        func records(_ txn: OpaquePointer, _ dbi: MDB_dbi, _ name: String,
                     _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws -> Int {
            var st = MDB_stat()
            try check(mdb_stat(txn, dbi, &st), "read the statistics of \(name)")
            var cursor: OpaquePointer?
            try check(mdb_cursor_open(txn, dbi, &cursor), "open a cursor on \(name)")
            defer { mdb_cursor_close(cursor) }
            var k = MDB_val(), v = MDB_val()
            var rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
            var n = 0
            while rc == 0 {
                n += 1
                // A loop in damaged branch pages would otherwise walk forever.
                guard n <= Int(st.ms_entries) else { throw Damage("\(name) says it holds \(st.ms_entries) records but has more") }
                try body(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size), UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
                rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
            }
            guard rc == MDB_NOTFOUND else { throw Damage("walking \(name) after \(n) records: \(String(cString: mdb_strerror(rc)))") }
            guard n == Int(st.ms_entries) else { throw Damage("\(name) says it holds \(st.ms_entries) records but has \(n)") }
            return n
        }

        /// The free list (database 0): each record is a list of page numbers, a count first.
        func freePages(_ txn: OpaquePointer) throws -> Int {
            var free = 0
            try records(txn, 0, "free list") { _, value in
                let words = value.count / 8
                guard value.count % 8 == 0, words >= 1 else { throw Damage("a free-list record of \(value.count) bytes") }
                let count = Int(value.loadUnaligned(as: UInt64.self))
                guard count == words - 1 else { throw Damage("a free-list record counts \(count) pages but holds \(words - 1)") }
                for i in 1..<words {
                    let page = value.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
                    guard page >= 2, page <= UInt64(lastPage) else { throw Damage("free page \(page) is outside pages 2...\(lastPage)") }
                }
                free += count
            }
            return free
        }
    }
}
