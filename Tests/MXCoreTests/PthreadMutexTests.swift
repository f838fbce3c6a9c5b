import Dispatch
import XCTest
import MXCore

final class PthreadMutexTests: XCTestCase {
    /// Threads that update one value under the lock never overlap and lose no update. Built with
    /// ThreadSanitizer (scripts/test), this also shows TSan sees the lock: with a lock it cannot see
    /// (Synchronization.Mutex on Linux), the same test reports "Swift access race".
    func testUpdatesFromManyThreadsAreExclusiveAndNoneIsLost() {
        struct Shared {
            var total = 0
            var holders = 0
            var overlaps = 0
        }
        let shared = PthreadMutex(Shared())
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<20_000 {
                shared.withLock { s in
                    s.holders += 1
                    if s.holders != 1 { s.overlaps += 1 }
                    s.total += 1
                    s.holders -= 1
                }
            }
        }
        let result = shared.withLock { $0 }
        XCTAssertEqual(result.total, 80_000)
        XCTAssertEqual(result.overlaps, 0)
    }

    /// The body's result and error come back to the caller, and the lock is free again after a throw.
    func testWithLockReturnsTheResultAndUnlocksAfterAThrow() {
        struct Refused: Error {}
        let value = PthreadMutex([1, 2])
        XCTAssertEqual(value.withLock { v -> Int in v.append(3); return v.count }, 3)
        XCTAssertThrowsError(try value.withLock { (_: inout [Int]) throws(Refused) in throw Refused() })
        XCTAssertEqual(value.withLock { $0 }, [1, 2, 3])
    }
}
