/// How long answers, failures and well-known results are kept, as pure functions.
///
/// Every number lives here, each with the reason for it (the shape of Synapse's
/// `well_known_resolver.py`). Time is passed in as seconds since the epoch and randomness as a
/// `jitter` in [-1, 1], so every rule is tested with a fixed clock and fixed jitter.
/// `docs/caching.md` states the same rules in prose.
public enum CachePolicy {
    // MARK: Well-known lifetimes (spec step 3)

    /// The spec's "sensible default when headers are not present" (Synapse: same).
    public static let wellKnownDefaultLifetime: Double = 24 * 3600
    /// ×(1 ± 10 %) on the default, so names learnt together are not refetched together (Synapse: 0.1).
    public static let wellKnownDefaultJitter: Double = 0.1
    /// Floor for header lifetimes: `no-store`/`max-age=0` would otherwise mean a fetch per request (Synapse: 5 min).
    public static let wellKnownMinLifetime: Double = 5 * 60
    /// The spec's recommended "maximum cache time for responses" (Synapse: 48 h).
    public static let wellKnownMaxLifetime: Double = 48 * 3600
    /// Fetches of a name whose delegation was recently valid before a failure counts (Synapse:
    /// `WELL_KNOWN_RETRY_ATTEMPTS`): one lost connection must not put a working delegation in doubt.
    public static let wellKnownRecentlyValidAttempts = 3
    /// Pause between those attempts (Synapse: 0.5 s), "in the hopes that they come back up".
    public static let wellKnownRetryDelay: Double = 0.5

    // MARK: Answers (well-known + DNS)

    /// No answer lives less than this, whatever the TTLs say: TTL 0 (or a well-known about to expire)
    /// must not turn every request into a network round trip; 30 s of a moved record is harmless.
    public static let answerMinLifetime: Double = 30
    /// No answer lives longer than the spec's maximum cache time, whatever a DNS TTL says.
    public static let answerMaxLifetime: Double = wellKnownMaxLifetime

    // MARK: Failures: exponential back-off (spec: "cached for up to an hour", "exponentially back off")

    /// First retry delay after a failure. Shorter than Synapse's 2 min "recently valid" retry because one
    /// cached failure here blocks every worker's federation to the name; a transient blip heals in a minute.
    public static let failureFirstDelay: Double = 60
    /// Each consecutive failure doubles the delay: 1, 2, 4, 8, 16, 32 min, then the cap.
    public static let failureBackoffMultiplier: Double = 2
    /// The spec's "errors are recommended to be cached for up to an hour" (Synapse: 1 h for failures).
    public static let failureMaxDelay: Double = 3600
    /// ×(1 ± 20 %): after a network outage every failed name would otherwise retry in the same second.
    public static let failureJitter: Double = 0.2

    // MARK: Stale answers and refresh ahead

    /// A temporary failure keeps the last good answer this long past its expiry. Synapse remembers a
    /// domain "had a valid well-known" for TTL + 2 h (`WELL_KNOWN_REMEMBER_DOMAIN_HAD_VALID`); we keep
    /// serving its answer for as long instead of moving its traffic to the SRV/8448 fallback.
    public static let staleGraceLimit: Double = 2 * 3600
    /// A name in use is refreshed once it is in the last 20 % of its lifetime (Synapse: 0.2).
    public static let refreshAheadFraction: Double = 0.2

    // MARK: Header lifetime (Synapse `_cache_period_from_headers`, cases C1–C8)

