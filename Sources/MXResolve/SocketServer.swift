#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Foundation
import Dispatch
import Synchronization
import Logging
import MXAdapters

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

/// Decides what one request line gets. `respond` may be called inline (a cache hit, answered on the
/// thread that read the request) or later from any thread (a miss).
public protocol RequestHandling: Sendable {
    func handle(line: ArraySlice<UInt8>, peer: PeerCredentials, respond: @escaping @Sendable (_ bytes: [UInt8], _ ordered: Bool) -> Void)
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

/// The Unix-domain socket server.
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
        let probe = sockaddr_un()
        guard path.utf8.count < MemoryLayout.size(ofValue: probe.sun_path) else { throw SocketServerError.system("socket path too long", ENAMETOOLONG) }
        if access(path, F_OK) == 0 {
            // A live daemon answers connect(); a stale file from a crash refuses it.
            let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            let live = withSockaddr(path) { connect(s, $0, $1) } == 0
            close(s)
            if live { throw SocketServerError.inUse(path) }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketServerError.system("socket", errno) }
        let oldMask = umask(0o777 & ~mode)
        let rc = withSockaddr(path) { Glibc.bind(fd, $0, $1) }
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
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EMFILE || errno == ENFILE { logger.error("accept: out of file descriptors") }
                return
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            var cred = PeerCred()
            var len = socklen_t(MemoryLayout<PeerCred>.size)
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)
            let peer = PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid)
            stats.connections.wrappingAdd(1, ordering: .relaxed)
            let reactor = reactors[nextReactor.wrappingAdd(1, ordering: .relaxed).oldValue % reactors.count]
            reactor.post { reactor.adopt(fd: fd, peer: peer) }
        }
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

func withSockaddr<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        let bytes = Array(path.utf8.prefix(raw.count - 1))
        raw.copyBytes(from: bytes + [0])
    }
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}

/// One reactor thread: an epoll set of connections, and a mailbox other threads post jobs to
/// (woken through an eventfd). Its connections are touched only on its thread: that rule is what
/// makes the `@unchecked Sendable` sound.
final class Reactor: @unchecked Sendable {
    let index: Int
    let epfd: Int32
    let wakeFD: Int32
    let handler: any RequestHandling
    let stats: Statistics
    let logger: Logger
    private let mailbox = Mutex<[@Sendable () -> Void]>([])
    private var connections: [Int32: Connection] = [:]
    private var listener: (fd: Int32, onReadable: () -> Void)?
    private let thread: OSThread

