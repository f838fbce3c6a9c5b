/// Runs work later. The core keeps no timers of its own: the daemon passes one backed by a
/// Dispatch queue (`DispatchScheduler` in MXAdapters), unit tests a manual clock, so the
/// resolver's deadline is tested without waiting.
public protocol Scheduler: Sendable {
    /// Runs `work` once, on any thread, about `milliseconds` from now.
    func schedule(afterMilliseconds milliseconds: Int, _ work: @escaping @Sendable () -> Void)
}
