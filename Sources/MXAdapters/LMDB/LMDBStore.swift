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
    public static let formatVersion = "mxresolved-cache-4"

    public let directory: String
    public let isReadOnly: Bool
    /// The format (or "unknown") of a cache found at open and replaced by an empty one; nil otherwise.
    public let rebuiltFromFormat: String?
    /// Why the cache was rebuilt at open (format change, damaged file, unclean reboot); nil otherwise.
    public let rebuildReason: String?
    /// Where a damaged cache file was moved at open (`data.mdb.bad-<UTC time>`); nil otherwise.
    public let movedAsidePath: String?

    /// What the daemon logs: write failures are reported once per episode, not once per write.
    public enum Event: Sendable, Equatable, CustomStringConvertible {
        case writesFailing(String)
        case writesRecovered(refused: Int, seconds: Int)
        /// Reopening after a write failure found the file damaged and moved it aside.
        case movedAside(reason: String, path: String)

        public var description: String {
            switch self {
            case .writesFailing(let why):
                return "cache writes fail (\(why)); answers are served but not persisted, retrying every \(Int(LMDBStore.writeRetrySeconds)) s"
            case .writesRecovered(let refused, let seconds):
                return "cache writes work again after \(seconds) s (\(refused) writes were not persisted)"
            case .movedAside(let reason, let path):
                return "\(reason); moved it to \(path) and started an empty cache"
            }
        }
    }

    /// A write-failure episode: while it lasts, puts are refused without touching the disk except
    /// one attempt every `writeRetrySeconds`.
    struct WriteTrouble {
        var reason: String
        var since: Double
        var refused = 0
        var retryAt: Double
        /// The environment is gone (never opened, or LMDB panicked) and must be opened again.
        var reopen: Bool
    }

    struct WriterState {
        var trouble: WriteTrouble?
        var closed = false
    }

    static let writeRetrySeconds = 5.0

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
    let writer = PthreadMutex<WriterState>(WriterState())
    let report: @Sendable (Event) -> Void
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
    ///   back to `MDB_NOLOCK` (see docs/caching.md). A damaged file throws `.damaged`.
    /// - A writer finding another format, a damaged file, or a cache left open by a writer before
    ///   an unclean reboot starts empty and says so in `rebuiltFromFormat`/`rebuildReason`; a
    ///   damaged file is moved aside (`movedAsidePath`).
    /// - `verifier`: runs the full verification walk in a child process for a file that was not
    ///   closed cleanly (docs/caching.md §6.6); without one only the meta pages are checked.
    /// - A writer that cannot create or open its files for lack of space (or an I/O error) starts
    ///   without them: reads find nothing, writes throw `CacheStoreUnavailable`, and the store
    ///   tries again every `writeRetrySeconds`. `report` hears of that once per episode.
    public init(directory: String, mapSizeBytes: Int, readOnly: Bool = false, verifier: CacheVerifier? = nil,
                report: @escaping @Sendable (Event) -> Void = { _ in }) throws {
        self.directory = directory
        self.isReadOnly = readOnly
        self.report = report
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pageSize = page > 0 ? page : 4096
        self.mapSize = mapSizeBytes <= 0 ? 0 : max((mapSizeBytes + pageSize - 1) / pageSize * pageSize, 32 * pageSize)
        if readOnly {
            envFlags = UInt32(MDB_RDONLY | MDB_NOTLS)
            let opened = try Self.openReadOnly(directory: directory, mapSize: mapSize, verifier: verifier)
            (env, dataDBI, metaDBI) = (opened.env, opened.data, opened.meta)
            rebuiltFromFormat = nil
            rebuildReason = nil
            movedAsidePath = nil
        } else {
            // Without a boot id (not Linux) an unclean reboot cannot be told apart from a process
            // crash, so every commit syncs its data pages (MDB_NOMETASYNC) instead of none.
            envFlags = UInt32(MDB_NOTLS) | (Self.currentBootID() == nil ? UInt32(MDB_NOMETASYNC) : UInt32(MDB_NOSYNC))
            do {
                try makeDirectoriesOrThrow(directory)
                let opened = try Self.openWriter(directory: directory, mapSize: mapSize, flags: envFlags, verifier: verifier)
                (env, dataDBI, metaDBI) = (opened.env, opened.data, opened.meta)
                rebuiltFromFormat = opened.rebuiltFromFormat
                rebuildReason = opened.reason
                movedAsidePath = opened.movedTo
            } catch let error as LMDBStoreError where error.isStorageFailure {
                env = nil
                rebuiltFromFormat = nil
                rebuildReason = nil
                movedAsidePath = nil
                let now = wallClockSeconds()
                writer.withLock {
                    $0.trouble = WriteTrouble(reason: error.description, since: now, retryAt: now + Self.writeRetrySeconds, reopen: true)
                }
                report(.writesFailing(error.description))
            }
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
        writer.withLock { state in
            state.closed = true
            gate.writing {
                guard let env else { return }
                var synced = true
                if !isReadOnly {
                    synced = mdb_env_sync(env, 1) == 0 && state.trouble == nil
                    if synced { Self.writeMarks(env, meta: metaDBI, clean: true) }
                }
                mdb_env_close(env)
                self.env = nil
                if !isReadOnly && synced { CleanCloseMark.write(directory) }
            }
            state.trouble = nil
        }
    }

    /// Runs a write (with `writer` held) so that a storage failure starts an episode: reported
    /// once, every put refused with `CacheStoreUnavailable` until the next attempt, at most every
    /// `writeRetrySeconds`; the first write that succeeds again ends it, reported too.
    func guardingStorage<R>(_ state: inout WriterState, _ write: () throws -> R) throws -> R {
        guard !state.closed else { throw LMDBStoreError.closed }
        let now = wallClockSeconds()
        if var trouble = state.trouble {
            guard now >= trouble.retryAt else {
                trouble.refused += 1
                state.trouble = trouble
                throw CacheStoreUnavailable(reason: trouble.reason)
            }
        }
        do {
            if state.trouble?.reopen == true { try reopen() }
            let result = try write()
            if let trouble = state.trouble {
                state.trouble = nil
                report(.writesRecovered(refused: trouble.refused, seconds: Int(now - trouble.since)))
            }
            return result
        } catch let error as LMDBStoreError where error.isStorageFailure {
            var trouble = state.trouble ?? WriteTrouble(reason: error.description, since: now, retryAt: 0, reopen: false)
            if state.trouble == nil { report(.writesFailing(error.description)) }
            trouble.refused += 1
            trouble.retryAt = now + Self.writeRetrySeconds
            if case .lmdb(_, MDB_PANIC) = error { trouble.reopen = true }
            state.trouble = trouble
            throw CacheStoreUnavailable(reason: trouble.reason)
        }
    }

    /// Opens the environment again after it could not be opened or LMDB panicked (a failed meta
    /// page write leaves it unusable until reopened).
    private func reopen() throws {
        try gate.writing {
            if let env { mdb_env_close(env) }
            env = nil
            try makeDirectoriesOrThrow(directory)
            let opened = try Self.openWriter(directory: directory, mapSize: mapSize, flags: envFlags, verifier: nil)
            (env, dataDBI, metaDBI) = (opened.env, opened.data, opened.meta)
            if let path = opened.movedTo { report(.movedAside(reason: opened.reason ?? "the cache file was damaged", path: path)) }
        }
    }
}

private func makeDirectoriesOrThrow(_ path: String) throws {
    do { try makeDirectories(path) } catch {
        throw LMDBStoreError.system(operation: error.operation, errno: error.errno)
    }
}
