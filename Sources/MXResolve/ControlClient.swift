#if canImport(Glibc)
import Glibc
#endif

/// A blocking line client for the daemon's socket (used by mxresolvectl and the tests).
/// Use it from one thread at a time (hence `@unchecked Sendable`: it may move between threads).
public final class ControlClient: @unchecked Sendable {
    public let fd: Int32
    private var buffer: [UInt8] = []

    public enum Failure: Error, CustomStringConvertible {
        case notRunning(path: String, reason: String)
        case closed
        case timedOut
        public var description: String {
            switch self {
            case .notRunning(let path, let reason): return "cannot connect to \(path): \(reason)"
            case .closed: return "the daemon closed the connection"
            case .timedOut: return "no answer from the daemon in time"
            }
        }
    }

    public init(path: String, timeoutSeconds: Int = 60) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let rc = withSockaddr(path) { connect(fd, $0, $1) }
        if rc != 0 {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure.notRunning(path: path, reason: reason)
        }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    public func send(_ line: String) throws {
        try sendBytes(Array((line + "\n").utf8))
    }

    /// Sends raw bytes as they are (tests use it for invalid UTF-8 and partial lines).
    public func sendBytes(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw Failure.closed }
            off += n
        }
    }

    public func readLine() throws -> String {
        while true {
            if let nl = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeFirst(nl + 1)
                return line
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw Failure.timedOut }
            if n <= 0 { throw Failure.closed }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// Sends a request and reads its response lines (several for show-cache's `entry` lines).
    public func request(_ line: String) throws -> [String] {
        try send(line)
        var lines: [String] = []
        while true {
            let l = try readLine()
            lines.append(l)
            if !l.hasPrefix("entry") { return lines }
        }
    }
}

/// A parsed response line: status plus fields in order (keys may repeat).
public struct ResponseLine: Sendable {
    public var status: String
    public var fields: [(key: String, value: String)]

    public init(_ line: String) {
        let tokens = line.split(separator: " ")
        status = tokens.first.map(String.init) ?? ""
        fields = tokens.dropFirst().map { token in
            guard let eq = token.firstIndex(of: "=") else { return (String(token), "") }
            return (String(token[..<eq]), Wire.percentDecode(token[token.index(after: eq)...]) ?? "")
        }
    }

    public subscript(_ key: String) -> String? { fields.first { $0.key == key }?.value }
    public func all(_ key: String) -> [String] { fields.filter { $0.key == key }.map(\.value) }
}
