// Small LMDB helpers shared by the store's files: transactions, keys, values, and the lock that
// guards the environment's lifetime.
import CLMDB
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension LMDBStore {
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
