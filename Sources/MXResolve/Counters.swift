import Synchronization

/// A counter that only grows (what Prometheus reads) with a reset point of its own (what the
/// `statistics` verb shows since `reset-statistics`). Adding is one relaxed atomic add.
public final class Counter: Sendable {
    private let total = Atomic<Int>(0)
    private let resetAt = Atomic<Int>(0)

    public init() {}

    public func add(_ n: Int = 1) { total.wrappingAdd(n, ordering: .relaxed) }

    public var sinceStart: Int { total.load(ordering: .relaxed) }
    /// Never negative, even when a reset races a read.
    public var sinceReset: Int { max(0, sinceStart - resetAt.load(ordering: .relaxed)) }

    public func reset() { resetAt.store(sinceStart, ordering: .relaxed) }
}

/// One counter per value of a fixed label set (every value exists from the start, so a rate over
/// a value that has not happened yet is 0, not absent).
public final class LabeledCounters<Label: Hashable & Sendable>: Sendable {
    public let labels: [Label]
    private let counters: [Label: Counter]

    public init(_ labels: [Label]) {
        self.labels = labels
        counters = Dictionary(uniqueKeysWithValues: labels.map { ($0, Counter()) })
    }

    public func add(_ label: Label, _ n: Int = 1) { counters[label]?.add(n) }
    public subscript(_ label: Label) -> Counter { counters[label]! }
    public func reset() { counters.values.forEach { $0.reset() } }
}

/// Latency in fixed buckets (upper bounds in nanoseconds, then +Inf) and the sum of all values:
/// a Prometheus histogram. Recording is two relaxed atomic adds, so the reactor threads record
/// cache hits without a lock.
public final class LatencyHistogram: Sendable {
    /// Upper bounds: 10 µs to 600 s (the longest resolution timeout), 1-2.5-5 per decade.
    public static let bounds: [Int] = [
        10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000, 100_000_000, 250_000_000, 500_000_000,
        1_000_000_000, 2_500_000_000, 5_000_000_000, 10_000_000_000, 30_000_000_000, 60_000_000_000,
        120_000_000_000, 300_000_000_000, 600_000_000_000,
    ]
    /// One per bound, the last for values above every bound (+Inf).
    private let buckets: [Counter] = (0...bounds.count).map { _ in Counter() }
    private let sum = Counter()

    public init() {}

    public func record(nanoseconds: Int) {
        let ns = max(0, nanoseconds)
        var i = 0
        while i < Self.bounds.count && ns > Self.bounds[i] { i += 1 }
        buckets[i].add()
        sum.add(ns)
    }

    public func record(seconds: Double) { record(nanoseconds: Int(min(seconds, 1e9) * 1e9)) }

    public func reset() {
        buckets.forEach { $0.reset() }
        sum.reset()
    }

    /// Counts per bucket (not cumulative) and the sum in nanoseconds.
    public struct Counts: Sendable, Equatable {
        public var buckets: [Int]
        public var sumNanoseconds: Int
        public var count: Int { buckets.reduce(0, +) }
    }

    public var sinceStart: Counts { Counts(buckets: buckets.map(\.sinceStart), sumNanoseconds: sum.sinceStart) }
    public var sinceReset: Counts { Counts(buckets: buckets.map(\.sinceReset), sumNanoseconds: sum.sinceReset) }

    /// The upper bound (µs) of the bucket holding the p-quantile since the last reset; values above
    /// every bound report the last bound.
    public func percentileMicroseconds(_ p: Double) -> Int {
        let counts = sinceReset.buckets
        let total = counts.reduce(0, +)
        guard total > 0 else { return 0 }
        let rank = Int((Double(total) * p).rounded(.up))
        var seen = 0
        for (i, c) in counts.enumerated() {
            seen += c
            if seen >= rank { return Self.bounds[min(i, Self.bounds.count - 1)] / 1000 }
        }
        return Self.bounds[Self.bounds.count - 1] / 1000
    }
}
