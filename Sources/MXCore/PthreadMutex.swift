#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value guarded by a `pthread_mutex_t`: the one lock type for state shared between threads.
///
/// Why not `Synchronization.Mutex`: on Linux its lock and unlock are compiled into the standard
/// library (a futex word), outside ThreadSanitizer's view, so TSan reports every access it guards
/// as a race. TSan intercepts pthread mutexes, so with this lock every report left is a real one.
/// Uncontended, both cost one atomic operation each way.
public final class PthreadMutex<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Touched only between `pthread_mutex_lock` and `pthread_mutex_unlock` (why `@unchecked`).
    private var value: Value

    public init(_ initialValue: sending Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let status = pthread_mutex_init(mutex, nil)
        precondition(status == 0, "pthread_mutex_init: \(status)")
        value = initialValue
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value while holding the lock. `body` must not take this lock again.
    public func withLock<Result, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
