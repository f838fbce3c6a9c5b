// Writes: put (committed before it returns), deletes, last-use touches. Serialised by `writer`.
import CLMDB
import MXCore

extension LMDBStore {
    /// Stores `entry` under its server name (replacing any record) and commits. When the map is full
    /// it evicts (expired entries first, then the least recently used) in separate transactions and
    /// retries; as a last resort it empties the cache. The write itself is never dropped: it is
    /// committed when this returns, or this throws (`.recordTooLarge` if it cannot fit even alone;
    /// `CacheStoreUnavailable` while the disk refuses writes, see `guardingStorage`).
    public func put(_ entry: CacheEntry, lastUsed: Double) throws {
        let key = Array(entry.serverName.utf8)
        guard Self.validKey(key) else { throw LMDBStoreError.invalidKey(entry.serverName) }
        guard !isReadOnly else { throw LMDBStoreError.readOnly }
        let value = CacheRecord.encode(entry, lastUsed: lastUsed)
        try writer.withLock { state in
            try guardingStorage(&state) { try putLocked(key: key, value: value) }
        }
    }

    /// `put` with `writer` held.
    private func putLocked(key: [UInt8], value: [UInt8]) throws {
        let done = try gate.reading { () throws -> Bool in
            guard let env else { throw LMDBStoreError.closed }
            if evictsAhead { makeRoomAhead(env, keyBytes: key.count, valueBytes: value.count, protecting: key) }
            var round = 0
            while true {
                let rc = putOnce(env, key: key, value: value)
                if rc == 0 { return true }
                guard rc == MDB_MAP_FULL else { throw LMDBStoreError.lmdb(operation: "put", code: rc) }
                if round == 0 {
                    var dead: Int32 = 0
                    mdb_reader_check(env, &dead) // readers of crashed processes pin old pages
                }
                guard round < 6, evict(env, round: round, protecting: key) > 0 else { return false }
                round += 1
            }
        }
        if done { return }
        // Eviction could not make room: drop everything else and write alone; if the free pages
        // are too scattered for the record, start a new file (all free pages contiguous).
        try gate.writing { () throws in
            resetCount.add(1, ordering: .relaxed)
            for recreate in [false, true] {
                guard let env else { throw LMDBStoreError.closed }
                try resetContents(env, recreate: recreate)
                guard let env = self.env else { throw LMDBStoreError.closed }
                let rc = putOnce(env, key: key, value: value)
                if rc == 0 { return }
                guard rc == MDB_MAP_FULL else { throw LMDBStoreError.lmdb(operation: "put", code: rc) }
            }
            throw LMDBStoreError.recordTooLarge(bytes: value.count + key.count, mapSize: mapSize)
        }
    }

    /// Removes one record; false when there was none (or the store is read-only or closed).
    @discardableResult
    public func delete(_ name: String) -> Bool {
        let k = Array(name.utf8)
        guard Self.validKey(k), !isReadOnly else { return false }
        return writer.withLock { _ in
            gate.reading {
                guard let env else { return false }
                return deleteKeys(env, [k]) == 1
            }
        }
    }

    /// Removes the entries `predicate` selects; returns how many. The predicate runs outside any
    /// transaction; an entry rewritten between the check and the delete is deleted all the same.
    @discardableResult
    public func deleteAll(where predicate: (CacheEntry) -> Bool) -> Int {
        guard !isReadOnly else { return 0 }
        var doomed: [[UInt8]] = []
        forEach { if predicate($0) { doomed.append(Array($0.serverName.utf8)) } }
        guard !doomed.isEmpty else { return 0 }
        return writer.withLock { _ in
            gate.reading {
                guard let env else { return 0 }
                var removed = 0
                var start = 0
                while start < doomed.count {
                    let end = min(start + 1024, doomed.count)
                    removed += deleteKeys(env, Array(doomed[start..<end]))
                    start = end
                }
                return removed
            }
        }
    }

    /// Raises `lastUsed` of existing records, all in one transaction (the daemon batches hits and
    /// calls this every few seconds, so a cache hit never writes). Unknown keys are skipped; a full
    /// map skips the batch (last-use times are only a hint for eviction). Returns records updated.
    @discardableResult
    public func touch(_ keys: [String: Double]) -> Int {
        guard !isReadOnly, !keys.isEmpty else { return 0 }
        return writer.withLock { state in
            guard state.trouble == nil else { return 0 } // the disk refuses writes: a hint is not worth a retry
            return gate.reading {
                guard let env, let txn = try? Self.begin(env, readOnly: false) else { return 0 }
                var updated = 0
                for (key, when) in keys {
                    let k = Array(key.utf8)
                    guard Self.validKey(k) else { continue }
                    let rc: Int32 = Self.withVal(k) { kv in
                        var v = MDB_val()
                        guard mdb_get(txn, dataDBI, &kv, &v) == 0 else { return 0 }
                        let old = UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
                        guard let h = CacheRecord.header(old), when > h.lastUsed,
                              let bytes = CacheRecord.settingLastUsed(when, in: old) else { return 0 }
                        let prc = Self.withVal(bytes) { nv in mdb_put(txn, dataDBI, &kv, &nv, 0) }
                        if prc == 0 { updated += 1 }
                        return prc
                    }
                    if rc != 0 { mdb_txn_abort(txn); return 0 }
                }
                return mdb_txn_commit(txn) == 0 ? updated : 0
            }
        }
    }

    /// Deletes `keys` in one write transaction; returns how many existed (0 if the commit failed).
    func deleteKeys(_ env: OpaquePointer, _ keys: [[UInt8]]) -> Int {
        guard let txn = try? Self.begin(env, readOnly: false) else { return 0 }
        var n = 0
        for k in keys where Self.validKey(k) {
            let rc = Self.withVal(k) { kv in mdb_del(txn, dataDBI, &kv, nil) }
            if rc == 0 { n += 1 } else if rc != MDB_NOTFOUND { mdb_txn_abort(txn); return 0 }
        }
        return mdb_txn_commit(txn) == 0 ? n : 0
    }

    private func putOnce(_ env: OpaquePointer, key: [UInt8], value: [UInt8]) -> Int32 {
        var txn: OpaquePointer?
        var rc = mdb_txn_begin(env, nil, 0, &txn)
        guard rc == 0, let txn else { return rc }
        rc = Self.withVal(key) { kv in Self.withVal(value) { vv in mdb_put(txn, dataDBI, &kv, &vv, 0) } }
        if rc != 0 { mdb_txn_abort(txn); return rc }
        return mdb_txn_commit(txn)
    }
}