    init(index: Int, handler: any RequestHandling, stats: Statistics, logger: Logger) throws {
        self.index = index
        thread = OSThread(name: "mxr-reactor-\(index)")
        self.handler = handler
        self.stats = stats
        self.logger = logger
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epfd >= 0 else { throw SocketServerError.system("epoll_create1", errno) }
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        guard wakeFD >= 0 else { throw SocketServerError.system("eventfd", errno) }
        var ev = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(fd: wakeFD))
        epoll_ctl(epfd, EPOLL_CTL_ADD, wakeFD, &ev)
    }

    func start() {
        do {
            try thread.start { [self] in loop() }
        } catch {
            preconditionFailure("cannot start reactor thread \(index): \(error)")
        }
    }

    /// Whether the caller runs on this reactor's thread.
    var isCurrent: Bool { thread.isCurrent }

    /// Runs `job` on the reactor thread.
    func post(_ job: @escaping @Sendable () -> Void) {
        let wasEmpty = mailbox.withLock { box -> Bool in
            box.append(job)
            return box.count == 1
        }
        if wasEmpty {
            var one: UInt64 = 1
            _ = write(wakeFD, &one, 8)
        }
    }

    private func loop() {
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        while true {
            let n = events.withUnsafeMutableBufferPointer { epoll_wait(epfd, $0.baseAddress, Int32($0.count), -1) }
            if n < 0 {
                if errno == EINTR { continue }
                logger.critical("epoll_wait failed", metadata: ["errno": "\(errno)"])
                return
            }
            for i in 0..<Int(n) {
                let fd = events[i].data.fd
                let flags = events[i].events
                if fd == wakeFD {
                    var value: UInt64 = 0
                    _ = read(wakeFD, &value, 8)
                    let jobs = mailbox.withLock { box -> [@Sendable () -> Void] in
                        let j = box
                        box.removeAll(keepingCapacity: true)
                        return j
                    }
                    for job in jobs { job() }
                } else if let l = listener, fd == l.fd {
                    l.onReadable()
                } else if let c = connections[fd] {
                    c.handleEvents(flags)
                }
            }
        }
    }

    func watchListener(_ fd: Int32, onReadable: @escaping () -> Void) {
        listener = (fd, onReadable)
        var ev = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(fd: fd))
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)
    }

    func unwatch(_ fd: Int32) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil)
        if listener?.fd == fd { listener = nil }
    }

    func adopt(fd: Int32, peer: PeerCredentials) {
        let c = Connection(fd: fd, peer: peer, reactor: self)
        connections[fd] = c
        var ev = epoll_event(events: EPOLLIN.rawValue | EPOLLRDHUP.rawValue, data: epoll_data_t(fd: fd))
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)
    }

    func setInterest(_ fd: Int32, read: Bool, write: Bool) {
        var mask: UInt32 = EPOLLRDHUP.rawValue
        if read { mask |= EPOLLIN.rawValue }
        if write { mask |= EPOLLOUT.rawValue }
        var ev = epoll_event(events: mask, data: epoll_data_t(fd: fd))
        epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev)
    }

    /// Forgets and closes a connection (on this thread, so no event for a reused fd is misread).
    func closed(_ c: Connection) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c.fd, nil)
        connections.removeValue(forKey: c.fd)
        close(c.fd)
        stats.connections.wrappingSubtract(1, ordering: .relaxed)
    }

    func closeAll() { for c in Array(connections.values) { c.shutdown() } }
}

/// One client connection. Its state is touched only on its reactor's thread; answers computed
/// elsewhere are posted there.
final class Connection: @unchecked Sendable {
    /// Stop reading while this much output is waiting for a slow reader.
    static let outputHighWater = 1 << 20

    let fd: Int32
    let peer: PeerCredentials
    unowned let reactor: Reactor
    private var input: [UInt8] = []
    private var output: [UInt8] = []
    private var outputStart = 0
    /// Id-less responses leave in request order: a FIFO of slots, filled as answers arrive.
    private var ordered: [Slot] = []
    private var orderedHead = 0
    private var inFlight = 0
    private var peerClosed = false
    private var closeAfterFlush = false
    private var isClosed = false
    private var batching = false
    private var readPaused = false
    private var wantsWrite = false
    private var readBuffer = [UInt8](repeating: 0, count: 16 * 1024)

    final class Slot: @unchecked Sendable { var bytes: [UInt8]? }

    init(fd: Int32, peer: PeerCredentials, reactor: Reactor) {
        self.fd = fd
        self.peer = peer
        self.reactor = reactor
    }

    func handleEvents(_ flags: UInt32) {
        if flags & EPOLLOUT.rawValue != 0 { flush() }
        if flags & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 && !readPaused {
            readAvailable()
        }
    }

