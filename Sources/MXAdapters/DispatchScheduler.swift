import Dispatch
import MXCore

/// The core's `Scheduler` over a Dispatch queue of the daemon's own (the core itself schedules
/// nothing). Work runs on that serial queue, so it must be short: the resolver's deadline only
/// completes a resolution, whose consumer moves on to its own queue.
public struct DispatchScheduler: Scheduler {
    private let queue: DispatchQueue

    public init(label: String = "mxresolved.timers") {
        queue = DispatchQueue(label: label)
    }

    public func schedule(afterMilliseconds milliseconds: Int, _ work: @escaping @Sendable () -> Void) {
        queue.asyncAfter(deadline: .now() + .milliseconds(milliseconds), execute: work)
    }
}
