#if canImport(Glibc)
import Glibc
#endif
import CCurl
import MXCore

/// The libcurl side of the I/O loop: one `CURLM`, at most `maxInFlight` transfers (the rest
/// wait in FIFO order). curl never resolves a name of ours: a direct transfer connects
/// (`CURLOPT_CONNECT_TO`) to a name private to it, `pin-SLOT.mxresolved.invalid`, whose addresses
/// are the request's (`CURLOPT_RESOLVE`), so curl races them with Happy Eyeballs (RFC 8305: the
/// other family starts `happyEyeballsDelayMs` after the first, instead of one address after
/// another); a resolver-start callback refuses any name curl would otherwise look up. Slots are
/// reused, so curl's DNS cache holds at most `maxInFlight` pins and concurrent transfers never see
/// each other's. A transfer through the outbound proxy tunnels (CONNECT) to one address at a
/// time, the next when connecting fails, within the request's total timeout. Connections are
/// never reused (FORBID_REUSE + FRESH_CONNECT), so a pin can never be served by a connection made
/// for another address.
///
/// THREADING RULE: created on any thread, then used only on the `IOLoop` thread. `multi` is
/// also read by other threads, only for `curl_multi_wakeup` (see `IOLoop`).
final class CurlHTTPS {
    typealias Completion = @Sendable (Result<HTTPSResponse, HTTPSError>) -> Void

    final class Transfer {
        let request: HTTPSRequest
        let completion: Completion
        var easy: UnsafeMutableRawPointer?
        var pin: UnsafeMutablePointer<curl_slist>?
        var pinAddresses: UnsafeMutablePointer<curl_slist>?
        /// Index into the pin names while in flight (direct transfers only).
        var slot: Int?
        /// Through the outbound proxy: one address at a time, `attempt` is the current one.
        var proxied = false
        var attempt = 0
        var deadlineMs = 0
        var body: [UInt8] = []
        var headers: [HTTPHeader] = []
        var overflow = false
        var failedAttempts: [String] = []
        let errorBuffer: UnsafeMutablePointer<CChar>

        init(_ request: HTTPSRequest, _ completion: @escaping Completion) {
            self.request = request
            self.completion = completion
            errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
            errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        }

        deinit {
            if let pin { curl_slist_free_all(pin) }
            if let pinAddresses { curl_slist_free_all(pinAddresses) }
            if let easy { curl_easy_cleanup(easy) }
            errorBuffer.deallocate()
        }

        var errorText: String {
            errorBuffer[Int(CURL_ERROR_SIZE)] = 0
            return String(cString: errorBuffer)
        }
    }

    let multi: UnsafeMutableRawPointer
    let maxInFlight: Int
    let userAgent: String
    /// The process's one trust store, shared with every TLS context (see `TrustStore`); libcurl
    /// itself loads no CA file or directory.
    let trust: TrustStore
    private let trustPointer: UnsafeMutableRawPointer
    let happyEyeballsDelayMs: Int
    let proxy: OutboundProxy?
    private var queue = FIFO<Transfer>()
    private var active: [UnsafeMutableRawPointer: Transfer] = [:]
    private var freeSlots: [Int] = []
    private var slotCount = 0
    private var stopped = false

    init(maxInFlight: Int, userAgent: String, trust: TrustStore, happyEyeballsDelayMs: Int,
         proxy: OutboundProxy?) throws(NetworkSetupError) {
        guard NetLibraries.initialized else { throw .libraryInit }
        self.maxInFlight = max(1, maxInFlight)
        self.userAgent = userAgent
        self.happyEyeballsDelayMs = happyEyeballsDelayMs
        self.proxy = proxy
        self.trust = trust
        trustPointer = Unmanaged.passUnretained(trust).toOpaque()  // `trust` is held as long as self
        // The shared store is an OpenSSL object: a libcurl built on another TLS library cannot take it.
        // (ssl_version is in every age of the version struct.)
        guard let version = curl_version_info(CURLVERSION_FIRST), let ssl = version.pointee.ssl_version,
              String(cString: ssl).hasPrefix("OpenSSL/") else {
            throw .curl("libcurl is not built with OpenSSL, which the shared trust store needs")
        }
        guard let multi = curl_multi_init() else { throw .curl("curl_multi_init failed") }
        self.multi = multi
    }

    static let tls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

