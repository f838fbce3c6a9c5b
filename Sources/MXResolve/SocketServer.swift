#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import MXProtocol
import Synchronization
import Logging

/// `struct ucred` (pid, uid, gid), which Glibc's module hides behind _GNU_SOURCE.
struct PeerCred {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// Credentials of a connected peer (SO_PEERCRED).
public struct PeerCredentials: Sendable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
}

/// Executes one parsed request. `reply` (called exactly once) may run inline (a cache hit, answered
/// on the thread that read the request) or later from any thread (a miss, a flush).
public protocol RequestHandling: Sendable {
    func handle(_ request: Request, peer: PeerCredentials, reply: @escaping @Sendable (Reply) -> Void)
    /// The hot path: appends the answer to `request` when the cache answers it as it stands (a
    /// plainly fresh hit) and returns true; appends nothing and returns false when it needs `handle`.
    func answerHit(_ request: PlainResolve, into output: inout [UInt8]) -> Bool
}

public enum SocketServerError: Error, CustomStringConvertible {
    case inUse(String)
    case system(String, Int32)
    public var description: String {
        switch self {
        case .inUse(let p): return "another mxresolved is listening on \(p); not taking its socket over"
        case .system(let what, let e): return "\(what): \(String(cString: strerror(e)))"
        }
    }
}

/// The Unix-domain socket server: binds and accepts, and spreads connections over the reactors.
///
/// Client sockets are watched by a few reactor threads (one per core by default), each with its own
/// epoll set, like the I/O thread that owns c-ares and curl. A request is read, parsed and, when it
/// is a cache hit, answered on the reactor thread that read it: Dispatch read sources would hand
/// every readable event from libdispatch's event thread to a worker thread, a cross-vCPU wake-up
/// that measured twice the cost of the whole hit here. Misses are resolved through Dispatch and
/// their answers posted back to the connection's reactor.
public final class SocketServer: Sendable {
    let listenFD: Int32
    let path: String?
    let handler: any RequestHandling
    let logger: Logger
    let stats: Statistics
    let ownsPath: Bool
    let reactors: [Reactor]
    private let nextReactor = Atomic<Int>(0)
    private let accepting = Atomic<Bool>(false)

    /// Binds `path` (replacing a stale socket file, never a live one), mode `mode`.
    public static func bind(path: String, mode: mode_t) throws -> Int32 {
        guard path.utf8.count <= UnixSocket.maxPathBytes else { throw SocketServerError.system("socket path too long", ENAMETOOLONG) }
        if access(path, F_OK) == 0 {
            if UnixSocket.isLive(path) { throw SocketServerError.inUse(path) }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketServerError.system("socket", errno) }
        let oldMask = umask(0o777 & ~mode)
        let rc = UnixSocket.withAddress(path) { Glibc.bind(fd, $0, $1) }
        let e = errno
        umask(oldMask)
        guard rc == 0 else { close(fd); throw SocketServerError.system("bind \(path)", e) }
        chmod(path, mode)
        guard listen(fd, 4096) == 0 else { close(fd); throw SocketServerError.system("listen", errno) }
        return fd
    }

    public init(listenFD: Int32, path: String?, ownsPath: Bool, handler: any RequestHandling, stats: Statistics,
                logger: Logger, threads: Int = 2) throws {
        self.listenFD = listenFD
        self.path = path
        self.ownsPath = ownsPath
        self.handler = handler
        self.stats = stats
        self.logger = logger
        _ = fcntl(listenFD, F_SETFL, fcntl(listenFD, F_GETFL) | O_NONBLOCK)
        reactors = try (0..<max(1, threads)).map { try Reactor(index: $0, handler: handler, stats: stats, logger: logger) }
    }

    public func start() {
        accepting.store(true, ordering: .relaxed)
        for r in reactors { r.start() }
        // The first reactor accepts; new connections are spread over all of them.
        reactors[0].post { [self] in reactors[0].watchListener(listenFD) { [self] in acceptAll() } }
    }

    /// Runs on reactor 0.
    private func acceptAll() {
        while accepting.load(ordering: .relaxed) {
            let fd = Self.acceptNonBlocking(listenFD)
            if fd < 0 {
                if errno == EMFILE || errno == ENFILE { logger.error("accept: out of file descriptors") }
                return
            }
            var cred = PeerCred()
            var len = socklen_t(MemoryLayout<PeerCred>.size)
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)
            let peer = PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid)
            stats.connections.wrappingAdd(1, ordering: .relaxed)
            stats.connectionsAccepted.add()
            let reactor = reactors[nextReactor.wrappingAdd(1, ordering: .relaxed).oldValue % reactors.count]
            reactor.post { reactor.adopt(fd: fd, peer: peer) }
        }
    }

    /// Accepts one connection of a non-blocking listener, itself non-blocking and close-on-exec;
    /// -1 (errno set) when none waits.
    static func acceptNonBlocking(_ listenFD: Int32) -> Int32 {
        let fd = accept(listenFD, nil, nil)
        guard fd >= 0 else { return fd }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return fd
    }

    /// Stops accepting and removes the socket file; open connections finish what they have.
    public func stopAccepting() {
        accepting.store(false, ordering: .relaxed)
        let done = DispatchSemaphore(value: 0)
        reactors[0].post { [self] in reactors[0].unwatch(listenFD); close(listenFD); done.signal() }
        _ = done.wait(timeout: .now() + 2)
        if ownsPath, let path { unlink(path) }
    }

    /// Closes every connection (after shutdown's grace period).
    public func closeAll() {
        let group = DispatchGroup()
        for r in reactors {
            group.enter()
            r.post { r.closeAll(); group.leave() }
        }
        _ = group.wait(timeout: .now() + 2)
    }
}
