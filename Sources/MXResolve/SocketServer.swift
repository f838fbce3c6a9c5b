#if canImport(Glibc)
import Glibc
#endif
import Dispatch
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

/// Decides what one request line gets. `respond` may be called inline (a cache hit, answered on the
/// thread that read the request) or later from any thread (a miss).
public protocol RequestHandling: Sendable {
    func handle(line: ArraySlice<UInt8>, peer: PeerCredentials, respond: @escaping @Sendable (_ bytes: [UInt8], _ ordered: Bool) -> Void) -> Bool
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

/// A Unix-domain stream socket server on Dispatch: one read source per connection on the
/// connection's own serial queue. Requests are parsed and, when they are cache hits, answered
/// right there, with no hop to another thread.
public final class SocketServer: Sendable {
    let listenFD: Int32
    let path: String?
    let handler: any RequestHandling
    let logger: Logger
    let stats: Statistics
    let ownsPath: Bool
    private let acceptQueue = DispatchQueue(label: "mxresolved.accept")
    private let connectionsTarget = DispatchQueue(label: "mxresolved.connections", attributes: .concurrent)
    private let listenSource = SourceBox()
    private let connections = Mutex<[Int32: Connection]>([:])

    /// Binds `path` (replacing a stale socket file, never a live one), mode `mode`.
    public static func bind(path: String, mode: mode_t) throws -> Int32 {
        var probe = sockaddr_un()
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
        probe = sockaddr_un()
        _ = probe
        return fd
    }

    public init(listenFD: Int32, path: String?, ownsPath: Bool, handler: any RequestHandling, stats: Statistics, logger: Logger) {
        self.listenFD = listenFD
        self.path = path
        self.ownsPath = ownsPath
        self.handler = handler
        self.stats = stats
        self.logger = logger
        _ = fcntl(listenFD, F_SETFL, fcntl(listenFD, F_GETFL) | O_NONBLOCK)
    }

    public func start() {
        let source = DispatchSource.makeReadSource(fileDescriptor: listenFD, queue: acceptQueue)
        source.setEventHandler { [self] in acceptAll() }
        listenSource.set(source)
        source.resume()
    }

    private func acceptAll() {
        while true {
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
            let conn = Connection(fd: fd, peer: peer, server: self,
                                  queue: DispatchQueue(label: "mxresolved.conn", target: connectionsTarget))
            connections.withLock { $0[fd] = conn }
            stats.connections.wrappingAdd(1, ordering: .relaxed)
            conn.start()
        }
    }

