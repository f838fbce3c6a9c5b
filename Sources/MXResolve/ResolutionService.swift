import Dispatch
import Logging
import MXCore
import MXRender

/// The shared cache in front of the resolver: answers hits inline on the caller's thread,
/// coalesces concurrent misses for a name into one upstream resolution (single-flight),
/// refreshes busy names ahead of expiry, and persists every change to its `CacheStore`. What to
/// serve, what to reuse and how an entry changes are `CacheRules`' decisions; this only acts on them.
public final class ResolutionService: Sendable {
    public enum Source: String, Sendable { case cache, network, stale }

    public struct Reply: Sendable {
        public var serverName: String
        /// The answer to hand out (nil when `failure` is set).
        public var answer: Resolution?
        public var failure: ResolutionFailure?
        public var source: Source
        public var expiresIn: Int
        public var trace: [String]
        /// The answer's fields pre-rendered for the wire, when the cache has them.
        public var renderedFields: [UInt8]? = nil
    }

    public typealias Completion = @Sendable (Reply) -> Void

    let resolver: ServerResolver
    let store: any CacheStore
    let stats: Statistics
    let logger: Logger
    let now: @Sendable () -> Double
    /// Decoded entries of names in use (the store holds them all) and when each was last used
    /// (written to the store in batches, never per hit). One lock for all of it, and one dictionary
    /// look-up per hit.
    private struct Memory {
        var names: [String: Cached] = [:]
        /// Names whose `lastUsed` the store has not been told yet.
        var touchedNames: [String] = []
        /// Last-use times of names dropped from memory before they were written.
        var droppedTouches: [String: Double] = [:]
    }
    /// A class, so a hit's look-up copies one reference, not the entry. Its one variable is touched
    /// only under the `memory` lock: that is what makes `@unchecked Sendable` sound.
    private final class Cached: @unchecked Sendable {
        let entry: CacheEntry
        /// The answer's text while it is plainly fresh (no inet_ntop, no rendering per hit).
        let hit: HitText?
        /// When a request last used it, until written to the store.
        var lastUsed: Double?

        init(_ name: String, _ entry: CacheEntry) {
            self.entry = entry
            hit = HitText(name: name, entry: entry)
        }

        /// Marks it used at `t`; true when no earlier use waits to be written.
        func use(at t: Double) -> Bool {
            defer { lastUsed = t }
            return lastUsed == nil
        }
    }
    private let memory = PthreadMutex(Memory())
    /// Names with a resolution in flight → who waits for it.
    private let inflight = PthreadMutex<[String: [Completion]]>([:])
    /// Store writes happen here, off the I/O threads and off the request path.
    private let writer = DispatchQueue(label: "mxresolved.cache-writer")
    private let work = DispatchQueue(label: "mxresolved.resolutions", attributes: .concurrent)

    /// Decoded entries kept in memory at most; the store holds every entry regardless.
    let memoryLimit: Int

    public init(resolver: ServerResolver, store: any CacheStore, stats: Statistics, logger: Logger, memoryLimit: Int = 100_000,
                now: @escaping @Sendable () -> Double = { wallClockSeconds() }) {
        self.memoryLimit = memoryLimit
        self.resolver = resolver
        self.store = store
        self.stats = stats
        self.logger = logger
        self.now = now
    }

    // MARK: Hot path

    /// The hottest path: the text of a plainly fresh answer held in memory (nil for anything else,
    /// which `cachedReply` decides). One lock, one look-up.
    func plainlyFreshHit(for name: String, now t: Double) -> HitText? {
        memory.withLock { m -> HitText? in
            guard let cached = m.names[name], let hit = cached.hit, t < hit.freshUntil else { return nil }
            if cached.use(at: t) { m.touchedNames.append(name) }
            return hit
        }
    }

    /// A cached reply, or nil when the request needs the network. Runs on the caller's thread.
    public func cachedReply(for name: String) -> Reply? {
        let t = now()
        let inMemory = memory.withLock { m -> (entry: CacheEntry, fields: [UInt8]?)? in
            guard let cached = m.names[name] else { return nil }
            if cached.use(at: t) { m.touchedNames.append(name) }
            return (cached.entry, cached.hit?.fields)
        }
        guard let (entry, fields) = inMemory ?? loadFromStore(name, touchedAt: t) else { return nil }
        switch CacheRules.serving(entry, now: t) {
        case .fresh(let answer, let refreshAhead):
            if refreshAhead { refresh(name) }
            return Reply(serverName: name, answer: answer, failure: nil, source: .cache,
                         expiresIn: Int(entry.expiresAt - t), trace: [], renderedFields: fields)
        case .stale(let good, let revalidate):
            // Served at once: nobody waits for a host the daemon already knows is failing.
            if revalidate { revalidateStale(name) }
            return Reply(serverName: name, answer: good, failure: nil, source: .stale, expiresIn: 0, trace: [])
        case .failure(let failure):
            return Reply(serverName: name, answer: nil, failure: failure, source: .cache,
                         expiresIn: Int(entry.expiresAt - t), trace: [])
        case .expired:
            return nil
        }
    }

