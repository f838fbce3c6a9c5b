import MXCore

/// A `Scheduler` on a clock that moves only when the test says so: timed work runs inside
/// `advance`, on the test's thread, with no real waiting.
final class ManualScheduler: Scheduler {
    private struct Timer {
        let id: Int
        let due: Int
        let work: @Sendable () -> Void
    }
    private let state = PthreadMutex<(now: Int, nextID: Int, timers: [Timer])>((0, 0, []))

    private struct Handle: ScheduledWork {
        let scheduler: ManualScheduler
        let id: Int
        func cancel() { scheduler.state.withLock { $0.timers.removeAll { $0.id == id } } }
    }

    @discardableResult
    func schedule(afterMilliseconds milliseconds: Int, _ work: @escaping @Sendable () -> Void) -> any ScheduledWork {
        let id = state.withLock { s in
            s.nextID += 1
            s.timers.append(Timer(id: s.nextID, due: s.now + milliseconds, work: work))
            return s.nextID
        }
        return Handle(scheduler: self, id: id)
    }

    /// Work scheduled and neither run nor cancelled yet (each holds what it captured).
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
