#if canImport(Glibc)
import Glibc
#endif
import CAres
import CCurl
import MXCore

/// The c-ares side of the I/O loop: one `ares_channel`, raw `ares_query` (class IN) with the
/// answer parsed by `DNSMessage`, and at most `maxInFlight` queries outstanding (the rest wait
/// in FIFO order, so a burst cannot overflow a DNS server's receive buffer).
///
/// THREADING RULE: created on any thread, then used only on the `IOLoop` thread.
final class AresDNS {
    typealias Completion = @Sendable (Result<DNSMessage, DNSError>) -> Void

    struct Pending {
        let name: String
        let type: UInt16
        let completion: Completion
    }

    /// The c-ares sockets and what c-ares wants to wait for on each, kept current by
    /// ARES_OPT_SOCK_STATE_CB (no 16-socket limit as with ares_getsock).
    final class SocketTable {
        var sockets: [Int32: (read: Bool, write: Bool)] = [:]
    }

    final class QueryBox {
        let pending: Pending
        unowned let dns: AresDNS
        init(_ pending: Pending, _ dns: AresDNS) {
            self.pending = pending
            self.dns = dns
        }
    }

    let channel: ares_channel
    let maxInFlight: Int
    private let table: SocketTable
    private(set) var inFlight = 0
    private var queue = FIFO<Pending>()
    private var stopped = false

    /// `servers`: "ADDR:PORT" / "[V6]:PORT" entries; empty means the system resolv.conf.
    init(servers: [String], timeoutMs: Int, tries: Int, maxInFlight: Int) throws(NetworkSetupError) {
        guard NetLibraries.initialized else { throw .libraryInit }
        self.maxInFlight = max(1, maxInFlight)
        let table = SocketTable()
        self.table = table

        var options = ares_options()
        var mask: Int32 = 0
        options.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOCHECKRESP | ARES_FLAG_EDNS
        options.ednspsz = 1232
        mask |= ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ
        options.timeout = Int32(clamping: max(1, timeoutMs))
        mask |= ARES_OPT_TIMEOUTMS
        options.tries = Int32(clamping: max(1, tries))
        mask |= ARES_OPT_TRIES
        options.ndomains = 0
        mask |= ARES_OPT_DOMAINS
        mask |= ARES_OPT_NOROTATE
        options.sock_state_cb = { data, fd, readable, writable in
            let table = Unmanaged<SocketTable>.fromOpaque(data!).takeUnretainedValue()
            if readable == 0 && writable == 0 {
                table.sockets[fd] = nil
            } else {
                table.sockets[fd] = (readable != 0, writable != 0)
            }
        }
        options.sock_state_cb_data = Unmanaged.passUnretained(table).toOpaque()
        mask |= ARES_OPT_SOCK_STATE_CB

        var channel: ares_channel? = nil
        let rc: Int32 = "b".withCString { lookups in
            options.lookups = UnsafeMutablePointer(mutating: lookups)
            var opt = mask | ARES_OPT_LOOKUPS
            if servers.isEmpty {
                return ares_init_options(&channel, &options, opt)
            }
            // Explicit servers: read nothing from the system resolver configuration.
            return "/dev/null".withCString { devNull in
                options.resolvconf_path = UnsafeMutablePointer(mutating: devNull)
                opt |= ARES_OPT_RESOLVCONF
                return ares_init_options(&channel, &options, opt)
            }
        }
        guard rc == ARES_SUCCESS, let channel else {
            throw .ares("ares_init_options: \(String(cString: ares_strerror(rc)))")
        }
        if !servers.isEmpty, let problem = Self.useServers(servers, on: channel) {
            ares_destroy(channel)
            throw .ares(problem)
        }
        self.channel = channel
    }

    /// Loop thread: later queries go to `servers` (non-empty); queries in flight finish where they
    /// are. Returns why the list was refused, in which case the servers stay as they were.
    func setServers(_ servers: [String]) -> String? {
        Self.useServers(servers, on: channel)
    }

    private static func useServers(_ servers: [String], on channel: ares_channel) -> String? {
        let csv = servers.joined(separator: ",")
        let rc = ares_set_servers_ports_csv(channel, csv)
        return rc == ARES_SUCCESS ? nil : "bad DNS server list '\(csv)': \(String(cString: ares_strerror(rc)))"
    }

    /// Loop thread: queue a query (started at once if under the in-flight cap).
    func enqueue(_ pending: Pending) {
        guard !stopped else {
            pending.completion(.failure(.other("resolver stopped")))
            return
        }
        queue.append(pending)
        startQueued()
    }

    /// Loop thread: start queued queries while under the cap. A query that fails synchronously
    /// inside `ares_query` completes (and frees its slot) before this returns to the loop.
    func startQueued() {
        while !stopped, inFlight < maxInFlight, let next = queue.popFirst() {
            inFlight += 1
            let box = Unmanaged.passRetained(QueryBox(next, self)).toOpaque()
            ares_query(channel, next.name, Int32(CARES_CLASS_IN), Int32(next.type), { arg, status, _, abuf, alen in
                let box = Unmanaged<QueryBox>.fromOpaque(arg!).takeRetainedValue()
                box.dns.inFlight -= 1
                var answer: [UInt8]? = nil
                if let abuf, alen > 0 { answer = Array(UnsafeBufferPointer(start: abuf, count: Int(alen))) }
                box.pending.completion(AresDNS.classify(status: status, answer: answer))
            }, box)
        }
    }

