#if canImport(Glibc)
import Glibc
#endif
import MXCore
import COpenSSL

/// The certificates trusted for well-known fetches, built once and handed to every TLS context
/// libcurl creates (`CURLOPT_SSL_CTX_FUNCTION` → `install(into:)`). libcurl 7.88 would otherwise
/// build a store per connection: read the `ca-file` and look issuers up in the system directory
/// again for each handshake (a fifth of a cold fetch's CPU with a one-name certificate).
///
/// Contents: the system store as an OpenSSL hashed directory (c_rehash / update-ca-certificates
/// layout; an issuer is read the first time it is needed, then kept in the store) plus the
/// `ca-file`. Both are watched: at most once per `checkIntervalMs`, a handshake stats the file and
/// the directory, and a changed one rebuilds the store, so a renewed CA needs no restart. A rebuild
/// that fails keeps the last good store: verification never runs without the configured CAs.
///
/// Thread-safe (all I/O threads share one): the store is read and swapped under the lock, and
/// `SSL_CTX_set1_cert_store` takes its own reference, so a swap never frees a store still in use.
final class TrustStore: Sendable {
    /// What identifies one version of a file or directory (a replaced file has a new inode).
    struct Version: Equatable {
        var device: UInt64 = 0, inode: UInt64 = 0, size: Int64 = 0, modifiedNs: Int64 = 0
        var missing = false
    }

    private struct State {
        var store: OpaquePointer
        var caFile: String?
        var versions: [Version]
        var checkedAtMs: Int
        var builds = 1
        var lastError: String?
    }

    static let defaultCheckIntervalMs = NetworkConfig().trustCheckIntervalMs

    let caDirectory: String
    let checkIntervalMs: Int
    private let clockMs: @Sendable () -> Int
    private let state: PthreadMutex<State>

    /// `caDirectory` nil: OpenSSL's default certificate directory.
    init(caFile: String?, caDirectory: String?, checkIntervalMs: Int = TrustStore.defaultCheckIntervalMs,
         clockMs: @escaping @Sendable () -> Int = CurlHTTPS.monotonicMs) throws(NetworkSetupError) {
        self.caDirectory = caDirectory ?? String(cString: X509_get_default_cert_dir())
        self.checkIntervalMs = max(0, checkIntervalMs)
        self.clockMs = clockMs
        let versions = Self.versions(of: [caFile, self.caDirectory])
        let store: OpaquePointer
        switch Self.build(caFile: caFile, caDirectory: self.caDirectory) {
        case .success(let built): store = built
        case .failure(let message): throw .caFile(message)
        }
        state = PthreadMutex(State(store: store, caFile: caFile, versions: versions, checkedAtMs: clockMs()))
    }

    deinit {
        state.withLock { X509_STORE_free($0.store) }
    }

    /// libcurl's SSL-context callback (on an I/O thread): share the store with this new context.
    func install(into sslContext: UnsafeMutableRawPointer) {
        // As an address: the context is libcurl's, touched only here on this thread, and must not
        // join the lock's state (a raw pointer would, for the concurrency checker).
        let context = UInt(bitPattern: sslContext)
        withCheckedState { s in copenssl_ctx_set1_store(UnsafeMutableRawPointer(bitPattern: context), s.store) }
    }

    /// Rebuilds the store now if the files changed and the check is due (what a handshake does first).
    func checkForChanges() {
        withCheckedState { _ in }
    }

    /// Trusts `path` (nil: no extra file) instead of the current `ca-file`, from the next handshake
    /// on. A file that cannot be loaded changes nothing; the reason is returned.
    func replaceCAFile(_ path: String?) -> String? {
        let caDirectory = caDirectory
        return state.withLock { s in
            switch Self.build(caFile: path, caDirectory: caDirectory) {
            case .success(let store):
                X509_STORE_free(s.store)
                s.store = store
                s.caFile = path
                s.versions = Self.versions(of: [path, caDirectory])
                s.builds += 1
                s.lastError = nil
                return nil
            case .failure(let message):
                return message
            }
        }
    }

    var caFile: String? { state.withLock { $0.caFile } }

    private func withCheckedState(_ body: (inout State) -> Void) {
        let now = clockMs()
        let (caDirectory, interval) = (caDirectory, checkIntervalMs)
        state.withLock { s in
            if now - s.checkedAtMs >= interval {
                s.checkedAtMs = now
                Self.rebuildIfChanged(&s, caFile: s.caFile, caDirectory: caDirectory)
            }
            body(&s)
        }
    }

    /// How many stores have been built (1 until a file changes), and why the last rebuild failed.
    var builds: Int { state.withLock { $0.builds } }
    var lastError: String? { state.withLock { $0.lastError } }

    private static func rebuildIfChanged(_ s: inout State, caFile: String?, caDirectory: String) {
        let now = versions(of: [caFile, caDirectory])
        guard now != s.versions else { return }
        s.versions = now  // a failed rebuild is retried when the files change again, not per handshake
        switch build(caFile: caFile, caDirectory: caDirectory) {
        case .success(let store):
            X509_STORE_free(s.store)
            s.store = store
            s.builds += 1
            s.lastError = nil
        case .failure(let message):
            s.lastError = message
        }
    }

    private static func versions(of paths: [String?]) -> [Version] {
        paths.compactMap { $0 }.map { path in
            var st = stat()
            guard stat(path, &st) == 0 else { return Version(missing: true) }
            return Version(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
                           modifiedNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
        }
    }

    private enum Built { case success(OpaquePointer), failure(String) }

    private static func build(caFile: String?, caDirectory: String) -> Built {
        ERR_clear_error()
        guard let store = X509_STORE_new() else { return .failure("X509_STORE_new failed") }
        // The flags libcurl sets on the stores it builds itself: a CA-file certificate is a trust
        // anchor even if it is an intermediate, and trusted certificates are preferred in chains.
        X509_STORE_set_flags(store, UInt(X509_V_FLAG_TRUSTED_FIRST | X509_V_FLAG_PARTIAL_CHAIN))
        guard X509_STORE_load_path(store, caDirectory) == 1 else {
            X509_STORE_free(store)
            return .failure("cannot use the CA directory '\(caDirectory)': \(openSSLError())")
        }
        if let caFile, X509_STORE_load_file(store, caFile) != 1 {
            X509_STORE_free(store)
            return .failure("cannot load '\(caFile)': \(openSSLError())")
        }
        return .success(store)
    }

    /// The oldest queued OpenSSL error (the root cause), and the queue cleared.
    private static func openSSLError() -> String { OpenSSLErrors.takeOldest() ?? "no certificate found" }
}
