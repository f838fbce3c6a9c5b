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
        /// An answer the last attempt could not confirm (it failed temporarily), served at once within
        /// the grace. `revalidate`: the failure's back-off is over, so the caller starts a background
        /// resolution; nobody waits for it.
        case stale(Resolution, revalidate: Bool)
        /// The remembered failure, until its back-off ends.
        case failure(ResolutionFailure)
        /// Nothing usable: the request needs the network.
        case expired
    }

    public static func serving(_ entry: CacheEntry, now: Double) -> Serving {
        let due = now >= entry.expiresAt
        switch entry.outcome {
        case .answer(let answer):
            if servesKeptDelegation(entry) {
                return keptDelegation(entry, now: now) != nil ? .stale(answer, revalidate: due) : .expired
            }
            if due { return .expired }
            return .fresh(answer, refreshAhead: CachePolicy.shouldRefreshAhead(fetchedAt: entry.fetchedAt,
                                                                              expiresAt: entry.expiresAt, now: now))
        case .failure(let failure):
            if mayServeStale(entry, now: now), let good = entry.lastGood { return .stale(good, revalidate: due) }
            return due ? .expired : .failure(failure)
        }
    }

    /// The moment before which `serving(entry, now:)` is `.fresh(answer, refreshAhead: false)` for
    /// every `now` (nil when it never is): until then a hit needs no decision, so the daemon may
    /// answer it from text rendered once.
    public static func plainlyFreshUntil(_ entry: CacheEntry) -> Double? {
        guard case .answer = entry.outcome, !servesKeptDelegation(entry) else { return nil }
        return CachePolicy.refreshAheadStart(fetchedAt: entry.fetchedAt, expiresAt: entry.expiresAt)
    }

    /// Whether a failed entry may serve its last good answer: only after a temporary failure, and
    /// only until `staleGraceLimit` past the moment that answer expired.
    public static func mayServeStale(_ entry: CacheEntry, now: Double) -> Bool {
        guard let failure = entry.failure, temporaryFailureCodes.contains(failure.code),
              entry.lastGood != nil, let goodUntil = entry.lastGoodExpiresAt else { return false }
        return CachePolicy.canServeStale(lastGoodExpiresAt: goodUntil, now: now, failureIsTemporary: true)
    }

    /// The entry's answer is built from a delegation its last well-known fetch could not confirm.
    public static func servesKeptDelegation(_ entry: CacheEntry) -> Bool {
        guard case .delegated? = entry.answer?.wellKnown?.result, case .failed? = entry.wellKnown?.result else { return false }
        return true
    }

    /// The entry holds something it serves as stale (independent of the clock): an answer from a kept
    /// delegation, or a temporary failure with a last good answer.
    public static func holdsStale(_ entry: CacheEntry) -> Bool {
        if servesKeptDelegation(entry) { return true }
        guard let failure = entry.failure else { return false }
        return temporaryFailureCodes.contains(failure.code) && entry.lastGood != nil
    }

    /// What the entry's `stale` flag means on the wire (`source=stale`, `show-cache … stale=yes`): a
    /// request at `now` would be served a stale answer.
    public static func isStale(_ entry: CacheEntry, now: Double) -> Bool {
        if case .stale = serving(entry, now: now) { return true }
        return false
    }

    // MARK: Starting a resolution

    /// The remembered well-known result a resolution at `now` may use instead of fetching: fresh
    /// and, for a delegation, not yet in the last fifth of its lifetime (so refresh-ahead refetches
    /// it). A remembered failure is reused until its back-off ends, never retried earlier; while it
    /// is temporary and the grace lasts, the kept delegation is used in its place.
    public static func reusableWellKnown(_ entry: CacheEntry?, now: Double) -> WellKnownOutcome? {
        guard let entry, let wk = entry.wellKnown, let until = entry.wellKnownExpiresAt, now < until else { return nil }
        if wk.result.isFailure { return keptDelegation(entry, now: now) ?? wk }
        if CachePolicy.shouldRefreshAhead(fetchedAt: entry.wellKnownFetchedAt ?? entry.fetchedAt, expiresAt: until, now: now) {
            return nil
        }
        return wk
    }

    /// The delegation an entry keeps through a temporary failure of its well-known: the last one a
    /// fetch confirmed, until `staleGraceLimit` past that delegation's own expiry (which keeping it
    /// does not extend). Nil when the last fetch confirmed or permanently refused it.
    public static func keptDelegation(_ entry: CacheEntry, now: Double) -> WellKnownOutcome? {
        guard case .failed(_, _, true)? = entry.wellKnown?.result else { return nil }
        return delegationWithinGrace(entry, now: now)
    }

    /// After a resolution that fetched the well-known (`reused` is nil) and got a temporary failure:
    /// the previous delegation, when the name had one and the grace since that delegation's own
    /// expiry has not run out. The caller resolves again with it, so a blip at the well-known host
    /// does not silently move the name to port 8448 (Synapse does the same). Nil otherwise: the
    /// result stands.
    public static func delegationToKeep(previous: CacheEntry?, reused: WellKnownOutcome?,
                                        fetched: WellKnownOutcome?, now: Double) -> WellKnownOutcome? {
        guard reused == nil, let previous, let fetched, case .failed(_, _, true) = fetched.result else { return nil }
        return delegationWithinGrace(previous, now: now)
    }

    static func delegationWithinGrace(_ entry: CacheEntry, now: Double) -> WellKnownOutcome? {
        guard let delegation = entry.delegation, let until = entry.delegationExpiresAt,
              CachePolicy.canServeStale(lastGoodExpiresAt: until, now: now, failureIsTemporary: true) else { return nil }
        return delegation
    }

    /// How many times step 3 fetches the well-known before it counts as failed. Synapse's "had a
    /// valid well-known" rule: a name whose last fetch confirmed a delegation that is at most
    /// `staleGraceLimit` past its expiry retries briefly, so one lost connection does not put it in
    /// the stale state; a name already known to be failing does not (its back-off decides).
    public static func wellKnownAttempts(_ entry: CacheEntry?, now: Double) -> Int {
        guard let entry, case .delegated? = entry.wellKnown?.result, delegationWithinGrace(entry, now: now) != nil else { return 1 }
        return CachePolicy.wellKnownRecentlyValidAttempts
    }

    // MARK: Finishing a resolution

    /// Whether a failure is remembered at all (answers always are): not when it says nothing about
    /// the name, because the name is invalid, the request was cancelled, or the deadline passed
    /// while a lookup still waited in the daemon's own queue (a busy daemon, issue 13).
    public static func isCached(_ failure: ResolutionFailure) -> Bool {
        !uncachedFailureCodes.contains(failure.code) && !failure.localQueueTimeout
    }

    /// The name's new entry after a resolution finished at `now` (for a failure, only when
    /// `isCached`). `fetched`: what this resolution's own well-known fetch found (nil when it reused
    /// the remembered one, whose lifetime and failure count are then not renewed); it differs from
    /// the result's well-known when the answer was built from a kept delegation. `jitter` is in [-1, 1].
    public static func updated(_ previous: CacheEntry?, serverName: String, result: Result<Resolution, ResolutionFailure>,
                               fetched: WellKnownOutcome?, now: Double, jitter: Double) -> CacheEntry {
        let wk = WellKnownMemory(previous: previous, fetched: fetched, now: now, jitter: jitter)
        switch result {
        case .success(var answer):
            answer.trace = []
            let wellKnown = answer.wellKnown == nil ? nil : fetched ?? previous?.wellKnown ?? answer.wellKnown
            // An answer never outlives the well-known state it was built on: its delegation's lifetime,
            // or the back-off of the failure that sent it to steps 4–6 or that its delegation is kept through.
            let wkRemaining = answer.wellKnown == nil ? nil : wk.expiresAt.map { max(0, $0 - now) }
            let lifetime = CachePolicy.answerLifetime(wellKnown: wkRemaining, srvTTL: answer.srvTTL, addressTTL: answer.addressTTL,
                                                      srvNegativeTTL: answer.srvNegativeTTL)
            answer.srvNegativeTTL = nil
            var entry = CacheEntry(serverName: serverName, outcome: .answer(answer), fetchedAt: now, expiresAt: now + lifetime,
                                   wellKnown: wellKnown, wellKnownExpiresAt: wk.expiresAt, wellKnownFetchedAt: wk.fetchedAt,
                                   wellKnownFailures: wk.failures, delegation: wk.delegation, delegationExpiresAt: wk.delegationExpiresAt,
                                   consecutiveFailures: 0, lastGood: answer, lastGoodExpiresAt: now + lifetime)
            if servesKeptDelegation(entry) {
                // Not confirmed: the last confirmed answer stays the last good one.
                entry.lastGood = previous?.lastGood
                entry.lastGoodExpiresAt = previous?.lastGoodExpiresAt
            }
            return entry
        case .failure(var failure):
            failure.trace = []
            let failures = (previous?.consecutiveFailures ?? 0) + 1
            let lifetime = CachePolicy.failureLifetime(consecutiveFailures: failures, negativeTTL: failure.negativeTTL, jitter: jitter)
            // A last good answer past its grace is dropped: it will never be served again.
            let goodUntil = previous?.lastGoodExpiresAt ?? -.infinity
            let keepsGood = CachePolicy.canServeStale(lastGoodExpiresAt: goodUntil, now: now, failureIsTemporary: true)
            return CacheEntry(serverName: serverName, outcome: .failure(failure), fetchedAt: now, expiresAt: now + lifetime,
                              wellKnown: fetched ?? previous?.wellKnown ?? failure.wellKnown, wellKnownExpiresAt: wk.expiresAt,
                              wellKnownFetchedAt: wk.fetchedAt, wellKnownFailures: wk.failures,
                              delegation: wk.delegation, delegationExpiresAt: wk.delegationExpiresAt, consecutiveFailures: failures,
                              lastGood: keepsGood ? previous?.lastGood : nil, lastGoodExpiresAt: keepsGood ? previous?.lastGoodExpiresAt : nil)
        }
    }

    /// Whether the change from `previous` to `next` gives up a stale answer because its grace ran
    /// out while the name was still failing temporarily (counted in the statistics).
    public static func givesUpStale(previous: CacheEntry?, next: CacheEntry) -> Bool {
        guard let previous, holdsStale(previous), !holdsStale(next) else { return false }
        if let failure = next.failure { return temporaryFailureCodes.contains(failure.code) }
        if case .failed(_, _, true)? = next.wellKnown?.result { return true }
        return false
    }

    /// The well-known's own remembered state: when it expires, when it was fetched, how many
    /// fetches in a row failed, and the delegation kept through temporary failures. Renewed only
    /// when this resolution really fetched it.
    struct WellKnownMemory {
        var expiresAt: Double?
        var fetchedAt: Double?
        var failures: Int
        var delegation: WellKnownOutcome?
        var delegationExpiresAt: Double?

        init(previous: CacheEntry?, fetched: WellKnownOutcome?, now: Double, jitter: Double) {
            expiresAt = previous?.wellKnownExpiresAt
            fetchedAt = previous?.wellKnownFetchedAt
            failures = previous?.wellKnownFailures ?? 0
            delegation = previous?.delegation
            delegationExpiresAt = previous?.delegationExpiresAt
            guard let wk = fetched else { return }
            fetchedAt = now
            switch wk.result {
            case .delegated:
                failures = 0
                expiresAt = now + CachePolicy.wellKnownLifetime(headerLifetime: wk.headerLifetime, jitter: jitter)
                delegation = wk
                delegationExpiresAt = expiresAt
            case .failed(_, _, let temporary):
                failures += 1
                expiresAt = now + (temporary
                    ? CachePolicy.failureDelay(consecutiveFailures: failures, jitter: jitter)
                    : CachePolicy.permanentWellKnownFailureLifetime(jitter: jitter))
                let kept = temporary ? previous.flatMap { CacheRules.delegationWithinGrace($0, now: now) } : nil
                if kept == nil {
                    delegation = nil
                    delegationExpiresAt = nil
                }
            }
        }
    }
}
