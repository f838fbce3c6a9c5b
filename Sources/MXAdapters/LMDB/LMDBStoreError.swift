import CLMDB
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum LMDBStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    case lmdb(operation: String, code: Int32)
    case system(operation: String, errno: Int32)
    /// Read-only open of a directory without a cache in it.
    case missing(path: String)
    /// Read-only open of a cache written in another format (only a writer rebuilds).
    case incompatibleFormat(found: String)
    /// Read-only open of a cache file that failed its check or verification (a writer moves it aside).
    case damaged(String)
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
        case .damaged(let why): return "the cache file is damaged: \(why)"
        case .invalidKey(let key): return "invalid cache key (empty or over 511 bytes): \(key.prefix(64))"
        case .recordTooLarge(let bytes, let map): return "a \(bytes)-byte record does not fit in a \(map)-byte cache map"
        case .readOnly: return "the cache was opened read-only"
        case .closed: return "the cache is closed"
        }
    }

    /// The system, not the file or the caller, failed the write: a full disk, a quota, an I/O
    /// error, a read-only remount. Writes are retried after a pause, and the episode reported once.
    var isStorageFailure: Bool {
        let storage: Set<Int32> = [ENOSPC, EDQUOT, EIO, EROFS, ENOMEM, MDB_PANIC]
        switch self {
        case .lmdb(_, let code): return storage.contains(code)
        case .system(_, let e): return storage.contains(e)
        default: return false
        }
    }
}
