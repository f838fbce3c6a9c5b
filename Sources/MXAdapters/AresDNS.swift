#if canImport(Glibc)
import Glibc
#endif
import CAres
import CCurl
import MXCore

/// The c-ares side of the I/O loop: raw `ares_query` (class IN) with the answer parsed by
/// `DNSMessage`, and at most `maxInFlight` queries outstanding (the rest wait in FIFO order, so a
/// burst cannot overflow a DNS server's receive buffer).
///
/// Fail-over: a query goes to the main channel, which holds every configured server and moves on
/// to the next on a timeout. A SERVFAIL or REFUSED answer reaches us as an answer
/// (ARES_FLAG_NOCHECKRESP, which keeps the rcode, and so which failure it was) and would end the
/// query there, so the same query then goes to each further server in turn, over a channel of
/// its own (one try round each), until one answers; when none does, the first server's failure
/// stands. One server: no fail-over channels.
///
/// THREADING RULE: created on any thread, then used only on the `IOLoop` thread.
final class AresDNS {
    typealias Completion = @Sendable (Result<DNSMessage, DNSError>) -> Void

    struct Pending {
        let name: String
        let type: UInt16
        let completion: Completion
        /// The channel asked: 0 the main one, k the fail-over channel of server k.
        var attempt = 0
        /// The first server's failure, reported when no server answers.
        var firstFailure: DNSError? = nil

        init(name: String, type: UInt16, completion: @escaping Completion) {
            self.name = name
            self.type = type
            self.completion = completion
        }
    }

    /// The c-ares sockets of every channel and what c-ares wants to wait for on each, kept current
    /// by ARES_OPT_SOCK_STATE_CB (no 16-socket limit as with ares_getsock).
    final class SocketTable {
        var sockets: [Int32: (channel: Int, read: Bool, write: Bool)] = [:]
    }

    /// What one channel's socket callback needs: the shared table and which channel it is.
    final class ChannelSockets {
        let table: SocketTable
        let index: Int
        init(_ table: SocketTable, _ index: Int) {
            self.table = table
            self.index = index
        }
    }

    final class QueryBox {
        let pending: Pending
        unowned let dns: AresDNS
        init(_ pending: Pending, _ dns: AresDNS) {
            self.pending = pending
            self.dns = dns
        }
    }

    /// The main channel first, then one per further server.
    private(set) var channels: [ares_channel] = []
    private var channelSockets: [ChannelSockets] = []
    let maxInFlight: Int
    private let perTryTimeoutMs: Int
    private let table = SocketTable()
    /// Called on the loop thread for each query handed on to a further server.
    private let onFailover: () -> Void
    private(set) var inFlight = 0
    private var queue = FIFO<Pending>()
    private var stopped = false

    /// `servers`: "ADDR:PORT" / "[V6]:PORT" entries; empty means the system resolv.conf.
    init(servers: [String], timeoutMs: Int, tries: Int, maxInFlight: Int,
         onFailover: @escaping () -> Void = {}) throws(NetworkSetupError) {
        guard NetLibraries.initialized else { throw .libraryInit }
        self.maxInFlight = max(1, maxInFlight)
        self.onFailover = onFailover
        perTryTimeoutMs = timeoutMs
        try makeChannel(servers: servers.isEmpty ? nil : .list(servers), timeoutMs: timeoutMs, tries: tries)
        do {
            try makeFailoverChannels()
        } catch {
            destroyChannels()
            throw error
        }
    }

    /// One channel per server after the main channel's first, in the order it uses them.
    private func makeFailoverChannels() throws(NetworkSetupError) {
        var list: UnsafeMutablePointer<ares_addr_port_node>? = nil
        guard ares_get_servers_ports(channels[0], &list) == ARES_SUCCESS else { throw .ares("cannot read the DNS server list") }
        defer { ares_free_data(list) }
        var node = list?.pointee.next
        while let server = node {
            let next = server.pointee.next
            server.pointee.next = nil
            defer { server.pointee.next = next }
            try makeChannel(servers: .node(server), timeoutMs: perTryTimeoutMs, tries: 1)
            node = next
        }
    }

    enum ServerSource {
        case list([String])
        case node(UnsafeMutablePointer<ares_addr_port_node>)
    }

    /// A channel, registered in `channels`; `servers` nil: the system resolv.conf.
    @discardableResult
    private func makeChannel(servers: ServerSource?, timeoutMs: Int, tries: Int) throws(NetworkSetupError) -> ares_channel {
        let sockets = ChannelSockets(table, channels.count)
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
            let sockets = Unmanaged<ChannelSockets>.fromOpaque(data!).takeUnretainedValue()
            if readable == 0 && writable == 0 {
                sockets.table.sockets[fd] = nil
            } else {
                sockets.table.sockets[fd] = (sockets.index, readable != 0, writable != 0)
            }
        }
        options.sock_state_cb_data = Unmanaged.passUnretained(sockets).toOpaque()
        mask |= ARES_OPT_SOCK_STATE_CB

