/// What the cache does with a name's entry, as pure functions of (entry, outcome, now[, jitter]):
/// what a request is served, which well-known a resolution may reuse, and how a finished resolution
/// changes the entry. The numbers are `CachePolicy`'s; docs/caching.md states the same rules in prose.
/// The daemon only applies these decisions (it never re-derives one).
public enum CacheRules {
    // MARK: Failure kinds

    /// Failures that may heal by themselves in a moment (a lost packet, an overloaded or restarting
    /// server): they keep the last good answer for the grace instead of replacing it.
    public static let temporaryFailureCodes: Set<FailureCode> = [.dnsTimeout, .dnsServfail, .dnsRefused, .dnsError, .timeout]
    /// Failures that are the name's real state (the records say so): they replace the last good answer.
    public static let permanentFailureCodes: Set<FailureCode> = [.srvTargetIsCNAME, .srvServiceUnavailable, .noAddress, .addressDenied]
    /// Failures never cached: nothing upstream was asked (the name is invalid, which never changes)
    /// or nothing was learnt (the resolution was cancelled).
    public static let uncachedFailureCodes: Set<FailureCode> = [.invalidServerName, .cancelled]

    // MARK: Serving

    /// What a request for a cached name gets.
    public enum Serving: Sendable, Equatable {
        /// The entry's answer; `refreshAhead` when it is in the last fifth of its lifetime.
        case fresh(Resolution, refreshAhead: Bool)
        /// The last good answer, kept through a temporary failure.
        case stale(Resolution)
        /// The remembered failure, until its back-off ends.
        case failure(ResolutionFailure)
        /// Nothing usable: the request needs the network.
        case expired
    }

    public static func serving(_ entry: CacheEntry, now: Double) -> Serving {
        guard now < entry.expiresAt else { return .expired }
        switch entry.outcome {
        case .answer(let answer):
            return .fresh(answer, refreshAhead: CachePolicy.shouldRefreshAhead(fetchedAt: entry.fetchedAt,
                                                                              expiresAt: entry.expiresAt, now: now))
        case .failure(let failure):
            if mayServeStale(entry, now: now), let good = entry.lastGood { return .stale(good) }
            return .failure(failure)
        }
    }

    /// Whether a failed entry may serve its last good answer: only after a temporary failure, and
    /// only until `staleGraceLimit` past the moment that answer expired.
    public static func mayServeStale(_ entry: CacheEntry, now: Double) -> Bool {
        guard let failure = entry.failure, temporaryFailureCodes.contains(failure.code),
              entry.lastGood != nil, let goodUntil = entry.lastGoodExpiresAt else { return false }
        return CachePolicy.canServeStale(lastGoodExpiresAt: goodUntil, now: now, failureIsTemporary: true)
    }

    // MARK: Starting a resolution

    /// The remembered well-known result a resolution at `now` may use instead of fetching: fresh
    /// and, for a delegation, not yet in the last fifth of its lifetime (so refresh-ahead refetches
    /// it). A remembered failure is reused until its back-off ends, never retried earlier.
    public static func reusableWellKnown(_ entry: CacheEntry?, now: Double) -> WellKnownOutcome? {
        guard let entry, let wk = entry.wellKnown, let until = entry.wellKnownExpiresAt, now < until else { return nil }
        if !wk.result.isFailure,
           CachePolicy.shouldRefreshAhead(fetchedAt: entry.wellKnownFetchedAt ?? entry.fetchedAt, expiresAt: until, now: now) {
            return nil
        }
        return wk
    }

    /// After a resolution that fetched the well-known (`reused` is nil) and got a temporary failure:
    /// the previous delegation, when the name had one and the grace since that delegation's own
    /// expiry (which reusing it does not extend) has not run out. The caller resolves again with it,
    /// so a blip at the well-known host does not silently move the name to port 8448 (Synapse does
    /// the same). Nil otherwise: the result stands.
    public static func delegationToKeep(previous: CacheEntry?, reused: WellKnownOutcome?,
                                        fetched: WellKnownOutcome?, now: Double) -> WellKnownOutcome? {
        guard reused == nil, let previous, let kept = previous.wellKnown, case .delegated = kept.result,
              let fetched, case .failed(_, _, true) = fetched.result,
              CachePolicy.canServeStale(lastGoodExpiresAt: previous.wellKnownExpiresAt ?? 0, now: now, failureIsTemporary: true)
        else { return nil }
        return kept
    }

    // MARK: Finishing a resolution

    /// Whether a failure is remembered at all (answers always are).
    public static func isCached(_ failure: ResolutionFailure) -> Bool {
        !uncachedFailureCodes.contains(failure.code)
    }

    /// The name's new entry after a resolution finished at `now` (for a failure, only when
    /// `isCached`). `usedCachedWellKnown`: the resolution reused the remembered well-known, so its
    /// lifetime and failure count are not renewed. `jitter` is in [-1, 1].
    public static func updated(_ previous: CacheEntry?, serverName: String, result: Result<Resolution, ResolutionFailure>,
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
                expiresAt = now + (temporary
                    ? CachePolicy.failureDelay(consecutiveFailures: failures, jitter: jitter)
                    : CachePolicy.permanentWellKnownFailureLifetime(jitter: jitter))
            }
        }
    }
}
