// Making room in a bounded map: headroom kept ahead of writes, expired-then-least-recently-used
// rounds, and the last resort of emptying the cache (docs/caching.md §6.3).
import CLMDB
import MXCore

extension LMDBStore {
    /// Pages kept free so the transactions that evict can always commit (LMDB copies every page it
    /// changes, deletions included): 1/32 of the map, at least 8 pages.
    func headroomPages(total: Int) -> Int { max(8, total / 32) }

    /// Evicts before writing when the free pages would drop under the headroom.
    func makeRoomAhead(_ env: OpaquePointer, keyBytes: Int, valueBytes: Int, protecting key: [UInt8]) {
        for round in 0..<6 {
            guard let txn = try? Self.begin(env, readOnly: true) else { return }
            let usage = pageUsage(env, txn)
            mdb_txn_abort(txn)
            let headroom = headroomPages(total: usage.total)
            let need = Self.pagesNeeded(keyBytes: keyBytes, valueBytes: valueBytes, pageSize: usage.pageSize)
            let free = usage.total - usage.used
            // Trigger under headroom + need; once triggered, aim for twice the headroom (hysteresis).
            if round == 0 ? free >= headroom + need : free >= 2 * headroom + need { return }
            if evict(env, round: round, protecting: key) == 0 { return }
        }
    }

    /// One eviction round: every expired entry (oldest expiry first), then the least recently used
    /// until 10 % × 2^round of the entries are gone. Deletes in small transactions so that each fits
    /// in the headroom. Returns entries removed.
    func evict(_ env: OpaquePointer, round: Int, protecting key: [UInt8]) -> Int {
        guard let txn = try? Self.begin(env, readOnly: true) else { return 0 }
        let usage = pageUsage(env, txn)
        let now = wallClockSeconds()
        var expired: [(key: [UInt8], at: Double)] = []
        var live: [(key: [UInt8], at: Double)] = []
        var cursor: OpaquePointer?
        if mdb_cursor_open(txn, dataDBI, &cursor) == 0, let cursor {
            var k = MDB_val(), v = MDB_val()
            var rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
            while rc == 0 {
                let kb = Array(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size))
                if kb != key {
                    if let h = CacheRecord.header(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)) {
                        if h.expiresAt < now { expired.append((kb, h.expiresAt)) } else { live.append((kb, h.lastUsed)) }
                    } else {
                        expired.append((kb, -.infinity)) // unreadable: first to go
                    }
                }
                rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
            }
            mdb_cursor_close(cursor)
        }
        mdb_txn_abort(txn)
        let total = expired.count + live.count
        guard total > 0 else { return 0 }
        let fraction = min(1.0, 0.1 * Double(1 << min(round, 4)))
        let target = max(1, Int((Double(total) * fraction).rounded(.up)))
        expired.sort { $0.at < $1.at }
        var victims = expired.map(\.key)
        if victims.count < target {
            live.sort { $0.at < $1.at }
            victims += live.prefix(target - victims.count).map(\.key)
        }
        let chunk = max(1, headroomPages(total: usage.total) / 4)
        var removed = 0
        var start = 0
        while start < victims.count {
            let end = min(start + chunk, victims.count)
            var n = deleteKeys(env, Array(victims[start..<end]))
            if n == 0 {
                // The batch did not fit: one at a time.
                for v in victims[start..<end] { n += deleteKeys(env, [v]) }
                if n == 0 { break }
            }
            removed += n
            start = end
        }
        evictionCount.add(removed, ordering: .relaxed)
        return removed
    }

    /// Last resort (gate held exclusively): empty the entries database; with `recreate`, or if
    /// even that cannot commit, recreate the files.
    func resetContents(_ env: OpaquePointer, recreate: Bool) throws {
        if !recreate, let txn = try? Self.begin(env, readOnly: false) {
            if mdb_drop(txn, dataDBI, 0) == 0, mdb_txn_commit(txn) == 0 {
                // Pages freed by the drop become reusable two commits later.
                for _ in 0..<2 { Self.writeMarks(env, meta: metaDBI, clean: false) }
                return
            }
            // (a failed commit has freed the transaction; a failed drop has not)
        }
        mdb_env_close(env)
        self.env = nil
        Self.removeFiles(directory)
        let opened = try Self.openWriter(directory: directory, mapSize: mapSize, flags: envFlags, verifier: nil)
        (self.env, dataDBI, metaDBI) = (opened.env, opened.data, opened.meta)
    }

    /// Pages the databases occupy (free list's own pages included, its reusable pages not) and the map's pages.
    func pageUsage(_ env: OpaquePointer, _ txn: OpaquePointer) -> (used: Int, total: Int, pageSize: Int) {
        var est = MDB_stat()
        mdb_env_stat(env, &est)
        let psize = max(Int(est.ms_psize), 512)
        var used = 2 // the two meta pages
        for dbi in [MDB_dbi(0), MDB_dbi(1), metaDBI, dataDBI] {
            var st = MDB_stat()
            if mdb_stat(txn, dbi, &st) == 0 { used += Int(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages) }
        }
        var info = MDB_envinfo()
        mdb_env_info(env, &info)
        return (used, Int(info.me_mapsize) / psize, psize)
    }

    /// Pages one put may need: the leaf-to-root path it copies, a split, free-list bookkeeping, and
    /// overflow pages when the value does not fit in a leaf node (LMDB: node > ~half a page).
    static func pagesNeeded(keyBytes: Int, valueBytes: Int, pageSize: Int) -> Int {
        let nodeMax = ((pageSize - 16) / 2) & ~1 - 2
        let overflow = 8 + keyBytes + valueBytes > nodeMax ? (valueBytes + 16 + pageSize - 1) / pageSize : 0
        return 6 + overflow
    }
}
