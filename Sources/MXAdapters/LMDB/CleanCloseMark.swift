// The clean-close mark: `clean-close` beside `data.mdb`, written after an orderly close, naming the
// file's device, inode, size and modification time. While it matches, nothing has written to the
// file since we closed it, so opening it needs no verification walk; a writer removes it before
// its first change. Anything else (a crash, a copy, dd, truncate) leaves no matching mark.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum CleanCloseMark {
    static func path(_ directory: String) -> String { directory + "/clean-close" }

    /// What the mark records of `data.mdb` as it is now; nil when there is no such file.
    static func fingerprint(_ directory: String) -> String? {
        var st = stat()
        guard stat(directory + "/data.mdb", &st) == 0 else { return nil }
        return "dev=\(st.st_dev) ino=\(st.st_ino) size=\(st.st_size) mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)\n"
    }

    /// Written (best effort: without it the next open verifies) after the file's final sync.
    static func write(_ directory: String) {
        guard let mark = fingerprint(directory) else { return }
        let temporary = path(directory) + ".new"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { return }
        let bytes = Array(mark.utf8)
        let written = writeAll(fd, bytes)
        close(fd)
        if written == bytes.count { rename(temporary, path(directory)) } else { unlink(temporary) }
    }

    static func matches(_ directory: String) -> Bool {
        guard let now = fingerprint(directory) else { return false }
        let fd = open(path(directory), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return n > 0 && String(decoding: buf[0..<n], as: UTF8.self) == now
    }

    static func remove(_ directory: String) { unlink(path(directory)) }
}

private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int {
    bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
}
