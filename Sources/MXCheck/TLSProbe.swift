#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import MXAdapters
import MXCore

/// The leaf certificate a server presented, as an admin needs to see it.
public struct CertificateSummary: Sendable, Equatable {
    public var subject: String
    public var issuer: String
    /// The subjectAltName entries as OpenSSL prints them ("DNS:a.example, IP Address:1.2.3.4").
    public var altNames: [String]
    public var notAfter: Int64?
    public var notAfterText: String

    public var json: JSONValue {
        .object(["subject": .string(subject), "issuer": .string(issuer), "alt_names": .array(altNames.map(JSONValue.string)),
                 "not_after": .string(notAfterText), "not_after_unix": notAfter.map(JSONValue.integer) ?? .null])
    }
}

/// What connecting to one address showed: TCP, then TLS with the answer's SNI, then the
/// certificate checked against the trusted CAs and the answer's TLS name.
public struct TLSProbeResult: Sendable, Equatable {
    public var connectMs: Int?
    /// `connect()` failed or timed out: nothing more was tried.
    public var connectError: String?
    /// The TLS handshake failed (after a TCP connection).
    public var handshakeError: String?
    /// The handshake failed because the server sent nothing within the time left.
    public var handshakeTimedOut = false
    public var tlsVersion: String?
    /// OpenSSL's X509_V_* result of verifying the chain and the name (0: valid).
    public var verifyCode: Int = -1
    public var verifyError: String?
    public var certificate: CertificateSummary?

    public var connected: Bool { connectError == nil }
    public var handshakeDone: Bool { connected && handshakeError == nil }
    public var certificateValid: Bool { handshakeDone && verifyCode == 0 }

    /// OpenSSL's codes the hints tell apart.
    public static let hostnameMismatch = 62, ipMismatch = 64, expired = 10, notYetValid = 9
    public static let selfSigned = 18, selfSignedInChain = 19, noIssuer = 20, noIssuerLocally = 21
}

/// The trusted CAs, as the daemon's trust store holds them: the system directory plus `ca-file`.
public struct TrustedCAs: Sendable, Equatable {
    public var caFile: String?
    public var caDirectory: String
    public init(caFile: String?, caDirectory: String = "/etc/ssl/certs") {
        self.caFile = caFile
        self.caDirectory = caDirectory
    }
}

