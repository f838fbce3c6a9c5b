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
