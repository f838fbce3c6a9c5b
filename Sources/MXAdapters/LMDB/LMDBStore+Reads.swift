// Reads: one entry, a page of entries in key order, the store's figures. Each in its own short
// read-only transaction; records are decoded in place, never copied out first.
import CLMDB
import MXCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension LMDBStore {
    /// The entry stored for `name`; nil when there is none or its record cannot be read.
    public func get(_ name: String) -> CacheEntry? {
        withValue(name) { try? CacheRecord.decode(key: name, $0) }
    }

    /// The record's fixed header (last use, expiry, failure flag), read without decoding the entry.
    func header(_ name: String) -> CacheRecord.Header? {
        withValue(name) { CacheRecord.header($0) }
    }

    /// Runs `body` on the value stored for `key`, in place inside a read transaction.
    private func withValue<R>(_ key: String, _ body: (UnsafeRawBufferPointer) -> R?) -> R? {
        let k = Array(key.utf8)
        guard Self.validKey(k) else { return nil }
        return gate.reading { () -> R? in
            guard let env else { return nil }
            guard let txn = try? Self.begin(env, readOnly: true) else { return nil }
            defer { mdb_txn_abort(txn) }
            return Self.withVal(k) { kv -> R? in
                var v = MDB_val()
                guard mdb_get(txn, dataDBI, &kv, &v) == 0 else { return nil }
                return body(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
            }
        }
    }

    /// Number of entries.
    var count: Int {
        gate.reading {
            guard let env, let txn = try? Self.begin(env, readOnly: true) else { return 0 }
            defer { mdb_txn_abort(txn) }
            var st = MDB_stat()
            return mdb_stat(txn, dataDBI, &st) == 0 ? Int(st.ms_entries) : 0
        }
    }

    /// Up to `limit` records in key order after `after`, decoded inside one short read transaction
    /// (the caller works on the page outside it). Records that cannot be read are skipped but
    /// counted, so a damaged record neither ends the scan early nor is returned.
    public func scan(after: String?, limit: Int) -> CacheScanPage {
        let limit = max(1, limit)
        return gate.reading {
            guard let env, let txn = try? Self.begin(env, readOnly: true) else { return CacheScanPage(entries: [], next: nil) }
            defer { mdb_txn_abort(txn) }
            var cursor: OpaquePointer?
            guard mdb_cursor_open(txn, dataDBI, &cursor) == 0, let cursor else { return CacheScanPage(entries: [], next: nil) }
            defer { mdb_cursor_close(cursor) }
            var k = MDB_val(), v = MDB_val()
            var rc: Int32
            if let after {
                rc = Self.withVal(Array(after.utf8)) { a in
                    k = a
                    let r = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
                    if r == 0, k.mv_size == a.mv_size, memcmp(k.mv_data, a.mv_data, a.mv_size) == 0 {
                        return mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
                    }
                    return r
                }
            } else {
                rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
            }
            var entries: [CacheEntry] = []
            var visited = 0
            var lastKey: String?
            while rc == 0 && visited < limit {
                let key = String(decoding: UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size), as: UTF8.self)
                if let e = try? CacheRecord.decode(key: key, UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)) {
                    entries.append(e)
                }
                visited += 1
                lastKey = key
                rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
            }
            return CacheScanPage(entries: entries, next: rc == 0 ? lastKey : nil)
        }
    }

    /// The cache-level figures (`CacheStore`); `lmdbStatistics` has the page-level ones.
    public var statistics: CacheStoreStatistics {
        let s = lmdbStatistics
        return CacheStoreStatistics(entries: s.entries, usedBytes: s.usedBytes, capacityBytes: s.mapSize, evictions: s.evictions)
    }

    public var lmdbStatistics: Statistics {
        gate.reading {
            var s = Statistics(entries: 0, mapSize: 0, usedBytes: 0, highWaterBytes: 0, pageSize: 0,
                               evictions: evictionCount.load(ordering: .relaxed), resets: resetCount.load(ordering: .relaxed))
            guard let env, let txn = try? Self.begin(env, readOnly: true) else { return s }
            defer { mdb_txn_abort(txn) }
            let usage = pageUsage(env, txn)
            var st = MDB_stat()
            if mdb_stat(txn, dataDBI, &st) == 0 { s.entries = Int(st.ms_entries) }
            var info = MDB_envinfo()
            mdb_env_info(env, &info)
            s.pageSize = usage.pageSize
            s.mapSize = Int(info.me_mapsize)
            s.usedBytes = usage.used * usage.pageSize
            s.highWaterBytes = (Int(info.me_last_pgno) + 1) * usage.pageSize
            return s
        }
    }
}
