import CLMDB
import MXCore
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The persistent cache: one LMDB environment (`data.mdb` + `lock.mdb` in `directory`) with a
/// `meta` database (format version, boot id, clean-shutdown mark) and an `entries` database
/// (server name → `CacheRecord`). See docs/caching.md for eviction and durability.
///
/// Thread rule: any thread may call anything. Reads run concurrently, each in its own read-only
/// transaction (`MDB_NOTLS`: a read transaction is not tied to its thread's slot). Writes are
/// serialised by `writer` (LMDB allows one write transaction at a time anyway). `gate` is taken
/// shared by every use of the environment and exclusively only to close it or to recreate the file
/// (last-resort eviction), so the C handles are never used after they are freed.
/// Lock order: `writer`, then `gate`.
public final class LMDBStore: CacheStore, @unchecked Sendable {
    /// Written to `meta`/`format_version`; anything else found there makes a writer rebuild.
    public static let formatVersion = "mxresolved-cache-2"

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

    // Shared between this type's files (reads, writes, eviction, opening); nothing else uses them.
    let gate = ReadWriteLock()
    let writer = Mutex<Void>(())
    // Guarded by `gate` (written only with it held exclusively).
    var env: OpaquePointer?
    var dataDBI: MDB_dbi = 0
    var metaDBI: MDB_dbi = 0
    let mapSize: Int
    let envFlags: UInt32
    /// Tests turn this off to drive every eviction through the MDB_MAP_FULL path.
    var evictsAhead = true
    let evictionCount = Atomic<Int>(0)
    let resetCount = Atomic<Int>(0)

    static let metaName = "meta"
    static let dataName = "entries"
    static let fileMode: mode_t = 0o640

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
            do { try makeDirectories(directory) } catch {
                throw LMDBStoreError.system(operation: error.operation, errno: error.errno)
            }
            let opened = try Self.openWriter(directory: directory, mapSize: mapSize, flags: envFlags)
            (env, dataDBI, metaDBI) = (opened.env, opened.data, opened.meta)
            rebuiltFromFormat = opened.rebuiltFromFormat
            rebuildReason = opened.reason
        }
    }

    deinit { close() }

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
}
