/// What the cache remembers about one server name. Plain data: `CacheRules` decides how it changes
/// and what it serves, `CacheRecord` stores it, a `CacheStore` keeps it.
public struct CacheEntry: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        case answer(Resolution)
        case failure(ResolutionFailure)
    }

    /// The server name exactly as asked (not lower-cased, not normalised): the store's key.
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
    /// The last delegation a fetch confirmed and that delegation's own expiry. A temporary failure of
    /// later fetches keeps it (the answer is then served as stale) until 2 h past that expiry.
    public var delegation: WellKnownOutcome?
    public var delegationExpiresAt: Double?
    /// Consecutive failed resolutions of the whole name (drives its back-off; 0 after a success).
    public var consecutiveFailures: Int
    /// The last confirmed answer (built from a well-known state that was not itself a kept
    /// delegation), kept through temporary failures for a bounded grace.
    public var lastGood: Resolution?
    public var lastGoodExpiresAt: Double?

    public init(serverName: String, outcome: Outcome, fetchedAt: Double, expiresAt: Double,
                wellKnown: WellKnownOutcome? = nil, wellKnownExpiresAt: Double? = nil, wellKnownFetchedAt: Double? = nil,
                wellKnownFailures: Int = 0, delegation: WellKnownOutcome? = nil, delegationExpiresAt: Double? = nil,
                consecutiveFailures: Int = 0, lastGood: Resolution? = nil, lastGoodExpiresAt: Double? = nil) {
        self.serverName = serverName
        self.outcome = outcome
        self.fetchedAt = fetchedAt
        self.expiresAt = expiresAt
        self.wellKnown = wellKnown
        self.wellKnownExpiresAt = wellKnownExpiresAt
        self.wellKnownFetchedAt = wellKnownFetchedAt
        self.wellKnownFailures = wellKnownFailures
        self.delegation = delegation
        self.delegationExpiresAt = delegationExpiresAt
        self.consecutiveFailures = consecutiveFailures
        self.lastGood = lastGood
        self.lastGoodExpiresAt = lastGoodExpiresAt
    }

    public var answer: Resolution? {
        if case .answer(let r) = outcome { return r }
        return nil
    }

    public var failure: ResolutionFailure? {
        if case .failure(let f) = outcome { return f }
        return nil
    }

    public var isFailure: Bool { failure != nil }
}
