/// Runs work later. The core keeps no timers of its own: the daemon passes one backed by a
/// Dispatch queue (`DispatchScheduler` in MXAdapters), unit tests a manual clock, so the
/// resolver's deadline is tested without waiting.
public protocol Scheduler: Sendable {
    /// Runs `work` once, on any thread, about `milliseconds` from now, unless it is cancelled first.
    @discardableResult
    func schedule(afterMilliseconds milliseconds: Int, _ work: @escaping @Sendable () -> Void) -> any ScheduledWork
}

/// Work a `Scheduler` holds until it is due.
public protocol ScheduledWork: Sendable {
    /// The work will not run (unless it already has) and is let go of at once, with everything it
    /// captured: a resolution that ended early frees its state then, not at its deadline.
    /// Any thread, any number of times.
    func cancel()
}
