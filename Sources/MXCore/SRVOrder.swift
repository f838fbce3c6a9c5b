/// RFC 2782 target selection: lowest priority first; within a priority, a weighted random
/// order (each pick chooses among the remaining records with probability weight/sum, records
/// of weight 0 being picked first only by a zero draw, as the RFC says). Records that all have
/// weight 0 come in a uniformly random order.
public enum SRVOrder {
    /// `randomBelow(n)` returns a uniform integer in 0..<n (injected so tests are deterministic).
    public static func order<Record: SRVWeighted>(_ records: [Record], randomBelow: (UInt64) -> UInt64) -> [Record] {
        let priorities = Set(records.map(\.priority)).sorted()
        var result: [Record] = []
        result.reserveCapacity(records.count)
        for priority in priorities {
            // RFC 2782: "arrange all SRV RRs (that have not been ordered yet) in any order, except that
            // all those with weight 0 are placed at the beginning of the list."
            var remaining = records.filter { $0.priority == priority }
            remaining.sort { ($0.weight == 0 ? 0 : 1) < ($1.weight == 0 ? 0 : 1) }
            while !remaining.isEmpty {
                let total = remaining.reduce(UInt64(0)) { $0 + UInt64($1.weight) }
                if total == 0 {
                    // Only weight 0 left: each is as likely as the others, so workers spread over them
                    // rather than all taking the first record of the DNS answer.
                    result.append(remaining.remove(at: Int(randomBelow(UInt64(remaining.count)))))
                    continue
                }
                // A uniform number in 0...total; pick the first record whose running sum is >= it.
                let draw = randomBelow(total + 1)
                var running: UInt64 = 0
                var chosen = remaining.count - 1
                for (i, r) in remaining.enumerated() {
                    running += UInt64(r.weight)
                    if running >= draw { chosen = i; break }
                }
                result.append(remaining.remove(at: chosen))
            }
        }
        return result
    }

    public static func order<Record: SRVWeighted>(_ records: [Record]) -> [Record] {
        var rng = SystemRandomNumberGenerator()
        return order(records) { UInt64.random(in: 0..<$0, using: &rng) }
    }

    /// A cached answer's targets in a fresh RFC 2782 order, so that every worker asking during the
    /// answer's lifetime spreads its connections by the records' weights, not all onto one target.
    /// Targets not from SRV (or a single one) are returned as they are.
    public static func reordered(_ targets: [Target]) -> [Target] {
        guard targets.count > 1, targets.allSatisfy({ $0.srvRank != nil }) else { return targets }
        return order(targets)
    }
}

/// Something ordered by SRV priority and weight.
public protocol SRVWeighted {
    var priority: UInt16 { get }
    var weight: UInt16 { get }
}

/// Where an SRV record stands in that order: its priority and weight, kept with a target made from it.
public struct SRVRank: SRVWeighted, Sendable, Hashable {
    public var priority: UInt16
    public var weight: UInt16
    public init(priority: UInt16, weight: UInt16) {
        self.priority = priority
        self.weight = weight
    }
}

extension SRVRecord: SRVWeighted {
    public var rank: SRVRank { SRVRank(priority: priority, weight: weight) }
}

extension Target: SRVWeighted {
    public var priority: UInt16 { srvRank?.priority ?? 0 }
    public var weight: UInt16 { srvRank?.weight ?? 0 }
}
