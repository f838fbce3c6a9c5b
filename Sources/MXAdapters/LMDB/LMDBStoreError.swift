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
