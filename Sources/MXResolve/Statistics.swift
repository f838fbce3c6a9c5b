import Synchronization
import MXCore

/// Daemon counters, updated lock-free from any thread. Counters only grow (Prometheus reads them
/// since start); `reset-statistics` moves each one's reset point, which the `statistics` verb counts from.
public final class Statistics: Sendable {
    public let requests = Counter()
    public let hits = Counter()
    public let misses = Counter()
    public let stale = Counter()
    /// Background resolutions of names served stale, started when their back-off ended.
    public let staleRevalidations = Counter()
    /// Stale answers dropped because the grace ran out while the name was still failing.
    public let staleGivenUp = Counter()
    public let coalesced = Counter()
    public let errors = Counter()
    public let protocolErrors = Counter()
    public let reresolveStarted = Counter()
    public let reresolveLimited = Counter()
    public let connectionsAccepted = Counter()
    /// Resolutions that produced an answer, by the step that produced it.
    public let byStep = LabeledCounters(ResolutionStep.allCases)
    /// Resolutions that ended in a failure, by its code.
    public let byFailure = LabeledCounters(FailureCode.allCases)
    public let byWarning = LabeledCounters(ResolutionWarning.allCases)
    public let hitLatency = LatencyHistogram()
    public let missLatency = LatencyHistogram()
    /// Gauges: resolutions in flight, open client connections.
    public let inflight = Atomic<Int>(0)
    public let connections = Atomic<Int>(0)
    public let started = wallClockSeconds()

    public init() {}

    func count(step: ResolutionStep) { byStep.add(step) }
    func count(failure: FailureCode) { byFailure.add(failure) }
    func count(warning: ResolutionWarning) { byWarning.add(warning) }

    /// The counters the text `statistics` shows by name, in its order.
    var namedCounters: [(String, Counter)] {
        [("requests", requests), ("hits", hits), ("misses", misses), ("stale", stale),
         ("stale_revalidations", staleRevalidations), ("stale_given_up", staleGivenUp), ("coalesced", coalesced)]
    }

    public func reset() {
        for (_, c) in namedCounters { c.reset() }
        for c in [errors, protocolErrors, reresolveStarted, reresolveLimited, connectionsAccepted] { c.reset() }
        byStep.reset()
        byFailure.reset()
        byWarning.reset()
        hitLatency.reset()
        missLatency.reset()
    }

    /// Ordered name → value pairs (the `statistics` verb's fields), counted since the last reset.
    public func snapshot(extra: [(String, Int)]) -> [(String, Int)] {
        var out = namedCounters.map { ($0.0, $0.1.sinceReset) }
        out += [
            ("inflight", inflight.load(ordering: .relaxed)),
            ("errors", errors.sinceReset), ("protocol_errors", protocolErrors.sinceReset),
            ("connections", connections.load(ordering: .relaxed)),
            ("reresolve_started", reresolveStarted.sinceReset),
            ("reresolve_limited", reresolveLimited.sinceReset),
            ("uptime", Int(wallClockSeconds() - started)),
        ]
        for (name, h) in [("hit", hitLatency), ("miss", missLatency)] {
            for p in [50, 90, 99] { out.append(("\(name)_latency_p\(p)_us", h.percentileMicroseconds(Double(p) / 100))) }
        }
        func nonZero<L>(_ set: LabeledCounters<L>, _ name: (L) -> String) -> [(String, Int)] {
            set.labels.map { (name($0), set[$0].sinceReset) }.filter { $0.1 > 0 }.sorted { $0.0 < $1.0 }
        }
        out += nonZero(byStep) { "step_\($0.rawValue.replacing(".", with: "_"))" }
        out += nonZero(byFailure) { "failure_\($0.rawValue)" }
        out += nonZero(byWarning) { "warning_\($0.rawValue)" }
        return out + extra
    }
}