    func entry(for name: String) -> CacheEntry? {
        memory.withLock({ $0.names[name]?.entry }) ?? loadFromStore(name, touchedAt: nil)?.entry
    }

    private func loadFromStore(_ name: String, touchedAt: Double?) -> (entry: CacheEntry, fields: [UInt8]?)? {
        guard let e = store.get(name) else { return nil }
        let cached = remember(name, e, touchedAt: touchedAt)
        return (e, cached.hit?.fields)
    }

    /// Keeps `entry` in memory (its last use carried over, or `touchedAt`); past `memoryLimit` names,
    /// an eighth of them (in hash order, so effectively at random) fall back to being read from the
    /// store on their next use.
    @discardableResult
    private func remember(_ name: String, _ entry: CacheEntry, touchedAt: Double? = nil) -> Cached {
        let cached = Cached(name, entry)
        let limit = memoryLimit
        memory.withLock { m in
            cached.lastUsed = touchedAt ?? m.names[name]?.lastUsed
            if cached.lastUsed != nil && m.names[name]?.lastUsed == nil { m.touchedNames.append(name) }
            m.names[name] = cached
            if m.names.count > limit {
                for key in Array(m.names.keys.lazy.filter({ $0 != name }).prefix(max(1, limit / 8))) {
                    if let t = m.names.removeValue(forKey: key)?.lastUsed { m.droppedTouches[key] = t }
                }
            }
        }
        return cached
    }

    public var memoryCount: Int { memory.withLock { $0.names.count } }

    // MARK: Misses, coalesced

    /// Resolves through the network (joining a resolution already in flight for the name).
    public func resolve(_ name: String, completion: @escaping Completion) {
        resolve(name, fresh: false, completion: completion)
    }

    /// `cache=no`: resolves afresh, refetching the well-known too; the answer replaces the cached one.
    public func resolveFresh(_ name: String, completion: @escaping Completion) {
        resolve(name, fresh: true, completion: completion)
    }

    /// `completion` nil: a background resolution nobody waits for (later requests may still join it).
    func resolve(_ name: String, fresh: Bool, completion: Completion?) {
        let first: Bool = inflight.withLock { table in
            if table[name] != nil {
                if let completion { table[name]!.append(completion) }
                return false
            }
            table[name] = completion.map { [$0] } ?? []
            return true
        }
        if !first {
            stats.coalesced.add(1)
            return
        }
        stats.inflight.wrappingAdd(1, ordering: .relaxed)
        let previous = entry(for: name)
        let t = now()
        let known = fresh ? nil : CacheRules.reusableWellKnown(previous, now: t)
        start(name, previous: previous, known: known, attempts: CacheRules.wellKnownAttempts(previous, now: t), fetchFailure: nil)
    }

    /// `fetchFailure`: this resolution's own fetch failed temporarily and `known` is the delegation
    /// kept through it.
    private func start(_ name: String, previous: CacheEntry?, known: WellKnownOutcome?, attempts: Int, fetchFailure: WellKnownOutcome?) {
        resolver.resolve(name, knownWellKnown: known, wellKnownAttempts: attempts) { [self] result in
            // The resolver completes on an I/O thread or its deadline's timer queue: leave it at once.
            work.async { [self] in
                let found = wellKnown(of: result)
                if let kept = CacheRules.delegationToKeep(previous: previous, reused: known, fetched: found, now: now()) {
                    logger.info("well-known refresh failed temporarily; keeping the previous delegation",
                                metadata: ["name": "\(name)"])
                    start(name, previous: previous, known: kept, attempts: 1, fetchFailure: found)
                    return
                }
                finish(name, previous: previous, result: result, fetched: fetchFailure ?? (known == nil ? found : nil))
            }
        }
    }

    private func wellKnown(of result: Result<Resolution, ResolutionFailure>) -> WellKnownOutcome? {
        switch result {
        case .success(let r): return r.wellKnown
        case .failure(let f): return f.wellKnown
        }
    }