    static func monotonicMs() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int(ts.tv_sec) * 1000 + Int(ts.tv_nsec) / 1_000_000
    }

    /// Loop thread: queue a fetch (started at once if under the cap).
    func enqueue(_ request: HTTPSRequest, _ completion: @escaping Completion) {
        guard !stopped else {
            completion(.failure(.other("fetcher stopped")))
            return
        }
        queue.append(Transfer(request, completion))
        startQueued()
    }

    /// Loop thread: start queued fetches while under the cap.
    func startQueued() {
        while !stopped, active.count < maxInFlight, let t = queue.popFirst() {
            start(t)
        }
    }

    private func start(_ t: Transfer) {
        guard !t.request.connectTo.isEmpty else {
            t.completion(.failure(.connect("no address to connect to")))
            return
        }
        guard let easy = curl_easy_init() else {
            t.completion(.failure(.other("curl_easy_init failed")))
            return
        }
        t.easy = easy
        t.deadlineMs = Self.monotonicMs() + max(1, t.request.totalTimeoutMs)
        let me = Unmanaged.passUnretained(t).toOpaque()
        var ok = true
        func set(_ rc: CURLcode) { if rc != CURLE_OK { ok = false } }
        set(ccurl_setopt_string(easy, CURLOPT_URL, t.request.url))
        set(ccurl_setopt_string(easy, CURLOPT_PROTOCOLS_STR, "https"))
        set(ccurl_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 0))
        set(ccurl_setopt_long(easy, CURLOPT_NOSIGNAL, 1))
        set(ccurl_setopt_long(easy, CURLOPT_FORBID_REUSE, 1))
        set(ccurl_setopt_long(easy, CURLOPT_FRESH_CONNECT, 1))
        set(ccurl_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 1))
        set(ccurl_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 2))
        if let proxy, !proxy.bypasses(t.request.host) {
            // Only the configured proxy, never one from curl's own reading of the environment.
            t.proxied = true
            set(ccurl_setopt_string(easy, CURLOPT_PROXY, proxy.url))
            set(ccurl_setopt_string(easy, CURLOPT_NOPROXY, ""))
            set(ccurl_setopt_long(easy, CURLOPT_HTTPPROXYTUNNEL, 1))
        } else {
            set(ccurl_setopt_string(easy, CURLOPT_PROXY, ""))
            set(ccurl_setopt_long(easy, CURLOPT_HAPPY_EYEBALLS_TIMEOUT_MS, happyEyeballsDelayMs))
            // Every name a direct transfer connects to is pinned; a look-up would be a bug (and would
            // go to the system resolver), so it fails the transfer.
            set(ccurl_setopt_resolver_start_cb(easy, CURLOPT_RESOLVER_START_FUNCTION, { _, _, _ in 1 }))
        }
        set(ccurl_setopt_string(easy, CURLOPT_USERAGENT, userAgent))
        set(ccurl_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, max(1, t.request.connectTimeoutMs)))
        set(ccurl_setopt_pointer(easy, CURLOPT_ERRORBUFFER, t.errorBuffer))
        set(ccurl_setopt_write_cb(easy, CURLOPT_WRITEFUNCTION, { data, size, nmemb, user in
            let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
            let n = size * nmemb
            guard t.body.count + n <= t.request.maxBodyBytes else {
                t.overflow = true
                return 0  // -> CURLE_WRITE_ERROR, reported as .bodyTooLarge
            }
            if n > 0, let data { t.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: n)) }
            return n
        }))
        set(ccurl_setopt_pointer(easy, CURLOPT_WRITEDATA, me))
        set(ccurl_setopt_write_cb(easy, CURLOPT_HEADERFUNCTION, { data, size, nmemb, user in
            let t = Unmanaged<Transfer>.fromOpaque(user!).takeUnretainedValue()
            let n = size * nmemb
            if n > 0, let data {
                CurlHTTPS.headerLine(UnsafeRawBufferPointer(start: data, count: n), into: &t.headers)
            }
            return n
        }))
        set(ccurl_setopt_pointer(easy, CURLOPT_HEADERDATA, me))
        // No CA file or directory for libcurl to load: every TLS context gets the shared store.
        set(ccurl_setopt_string(easy, CURLOPT_CAINFO, nil))
        set(ccurl_setopt_string(easy, CURLOPT_CAPATH, nil))
        // libcurl 7.88 sets its trust up after the SSL-context callback, during the handshake: its
        // CA cache would put the first store it saw back in place of ours (a changed CA file would
        // never be used), and its partial-chain default would write flags into the shared store
        // from every I/O thread. The store carries that flag itself (`TrustStore`).
        set(ccurl_setopt_long(easy, CURLOPT_CA_CACHE_TIMEOUT, 0))
        set(ccurl_setopt_long(easy, CURLOPT_SSL_OPTIONS, Int(CURLSSLOPT_NO_PARTIALCHAIN)))
        set(ccurl_setopt_ssl_ctx_cb(easy, CURLOPT_SSL_CTX_FUNCTION, { _, sslContext, user in
            guard let sslContext, let user else { return CURLE_SSL_CACERT_BADFILE }
            Unmanaged<TrustStore>.fromOpaque(user).takeUnretainedValue().install(into: sslContext)
            return CURLE_OK
        }))
        set(ccurl_setopt_pointer(easy, CURLOPT_SSL_CTX_DATA, trustPointer))
        // Per-connection work a fetch that is never reused has no use for: HTTP/2's session set-up
        // (one GET per connection), and keeping TLS sessions for a handle that ends with the fetch.
        set(ccurl_setopt_long(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1))
        set(ccurl_setopt_long(easy, CURLOPT_SSL_SESSIONID_CACHE, 0))
        // TLS 1.3 suites in the browsers' order: AES-128-GCM's SHA-256 key schedule is cheaper than
        // OpenSSL's default first choice, AES-256-GCM-SHA384. The same three suites are offered.
        set(ccurl_setopt_string(easy, CURLOPT_TLS13_CIPHERS, Self.tls13Suites))
        guard ok else {
            t.completion(.failure(.other("curl_easy_setopt failed (libcurl too old, or not built with OpenSSL?)")))
            return
        }
        launch(t)
    }

    static func literal(_ address: IPAddress) -> String { address.isIPv6 ? "[\(address)]" : "\(address)" }

    /// Pins the transfer (all its addresses, or through the proxy its current one) and adds it to
    /// the multi handle. Empty HOST and PORT in a CONNECT_TO entry match any: a handle has exactly
    /// one entry and follows no redirect.
    private func launch(_ t: Transfer) {
        guard let easy = t.easy else { return }
        let connectTo: String
        var pinAddresses: UnsafeMutablePointer<curl_slist>? = nil
        if t.proxied {
            connectTo = "::\(Self.literal(t.request.connectTo[t.attempt])):\(t.request.port)"
        } else {
            let slot = t.slot ?? takeSlot()
            t.slot = slot
            let name = "pin-\(slot).mxresolved.invalid"
            connectTo = "::\(name):\(t.request.port)"
            // "+": an entry that ages out of curl's DNS cache like a looked-up one, not a permanent one.
            let addresses = t.request.connectTo.map(Self.literal).joined(separator: ",")
            pinAddresses = curl_slist_append(nil, "+\(name):\(t.request.port):\(addresses)")
            guard pinAddresses != nil else {
                finish(t, .failure(.other("cannot pin the connection")))
                return
            }
        }
        let newPin = curl_slist_append(nil, connectTo)
        if let old = t.pin { curl_slist_free_all(old) }
        if let old = t.pinAddresses { curl_slist_free_all(old) }
        t.pin = newPin
        t.pinAddresses = pinAddresses
        let remaining = t.deadlineMs - Self.monotonicMs()
        guard remaining > 0 else {
            finish(t, .failure(.timeout))
            return
        }
        guard newPin != nil,
              ccurl_setopt_slist(easy, CURLOPT_CONNECT_TO, newPin) == CURLE_OK,
              ccurl_setopt_slist(easy, CURLOPT_RESOLVE, pinAddresses) == CURLE_OK,
              ccurl_setopt_long(easy, CURLOPT_TIMEOUT_MS, remaining) == CURLE_OK else {
            finish(t, .failure(.other("cannot pin the connection")))
            return
        }
        t.body.removeAll()
        t.headers.removeAll()
        t.overflow = false
        t.errorBuffer[0] = 0
        let rc = curl_multi_add_handle(multi, easy)
        guard rc == CURLM_OK else {
            finish(t, .failure(.other("curl_multi_add_handle: \(String(cString: curl_multi_strerror(rc)))")))
            return
        }
        active[easy] = t
    }

    private func takeSlot() -> Int {
        if let slot = freeSlots.popLast() { return slot }
        slotCount += 1
        return slotCount - 1
    }

    private func finish(_ t: Transfer, _ result: Result<HTTPSResponse, HTTPSError>) {
        if let easy = t.easy {
            curl_easy_cleanup(easy)
            t.easy = nil
        }
        if let pin = t.pin {
            curl_slist_free_all(pin)
            t.pin = nil
        }
        if let pinAddresses = t.pinAddresses {
            curl_slist_free_all(pinAddresses)
            t.pinAddresses = nil
        }
        if let slot = t.slot {
            freeSlots.append(slot)
            t.slot = nil
        }
        t.completion(result)
    }

    /// One header line from curl: a status line starts a new header block (1xx, or a response
    /// after an auth/proxy exchange); other lines are `name: value`, or a folded continuation.
    static func headerLine(_ raw: UnsafeRawBufferPointer, into headers: inout [HTTPHeader]) {
        var line = String(decoding: raw, as: UTF8.self)
        while let last = line.last, last.isNewline { line.removeLast() }
        if line.isEmpty { return }
        if line.hasPrefix("HTTP/") {
            headers.removeAll()
            return
        }
        if line.utf8.first == UInt8(ascii: " ") || line.utf8.first == UInt8(ascii: "\t") {
            // RFC 9112 §5.2: the fold is one space inside the value, whose ends stay trimmed.
            let folded = line.trimmingSpaces
            if !headers.isEmpty, !folded.isEmpty {
                let last = headers.count - 1
                headers[last].value += headers[last].value.isEmpty ? folded : " " + folded
            }
            return
        }
        // The colon is found among the bytes: as a Character it can fuse with a combining mark after it.
        guard let colon = line.utf8.firstIndex(of: UInt8(ascii: ":")) else { return }
        let name = String(decoding: line.utf8[..<colon], as: UTF8.self).trimmingSpaces
        let value = String(decoding: line.utf8[line.utf8.index(after: colon)...], as: UTF8.self).trimmingSpaces
        guard !name.isEmpty else { return }
        headers.append(HTTPHeader(name, value))
    }

    /// Loop thread: milliseconds until curl wants attention (-1: no timer).
    func timeoutMs() -> Int {
        guard !active.isEmpty else { return -1 }
        var ms = -1
        _ = curl_multi_timeout(multi, &ms)
        return ms
    }

    /// Loop thread, after the wait: drive transfers and complete the finished ones.
    func perform() {
        guard !stopped, !active.isEmpty else { return }
        var running: Int32 = 0
        _ = curl_multi_perform(multi, &running)
        var left: Int32 = 0
        while let msg = curl_multi_info_read(multi, &left) {
            guard msg.pointee.msg == CURLMSG_DONE, let easy = msg.pointee.easy_handle else { continue }
            let rc = ccurl_msg_result(msg)
            done(easy, rc)
        }
    }

    private func done(_ easy: UnsafeMutableRawPointer, _ rc: CURLcode) {
        guard let t = active.removeValue(forKey: easy) else { return }
        _ = curl_multi_remove_handle(multi, easy)
        if rc == CURLE_OK {
            var status = 0
            _ = ccurl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
            finish(t, .success(HTTPSResponse(status: status, headers: t.headers, body: t.body)))
            return
        }
        let text = t.errorText.isEmpty ? String(cString: curl_easy_strerror(rc)) : t.errorText
        // Through the proxy, a tunnel that could not be opened (the proxy could not reach the address) is a
        // connect failure too.
        var connected: curl_off_t = 0
        _ = ccurl_getinfo_off(easy, CURLINFO_APPCONNECT_TIME_T, &connected)
        let connectFailure = rc == CURLE_COULDNT_CONNECT || (rc == CURLE_OPERATION_TIMEDOUT && connected == 0)
            || (t.proxied && rc == CURLE_RECV_ERROR && connected == 0)
        let attempted = t.proxied ? "\(t.request.connectTo[t.attempt]) via the proxy" : t.request.connectTo.map(\.description).joined(separator: ", ")
        if t.proxied, connectFailure, t.attempt + 1 < t.request.connectTo.count, t.deadlineMs - Self.monotonicMs() > 0 {
            t.failedAttempts.append("\(attempted): \(text)")
            t.attempt += 1
            launch(t)
            return
        }
        finish(t, .failure(Self.mapError(rc, text: text, overflow: t.overflow, limit: t.request.maxBodyBytes,
                                         earlier: t.failedAttempts, attempted: attempted, connectFailure: connectFailure)))
    }

    static func mapError(_ rc: CURLcode, text: String, overflow: Bool, limit: Int, earlier: [String], attempted: String,
                         connectFailure: Bool) -> HTTPSError {
        let code = Int(rc.rawValue)
        if rc == CURLE_WRITE_ERROR && overflow { return .bodyTooLarge(limit: limit) }
        if connectFailure && rc != CURLE_OPERATION_TIMEDOUT {
            return .connect((earlier + ["\(attempted): \(text)"]).joined(separator: "; "))
        }
        switch rc {
        case CURLE_COULDNT_CONNECT:
            return .connect((earlier + ["\(attempted): \(text)"]).joined(separator: "; "))
        case CURLE_OPERATION_TIMEDOUT:
            return .timeout
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
             CURLE_SSL_ENGINE_INITFAILED, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_SHUTDOWN_FAILED, CURLE_SSL_ISSUER_ERROR,
             CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CLIENTCERT:
            return .tls("curl \(code): \(text)")
        default:
            return .other("curl \(code): \(text)")
        }
    }

    /// Loop thread: fail everything queued or in flight (exactly once each), free the handles.
    func shutdown() {
        guard !stopped else { return }
        stopped = true
        for t in queue.removeAll() { t.completion(.failure(.other("fetcher stopped"))) }
        let transfers = active
        active = [:]
        for (easy, t) in transfers {
            _ = curl_multi_remove_handle(multi, easy)
            finish(t, .failure(.other("fetcher stopped")))
        }
        _ = curl_multi_cleanup(multi)
    }
}
