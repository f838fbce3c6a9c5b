import CLMDB
import MXCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One cached name as the store sees it: a few fields the store itself needs (expiry and last use
/// for eviction, failure flag and counter for `show-cache` and flushes) and an opaque payload the
/// daemon encodes its answer into.
public struct StoredRecord: Sendable, Hashable {
    /// The server name exactly as asked (not lower-cased, not normalised).
    public var key: String
    public var fetchedAt: Double
    public var expiresAt: Double
    public var lastUsed: Double
    public var isFailure: Bool
    public var consecutiveFailures: UInt16
    public var payload: [UInt8]

    public init(key: String, fetchedAt: Double, expiresAt: Double, lastUsed: Double, isFailure: Bool,
                consecutiveFailures: UInt16, payload: [UInt8]) {
        self.key = key
        self.fetchedAt = fetchedAt
        self.expiresAt = expiresAt
        self.lastUsed = lastUsed
        self.isFailure = isFailure
        self.consecutiveFailures = consecutiveFailures
        self.payload = payload
    }

    // Value layout 1, little-endian, 28-byte header then the payload:
    //   [0] layout (1)  [1] flags (bit 0: failure)  [2..3] consecutiveFailures u16
    //   [4..11] fetchedAt f64  [12..19] expiresAt f64  [20..27] lastUsed f64  [28...] payload
    static let layout: UInt8 = 1
    static let headerSize = 28
    static let lastUsedOffset = 20

    func encodedValue() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.headerSize + payload.count)
        out.append(Self.layout)
        out.append(isFailure ? 1 : 0)
        out.append(UInt8(truncatingIfNeeded: consecutiveFailures))
        out.append(UInt8(truncatingIfNeeded: consecutiveFailures >> 8))
        for d in [fetchedAt, expiresAt, lastUsed] { Self.appendDouble(d, to: &out) }
        out.append(contentsOf: payload)
        return out
    }

    init?(key: String, value: UnsafeRawBufferPointer) {
        guard let h = Self.header(value) else { return nil }
        self.init(key: key, fetchedAt: h.fetchedAt, expiresAt: h.expiresAt, lastUsed: h.lastUsed,
                  isFailure: h.flags & 1 != 0, consecutiveFailures: h.failures,
                  payload: Array(value[Self.headerSize...]))
    }

    static func header(_ value: UnsafeRawBufferPointer)
        -> (flags: UInt8, failures: UInt16, fetchedAt: Double, expiresAt: Double, lastUsed: Double)? {
        guard value.count >= headerSize, value[0] == layout else { return nil }
        let failures = UInt16(value[2]) | UInt16(value[3]) << 8
        return (value[1], failures, double(value, at: 4), double(value, at: 12), double(value, at: 20))
    }

    static func appendDouble(_ d: Double, to out: inout [UInt8]) {
        let bits = d.bitPattern
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
    }

    static func double(_ buf: UnsafeRawBufferPointer, at offset: Int) -> Double {
        var bits: UInt64 = 0
        for i in 0..<8 { bits |= UInt64(buf[offset + i]) << (8 * UInt64(i)) }
        return Double(bitPattern: bits)
    }
}

public enum LMDBStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    case lmdb(operation: String, code: Int32)
    case system(operation: String, errno: Int32)
    /// Read-only open of a directory without a cache in it.
    case missing(path: String)
    /// Read-only open of a cache written in another format (only a writer rebuilds).
    case incompatibleFormat(found: String)
    /// Empty, or longer than LMDB's key limit (511 bytes).
    case invalidKey(String)
    /// The record does not fit even in an empty map.
    case recordTooLarge(bytes: Int, mapSize: Int)
    case readOnly
    case closed

    public var description: String {
        switch self {
        case .lmdb(let op, let code): return "\(op): \(String(cString: mdb_strerror(code))) (\(code))"
        case .system(let op, let e): return "\(op): \(String(cString: strerror(e)))"
        case .missing(let path): return "no cache at \(path)"
        case .incompatibleFormat(let found): return "cache format \(found) is not \(LMDBStore.formatVersion)"
        case .invalidKey(let key): return "invalid cache key (empty or over 511 bytes): \(key.prefix(64))"
        case .recordTooLarge(let bytes, let map): return "a \(bytes)-byte record does not fit in a \(map)-byte cache map"
        case .readOnly: return "the cache was opened read-only"
        case .closed: return "the cache is closed"
        }
    }
}