        var channel: ares_channel? = nil
        let rc: Int32 = "b".withCString { lookups in
            options.lookups = UnsafeMutablePointer(mutating: lookups)
            var opt = mask | ARES_OPT_LOOKUPS
            if servers == nil {
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
        let problem: String?
        switch servers {
        case .list(let list)?: problem = Self.useServers(list, on: channel)
        case .node(let node)?:
            let rc = ares_set_servers_ports(channel, node)
            problem = rc == ARES_SUCCESS ? nil : "cannot use a DNS server of the list: \(String(cString: ares_strerror(rc)))"
        case nil: problem = nil
        }
        if let problem {
            ares_destroy(channel)
            throw .ares(problem)
        }
        channels.append(channel)
        channelSockets.append(sockets)
        return channel
    }

    private func destroyChannels() {
        channels.forEach { ares_destroy($0) }
        channels = []
    }

    /// Loop thread: later queries go to `servers` (non-empty); queries in flight finish where they
    /// are. Returns why the list was refused, in which case the servers stay as they were.
    func setServers(_ servers: [String]) -> String? {
        if let problem = Self.useServers(servers, on: channels[0]) { return problem }
        // The fail-over channels follow the new list. Taken out of `channels` before they are
        // destroyed, so a query they fail completes rather than moving on to a destroyed channel.
        let old = channels.dropFirst()
        let oldSockets = channelSockets.dropFirst()
        channels.removeSubrange(1...)
        channelSockets.removeSubrange(1...)
        old.forEach { ares_destroy($0) }
        withExtendedLifetime(oldSockets) {}
        do {
            try makeFailoverChannels()
        } catch {
            return "\(error)"
        }
        return nil
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
            send(next)
        }
    }

    /// Asks the pending query's current channel; its slot stays taken until it completes.
    private func send(_ pending: Pending) {
        let box = Unmanaged.passRetained(QueryBox(pending, self)).toOpaque()
        ares_query(channels[pending.attempt], pending.name, Int32(CARES_CLASS_IN), Int32(pending.type), { arg, status, _, abuf, alen in
            let box = Unmanaged<QueryBox>.fromOpaque(arg!).takeRetainedValue()
            var answer: [UInt8]? = nil
            if let abuf, alen > 0 { answer = Array(UnsafeBufferPointer(start: abuf, count: Int(alen))) }
            box.dns.answered(box.pending, AresDNS.classify(status: status, answer: answer))
        }, box)
    }

    /// SERVFAIL, REFUSED, or no answer from a fail-over server: the next server is asked.
    private func answered(_ pending: Pending, _ result: Result<DNSMessage, DNSError>) {
        // The main channel has already tried every server before it reports a timeout.
        if case .failure(let error) = result, !stopped, pending.attempt + 1 < channels.count,
           error == .servfail || error == .refused || (error == .timeout && pending.attempt > 0) {
            var next = pending
            next.firstFailure = pending.firstFailure ?? error
            next.attempt += 1
            onFailover()
            send(next)
            return
        }
        inFlight -= 1
        if case .failure = result, let first = pending.firstFailure {
            pending.completion(.failure(first))
        } else {
            pending.completion(result)
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
                    guard let owner = table.sockets[p.fd]?.channel else { continue }
                    let errorish = p.revents & Int16(POLLERR | POLLHUP) != 0
                    let r = p.revents & Int16(POLLIN) != 0 || (errorish && p.events & Int16(POLLIN) != 0)
                    let w = p.revents & Int16(POLLOUT) != 0 || (errorish && p.events & Int16(POLLOUT) != 0)
                    ares_process_fd(channels[owner], r ? p.fd : ARES_SOCKET_BAD, w ? p.fd : ARES_SOCKET_BAD)
                }
            }
        }
        if inFlight > 0 {
            for channel in channels { ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD) }
        }
    }

    /// Loop thread: milliseconds until c-ares next needs to handle a timeout (-1: none).
    func timeoutMs() -> Int {
        guard inFlight > 0 else { return -1 }
        var soonest = -1
        for channel in channels {
            var tv = timeval()
            guard let t = ares_timeout(channel, nil, &tv) else { continue }
            let usec = Int(t.pointee.tv_usec)
            let ms = Int(t.pointee.tv_sec) * 1000 + usec / 1000 + (usec % 1000 > 0 ? 1 : 0)
            soonest = soonest < 0 ? ms : min(soonest, ms)
        }
        return soonest
    }

    /// Loop thread: fail queued queries, then `ares_destroy`, which fails those in flight
    /// (ARES_EDESTRUCTION). Every completion runs exactly once.
    func shutdown() {
        guard !stopped else { return }
        stopped = true
        for pending in queue.removeAll() { pending.completion(.failure(.other("resolver stopped"))) }
        destroyChannels()
    }
}
