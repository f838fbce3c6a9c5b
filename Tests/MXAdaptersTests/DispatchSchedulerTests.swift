#if canImport(Glibc)
import Glibc
#endif
import XCTest
import MXCore
import MXAdapters

/// The daemon's timers: work runs once when due, and work called off is let go of at once (a
/// finished resolution's deadline must not hold it for 30 s).
final class DispatchSchedulerTests: XCTestCase {
    final class Payload: Sendable {}

    /// Polls (bounded: 200 × 10 ms) until `condition` holds.
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    func testDueWorkRunsOnceAndIsThenReleased() {
        let scheduler = DispatchScheduler(label: "test.timers")
        let runs = PthreadMutex(0)
        weak var held: Payload?
        do {
            let payload = Payload()
            held = payload
            scheduler.schedule(afterMilliseconds: 1) { [payload] in
                _ = payload
                runs.withLock { $0 += 1 }
            }
        }
        XCTAssertTrue(eventually { runs.withLock { $0 } == 1 && held == nil }, "ran, then let go of what it captured")
        usleep(50_000)
        XCTAssertEqual(runs.withLock { $0 }, 1, "a one-shot timer")
    }

    func testCancelledWorkNeverRunsAndIsReleasedLongBeforeItWasDue() {
        let scheduler = DispatchScheduler(label: "test.timers")
        let ran = PthreadMutex(false)
        weak var held: Payload?
        var timer: (any ScheduledWork)?
        do {
            let payload = Payload()
            held = payload
            timer = scheduler.schedule(afterMilliseconds: 60_000) { [payload] in
                _ = payload
                ran.withLock { $0 = true }
            }
        }
        XCTAssertNotNil(held, "held while scheduled")
        timer?.cancel()
        timer?.cancel()
        XCTAssertTrue(eventually { held == nil }, "released within 2 s of the cancel, not at the 60 s deadline")
        XCTAssertFalse(ran.withLock { $0 })
    }
}
