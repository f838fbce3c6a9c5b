import MXCore

/// A `Scheduler` on a clock that moves only when the test says so: timed work runs inside
/// `advance`, on the test's thread, with no real waiting.
final class ManualScheduler: Scheduler {
    private struct Timer {
        let due: Int
        let work: @Sendable () -> Void
    }
    private let state = PthreadMutex<(now: Int, timers: [Timer])>((0, []))

    func schedule(afterMilliseconds milliseconds: Int, _ work: @escaping @Sendable () -> Void) {
        state.withLock { $0.timers.append(Timer(due: $0.now + milliseconds, work: work)) }
    }

    var pendingCount: Int { state.withLock { $0.timers.count } }
    var now: Int { state.withLock { $0.now } }

    /// Moves the clock forward and runs, in due order, what has come due.
    func advance(milliseconds: Int) {
        let due = state.withLock { s -> [Timer] in
            s.now += milliseconds
            let now = s.now
            let due = s.timers.filter { $0.due <= now }.sorted { $0.due < $1.due }
            s.timers.removeAll { $0.due <= now }
            return due
        }
        for timer in due { timer.work() }
    }
}
