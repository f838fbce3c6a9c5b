#if canImport(Glibc)
import Glibc
#endif
import CLinux
import MXCore
import Logging
import MXAdapters

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
    private let mailbox = PthreadMutex<[@Sendable () -> Void]>([])
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
        var ev = epoll_event(events: c.interest, data: epoll_data_t(fd: fd))
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)
    }

    /// Changes the events epoll reports for a connection (EPOLLIN, EPOLLOUT; hang-ups always).
    func watch(_ fd: Int32, events: UInt32) {
        var ev = epoll_event(events: events, data: epoll_data_t(fd: fd))
        epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev)
    }

    /// Forgets and closes a connection (on this thread, so no event for a reused fd is misread).
    func closed(_ c: Connection) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c.fd, nil)
        connections.removeValue(forKey: c.fd)
        close(c.fd)
        stats.connections.wrappingSubtract(1, ordering: .relaxed)
    }

    func closeAll() { for c in Array(connections.values) { c.disconnect() } }
}