/// The persistent cache: one LMDB environment (`data.mdb` + `lock.mdb` in `directory`) with a
/// `meta` database (format version, boot id, clean-shutdown mark) and an `entries` database
/// (server name → `StoredRecord`). See docs/caching.md for eviction and durability.
///
/// Thread rule: any thread may call anything. Reads run concurrently, each in its own read-only
/// transaction (`MDB_NOTLS`: a read transaction is not tied to its thread's slot). Writes are
/// serialised by `writer` (LMDB allows one write transaction at a time anyway). `gate` is taken
/// shared by every use of the environment and exclusively only to close it or to recreate the file
/// (last-resort eviction), so the C handles are never used after they are freed.
/// Lock order: `writer`, then `gate`.
public final class LMDBStore: @unchecked Sendable {
    /// Written to `meta`/`format_version`; anything else found there makes a writer rebuild.
    public static let formatVersion = "mxresolved-cache-1"

    public let directory: String
    public let isReadOnly: Bool
    /// The format (or "unknown") of a cache found at open and replaced by an empty one; nil otherwise.
    public let rebuiltFromFormat: String?
    /// Why the cache was rebuilt at open (format change, unreadable file, unclean reboot); nil otherwise.
    public let rebuildReason: String?

    public struct Statistics: Sendable, Hashable {
        public var entries: Int
        /// The LMDB map size: the most the file can grow to.
        public var mapSize: Int
        /// Pages in use by the databases (the free list's reusable pages excluded), in bytes.
        public var usedBytes: Int
        /// Highest page ever used, in bytes (the file's extent).
        public var highWaterBytes: Int
        public var pageSize: Int
        /// Entries removed to make room, since open.
        public var evictions: Int
        /// Times the whole cache was dropped because eviction could not make room, since open.
        public var resets: Int
    }

    private let gate = ReadWriteLock()
    private let writer = Mutex<Void>(())
    // Guarded by `gate` (written only with it held exclusively).
    private var env: OpaquePointer?
    private var dataDBI: MDB_dbi = 0
    private var metaDBI: MDB_dbi = 0
    private let mapSize: Int
    private let envFlags: UInt32
    /// Tests turn this off to drive every eviction through the MDB_MAP_FULL path.
    var evictsAhead = true
    private let evictionCount = Atomic<Int>(0)
    private let resetCount = Atomic<Int>(0)

    static let metaName = "meta"
    static let dataName = "entries"
    static let fileMode: mode_t = 0o640
    /// Entries read per read transaction by `forEach` (the callback runs outside any transaction).
    static let iterationChunk = 512

    /// Opens (and for a writer creates) the cache in `directory`.
    ///
    /// - `mapSizeBytes`: the bound on the file; rounded up to whole pages, at least 128 KiB.
    ///   0 with `readOnly` uses the size the writer chose.
    /// - `readOnly`: opens an existing cache without creating or changing anything, also while the
    ///   daemon has it open (`mxresolvectl show-cache`); throws `.missing` or `.incompatibleFormat`.
    ///   When the lock file is not writable by this user and no writer can be running, it falls
    ///   back to `MDB_NOLOCK` (see docs/caching.md).
    /// - A writer finding another format, a file that is not LMDB, or a cache left open by a writer
    ///   before an unclean reboot starts empty and says so in `rebuiltFromFormat`/`rebuildReason`.
    public init(directory: String, mapSizeBytes: Int, readOnly: Bool = false) throws {
        self.directory = directory
        self.isReadOnly = readOnly
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pageSize = page > 0 ? page : 4096
        self.mapSize = mapSizeBytes <= 0 ? 0 : max((mapSizeBytes + pageSize - 1) / pageSize * pageSize, 32 * pageSize)
        if readOnly {
            envFlags = UInt32(MDB_RDONLY | MDB_NOTLS)
            let opened = try Self.openReadOnly(directory: directory, mapSize: mapSize)
            (env, dataDBI, metaDBI) = (opened.env, opened.data, opened.meta)
            rebuiltFromFormat = nil
            rebuildReason = nil
        } else {
            // Without a boot id (not Linux) an unclean reboot cannot be told apart from a process
            // crash, so every commit syncs its data pages (MDB_NOMETASYNC) instead of none.
            envFlags = UInt32(MDB_NOTLS) | (Self.currentBootID() == nil ? UInt32(MDB_NOMETASYNC) : UInt32(MDB_NOSYNC))
            try Self.makeDirectories(directory)
            let opened = try Self.openWriter(directory: directory, mapSize: mapSize, flags: envFlags)
            (env, dataDBI, metaDBI) = (opened.env, opened.data, opened.meta)
            rebuiltFromFormat = opened.rebuiltFromFormat
            rebuildReason = opened.reason
        }
    }

