#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import MXCore
import CLinux

/// A dedicated OS thread: how every long-running loop of the daemon (the I/O loops, the socket
/// reactors) gets its thread. Loops that own non-thread-safe state assert it with
/// `preconditionCurrent()`.
public final class OSThread: Sendable {
    /// The name shown by `top -H` and in core dumps (Linux keeps 15 bytes of it).
    public let name: String
    private let handle = PthreadMutex<pthread_t?>(nil)
    /// Written by the thread itself before its body runs; 0 until then. pthread_self() is never 0,
    /// so a relaxed load on another thread can only ever answer "not current".
    private let owner = Atomic<UInt>(0)

    public init(name: String) {
        self.name = name
    }

    /// Starts `body` on the new thread. Call once.
    public func start(_ body: @escaping @Sendable () -> Void) throws(SystemCallError) {
        let context = Unmanaged.passRetained(Start(thread: self, body: body)).toOpaque()
        var id = pthread_t()
        let rc = pthread_create(&id, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            start.thread.owner.store(UInt(pthread_self()), ordering: .relaxed)
            _ = clinux_set_thread_name(start.thread.name)
            start.body()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<Start>.fromOpaque(context).release()
            throw SystemCallError("pthread_create", rc)
        }
        handle.withLock { $0 = id }
    }

    /// Whether the caller runs on this thread.
    public var isCurrent: Bool { owner.load(ordering: .relaxed) == UInt(pthread_self()) }

    /// Stops the process when called from any other thread: for code whose state only this
    /// thread may touch.
    public func preconditionCurrent(file: StaticString = #fileID, line: UInt = #line) {
        precondition(isCurrent, "must run on thread \(name)", file: file, line: line)
    }

    /// Waits for the thread to end. Call at most once, never from the thread itself.
    public func join() {
        precondition(!isCurrent, "thread \(name) cannot join itself")
        if let id = handle.withLock({ $0 }) { _ = pthread_join(id, nil) }
    }

    /// Lets the thread's resources go when it ends, for a thread that nobody joins.
    public func detach() {
        if let id = handle.withLock({ $0 }) { _ = pthread_detach(id) }
    }

    private final class Start {
        let thread: OSThread
        let body: @Sendable () -> Void
        init(thread: OSThread, body: @escaping @Sendable () -> Void) {
            self.thread = thread
            self.body = body
        }
    }
}

/// A failed system call and its errno.
public struct SystemCallError: Error, Sendable, Equatable, CustomStringConvertible {
    public var operation: String
    public var errno: Int32
    public init(_ operation: String, _ errno: Int32) {
        self.operation = operation
        self.errno = errno
    }
    public var description: String { "\(operation): \(String(cString: strerror(errno)))" }
}