public enum TLSProbe {
    public static func run(address: IPAddress, port: UInt16, sni: String?, tlsName: String,
                           trust: TrustedCAs, timeoutMs: Int) -> TLSProbeResult {
        var result = TLSProbeResult()
        let started = monotonicMs()
        let fd: Int32
        switch connect(address, port, timeoutMs: timeoutMs) {
        case .failure(let failure):
            result.connectError = failure.message
            return result
        case .success(let socket):
            fd = socket
        }
        defer { close(fd) }
        let connectMs = monotonicMs() - started
        result.connectMs = connectMs
        let remaining = max(100, timeoutMs - connectMs)
        let deadline = monotonicMs() + remaining

        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else {
            result.handshakeError = "SSL_CTX_new failed: \(openSSLError())"
            return result
        }
        defer { SSL_CTX_free(ctx) }
        // The handshake goes on whatever the certificate: its verdict is read afterwards, so the
        // report can show the certificate and say exactly what is wrong with it.
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        if SSL_CTX_load_verify_locations(ctx, trust.caFile, trust.caDirectory) != 1 {
            result.handshakeError = "cannot load the trusted CAs (\(trust.caFile ?? "-"), \(trust.caDirectory)): \(openSSLError())"
            return result
        }
        X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), UInt(X509_V_FLAG_TRUSTED_FIRST | X509_V_FLAG_PARTIAL_CHAIN))
        guard let ssl = SSL_new(ctx) else {
            result.handshakeError = "SSL_new failed: \(openSSLError())"
            return result
        }
        defer { SSL_free(ssl) }
        SSL_set_fd(ssl, fd)
        if let sni {
            // SSL_set_tlsext_host_name is a macro over SSL_ctrl.
            _ = sni.withCString { SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: $0)) }
        }
        let param = SSL_get0_param(ssl)
        if IPAddress(tlsName) != nil {
            X509_VERIFY_PARAM_set1_ip_asc(param, tlsName)
        } else {
            X509_VERIFY_PARAM_set_hostflags(param, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
            X509_VERIFY_PARAM_set1_host(param, tlsName, tlsName.utf8.count)
        }
        // Non-blocking, each wait bounded by what is left of the one deadline: a server that trickles
        // a byte at a time cannot stretch the handshake past it.
        while true {
            let rc = SSL_connect(ssl)
            if rc == 1 { break }
            let code = errno
            let wanted = SSL_get_error(ssl, rc)
            guard wanted == SSL_ERROR_WANT_READ || wanted == SSL_ERROR_WANT_WRITE else {
                let e = openSSLError()
                result.handshakeError = e.isEmpty ? "the server closed the connection during the handshake (\(String(cString: strerror(code))))" : e
                return result
            }
            let left = deadline - monotonicMs()
            var pfd = pollfd(fd: fd, events: Int16(wanted == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), revents: 0)
            if left <= 0 || (poll(&pfd, 1, Int32(left)) == 0) {
                result.handshakeTimedOut = true
                result.handshakeError = "timed out: no TLS answer within \(remaining) ms"
                return result
            }
        }
        result.tlsVersion = String(cString: SSL_get_version(ssl))
        result.verifyCode = Int(SSL_get_verify_result(ssl))
        if result.verifyCode != 0 { result.verifyError = String(cString: X509_verify_cert_error_string(result.verifyCode)) }
        if let cert = SSL_get1_peer_certificate(ssl) {
            result.certificate = summary(cert)
            X509_free(cert)
        } else {
            result.verifyError = result.verifyError ?? "the server sent no certificate"
            if result.verifyCode == 0 { result.verifyCode = -1 }
        }
        _ = SSL_shutdown(ssl)
        return result
    }

    static func monotonicMs() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int(ts.tv_sec) * 1000 + Int(ts.tv_nsec) / 1_000_000
    }

    /// A non-blocking TCP connection within `timeoutMs` (connect, then poll).
    static func connect(_ address: IPAddress, _ port: UInt16, timeoutMs: Int) -> Result<Int32, ConnectFailure> {
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return .failure(ConnectFailure("socket: \(String(cString: strerror(errno)))")) }
        var rc: Int32
        if address.isIPv6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: address.bytes) }
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &sa.sin_addr) { $0.copyBytes(from: address.bytes) }
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        if rc != 0 && errno != EINPROGRESS {
            let e = String(cString: strerror(errno))
            close(fd)
            return .failure(ConnectFailure(e))
        }
        if rc != 0 {
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let n = poll(&pfd, 1, Int32(max(1, timeoutMs)))
            if n == 0 {
                close(fd)
                return .failure(ConnectFailure("no answer within \(timeoutMs) ms (packets dropped: a firewall?)"))
            }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if n < 0 || err != 0 {
                let e = String(cString: strerror(n < 0 ? errno : err))
                close(fd)
                return .failure(ConnectFailure(e))
            }
        }
        return .success(fd)
    }

    struct ConnectFailure: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    static func summary(_ cert: OpaquePointer) -> CertificateSummary {
        var names: [String] = []
        let index = X509_get_ext_by_NID(cert, NID_subject_alt_name, -1)
        if index >= 0, let ext = X509_get_ext(cert, index) {
            let printed = withMemoryBIO { X509V3_EXT_print($0, ext, 0, 0) }
            names = printed.split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
        }
        var notAfter: Int64?
        var notAfterText = ""
        if let t = X509_get0_notAfter(cert) {
            var tm = tm()
            if ASN1_TIME_to_tm(t, &tm) == 1 { notAfter = Int64(timegm(&tm)) }
            notAfterText = withMemoryBIO { ASN1_TIME_print($0, t) }
        }
        return CertificateSummary(subject: name(X509_get_subject_name(cert)), issuer: name(X509_get_issuer_name(cert)),
                                  altNames: names, notAfter: notAfter, notAfterText: notAfterText)
    }

    static func name(_ n: OpaquePointer?) -> String {
        guard let n else { return "" }
        var buffer = [CChar](repeating: 0, count: 512)
        guard X509_NAME_oneline(n, &buffer, Int32(buffer.count)) != nil else { return "" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Runs `body` against a memory BIO and returns what it wrote.
    static func withMemoryBIO(_ body: (OpaquePointer) -> Int32) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { return "" }
        defer { BIO_free(bio) }
        guard body(bio) > 0 else { return "" }
        var pointer: UnsafeMutablePointer<CChar>?
        let length = BIO_ctrl(bio, BIO_CTRL_INFO, 0, &pointer)  // BIO_get_mem_data
        guard length > 0, let pointer else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: length), as: UTF8.self)
    }

    static func openSSLError() -> String { OpenSSLErrors.takeOldest() ?? "" }
}
