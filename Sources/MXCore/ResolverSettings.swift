/// Knobs of one resolution; defaults are what a production daemon uses.
public struct ResolverSettings: Sendable {
    public var ipPolicy: IPPolicy
    /// Synapse's WELL_KNOWN_MAX_SIZE: a well-known is a few bytes; 50 KiB is generous.
    public var wellKnownMaxBodyBytes: Int = 50 * 1024
    public var wellKnownConnectTimeoutMs: Int = 5_000
    /// The whole well-known phase: every redirect hop, its DNS lookup and its fetch.
    public var wellKnownTotalTimeoutMs: Int = 10_000
    /// The spec sets no number; MSC2499 proposed 30, Twisted's RedirectAgent uses 20. Ten hops are
    /// plenty for a file that should not redirect at all.
    public var wellKnownMaxRedirects: Int = 10
    /// Upper bound on one whole resolution, so a caller always gets an answer.
    public var resolutionTimeoutMs: Int = 30_000
    /// The longest one DNS lookup takes once sent (c-ares: the per-try timeout, doubling over the
    /// tries, for each server). A lookup outstanding longer was waiting in the daemon's own queue.
    public var dnsLookupMaxMs: Int = 3_000

    /// The well-known phase's budget: `wellKnownTotalTimeoutMs`, cut so that steps 4–6 (at most
    /// three lookups in a row: two SRV, then the addresses) still fit in the resolution deadline
    /// after it (a slow redirect chain ends in step 4, not in `timeout`).
    /// A deadline too short to hold the three lookups at all leaves the budget uncut.
    public var wellKnownBudgetMs: Int {
        let left = resolutionTimeoutMs - 3 * dnsLookupMaxMs
        return left > 0 ? min(wellKnownTotalTimeoutMs, left) : wellKnownTotalTimeoutMs
    }
    /// Seconds since the epoch (injected so tests control time).
    public var now: @Sendable () -> Double
    /// Uniform integer in 0..<n, for RFC 2782 weighted ordering (injected for tests).
    public var randomBelow: @Sendable (UInt64) -> UInt64

    public init(ipPolicy: IPPolicy = IPPolicy(),
                now: @escaping @Sendable () -> Double = { wallClockSeconds() },
                randomBelow: @escaping @Sendable (UInt64) -> UInt64 = { UInt64.random(in: 0..<$0) }) {
        self.ipPolicy = ipPolicy
        self.now = now
        self.randomBelow = randomBelow
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Wall-clock time in seconds since the epoch.
public func wallClockSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