    deinit { close() }

    // MARK: Reads

    public func get(_ key: String) -> StoredRecord? {
        let k = Array(key.utf8)
        guard Self.validKey(k) else { return nil }
        return gate.reading { () -> StoredRecord? in
            guard let env else { return nil }
            guard let txn = try? Self.begin(env, readOnly: true) else { return nil }
            defer { mdb_txn_abort(txn) }
            return Self.withVal(k) { kv -> StoredRecord? in
                var v = MDB_val()
                guard mdb_get(txn, dataDBI, &kv, &v) == 0 else { return nil }
                return StoredRecord(key: key, value: UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
            }
        }
    }

    /// Number of entries.
    public var count: Int {
        gate.reading {
            guard let env, let txn = try? Self.begin(env, readOnly: true) else { return 0 }
            defer { mdb_txn_abort(txn) }
            var st = MDB_stat()
            return mdb_stat(txn, dataDBI, &st) == 0 ? Int(st.ms_entries) : 0
        }
    }

    /// Calls `body` for every record, in key order. Records are read in chunks, each in a short read
    /// transaction; `body` runs outside any transaction and may call the store. A record written
    /// meanwhile may or may not be seen; none is seen twice.
    public func forEach(_ body: (StoredRecord) -> Void) {
        var after: [UInt8]?
        while true {
            let chunk = readChunk(after: after)
            for (_, record) in chunk { body(record) }
            guard chunk.count == Self.iterationChunk, let last = chunk.last else { return }
            after = last.key
        }
    }

    public var statistics: Statistics {
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

    // MARK: Writes

    /// Writes `record` (replacing any record for its key) and commits. When the map is full it
    /// evicts (expired entries first, then the least recently used) in separate transactions and
    /// retries; as a last resort it empties the cache. The write itself is never dropped: it is
    /// committed when this returns, or this throws (`.recordTooLarge` if it cannot fit even alone).
    public func put(_ record: StoredRecord) throws {
        let key = Array(record.key.utf8)
        guard Self.validKey(key) else { throw LMDBStoreError.invalidKey(record.key) }
        guard !isReadOnly else { throw LMDBStoreError.readOnly }
        let value = record.encodedValue()
        try writer.withLock { _ in
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
    }

    /// Removes one record; false when there was none (or the store is read-only or closed).
    @discardableResult
    public func delete(_ key: String) -> Bool {
        let k = Array(key.utf8)
        guard Self.validKey(k), !isReadOnly else { return false }
        return writer.withLock { _ in
            gate.reading {
                guard let env else { return false }
                return deleteKeys(env, [k]) == 1
            }
        }
    }

    /// Removes every record; returns how many there were.
    @discardableResult
    public func deleteAll() -> Int {
        guard !isReadOnly else { return 0 }
        return writer.withLock { _ in
            gate.reading {
                guard let env, let txn = try? Self.begin(env, readOnly: false) else { return 0 }
                var st = MDB_stat()
                let n = mdb_stat(txn, dataDBI, &st) == 0 ? Int(st.ms_entries) : 0
                guard mdb_drop(txn, dataDBI, 0) == 0 else { mdb_txn_abort(txn); return 0 }
                return mdb_txn_commit(txn) == 0 ? n : 0
            }
        }
    }

    /// Removes the records `predicate` selects; returns how many. The predicate runs outside any
    /// transaction; a record rewritten between the check and the delete is deleted all the same.
    @discardableResult
    public func deleteAll(where predicate: (StoredRecord) -> Bool) -> Int {
        guard !isReadOnly else { return 0 }
        var doomed: [[UInt8]] = []
        forEach { if predicate($0) { doomed.append(Array($0.key.utf8)) } }
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
        return writer.withLock { _ in
            gate.reading {
                guard let env, let txn = try? Self.begin(env, readOnly: false) else { return 0 }
                var updated = 0
                for (key, when) in keys {
                    let k = Array(key.utf8)
                    guard Self.validKey(k) else { continue }
                    let rc: Int32 = Self.withVal(k) { kv in
                        var v = MDB_val()
                        guard mdb_get(txn, dataDBI, &kv, &v) == 0 else { return 0 }
                        let old = UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
                        guard let h = StoredRecord.header(old), when > h.lastUsed else { return 0 }
                        var bytes = Array(old)
                        var encoded: [UInt8] = []
                        StoredRecord.appendDouble(when, to: &encoded)
                        bytes.replaceSubrange(StoredRecord.lastUsedOffset..<StoredRecord.lastUsedOffset + 8, with: encoded)
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

    /// Flushes committed transactions to disk (fdatasync). Commits do not do this themselves; see
    /// docs/caching.md ("Durability").
    public func sync() {
        guard !isReadOnly else { return }
        writer.withLock { _ in
            gate.reading {
                if let env { mdb_env_sync(env, 1) }
            }
        }
    }

    /// Syncs, marks the cache cleanly closed and closes it. Later calls do nothing; reads return
    /// nothing and writes throw `.closed`.
    public func close() {
        writer.withLock { _ in
            gate.writing {
                guard let env else { return }
                if !isReadOnly {
                    mdb_env_sync(env, 1)
                    Self.writeMarks(env, meta: metaDBI, clean: true)
                }
                mdb_env_close(env)
                self.env = nil
            }
        }
    }

    // MARK: Eviction

    /// Pages kept free so the transactions that evict can always commit (LMDB copies every page it
    /// changes, deletions included): 1/32 of the map, at least 8 pages.
    private func headroomPages(total: Int) -> Int { max(8, total / 32) }

    /// Evicts before writing when the free pages would drop under the headroom.
    private func makeRoomAhead(_ env: OpaquePointer, keyBytes: Int, valueBytes: Int, protecting key: [UInt8]) {
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
    private func evict(_ env: OpaquePointer, round: Int, protecting key: [UInt8]) -> Int {
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
                    if let h = StoredRecord.header(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)) {
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

    /// Deletes `keys` in one write transaction; returns how many existed (0 if the commit failed).
    private func deleteKeys(_ env: OpaquePointer, _ keys: [[UInt8]]) -> Int {
        guard let txn = try? Self.begin(env, readOnly: false) else { return 0 }
        var n = 0
        for k in keys where Self.validKey(k) {
            let rc = Self.withVal(k) { kv in mdb_del(txn, dataDBI, &kv, nil) }
            if rc == 0 { n += 1 } else if rc != MDB_NOTFOUND { mdb_txn_abort(txn); return 0 }
        }
        return mdb_txn_commit(txn) == 0 ? n : 0
    }

    /// Last resort (gate held exclusively): empty the entries database; with `recreate`, or if
    /// even that cannot commit, recreate the files.
    private func resetContents(_ env: OpaquePointer, recreate: Bool) throws {
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
        let opened = try Self.openWriter(directory: directory, mapSize: mapSize, flags: envFlags)
        (self.env, dataDBI, metaDBI) = (opened.env, opened.data, opened.meta)
    }

    private func putOnce(_ env: OpaquePointer, key: [UInt8], value: [UInt8]) -> Int32 {
        var txn: OpaquePointer?
        var rc = mdb_txn_begin(env, nil, 0, &txn)
        guard rc == 0, let txn else { return rc }
        rc = Self.withVal(key) { kv in Self.withVal(value) { vv in mdb_put(txn, dataDBI, &kv, &vv, 0) } }
        if rc != 0 { mdb_txn_abort(txn); return rc }
        return mdb_txn_commit(txn)
    }

    private func readChunk(after: [UInt8]?) -> [(key: [UInt8], record: StoredRecord)] {
        gate.reading {
            guard let env, let txn = try? Self.begin(env, readOnly: true) else { return [] }
            defer { mdb_txn_abort(txn) }
            var cursor: OpaquePointer?
            guard mdb_cursor_open(txn, dataDBI, &cursor) == 0, let cursor else { return [] }
            defer { mdb_cursor_close(cursor) }
            var k = MDB_val(), v = MDB_val()
            var rc: Int32
            if let after {
                rc = Self.withVal(after) { a in
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
            var out: [(key: [UInt8], record: StoredRecord)] = []
            while rc == 0 && out.count < Self.iterationChunk {
                let kb = Array(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size))
                if let r = StoredRecord(key: String(decoding: kb, as: UTF8.self),
                                        value: UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)) {
                    out.append((kb, r))
                }
                rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
            }
            return out
        }
    }

    /// Pages the databases occupy (free list's own pages included, its reusable pages not) and the map's pages.
    private func pageUsage(_ env: OpaquePointer, _ txn: OpaquePointer) -> (used: Int, total: Int, pageSize: Int) {
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

    // MARK: Opening

    private struct Opened {
        var env: OpaquePointer
        var data: MDB_dbi
        var meta: MDB_dbi
        var rebuiltFromFormat: String?
        var reason: String?
    }

    private static func openReadOnly(directory: String, mapSize: Int) throws -> Opened {
        guard access(directory + "/data.mdb", R_OK) == 0 else { throw LMDBStoreError.missing(path: directory) }
        let flags = UInt32(MDB_RDONLY | MDB_NOTLS)
        let env: OpaquePointer
        do {
            env = try openEnv(directory, mapSize: mapSize, flags: flags)
        } catch LMDBStoreError.lmdb(_, let code) where code == EACCES && access(directory + "/lock.mdb", W_OK) != 0 {
            // The lock file belongs to the daemon's user: read without registering as a reader.
            env = try openEnv(directory, mapSize: mapSize, flags: flags | UInt32(MDB_NOLOCK))
        }
        do {
            let txn = try begin(env, readOnly: true)
            var meta: MDB_dbi = 0, data: MDB_dbi = 0
            var rc = mdb_dbi_open(txn, metaName, 0, &meta)
            let version = rc == 0 ? getString(txn, meta, "format_version") ?? "unknown" : "unknown"
            if version == formatVersion { rc = mdb_dbi_open(txn, dataName, 0, &data) }
            guard version == formatVersion, rc == 0 else {
                mdb_txn_abort(txn)
                if version != formatVersion { throw LMDBStoreError.incompatibleFormat(found: version) }
                throw LMDBStoreError.lmdb(operation: "open entries", code: rc)
            }
            // Committing (not aborting) keeps the database handles open for the environment's life.
            rc = mdb_txn_commit(txn)
            guard rc == 0 else { throw LMDBStoreError.lmdb(operation: "open databases", code: rc) }
            return Opened(env: env, data: data, meta: meta)
        } catch {
            mdb_env_close(env)
            throw error
        }
    }

    /// Opens or creates the writer's environment, rebuilding it when it is not usable as is.
    private static func openWriter(directory: String, mapSize: Int, flags: UInt32) throws -> Opened {
        var env: OpaquePointer
        var reason: String?
        var fromFormat: String?
        do {
            env = try openEnv(directory, mapSize: mapSize, flags: flags)
        } catch LMDBStoreError.lmdb(let op, let code) where [MDB_INVALID, MDB_VERSION_MISMATCH, MDB_CORRUPTED, MDB_PANIC].contains(code) {
            reason = "the cache file was unreadable (\(LMDBStoreError.lmdb(operation: op, code: code)))"
            fromFormat = "unreadable"
            removeFiles(directory)
            env = try openEnv(directory, mapSize: mapSize, flags: flags)
        }
        var dead: Int32 = 0
        mdb_reader_check(env, &dead)
        do {
            switch try prepare(env) {
            case .ready(let meta, let data, let previousFormat):
                if let previousFormat {
                    fromFormat = previousFormat
                    reason = "the cache was written in format \(previousFormat), not \(formatVersion)"
                }
                return Opened(env: env, data: data, meta: meta, rebuiltFromFormat: fromFormat, reason: reason)
            case .recreate(let why):
                mdb_env_close(env)
                removeFiles(directory)
                env = try openEnv(directory, mapSize: mapSize, flags: flags)
                guard case .ready(let meta, let data, _) = try prepare(env) else {
                    throw LMDBStoreError.lmdb(operation: "recreate cache", code: MDB_INCOMPATIBLE)
                }
                return Opened(env: env, data: data, meta: meta, rebuiltFromFormat: fromFormat ?? "unknown", reason: why)
            }
        } catch {
            mdb_env_close(env)
            throw error
        }
    }

    private enum Preparation {
        case ready(meta: MDB_dbi, data: MDB_dbi, previousFormat: String?)
        case recreate(String)
    }

    /// Checks format and boot marks; drops entries of another format; marks the cache open (unclean).
    private static func prepare(_ env: OpaquePointer) throws -> Preparation {
        let txn = try begin(env, readOnly: false)
        var meta: MDB_dbi = 0, data: MDB_dbi = 0
        var rc = mdb_dbi_open(txn, metaName, UInt32(MDB_CREATE), &meta)
        if rc == MDB_INCOMPATIBLE {
            mdb_txn_abort(txn)
            return .recreate("the cache file holds another program's databases")
        }
        guard rc == 0 else { mdb_txn_abort(txn); throw LMDBStoreError.lmdb(operation: "open meta", code: rc) }
        let version = getString(txn, meta, "format_version")
        let boot = getString(txn, meta, "boot_id")
        let clean = getString(txn, meta, "clean")
        if version != nil, let boot, let current = currentBootID(), boot != current, clean != "1" {
            // Commits are not synced one by one: after a machine crash, pages may be torn.
            mdb_txn_abort(txn)
            return .recreate("the machine restarted while the cache was open for writing")
        }
        rc = mdb_dbi_open(txn, dataName, UInt32(MDB_CREATE), &data)
        if rc == MDB_INCOMPATIBLE {
            mdb_txn_abort(txn)
            return .recreate("the cache file holds another program's databases")
        }
        guard rc == 0 else { mdb_txn_abort(txn); throw LMDBStoreError.lmdb(operation: "open entries", code: rc) }
        var previous: String?
        if version != formatVersion {
            var st = MDB_stat()
            let entries = mdb_stat(txn, data, &st) == 0 ? Int(st.ms_entries) : 0
            if version != nil || entries > 0 {
                previous = version ?? "unknown"
                rc = mdb_drop(txn, data, 0)
                if rc == 0 { rc = mdb_drop(txn, meta, 0) }
                guard rc == 0 else { mdb_txn_abort(txn); return .recreate("could not empty the old cache") }
            }
            rc = putString(txn, meta, "format_version", formatVersion)
            guard rc == 0 else { mdb_txn_abort(txn); throw LMDBStoreError.lmdb(operation: "write format version", code: rc) }
        }
        rc = mdb_txn_commit(txn)
        guard rc == 0 else { throw LMDBStoreError.lmdb(operation: "commit format version", code: rc) }
        writeMarks(env, meta: meta, clean: false)
        return .ready(meta: meta, data: data, previousFormat: previous)
    }

    /// Writes boot id and the clean mark in a transaction synced to disk (NOSYNC is lifted for it):
    /// "unclean" must be on disk before any unsynced commit, "clean" after the final sync.
    private static func writeMarks(_ env: OpaquePointer, meta: MDB_dbi, clean: Bool) {
        mdb_env_set_flags(env, UInt32(MDB_NOSYNC), 0)
        defer {
            if currentBootID() != nil { mdb_env_set_flags(env, UInt32(MDB_NOSYNC), 1) }
        }
        guard let txn = try? begin(env, readOnly: false) else { return }
        var rc = putString(txn, meta, "clean", clean ? "1" : "0")
        if rc == 0, let boot = currentBootID() { rc = putString(txn, meta, "boot_id", boot) }
        if rc != 0 { mdb_txn_abort(txn); return }
        mdb_txn_commit(txn)
    }

    private static func openEnv(_ directory: String, mapSize: Int, flags: UInt32) throws -> OpaquePointer {
        var envp: OpaquePointer?
        var rc = mdb_env_create(&envp)
        guard rc == 0, let env = envp else { throw LMDBStoreError.lmdb(operation: "mdb_env_create", code: rc) }
        mdb_env_set_maxdbs(env, 4)
        mdb_env_set_maxreaders(env, 512)
        if mapSize > 0 {
            rc = mdb_env_set_mapsize(env, mapSize)
            guard rc == 0 else { mdb_env_close(env); throw LMDBStoreError.lmdb(operation: "mdb_env_set_mapsize", code: rc) }
        }
        rc = mdb_env_open(env, directory, flags, fileMode)
        guard rc == 0 else { mdb_env_close(env); throw LMDBStoreError.lmdb(operation: "mdb_env_open \(directory)", code: rc) }
        return env
    }

    // MARK: Small helpers

    static func begin(_ env: OpaquePointer, readOnly: Bool) throws -> OpaquePointer {
        var txn: OpaquePointer?
        let rc = mdb_txn_begin(env, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn)
        guard rc == 0, let txn else { throw LMDBStoreError.lmdb(operation: "mdb_txn_begin", code: rc) }
        return txn
    }

    static func validKey(_ k: [UInt8]) -> Bool { !k.isEmpty && k.count <= 511 }

    static func withVal<R>(_ bytes: [UInt8], _ body: (inout MDB_val) throws -> R) rethrows -> R {
        var copy = bytes
        let count = copy.count
        return try copy.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) throws -> R in
            var v = MDB_val(mv_size: count, mv_data: raw.baseAddress)
            return try body(&v)
        }
    }

    static func getString(_ txn: OpaquePointer, _ dbi: MDB_dbi, _ key: String) -> String? {
        withVal(Array(key.utf8)) { kv -> String? in
            var v = MDB_val()
            guard mdb_get(txn, dbi, &kv, &v) == 0 else { return nil }
            return String(decoding: UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size), as: UTF8.self)
        }
    }

    static func putString(_ txn: OpaquePointer, _ dbi: MDB_dbi, _ key: String, _ value: String) -> Int32 {
        withVal(Array(key.utf8)) { kv in withVal(Array(value.utf8)) { vv in mdb_put(txn, dbi, &kv, &vv, 0) } }
    }

    static func removeFiles(_ directory: String) {
        unlink(directory + "/data.mdb")
        unlink(directory + "/lock.mdb")
    }

    static func makeDirectories(_ path: String) throws {
        var partial = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            partial += "/" + component
            if mkdir(partial, 0o750) != 0 && errno != EEXIST {
                throw LMDBStoreError.system(operation: "mkdir \(partial)", errno: errno)
            }
        }
    }

    /// This boot's id (Linux), to tell a machine crash from a process crash; nil elsewhere.
    static func currentBootID() -> String? {
        let fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { closeDescriptor(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 64) }
        guard n > 0 else { return nil }
        let id = String(decoding: buf[0..<n], as: UTF8.self).filter { !$0.isWhitespace }
        return id.isEmpty ? nil : id
    }
}

/// pthread read-write lock: shared for every use of the LMDB environment, exclusive to replace it.
final class ReadWriteLock: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func reading<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    func writing<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}

private func closeDescriptor(_ fd: Int32) { close(fd) }