    func closed(_ fd: Int32) {
        connections.withLock { _ = $0.removeValue(forKey: fd) }
        stats.connections.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Stops accepting and removes the socket file; open connections finish what they have.
    public func stopAccepting() {
        listenSource.cancelAll()
        if ownsPath, let path { unlink(path) }
    }

    public var openConnections: Int { connections.withLock { $0.count } }

    /// Closes every connection (after shutdown's grace period).
    public func closeAll() {
        for c in connections.withLock({ Array($0.values) }) { c.queue.async { c.shutdown() } }
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

/// One client connection. All mutable state is touched only on `queue` (the rule that makes the
/// `@unchecked Sendable` sound); responses from other threads hop onto it.
final class Connection: @unchecked Sendable {
    /// Stop reading while this much output is waiting for a slow reader.
    static let outputHighWater = 1 << 20

    let fd: Int32
    let peer: PeerCredentials
    unowned let server: SocketServer
    let queue: DispatchQueue
    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    private var writeSourceActive = false
    private var readSuspended = false
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
    private var readBuffer = [UInt8](repeating: 0, count: 16 * 1024)

    final class Slot: @unchecked Sendable { var bytes: [UInt8]? }

    /// Marks a connection's queue, so a response can tell whether it runs on it.
    static let queueKey = DispatchSpecificKey<UInt64>()
    private static let ids = Atomic<UInt64>(0)
    let id: UInt64

    init(fd: Int32, peer: PeerCredentials, server: SocketServer, queue: DispatchQueue) {
        self.fd = fd
        self.peer = peer
        self.server = server
        self.queue = queue
        self.id = Connection.ids.wrappingAdd(1, ordering: .relaxed).newValue
        queue.setSpecific(key: Connection.queueKey, value: id)
    }

    func start() {
        let rs = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        rs.setEventHandler { [self] in readAvailable() }
        let ws = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
        ws.setEventHandler { [self] in flush() }
        // The fd is closed only when both sources are cancelled, so a reused fd number can never
        // be confused with this one by libdispatch.
        let group = DispatchGroup()
        group.enter(); group.enter()
        rs.setCancelHandler { group.leave() }
        ws.setCancelHandler { group.leave() }
        group.notify(queue: queue) { [fd, server] in
            close(fd)
            server.closed(fd)
        }
        readSource = rs
        writeSource = ws
        rs.resume()
    }

    private func readAvailable() {
        while !isClosed && !peerClosed {
            let n = readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n > 0 {
                input.append(contentsOf: readBuffer[0..<n])
                // Answers to every line of this read go out in one send, not one per line.
                batching = true
                processLines()
                batching = false
                flush()
                if output.count - outputStart > Self.outputHighWater || inFlight >= Wire.maxInFlight { pauseReading(); break }
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
        server.stats.protocolErrors.wrappingAdd(1, ordering: .relaxed)
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
        let queue = self.queue
        let id = self.id
        // `respond` runs inline for hits (on this queue: no hop) or later, from any thread, for
        // misses (hop to this queue). Which one is decided by where it runs, never by timing.
        _ = server.handler.handle(line: line, peer: peer) { [self] bytes, isOrdered in
            if DispatchQueue.getSpecific(key: Connection.queueKey) == id {
                deliver(bytes, slot: slot, isOrdered: isOrdered)
            } else {
                queue.async { [self] in deliver(bytes, slot: slot, isOrdered: isOrdered) }
            }
        }
    }

    private func deliver(_ bytes: [UInt8], slot: Slot, isOrdered: Bool) {
        inFlight -= 1
        if isOrdered {
            slot.bytes = bytes
        } else {
            output.append(contentsOf: bytes)
            slot.bytes = []
        }
        drainOrdered()
        if batching { return }
        flush()
        if readSuspended && !peerClosed && !closeAfterFlush && inFlight < Wire.maxInFlight / 2
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
        // After shutdown the sources are cancelled: suspending one now would keep its cancel
        // handler, and so the close, from ever running.
        guard !isClosed else { return }
        while outputStart < output.count && !isClosed {
            let n = output[outputStart...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                outputStart += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                if !writeSourceActive { writeSource?.resume(); writeSourceActive = true }
                return
            } else {
                shutdown()
                return
            }
        }
        if outputStart == output.count {
            output.removeAll(keepingCapacity: output.capacity < 64 * 1024)
            outputStart = 0
            if writeSourceActive && !isClosed { writeSource?.suspend(); writeSourceActive = false }
            if readSuspended && !peerClosed && !closeAfterFlush && inFlight < Wire.maxInFlight / 2 { resumeReading() }
        }
        maybeClose()
    }

    private func maybeClose() {
        guard !isClosed, output.count == outputStart else { return }
        if closeAfterFlush || (peerClosed && inFlight == 0) { shutdown() }
    }

    private func pauseReading() {
        if !isClosed && !readSuspended { readSource?.suspend(); readSuspended = true }
    }

    private func resumeReading() {
        if !isClosed && readSuspended { readSuspended = false; readSource?.resume() }
    }

    func shutdown() {
        guard !isClosed else { return }
        isClosed = true
        // Cancelling a suspended source never runs its cancel handler: resume first.
        if readSuspended { readSource?.resume(); readSuspended = false }
        if !writeSourceActive { writeSource?.resume(); writeSourceActive = true }
        readSource?.cancel()
        writeSource?.cancel()
    }
}

/// Holds Dispatch sources (not Sendable) so they live as long as their owner; locked.
final class SourceBox: @unchecked Sendable {
    private let lock = Mutex(())
    private var sources: [any DispatchSourceProtocol] = []
    func set(_ s: any DispatchSourceProtocol) { lock.withLock { _ in sources.append(s) } }
    func cancelAll() { lock.withLock { _ in sources.forEach { $0.cancel() }; sources = [] } }
}
