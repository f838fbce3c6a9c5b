#if canImport(Glibc)
import Glibc
#endif

/// A blocking line client for the daemon's socket (mxresolvectl, tests, operators' tools).
/// Use it from one thread at a time (hence `@unchecked Sendable`: it may move between threads).
public final class ControlClient: @unchecked Sendable {
    public let fd: Int32
    public let path: String
    private var buffer: [UInt8] = []

    public enum Failure: Error, CustomStringConvertible {
        /// connect() failed: nothing listens at `path` (or may not be reached).
        case notRunning(path: String, reason: String)
        /// connect() was refused for lack of permission on the socket or a directory above it.
        case permissionDenied(path: String, reason: String)
        /// The daemon closed the connection before answering.
        case closed
        case timedOut
        /// Refused locally: the daemon would answer `line_too_long` and close.
        case lineTooLong(LineTooLong)

        public var description: String {
            switch self {
            case .notRunning(let path, let reason): return "cannot connect to \(path): \(reason)"
            case .permissionDenied(let path, let reason): return "cannot connect to \(path): \(reason)"
            case .closed: return "the daemon closed the connection before answering"
            case .timedOut: return "no answer from the daemon in time"
            case .lineTooLong(let e): return "\(e)"
            }
        }
    }

    public init(path: String, timeoutSeconds: Int = 60) throws(Failure) {
        self.path = path
        switch UnixSocket.connect(path) {
        case .success(let fd): self.fd = fd
        case .failure(let e) where e.code == EACCES || e.code == EPERM: throw .permissionDenied(path: path, reason: e.description)
        case .failure(let e): throw .notRunning(path: path, reason: e.description)
        }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    public func send(_ line: String) throws(Failure) {
        try sendBytes(Array((line + "\n").utf8))
    }

    /// Sends raw bytes as they are (tests use it for invalid UTF-8 and partial lines).
    public func sendBytes(_ bytes: [UInt8]) throws(Failure) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw .closed }
            off += n
        }
    }

    public func readLine() throws(Failure) -> String {
        while true {
            if let nl = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeFirst(nl + 1)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw .timedOut }
            if n <= 0 { throw .closed }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// Sends a request line and reads its response lines (several for show-cache's `entry` lines).
    public func request(_ line: String) throws(Failure) -> [String] {
        try send(line)
        var lines: [String] = []
        while true {
            let l = try readLine()
            lines.append(l)
            if !l.hasPrefix("entry") { return lines }
        }
    }

    /// Sends a request, escaped, refusing locally a line the daemon would not read.
    public func request(_ request: Request) throws(Failure) -> [String] {
        let line: String
        do { line = try request.line() } catch { throw .lineTooLong(error) }
        return try self.request(line)
    }
}
