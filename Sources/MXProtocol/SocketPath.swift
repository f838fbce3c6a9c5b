#if canImport(Glibc)
import Glibc
#endif

/// Where clients look for the daemon's socket (PROTOCOL.md §8): an explicit path, then
/// `$MXRESOLVED_SOCKET`, then the packaged path when it exists, then the development default.
public enum SocketPath {
    public static let environmentVariable = "MXRESOLVED_SOCKET"
    /// The packaged setup's socket (dist/: systemd socket unit, `socket =` in the config file).
    public static let packaged = "/run/mxresolved/socket"
    /// `scripts/run`'s socket under the default state directory.
    public static let local = "./.mxresolved/mxresolved.sock"

    /// The socket to use. Empty strings count as not given.
    public static func resolve(explicit: String? = nil,
                               environment: String? = getenv(environmentVariable).map { String(cString: $0) },
                               exists: (String) -> Bool = { access($0, F_OK) == 0 }) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let environment, !environment.isEmpty { return environment }
        return exists(packaged) ? packaged : local
    }
}
