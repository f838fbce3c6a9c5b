import Foundation
import MXCore

/// What the daemon remembers about one server name (stored as the LMDB record's payload).
public struct CacheEntry: Codable, Sendable, Equatable {
    public enum Outcome: Codable, Sendable, Equatable {
        case answer(Resolution)
        case failure(ResolutionFailure)
    }

    public var serverName: String
    public var outcome: Outcome
    public var fetchedAt: Double
    public var expiresAt: Double
    /// The well-known's own state and lifetime: reused (not refetched) while fresh.
    public var wellKnown: WellKnownOutcome?
    public var wellKnownExpiresAt: Double?
    /// When the well-known was last fetched (its refresh-ahead window starts at 80 % of its lifetime).
    public var wellKnownFetchedAt: Double?
    /// Consecutive failed well-known fetches (drives its back-off).
    public var wellKnownFailures: Int
    /// Consecutive failed resolutions of the whole name (drives its back-off; 0 after a success).
    public var consecutiveFailures: Int
    /// The last good answer, kept through temporary failures for a bounded grace.
    public var lastGood: Resolution?
    public var lastGoodExpiresAt: Double?

    public var answer: Resolution? {
        if case .answer(let r) = outcome { return r }
        return nil
    }

    public var failure: ResolutionFailure? {
        if case .failure(let f) = outcome { return f }
        return nil
    }

    public var isFailure: Bool { failure != nil }

    /// The remembered well-known result, if a resolution at `now` may reuse it instead of
    /// refetching: fresh and, for a delegation, not yet in the last fifth of its lifetime (so refresh-ahead refetches it).
    public func reusableWellKnown(now: Double) -> WellKnownOutcome? {
        guard let wk = wellKnown, let until = wellKnownExpiresAt, now < until else { return nil }
        // A remembered failure is retried when its back-off ends, not earlier.
        if !wk.result.isFailure,
           CachePolicy.shouldRefreshAhead(fetchedAt: wellKnownFetchedAt ?? fetchedAt, expiresAt: until, now: now) { return nil }
        return wk
    }

    /// The LMDB value. A success's last good answer is the answer itself, so it is not stored twice.
    public func encoded() -> [UInt8] {
        var stored = self
        if case .answer(let a) = outcome, lastGood == a, lastGoodExpiresAt == expiresAt {
            stored.lastGood = nil
            stored.lastGoodExpiresAt = nil
        }
        return (try? Array(JSONEncoder().encode(stored))) ?? []
    }

    public static func decode(_ bytes: [UInt8]) -> CacheEntry? {
        guard var e = try? JSONDecoder().decode(CacheEntry.self, from: Data(bytes)) else { return nil }
        if case .answer(let a) = e.outcome, e.lastGood == nil {
            e.lastGood = a
            e.lastGoodExpiresAt = e.expiresAt
        }
        return e
    }
}

/// How a finished resolution updates a name's entry: pure, so every rule is unit-tested with a
/// fixed clock and fixed jitter (see docs/caching.md for the numbers and why).
public enum CacheUpdate {
    public static let temporaryCodes: Set<FailureCode> = [.dnsTimeout, .dnsServfail, .dnsRefused, .dnsError, .timeout]

    /// The well-known's own remembered state: when it expires, when it was fetched, how many
    /// fetches in a row failed. Renewed only when this resolution really fetched it.
    struct WellKnownMemory {
        var expiresAt: Double?
        var fetchedAt: Double?
        var failures: Int

        init(previous: CacheEntry?, fetched: WellKnownOutcome?, now: Double, jitter: Double) {
            expiresAt = previous?.wellKnownExpiresAt
            fetchedAt = previous?.wellKnownFetchedAt
            failures = previous?.wellKnownFailures ?? 0
            guard let wk = fetched else { return }
            fetchedAt = now
            switch wk.result {
            case .delegated:
                failures = 0
                expiresAt = now + CachePolicy.wellKnownLifetime(headerLifetime: wk.headerLifetime, jitter: jitter)
            case .failed(_, _, let temporary):
                failures += 1
                // A temporary failure (connect, TLS, 5xx, timeout) may heal soon: back off from a minute.
                // A permanent one (404, invalid body) is the server's answer: remember it for the spec's
                // hour, as Synapse does, rather than refetching after 1, 2, 4… minutes.
                expiresAt = now + (temporary
                    ? CachePolicy.failureDelay(consecutiveFailures: failures, jitter: jitter)
                    : CachePolicy.failureMaxDelay * (1 - CachePolicy.failureJitter * (jitter + 1) / 2))
            }
        }
    }

    /// `jitter` is in [-1, 1]. Returns the name's new entry.
    public static func apply(serverName: String, previous: CacheEntry?, result: Result<Resolution, ResolutionFailure>,
                             usedCachedWellKnown: Bool, now: Double, jitter: Double) -> CacheEntry {
        switch result {
        case .success(var answer):
            answer.trace = []
            let wk = WellKnownMemory(previous: previous, fetched: usedCachedWellKnown ? nil : answer.wellKnown, now: now, jitter: jitter)
            // Only a delegation bounds the answer's lifetime: a remembered failure is not a success lifetime,
            // and answers without a well-known (IP literal, explicit port) follow their DNS TTLs.
            var wkRemaining: Double?
            if case .delegated? = answer.wellKnown?.result, let until = wk.expiresAt { wkRemaining = max(0, until - now) }
            let lifetime = CachePolicy.answerLifetime(wellKnown: wkRemaining, srvTTL: answer.srvTTL, addressTTL: answer.addressTTL)
            return CacheEntry(serverName: serverName, outcome: .answer(answer), fetchedAt: now, expiresAt: now + lifetime,
                              wellKnown: answer.wellKnown, wellKnownExpiresAt: wk.expiresAt, wellKnownFetchedAt: wk.fetchedAt,
                              wellKnownFailures: wk.failures, consecutiveFailures: 0, lastGood: answer, lastGoodExpiresAt: now + lifetime)
        case .failure(var failure):
            failure.trace = []
            let failures = (previous?.consecutiveFailures ?? 0) + 1
            let wk = WellKnownMemory(previous: previous, fetched: usedCachedWellKnown ? nil : failure.wellKnown, now: now, jitter: jitter)
            let lifetime = CachePolicy.failureLifetime(consecutiveFailures: failures, negativeTTL: failure.negativeTTL, jitter: jitter)
            return CacheEntry(serverName: serverName, outcome: .failure(failure), fetchedAt: now, expiresAt: now + lifetime,
                              wellKnown: failure.wellKnown ?? previous?.wellKnown, wellKnownExpiresAt: wk.expiresAt,
                              wellKnownFetchedAt: wk.fetchedAt, wellKnownFailures: wk.failures, consecutiveFailures: failures,
                              lastGood: previous?.lastGood, lastGoodExpiresAt: previous?.lastGoodExpiresAt)
        }
    }

    /// Whether a failed refresh may keep serving the last good answer (Synapse's grace rule, bounded).
    public static func mayServeStale(_ entry: CacheEntry, now: Double) -> Bool {
        guard let failure = entry.failure, temporaryCodes.contains(failure.code),
              entry.lastGood != nil, let goodUntil = entry.lastGoodExpiresAt else { return false }
        return CachePolicy.canServeStale(lastGoodExpiresAt: goodUntil, now: now, failureIsTemporary: true)
    }
}
