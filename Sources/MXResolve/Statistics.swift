import Synchronization
import MXCore

/// Daemon counters, updated lock-free from any thread.
public final class Statistics: Sendable {
    public let requests = Atomic<Int>(0)
    public let hits = Atomic<Int>(0)
    public let misses = Atomic<Int>(0)
    public let stale = Atomic<Int>(0)
    /// Background resolutions of names served stale, started when their back-off ended.
    public let staleRevalidations = Atomic<Int>(0)
    /// Stale answers dropped because the grace ran out while the name was still failing.
    public let staleGivenUp = Atomic<Int>(0)
    public let coalesced = Atomic<Int>(0)
    public let inflight = Atomic<Int>(0)
    public let errors = Atomic<Int>(0)
    public let connections = Atomic<Int>(0)
    public let protocolErrors = Atomic<Int>(0)
    public let reresolveStarted = Atomic<Int>(0)
    public let reresolveLimited = Atomic<Int>(0)
    let byStep = Mutex<[String: Int]>([:])
    let byFailure = Mutex<[String: Int]>([:])
    let byWarning = Mutex<[String: Int]>([:])
    public let hitLatency = LatencyHistogram()
    public let missLatency = LatencyHistogram()
    public let started = wallClockSeconds()

    public init() {}

    func count(step: ResolutionStep) { byStep.withLock { $0["step_\(step.rawValue.replacing(".", with: "_"))", default: 0] += 1 } }
    func count(failure: FailureCode) { byFailure.withLock { $0["failure_\(failure.rawValue)", default: 0] += 1 } }
    func count(warning: ResolutionWarning) { byWarning.withLock { $0["warning_\(warning.rawValue)", default: 0] += 1 } }

    public func reset() {
        requests.store(0, ordering: .relaxed)
        hits.store(0, ordering: .relaxed)
        misses.store(0, ordering: .relaxed)
        stale.store(0, ordering: .relaxed)
        staleRevalidations.store(0, ordering: .relaxed)
        staleGivenUp.store(0, ordering: .relaxed)
        coalesced.store(0, ordering: .relaxed)
        errors.store(0, ordering: .relaxed)
        protocolErrors.store(0, ordering: .relaxed)
        reresolveStarted.store(0, ordering: .relaxed)
        reresolveLimited.store(0, ordering: .relaxed)
        byStep.withLock { $0 = [:] }
        byFailure.withLock { $0 = [:] }
        byWarning.withLock { $0 = [:] }
        hitLatency.reset()
        missLatency.reset()
    }

    /// Ordered name → value pairs (the `statistics` verb's fields).
    public func snapshot(extra: [(String, Int)]) -> [(String, Int)] {
        var out: [(String, Int)] = [
            ("requests", requests.load(ordering: .relaxed)), ("hits", hits.load(ordering: .relaxed)),
            ("misses", misses.load(ordering: .relaxed)), ("stale", stale.load(ordering: .relaxed)),
            ("stale_revalidations", staleRevalidations.load(ordering: .relaxed)),
            ("stale_given_up", staleGivenUp.load(ordering: .relaxed)),
            ("coalesced", coalesced.load(ordering: .relaxed)), ("inflight", inflight.load(ordering: .relaxed)),
            ("errors", errors.load(ordering: .relaxed)), ("protocol_errors", protocolErrors.load(ordering: .relaxed)),
            ("connections", connections.load(ordering: .relaxed)),
            ("reresolve_started", reresolveStarted.load(ordering: .relaxed)),
            ("reresolve_limited", reresolveLimited.load(ordering: .relaxed)),
            ("uptime", Int(wallClockSeconds() - started)),
        ]
        for (name, h) in [("hit", hitLatency), ("miss", missLatency)] {
            for p in [50, 90, 99] { out.append(("\(name)_latency_p\(p)_us", h.percentile(Double(p) / 100))) }
        }
        out += byStep.withLock { $0 }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        out += byFailure.withLock { $0 }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        out += byWarning.withLock { $0 }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return out + extra
    }
}

/// Latency in power-of-two microsecond buckets; percentiles report the bucket's upper bound.
public final class LatencyHistogram: Sendable {
    private let buckets = Mutex<[Int]>(Array(repeating: 0, count: 32))

    public init() {}

    public func record(microseconds: Double) {
        let us = max(1, Int(microseconds))
        let index = min(31, Int.bitWidth - us.leadingZeroBitCount)
        buckets.withLock { $0[index] += 1 }
    }

    public func reset() { buckets.withLock { $0 = Array(repeating: 0, count: 32) } }

    public func percentile(_ p: Double) -> Int {
        let counts = buckets.withLock { $0 }
        let total = counts.reduce(0, +)
        guard total > 0 else { return 0 }
        let rank = Int((Double(total) * p).rounded(.up))
        var seen = 0
        for (i, c) in counts.enumerated() {
            seen += c
            if seen >= rank { return 1 << i }
        }
        return 1 << 31
    }
}
