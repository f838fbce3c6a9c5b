import MXCore

/// The rate limit of `reresolve` (PROTOCOL.md §5.5): a name's background re-resolution starts at
/// most once per `interval`. Any peer may ask, so the table of names is bounded; past `capacity`
/// the oldest start is forgotten (that name may then be re-resolved early, never more often than
/// the table's churn allows).
final class ReresolveLimit: Sendable {
    static let interval = 60.0
    static let capacity = 4096

    enum Decision: Equatable {
        case start
        /// Whole seconds until the name may be re-resolved again.
        case limited(retryAfter: Int)
    }

    private struct Table {
        var startedAt: [String: Double] = [:]
        /// Names in the order their current start was recorded, oldest first (from `head` on).
        var order: [(name: String, at: Double)] = []
        var head = 0
    }

    private let table = PthreadMutex(Table())
    let interval: Double
    let capacity: Int

    init(interval: Double = ReresolveLimit.interval, capacity: Int = ReresolveLimit.capacity) {
        self.interval = interval
        self.capacity = capacity
    }

    func admit(_ name: String, now: Double) -> Decision {
        table.withLock { t in
            if let at = t.startedAt[name], now - at < interval {
                return .limited(retryAfter: max(1, Int((at + interval - now).rounded(.up))))
            }
            // Forget starts that no longer limit anything, then the oldest while full.
            while t.head < t.order.count {
                let oldest = t.order[t.head]
                guard now - oldest.at >= interval || t.startedAt.count >= capacity else { break }
                if t.startedAt[oldest.name] == oldest.at { t.startedAt[oldest.name] = nil }
                t.head += 1
            }
            if t.head > 64 && t.head > t.order.count / 2 {
                t.order.removeFirst(t.head)
                t.head = 0
            }
            t.startedAt[name] = now
            t.order.append((name, now))
            return .start
        }
    }

    var count: Int { table.withLock { $0.startedAt.count } }
}
