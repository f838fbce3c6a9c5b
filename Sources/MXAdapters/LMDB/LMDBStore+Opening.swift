// Opening and recovery: read-only and writer opens, format and boot-id checks, rebuilding a cache
// that cannot be trusted (docs/caching.md §6.2, §6.5).
import CLMDB
import MXCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension LMDBStore {
    struct Opened {
        var env: OpaquePointer
        var data: MDB_dbi
        var meta: MDB_dbi
        var rebuiltFromFormat: String?
        var reason: String?
    }

    static func openReadOnly(directory: String, mapSize: Int) throws -> Opened {
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
    static func openWriter(directory: String, mapSize: Int, flags: UInt32) throws -> Opened {
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

    enum Preparation {
        case ready(meta: MDB_dbi, data: MDB_dbi, previousFormat: String?)
        case recreate(String)
    }

    /// Checks format and boot marks; drops entries of another format; marks the cache open (unclean).
    static func prepare(_ env: OpaquePointer) throws -> Preparation {
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
    static func writeMarks(_ env: OpaquePointer, meta: MDB_dbi, clean: Bool) {
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

    static func openEnv(_ directory: String, mapSize: Int, flags: UInt32) throws -> OpaquePointer {
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

    static func removeFiles(_ directory: String) {
        unlink(directory + "/data.mdb")
        unlink(directory + "/lock.mdb")
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

private func closeDescriptor(_ fd: Int32) { close(fd) }
