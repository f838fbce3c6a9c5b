#if canImport(Glibc)
import Glibc
#endif

/// Unix-domain stream socket helpers shared by the daemon's listener and the control client.
public enum UnixSocket {
    /// Longest path `sockaddr_un` holds (with its NUL).
    public static var maxPathBytes: Int { MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1 }

    /// Calls `body` with `path` as a `sockaddr_un`.
    public static func withAddress<R>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
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

    /// A blocking stream socket connected to `path`, or the errno of the failure.
    public static func connect(_ path: String) -> Result<Int32, Errno> {
        guard path.utf8.count <= maxPathBytes else { return .failure(Errno(ENAMETOOLONG)) }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(Errno(errno)) }
        if withAddress(path, { Glibc.connect(fd, $0, $1) }) != 0 {
            let e = errno
            close(fd)
            return .failure(Errno(e))
        }
        return .success(fd)
    }

    /// Whether something accepts connections at `path` (a stale file left by a crash refuses them).
    public static func isLive(_ path: String) -> Bool {
        guard case .success(let fd) = connect(path) else { return false }
        close(fd)
        return true
    }
}

/// A C errno value with its text.
public struct Errno: Error, Sendable, CustomStringConvertible {
    public var code: Int32
    public init(_ code: Int32) { self.code = code }
    public var description: String { String(cString: strerror(code)) }
}
