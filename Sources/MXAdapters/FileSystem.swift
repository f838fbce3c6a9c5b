#if canImport(Glibc)
import Glibc
#endif

/// `mkdir -p`: creates `path` and any missing parents with `mode`; existing ones are left as they are.
public func makeDirectories(_ path: String, mode: mode_t = 0o750) throws(SystemCallError) {
    var partial = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        partial += "/" + component
        if mkdir(partial, mode) != 0 && errno != EEXIST {
            throw SystemCallError("mkdir \(partial)", errno)
        }
    }
}

/// A whole file as UTF-8 text; nil if it cannot be read or is not UTF-8.
public func readTextFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { return nil }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[..<n])
    }
    return String(validating: bytes, as: UTF8.self)
}