    /// The raw lifetime the response's headers ask for, before clamping; nil when they say nothing.
    ///
    /// - `Cache-Control`: every instance, split on "," outside quoted strings, each directive split
    ///   once on "=", key trimmed and compared case-insensitively, value trimmed; a later directive
    ///   overrides an earlier one. `no-store` → 0; a bare `no-cache` → 0 (an addition to Synapse: it
    ///   means "revalidate before every use", which for us is the 5-minute floor), while
    ///   `no-cache="field"` only concerns the named header fields (RFC 9111 §5.2.2.4) and is ignored;
    ///   `max-age` with a non-empty integer value → that value.
    /// - else `Expires` (last instance): `Expires − Date` when a valid `Date` header exists (RFC 9111
    ///   §4.2.1, immune to our clock skew), else `Expires − now`; an unparsable `Expires` → 0 (RFC 9111:
    ///   an invalid date means "already expired").
    /// - else nil. `private`, `s-maxage`, `Age` are ignored, as in Synapse.
    public static func headerLifetime(_ headers: [HTTPHeader], now: Double) -> Double? {
        var directives: [String: String?] = [:]
        for header in headers where header.name.lowercased() == "cache-control" {
            for directive in splitOutsideQuotes(header.value) {
                let parts = directive.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = trimmed(parts[0]).lowercased()
                directives[key] = parts.count > 1 ? trimmed(parts[1]) : String?.none
            }
        }
        let bareNoCache = directives["no-cache"].map { $0 == nil } ?? false
        if directives["no-store"] != nil || bareNoCache { return 0 }
        if let value = directives["max-age"], let text = value, !text.isEmpty, let seconds = pythonInt(text) {
            return Double(seconds)
        }
        let expires = headers.last { $0.name.lowercased() == "expires" }
        guard let expires else { return nil }
        guard let expiresAt = HTTPDate.parse(expires.value, now: now) else { return 0 }
        if let dateHeader = headers.last(where: { $0.name.lowercased() == "date" }),
           let date = HTTPDate.parse(dateHeader.value, now: now) {
            return expiresAt - date
        }
        return expiresAt - now
    }

    /// A well-known success's lifetime: the header lifetime clamped to [5 min, 48 h]; with no header
    /// lifetime, 24 h × (1 + 0.1 × jitter). Jitter applies only to the default, as in Synapse.
    public static func wellKnownLifetime(headerLifetime: Double?, jitter: Double) -> Double {
        guard let h = headerLifetime, !h.isNaN else {
            return wellKnownDefaultLifetime * (1 + wellKnownDefaultJitter * clampJitter(jitter))
        }
        return min(max(h, wellKnownMinLifetime), wellKnownMaxLifetime)
    }

    /// A successful answer's lifetime: the smallest of the well-known's remaining lifetime and the
    /// TTLs of the SRV and address records used (and, when the SRV lookup found nothing, its SOA
    /// negative TTL), then bounded to [30 s, 48 h]. With no ingredient at all (an IP literal), 24 h.
    public static func answerLifetime(wellKnown: Double?, srvTTL: UInt32?, addressTTL: UInt32?,
                                      srvNegativeTTL: UInt32? = nil) -> Double {
        let parts: [Double] = [wellKnown, srvTTL.map(Double.init), addressTTL.map(Double.init),
                               srvNegativeTTL.map(Double.init)].compactMap { $0 }.filter { !$0.isNaN }
        guard let smallest = parts.min() else { return wellKnownDefaultLifetime }
        return min(max(smallest, answerMinLifetime), answerMaxLifetime)
    }

    /// Back-off after `consecutiveFailures` failures in a row (1 = the first failure):
    /// min(60 s × 2^(n−1), 1 h) × (1 + 0.2 × jitter), never above 1 h. A success resets the count to 0,
    /// so the next failure starts again at 60 s. n ≤ 0 is treated as 1.
    public static func failureDelay(consecutiveFailures: Int, jitter: Double) -> Double {
        let n = max(consecutiveFailures, 1)
        // 2^6 × 60 s already exceeds the cap; avoid overflow for long failure streaks.
        let base = n > 7 ? failureMaxDelay
            : min(failureFirstDelay * pow2(n - 1, multiplier: failureBackoffMultiplier), failureMaxDelay)
        return min(base * (1 + failureJitter * clampJitter(jitter)), failureMaxDelay)
    }

    /// How long a *permanent* well-known failure (404 or another non-5xx status, an invalid body) is
    /// remembered: the spec's hour less up to 20 % jitter, never more. It is the server's answer, not a
    /// blip, so it is not retried after 1, 2, 4… minutes (Synapse: 1 h for any failure).
    public static func permanentWellKnownFailureLifetime(jitter: Double) -> Double {
        failureMaxDelay * (1 - failureJitter * (clampJitter(jitter) + 1) / 2)
    }

