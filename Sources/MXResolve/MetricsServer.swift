#if canImport(Glibc)
import Glibc
#endif
import Logging
import MXAdapters

/// `metrics-listen`: `GET /metrics` over plain HTTP on a thread of its own, so scrapes never wait
/// behind client requests and a misbehaving scraper never touches the reactors. Bounded in every
/// direction: at most `maxConnections` at once (more are answered 503 and closed), a request head
/// of at most `maxRequestBytes` (431), and `deadlineSeconds` per connection from accept to close,
/// whatever the peer does (sends nothing, never reads, trickles).
public final class MetricsServer: Sendable {
    public static let maxConnections = 16
    public static let maxRequestBytes = 8192
    public static let deadlineSeconds = 5
    /// After its answer, how long a connection's unread input is drained before closing (closing
    /// with unread input would reset the connection and could destroy the answer in flight).
    static let lingerMicroseconds = 500_000

    let listenFD: Int32
    let logger: Logger
    let render: @Sendable () -> String
    let thread = OSThread(name: "mxr-metrics")

    /// Binds `ADDR:PORT` or `[IPv6]:PORT` (as `DaemonConfig.parseListenAddress` reads it).
    public static func bind(_ address: String) throws -> Int32 {
        guard let (host, port, ipv6) = DaemonConfig.parseListenAddress(address) else {
            throw SocketServerError.system("metrics-listen \(address)", EINVAL)
        }
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketServerError.system("metrics socket", errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc: Int32
        if ipv6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &a.sin6_addr)
            rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &a.sin_addr)
            rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard rc == 0, listen(fd, 64) == 0 else {
            let e = errno
            close(fd)
            throw SocketServerError.system("metrics-listen \(address)", e)
        }
        return fd
    }

    public init(listenFD: Int32, logger: Logger, render: @escaping @Sendable () -> String) {
        self.listenFD = listenFD
        self.logger = logger
        self.render = render
    }

    public func start() {
        do {
            try thread.start { [self] in loop() }
            thread.detach()
        } catch {
            logger.error("metrics endpoint not started: \(error)")
        }
    }

    /// One scraper's connection; touched only on the metrics thread.
    private struct Peer {
        enum Phase { case reading, writing, draining }
        let fd: Int32
        var phase = Phase.reading
        var input: [UInt8] = []
        var output: [UInt8] = []
        var written = 0
        /// Monotonic µs at which the connection is closed whatever its phase.
        var deadline: Int
        var done = false
    }

    private func loop() {
        var peers: [Peer] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var fds = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)]
            for p in peers { fds.append(pollfd(fd: p.fd, events: Int16(p.phase == .writing ? POLLOUT : POLLIN), revents: 0)) }
            let now = monotonicMicroseconds()
            let timeout = peers.map { max(0, ($0.deadline - now + 999) / 1000) }.min() ?? -1
            if poll(&fds, nfds_t(fds.count), Int32(timeout)) < 0 && errno != EINTR {
                logger.error("metrics endpoint stopped: poll failed", metadata: ["errno": "\(errno)"])
                return
            }
            for i in peers.indices where fds[i + 1].revents != 0 { serve(&peers[i], buffer: &buffer) }
            let after = monotonicMicroseconds()
            for i in peers.indices where !peers[i].done && after >= peers[i].deadline { expire(&peers[i]) }
            peers.removeAll { p in
                if p.done { close(p.fd) }
                return p.done
            }
            if fds[0].revents & Int16(POLLIN) != 0 { acceptAll(into: &peers, now: after) }
        }
    }

    private func acceptAll(into peers: inout [Peer], now: Int) {
        while true {
            let fd = SocketServer.acceptNonBlocking(listenFD)
            if fd < 0 {
                if errno == EMFILE || errno == ENFILE { logger.warning("metrics endpoint: out of file descriptors") }
                return
            }
            guard peers.count < Self.maxConnections else {
                // Best effort: the answer fits in an empty socket buffer, and nothing waits for it.
                let busy = MetricsHTTP.status(503, "Service Unavailable", headers: ["Retry-After: 1"], body: "too many metrics connections\n")
                _ = busy.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(fd)
                continue
            }
            peers.append(Peer(fd: fd, deadline: now + Self.deadlineSeconds * 1_000_000))
        }
    }

    private func serve(_ p: inout Peer, buffer: inout [UInt8]) {
        switch p.phase {
        case .reading:
            let n = buffer.withUnsafeMutableBytes { recv(p.fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            guard n > 0 else { p.done = true; return }
            p.input += buffer[0..<n]
            switch MetricsHTTP.scan(p.input, limit: Self.maxRequestBytes) {
            case .incomplete: return
            case .tooLarge:
                answer(&p, MetricsHTTP.status(431, "Request Header Fields Too Large", body: "request head over \(Self.maxRequestBytes) bytes\n"))
            case .complete(let end):
                answer(&p, MetricsHTTP.response(to: p.input[0..<end], metrics: render))
            }
        case .writing:
            write(&p)
        case .draining:
            let n = buffer.withUnsafeMutableBytes { recv(p.fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            if n <= 0 { p.done = true }
        }
    }

    private func answer(_ p: inout Peer, _ response: [UInt8]) {
        p.input = []
        p.output = response
        p.phase = .writing
        write(&p)
    }

    private func write(_ p: inout Peer) {
        while p.written < p.output.count {
            let n = p.output.withUnsafeBytes { send(p.fd, $0.baseAddress! + p.written, $0.count - p.written, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { return }
                p.done = true
                return
            }
            p.written += n
        }
        shutdown(p.fd, Int32(SHUT_WR))
        p.phase = .draining
        p.deadline = min(p.deadline, monotonicMicroseconds() + Self.lingerMicroseconds)
    }

    /// The deadline passed: a peer that never finished its request hears 408 (best effort).
    private func expire(_ p: inout Peer) {
        if p.phase == .reading {
            let late = MetricsHTTP.status(408, "Request Timeout", body: "no complete request within \(Self.deadlineSeconds) s\n")
            _ = late.withUnsafeBytes { send(p.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        p.done = true
    }
}