    /// Turns what c-ares reports into a message (NOERROR) or a `DNSError`. With
    /// ARES_FLAG_NOCHECKRESP, SERVFAIL/REFUSED/NXDOMAIN arrive as raw answers, so the rcode in the
    /// answer decides; the status only matters when there is no answer (timeouts, shutdown).
    static func classify(status: Int32, answer: [UInt8]?) -> Result<DNSMessage, DNSError> {
        if let answer, !answer.isEmpty {
            let message: DNSMessage
            do {
                message = try DNSMessage(parsing: answer)
            } catch {
                return .failure(.other("malformed DNS answer: \(error)"))
            }
            switch DNSRcode(rawValue: message.rcode) {
            case .noError?: return .success(message)
            case .nxDomain?: return .failure(.nxdomain(negativeTTL: message.negativeTTL))
            case .servFail?: return .failure(.servfail)
            case .refused?: return .failure(.refused)
            case .notImp?: return .failure(.notImplemented)
            case .formErr?, nil: return .failure(.other("DNS rcode \(message.rcode)"))
            }
        }
        switch status {
        case ARES_ETIMEOUT: return .failure(.timeout)
        case ARES_ENOTFOUND: return .failure(.nxdomain(negativeTTL: nil))
        case ARES_ENODATA: return .failure(.nodata(negativeTTL: nil))
        case ARES_ESERVFAIL: return .failure(.servfail)
        case ARES_EREFUSED: return .failure(.refused)
        case ARES_EDESTRUCTION, ARES_ECANCELLED: return .failure(.other("resolver stopped"))
        default: return .failure(.other("c-ares \(status): \(String(cString: ares_strerror(status)))"))
        }
    }

    /// Loop thread: the fds to wait on, with the events c-ares wants.
    func fillWaitFDs(_ fds: inout [curl_waitfd]) {
        fds.removeAll(keepingCapacity: true)
        for (fd, want) in table.sockets {
            var events: Int16 = 0
            if want.read { events |= Int16(CURL_WAIT_POLLIN) }
            if want.write { events |= Int16(CURL_WAIT_POLLOUT) }
            fds.append(curl_waitfd(fd: fd, events: events, revents: 0))
        }
    }

    /// Loop thread, after the wait: let c-ares read/write its ready sockets and handle timeouts.
    /// Readiness is re-checked with a zero-timeout poll(2) because curl_waitfd's revents drops
    /// POLLERR/POLLHUP, and an unread socket error (ICMP port unreachable) would make us spin.
    func process(_ waited: [curl_waitfd]) {
        guard !stopped else { return }
        if !waited.isEmpty {
            var pfds = waited.map { w -> pollfd in
                var events: Int16 = 0
                if w.events & Int16(CURL_WAIT_POLLIN) != 0 { events |= Int16(POLLIN) }
                if w.events & Int16(CURL_WAIT_POLLOUT) != 0 { events |= Int16(POLLOUT) }
                return pollfd(fd: w.fd, events: events, revents: 0)
            }
            let n = poll(&pfds, nfds_t(pfds.count), 0)
            if n > 0 {
                for p in pfds where p.revents != 0 && p.revents & Int16(POLLNVAL) == 0 {
                    let errorish = p.revents & Int16(POLLERR | POLLHUP) != 0
                    let r = p.revents & Int16(POLLIN) != 0 || (errorish && p.events & Int16(POLLIN) != 0)
                    let w = p.revents & Int16(POLLOUT) != 0 || (errorish && p.events & Int16(POLLOUT) != 0)
                    ares_process_fd(channel, r ? p.fd : ARES_SOCKET_BAD, w ? p.fd : ARES_SOCKET_BAD)
                }
            }
        }
        if inFlight > 0 {
            ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD)
        }
    }

    /// Loop thread: milliseconds until c-ares next needs to handle a timeout (-1: none).
    func timeoutMs() -> Int {
        guard inFlight > 0 else { return -1 }
        var tv = timeval()
        guard let t = ares_timeout(channel, nil, &tv) else { return -1 }
        let usec = Int(t.pointee.tv_usec)
        return Int(t.pointee.tv_sec) * 1000 + usec / 1000 + (usec % 1000 > 0 ? 1 : 0)
    }

    /// Loop thread: fail queued queries, then `ares_destroy`, which fails those in flight
    /// (ARES_EDESTRUCTION). Every completion runs exactly once.
    func shutdown() {
        guard !stopped else { return }
        stopped = true
        for pending in queue.removeAll() { pending.completion(.failure(.other("resolver stopped"))) }
        ares_destroy(channel)
    }
}