    /// How long a failed resolution of the whole name is remembered: the back-off delay, but never
    /// less than the DNS server's SOA negative TTL for an NXDOMAIN/NODATA answer (bounded to
    /// [60 s, 1 h]): the server told us when asking again can make a difference.
    public static func failureLifetime(consecutiveFailures: Int, negativeTTL: UInt32?, jitter: Double) -> Double {
        let delay = failureDelay(consecutiveFailures: consecutiveFailures, jitter: jitter)
        guard let negativeTTL else { return delay }
        let negative = min(max(Double(negativeTTL), failureFirstDelay), failureMaxDelay)
        return max(delay, negative)
    }

    /// Whether a failed refresh may keep serving the last good answer: only for temporary failures
    /// (connect, TLS, 5xx, timeouts, DNS SERVFAIL/timeouts), and only until `staleGraceLimit` past
    /// the moment that answer expired. A permanent answer (404, invalid body, NXDOMAIN) replaces it.
    public static func canServeStale(lastGoodExpiresAt: Double, now: Double, failureIsTemporary: Bool) -> Bool {
        failureIsTemporary && now < lastGoodExpiresAt + staleGraceLimit
    }

    /// True in the last 20 % of an entry's lifetime (and not after it expired: that is a miss).
    public static func shouldRefreshAhead(fetchedAt: Double, expiresAt: Double, now: Double) -> Bool {
        now >= refreshAheadStart(fetchedAt: fetchedAt, expiresAt: expiresAt) && now < expiresAt
    }

    /// Where the last 20 % of an entry's lifetime begins (its expiry when it has no lifetime).
    public static func refreshAheadStart(fetchedAt: Double, expiresAt: Double) -> Double {
        let lifetime = expiresAt - fetchedAt
        guard lifetime > 0 else { return expiresAt }
        return expiresAt - refreshAheadFraction * lifetime
    }

    /// A jitter value for the functions above, uniformly in [-1, 1].
    public static func randomJitter<G: RandomNumberGenerator>(using generator: inout G) -> Double {
        Double.random(in: -1...1, using: &generator)
    }

    // MARK: Helpers

    static func clampJitter(_ j: Double) -> Double {
        j.isNaN ? 0 : min(max(j, -1), 1)
    }

    static func pow2(_ exponent: Int, multiplier: Double) -> Double {
        var r = 1.0
        for _ in 0..<max(exponent, 0) { r *= multiplier }
        return r
    }

    /// The directives of a Cache-Control value: split on "," except inside a quoted string (which
    /// may hold commas and backslash-escaped quotes), so `no-cache="a, b"` stays one directive.
    static func splitOutsideQuotes(_ value: String) -> [Substring] {
        var parts: [Substring] = []
        var start = value.startIndex
        var quoted = false
        var escaped = false
        for i in value.indices {
            let c = value[i]
            if escaped { escaped = false; continue }
            if quoted && c == "\\" { escaped = true; continue }
            if c == "\"" { quoted.toggle() }
            if c == "," && !quoted {
                parts.append(value[start..<i])
                start = value.index(after: i)
            }
        }
        parts.append(value[start...])
        return parts
    }

    static func trimmed(_ s: Substring) -> String {
        let ws: Set<Character> = [" ", "\t", "\r", "\n"]
        var sub = s[...]
        while let f = sub.first, ws.contains(f) { sub = sub.dropFirst() }
        while let l = sub.last, ws.contains(l) { sub = sub.dropLast() }
        return String(sub)
    }

    /// Python's `int(str)` for what headers contain: optional sign, ASCII digits ("_" separators
    /// are not worth supporting). Overlong values saturate instead of failing.
    static func pythonInt(_ text: String) -> Int? {
        var digits = Substring(text)
        var negative = false
        if let f = digits.first, f == "+" || f == "-" {
            negative = f == "-"
            digits = digits.dropFirst()
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        guard let value = Int(digits) else { return negative ? Int.min / 2 : Int.max / 2 }
        return negative ? -value : value
    }
}
