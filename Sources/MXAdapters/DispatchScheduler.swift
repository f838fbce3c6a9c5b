import Dispatch
import MXCore

/// The core's `Scheduler` over a Dispatch queue of the daemon's own (the core itself schedules
/// nothing). Work runs on that serial queue, so it must be short: the resolver's deadline only
/// completes a resolution, whose consumer moves on to its own queue.
///
/// Each piece of work is a one-shot timer source rather than `asyncAfter`, whose block cannot be
/// called off: every resolution schedules a 30 s deadline, and a cancelled source drops its handler
/// (and the resolution it holds) at once instead of keeping it until the deadline.
public struct DispatchScheduler: Scheduler {
    private let queue: DispatchQueue

    public init(label: String = "mxresolved.timers") {
        queue = DispatchQueue(label: label)
    }

    @discardableResult
    public func schedule(afterMilliseconds milliseconds: Int, _ work: @escaping @Sendable () -> Void) -> any ScheduledWork {
        let timer = DispatchTimer(DispatchSource.makeTimerSource(queue: queue))
        // The leeway dispatch_after gives: a tenth of the delay, at least 1 ms.
        timer.source.schedule(deadline: .now() + .milliseconds(milliseconds), repeating: .never,
                              leeway: .milliseconds(max(1, milliseconds / 10)))
        // The handler holds the source until it has run; cancelling releases both.
        timer.source.setEventHandler {
            work()
            timer.cancel()
        }
        timer.source.resume()
        return timer
    }
}

/// THREADING RULE (`@unchecked Sendable`): the source is set up before it is shared; after that
/// only `cancel` is called on it, which libdispatch allows from any thread.
final class DispatchTimer: ScheduledWork, @unchecked Sendable {
    let source: DispatchSourceTimer
    init(_ source: DispatchSourceTimer) { self.source = source }
    func cancel() { source.cancel() }
}
