/// Where cache entries persist, keyed by the server name exactly as asked. The LMDB store is the
/// daemon's; tests use an in-memory one. Any thread may call anything. A record that cannot be read
/// (damaged, another layout) is absent to `get` and `scan`, and may be overwritten or evicted.
public protocol CacheStore: AnyObject, Sendable {
    /// The entry stored for `name`, or nil.
    func get(_ name: String) -> CacheEntry?
    /// Stores `entry` under its server name (replacing any), committed when this returns.
    /// `lastUsed` orders eviction.
    func put(_ entry: CacheEntry, lastUsed: Double) throws
    /// Removes one entry; false when there was none.
    @discardableResult func delete(_ name: String) -> Bool
    /// Removes the entries `predicate` selects; returns how many.
    @discardableResult func deleteAll(where predicate: (CacheEntry) -> Bool) -> Int
    /// Up to `limit` entries in key order (UTF-8 bytes), starting after the key `after` (from the
    /// first with nil). `next` continues the scan; nil when it reached the end.
    func scan(after: String?, limit: Int) -> CacheScanPage
    /// Raises the last-use time of existing entries (a hint for eviction); returns how many changed.
    @discardableResult func touch(_ lastUsed: [String: Double]) -> Int
    var statistics: CacheStoreStatistics { get }
}

/// What `put` throws while the store cannot write at all (a full disk): the store reports such an
/// episode once, when it starts and when it ends, so callers need not log each write it refuses.
public struct CacheStoreUnavailable: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { "the cache cannot be written: \(reason)" }
}

public struct CacheScanPage: Sendable {
    public var entries: [CacheEntry]
    /// The key to pass as `after` for the next page; nil at the end.
    public var next: String?

    public init(entries: [CacheEntry], next: String?) {
        self.entries = entries
        self.next = next
    }
}

public struct CacheStoreStatistics: Sendable, Hashable {
    public var entries: Int
    /// Bytes the entries occupy.
    public var usedBytes: Int
    /// The most the store may grow to (0: unbounded).
    public var capacityBytes: Int
    /// Entries removed to make room, since open.
    public var evictions: Int

    public init(entries: Int, usedBytes: Int, capacityBytes: Int, evictions: Int) {
        self.entries = entries
        self.usedBytes = usedBytes
        self.capacityBytes = capacityBytes
        self.evictions = evictions
    }
}

extension CacheStore {
    /// Every entry in key order, a page at a time; `body` runs between pages and may call the store.
    public func forEach(_ body: (CacheEntry) -> Void) {
        var after: String?
        repeat {
            let page = scan(after: after, limit: 512)
            page.entries.forEach(body)
            after = page.next
        } while after != nil
    }
}
