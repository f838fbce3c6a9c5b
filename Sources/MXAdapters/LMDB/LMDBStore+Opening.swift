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
        var movedTo: String?
    }

    static func openReadOnly(directory: String, mapSize: Int, verifier: CacheVerifier?) throws -> Opened {
        guard access(directory + "/data.mdb", R_OK) == 0 else { throw LMDBStoreError.missing(path: directory) }
        if let damage = damageFound(directory, verifier: verifier) { throw LMDBStoreError.damaged(damage) }
        var flags = UInt32(MDB_RDONLY | MDB_NOTLS)
        // A lock file owned by the daemon's user, or one that cannot get its blocks (a full disk):
        // read without registering as a reader (safe because no writer runs, see docs/caching.md).
        let lockPath = directory + "/lock.mdb"
        if access(lockPath, W_OK) != 0 && errno != ENOENT { flags |= UInt32(MDB_NOLOCK) }
        else if (try? reserveLockFile(directory)) == nil { flags |= UInt32(MDB_NOLOCK) }
        let env = try openEnv(directory, mapSize: mapSize, flags: flags)
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

    /// Why the cache file in `directory` must not be opened, or nil. The meta pages are checked
    /// here (pread only); the full walk runs in `verifier`'s child process unless the file is
    /// exactly as an orderly close left it (the clean-close mark matches it).
    static func damageFound(_ directory: String, verifier: CacheVerifier?) -> String? {
        if case .damaged(let why) = LMDBFileCheck.inspect(directory + "/data.mdb") { return why }
        guard let verifier, !CleanCloseMark.matches(directory) else { return nil }
        switch verifier.verify(directory) {
        case .sound: return nil
        case .damaged(let why): return why
        case .unavailable(let why): return "it could not be verified (\(why))"
        }
    }

    /// LMDB error codes that mean the file, not the system, is at fault.
    static let damageCodes: Set<Int32> = [MDB_INVALID, MDB_VERSION_MISMATCH, MDB_CORRUPTED, MDB_PANIC, MDB_PAGE_NOTFOUND, MDB_BAD_TXN, MDB_BAD_DBI]

    /// Opens or creates the writer's environment, rebuilding it when it is not usable as is. A
    /// damaged file (`damageFound`, or LMDB reporting corruption while opening) is moved aside.
    static func openWriter(directory: String, mapSize: Int, flags: UInt32, verifier: CacheVerifier?) throws -> Opened {
        var reason: String?
        var fromFormat: String?
        var movedTo: String?
        func setAside(_ why: String) {
            movedTo = quarantine(directory)
            reason = "the cache file was damaged (\(why))"
            fromFormat = "damaged"
        }
        if let damage = damageFound(directory, verifier: verifier) { setAside(damage) }
        CleanCloseMark.remove(directory) // the file changes from here on
        try reserveLockFile(directory)
        var env: OpaquePointer
        do {
            env = try openEnv(directory, mapSize: mapSize, flags: flags)
        } catch LMDBStoreError.lmdb(let op, let code) where damageCodes.contains(code) {
            setAside("\(LMDBStoreError.lmdb(operation: op, code: code))")
            try reserveLockFile(directory)
            env = try openEnv(directory, mapSize: mapSize, flags: flags)
        }
        var dead: Int32 = 0
        mdb_reader_check(env, &dead)
        do {
            var preparation: Preparation
            do {
                preparation = try prepare(env)
            } catch LMDBStoreError.lmdb(let op, let code) where damageCodes.contains(code) {
                mdb_env_close(env)
                setAside("\(LMDBStoreError.lmdb(operation: op, code: code))")
                try reserveLockFile(directory)
                env = try openEnv(directory, mapSize: mapSize, flags: flags)
                preparation = try prepare(env)
            }
            switch preparation {
            case .ready(let meta, let data, let previousFormat):
                if let previousFormat {
                    fromFormat = previousFormat
                    reason = "the cache was written in format \(previousFormat), not \(formatVersion)"
                }
                return Opened(env: env, data: data, meta: meta, rebuiltFromFormat: fromFormat, reason: reason, movedTo: movedTo)
            case .recreate(let why):
                mdb_env_close(env)
                removeFiles(directory)
                try reserveLockFile(directory)
                env = try openEnv(directory, mapSize: mapSize, flags: flags)
                guard case .ready(let meta, let data, _) = try prepare(env) else {
                    throw LMDBStoreError.lmdb(operation: "recreate cache", code: MDB_INCOMPATIBLE)
                }
                return Opened(env: env, data: data, meta: meta, rebuiltFromFormat: fromFormat ?? "unknown", reason: why, movedTo: movedTo)
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
        CleanCloseMark.remove(directory)
    }

    /// LMDB's lock file for 512 readers is 32 896 bytes (64 per reader slot + 192), written through
    /// a shared map: on a full file system, touching a page of it that has no block yet is SIGBUS.
    /// Allocating its blocks first turns that into ENOSPC here; LMDB sizes its reader table to the
    /// file it finds.
    static let lockFileBytes = 40 << 10

    static func reserveLockFile(_ directory: String) throws {
        let path = directory + "/lock.mdb"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, fileMode)
        guard fd >= 0 else { throw LMDBStoreError.system(operation: "open \(path)", errno: errno) }
        defer { closeDescriptor(fd) }
        var st = stat()
        let size = fstat(fd, &st) == 0 ? max(Int(st.st_size), lockFileBytes) : lockFileBytes
        let rc = posix_fallocate(fd, 0, off_t(size))
        // (a file system without fallocate is left to LMDB as before)
        guard rc == 0 || rc == EOPNOTSUPP || rc == EINVAL else {
            throw LMDBStoreError.system(operation: "reserve \(path)", errno: rc)
        }
    }

    /// Moves a damaged `data.mdb` aside as `data.mdb.bad-<UTC time>` (keeping the two newest such
    /// files, for a look at what happened) and removes the lock file; returns the new path, nil if
    /// the file could only be deleted.
    static func quarantine(_ directory: String) -> String? {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let stamp = "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
        var target: String? = directory + "/data.mdb.bad-" + stamp
        if rename(directory + "/data.mdb", target!) != 0 {
            unlink(directory + "/data.mdb")
            target = nil
        }
        unlink(directory + "/lock.mdb")
        CleanCloseMark.remove(directory)
        var kept: [String] = []
        if let dir = opendir(directory) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                if name.hasPrefix("data.mdb.bad-") { kept.append(name) }
            }
            closedir(dir)
        }
        for old in kept.sorted().dropLast(2) { unlink(directory + "/" + old) }
        return target
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
