import MXCore

/// A `CacheStore` in memory, for the cache service's tests. Entries go through `CacheRecord` as in
/// the LMDB store, so what the service reads back is what a real store would give it.
final class InMemoryCacheStore: CacheStore {
    private let records = PthreadMutex<[String: [UInt8]]>([:])

    func get(_ name: String) -> CacheEntry? {
        records.withLock { $0[name] }.flatMap { try? CacheRecord.decode(key: name, $0) }
    }

    func put(_ entry: CacheEntry, lastUsed: Double) throws {
        let bytes = CacheRecord.encode(entry, lastUsed: lastUsed)
        records.withLock { $0[entry.serverName] = bytes }
    }

    func delete(_ name: String) -> Bool {
        records.withLock { $0.removeValue(forKey: name) != nil }
    }

    func deleteAll(where predicate: (CacheEntry) -> Bool) -> Int {
        let doomed = scan(after: nil, limit: Int.max).entries.filter(predicate).map(\.serverName)
        return doomed.filter(delete).count
    }

    func scan(after: String?, limit: Int) -> CacheScanPage {
        let keys = records.withLock { Array($0.keys) }
            .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            .filter { after == nil || Array(after!.utf8).lexicographicallyPrecedes(Array($0.utf8)) }
        let page = keys.prefix(max(1, limit))
        return CacheScanPage(entries: page.compactMap(get), next: page.count < keys.count ? page.last : nil)
    }

    /// The last use the record holds.
    func lastUsed(of name: String) -> Double? {
        records.withLock { $0[name] }.flatMap { bytes in bytes.withUnsafeBytes { CacheRecord.header($0)?.lastUsed } }
    }

    func touch(_ lastUsed: [String: Double]) -> Int {
        records.withLock { records in
            var updated = 0
            for (name, when) in lastUsed {
                guard let bytes = records[name],
                      let raised = bytes.withUnsafeBytes({ raw -> [UInt8]? in
                          guard let h = CacheRecord.header(raw), when > h.lastUsed else { return nil }
                          return CacheRecord.settingLastUsed(when, in: raw)
                      }) else { continue }
                records[name] = raised
                updated += 1
            }
            return updated
        }
    }

    var statistics: CacheStoreStatistics {
        records.withLock { r in
            CacheStoreStatistics(entries: r.count, usedBytes: r.reduce(0) { $0 + $1.key.utf8.count + $1.value.count },
                                 capacityBytes: 0, evictions: 0)
        }
    }
}