    private func finish(_ name: String, previous: CacheEntry?, result: Result<Resolution, ResolutionFailure>, fetched: WellKnownOutcome?) {
        let t = now()
        let trace: [String]
        switch result {
        case .success(let r): trace = r.trace
        case .failure(let f): trace = f.trace
        }
        if case .success(let r) = result { r.warnings.forEach(stats.count(warning:)) }
        var reply: Reply
        if case .failure(let f) = result, !CacheRules.isCached(f) {
            reply = Reply(serverName: name, answer: nil, failure: f, source: .network, expiresIn: 0, trace: trace)
        } else {
            let entry = CacheRules.updated(previous, serverName: name, result: result, fetched: fetched,
                                           now: t, jitter: Double.random(in: -1...1))
            remember(name, entry)
            // Committed before anyone is told: an acknowledged answer survives a crash.
            persist(entry, lastUsed: t)
            if CacheRules.givesUpStale(previous: previous, next: entry) {
                logger.warning("still failing after the grace; the last good answer is given up", metadata: ["name": "\(name)"])
                stats.staleGivenUp.add(1)
            }
            switch CacheRules.serving(entry, now: t) {
            case .fresh(let answer, _):
                stats.count(step: answer.step)
                reply = Reply(serverName: name, answer: answer, failure: nil, source: .network,
                              expiresIn: Int(entry.expiresAt - t), trace: trace)
            case .stale(let good, _):
                logger.warning("resolution failed temporarily; serving the last good answer",
                               metadata: ["name": "\(name)", "code": "\(failureCode(of: entry))"])
                reply = Reply(serverName: name, answer: good, failure: nil, source: .stale, expiresIn: 0, trace: trace)
            case .failure, .expired:
                // (a new entry lives at least 30 s, so it is never already expired)
                reply = Reply(serverName: name, answer: nil, failure: entry.failure, source: .network,
                              expiresIn: Int(entry.expiresAt - t), trace: trace)
            }
        }
        if let f = reply.failure { stats.count(failure: f.code) }
        logger.debug("resolved", metadata: [
            "name": "\(name)", "source": "\(reply.source.rawValue)",
            "result": "\(reply.answer.map { "step \($0.step.rawValue)" } ?? reply.failure?.code.rawValue ?? "?")",
            "valid_s": "\(reply.expiresIn)",
        ])
        let waiters = inflight.withLock { $0.removeValue(forKey: name) ?? [] }
        stats.inflight.wrappingSubtract(1, ordering: .relaxed)
        // Counted per reply, like a stale hit: a background revalidation serves nobody.
        if reply.source == .stale { stats.stale.add(waiters.count) }
        for w in waiters { w(reply) }
    }

    private func failureCode(of entry: CacheEntry) -> String {
        if let f = entry.failure { return f.code.rawValue }
        if case .failed(let code, _, _)? = entry.wellKnown?.result { return code }
        return "?"
    }

    private func persist(_ entry: CacheEntry, lastUsed: Double) {
        writer.sync { [self] in
            do {
                try store.put(entry, lastUsed: lastUsed)
            } catch is CacheStoreUnavailable {
                // The store logs a failing disk once per episode, not once per write.
            } catch {
                logger.error("cache write failed", metadata: ["name": "\(entry.serverName)", "error": "\(error)"])
            }
        }
    }

    /// Background re-resolution; hits keep being served the current answer until it lands.
    public func refresh(_ name: String) { resolveInBackground(name, fresh: false) }

    /// Refetches everything about `name`, including its well-known, now.
    public func revalidate(_ name: String) { resolveInBackground(name, fresh: true) }

    /// A stale name whose back-off is over: resolved again in the background (the back-off, not the
    /// requests, sets the pace), while requests keep being served the stale answer.
    func revalidateStale(_ name: String) {
        if resolveInBackground(name, fresh: false) { stats.staleRevalidations.add(1) }
    }

    /// Starts a resolution nobody waits for; false when one is already in flight for the name.
    @discardableResult
    private func resolveInBackground(_ name: String, fresh: Bool) -> Bool {
        if inflight.withLock({ $0[name] != nil }) { return false }
        resolve(name, fresh: fresh, completion: nil)
        return true
    }

    // MARK: Admin

    public enum FlushScope: Sendable { case all, names([String]) }

    /// Removes entries; successes are kept when `failuresOnly`.
    public func flush(_ scope: FlushScope, failuresOnly: Bool) -> Int {
        drainWrites()
        let keep: @Sendable (CacheEntry) -> Bool = { failuresOnly ? !$0.isFailure : false }
        var removed = 0
        switch scope {
        case .all:
            memory.withLock { m in m.names = m.names.filter { keep($0.value.entry) } }
            removed = store.deleteAll { !keep($0) }
        case .names(let names):
            for n in names {
                let e = entry(for: n)
                guard let e, !keep(e) else { continue }
                memory.withLock { m in _ = m.names.removeValue(forKey: n) }
                if store.delete(n) { removed += 1 }
            }
        }
        return removed
    }

    public func drainWrites() { writer.sync {} }

    /// Writes batched last-use times (called periodically and at shutdown).
    public func flushTouches() {
        let batch = memory.withLock { m -> [String: Double] in
            var b = m.droppedTouches
            m.droppedTouches = [:]
            for name in m.touchedNames {
                guard let cached = m.names[name], let t = cached.lastUsed else { continue }
                b[name] = t
                cached.lastUsed = nil
            }
            m.touchedNames = []
            return b
        }
        if batch.isEmpty { return }
        writer.async { [store] in store.touch(batch) }
    }

    public var inflightCount: Int { inflight.withLock { $0.count } }
}