    private func readAvailable() {
        while !isClosed && !peerClosed && !readPaused {
            let n = readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                input.append(contentsOf: readBuffer[0..<n])
                // Answers to every line of this read go out in one send, not one per line.
                batching = true
                processLines()
                batching = false
                flush()
                if output.count - outputStart > Self.outputHighWater || inFlight >= Wire.maxInFlight { pauseReading() }
                if n < readBuffer.count { break }
            } else if n == 0 {
                // Half-close: answer what was asked, then close.
                peerClosed = true
                pauseReading()
                maybeClose()
                break
            } else {
                if errno == EAGAIN || errno == EINTR { break }
                shutdown()
                break
            }
        }
    }

    private func processLines() {
        var start = 0
        let count = input.count
        while !closeAfterFlush, let nl = input[start..<count].firstIndex(of: 0x0A) {
            let line = input[start..<nl]
            start = nl + 1
            if line.count > Wire.maxLineBytes + 1 || (line.count == Wire.maxLineBytes + 1 && line.last != 0x0D) {
                lineTooLong()
                return
            }
            handle(line)
        }
        if start > 0 { input.removeFirst(start) }
        if !closeAfterFlush && input.count > Wire.maxLineBytes + 1 { lineTooLong() }
    }

    private func lineTooLong() {
        reactor.stats.protocolErrors.wrappingAdd(1, ordering: .relaxed)
        input.removeAll()
        enqueueOrdered(Wire.errorLine(code: "line_too_long", message: "request line longer than \(Wire.maxLineBytes) bytes; closing", id: nil))
        closeAfterFlush = true
        pauseReading()
        flush()
    }

    private func handle(_ line: ArraySlice<UInt8>) {
        inFlight += 1
        let slot = Slot()
        ordered.append(slot)
        let reactor = self.reactor
        // `respond` runs inline for hits (on this reactor thread: no hop) or later, from any thread,
        // for misses (posted to this reactor). Which one is decided by where it runs, never by timing.
        reactor.handler.handle(line: line, peer: peer) { [self] bytes, isOrdered in
            if reactor.isCurrent {
                deliver(bytes, slot: slot, isOrdered: isOrdered)
            } else {
                reactor.post { [self] in deliver(bytes, slot: slot, isOrdered: isOrdered) }
            }
        }
    }

    private func deliver(_ bytes: [UInt8], slot: Slot, isOrdered: Bool) {
        inFlight -= 1
        if isClosed { return }
        if isOrdered {
            slot.bytes = bytes
        } else {
            output.append(contentsOf: bytes)
            slot.bytes = []
        }
        drainOrdered()
        if batching { return }
        flush()
        if readPaused && !peerClosed && !closeAfterFlush && inFlight < Wire.maxInFlight / 2
            && output.count - outputStart < Self.outputHighWater / 2 {
            resumeReading()
        }
        maybeClose()
    }

    /// Moves answered id-less responses, in request order, to the output.
    private func drainOrdered() {
        while orderedHead < ordered.count, let b = ordered[orderedHead].bytes {
            output.append(contentsOf: b)
            orderedHead += 1
        }
        if orderedHead == ordered.count {
            ordered.removeAll(keepingCapacity: true)
            orderedHead = 0
        } else if orderedHead > 64 {
            ordered.removeFirst(orderedHead)
            orderedHead = 0
        }
    }

    private func enqueueOrdered(_ bytes: [UInt8]) {
        let slot = Slot()
        slot.bytes = bytes
        ordered.append(slot)
        drainOrdered()
    }

    private func flush() {
        guard !isClosed else { return }
        while outputStart < output.count {
            let n = output[outputStart...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                outputStart += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                if !wantsWrite { wantsWrite = true; updateInterest() }
                return
            } else {
                shutdown()
                return
            }
        }
        output.removeAll(keepingCapacity: output.capacity < 64 * 1024)
        outputStart = 0
        if wantsWrite { wantsWrite = false; updateInterest() }
        if readPaused && !peerClosed && !closeAfterFlush && inFlight < Wire.maxInFlight / 2 { resumeReading() }
        maybeClose()
    }

    private func maybeClose() {
        guard !isClosed, output.count == outputStart else { return }
        if closeAfterFlush || (peerClosed && inFlight == 0) { shutdown() }
    }

    private func updateInterest() { reactor.setInterest(fd, read: !readPaused, write: wantsWrite) }

    private func pauseReading() {
        if !isClosed && !readPaused { readPaused = true; updateInterest() }
    }

    private func resumeReading() {
        if !isClosed && readPaused {
            readPaused = false
            updateInterest()
            readAvailable()   // level-triggered would tell us too; data may already be buffered
        }
    }

    func shutdown() {
        guard !isClosed else { return }
        isClosed = true
        reactor.closed(self)
    }
}
