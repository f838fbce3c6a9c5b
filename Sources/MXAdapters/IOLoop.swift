#if canImport(Glibc)
import Glibc
#endif
import MXCore
import CCurl
import CAres

/// Process-wide library initialisation, done once (Swift globals are initialised exactly once).
enum NetLibraries {
    static let initialized: Bool = {
        curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK && ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS
    }()
}

/// One dedicated OS thread that owns one `CURLM` (inside `CurlHTTPS`) and, on the loop that
/// runs DNS, one `ares_channel` (inside `AresDNS`), and drives both with `curl_multi_poll`,
/// passing the c-ares sockets as extra fds (platform-notes §3, "Option A").
///
/// THREADING RULE (why this is `@unchecked Sendable`): `dns`, `https` and every C handle they
/// hold are touched only on the loop thread (their accessors check it), after `init` hands them
/// over (starting the thread orders that). Other threads touch only `inbox` (a PthreadMutex) and call `curl_multi_wakeup`, which
/// libcurl documents as thread-safe; they do so under the inbox lock and only while the inbox
/// is open, so a wakeup can never race `curl_multi_cleanup`.
final class IOLoop: @unchecked Sendable {
    /// Work for the loop thread. `cancel` is called instead of `run` if the loop has stopped.
    struct Job: Sendable {
        let run: @Sendable (IOLoop) -> Void
        let cancel: @Sendable () -> Void
    }

    private struct Inbox {
        var jobs: [Job] = []
        var stopRequested = false
        /// Set by the loop thread when it starts shutting down: later jobs are cancelled at once.
        var closed = false
        /// One caller joins the thread; if `stop` came from the loop thread, it detaches instead.
        var joinClaimed = false
        var detach = false
    }

    private let inbox = PthreadMutex(Inbox())
    /// The multi handle, for `curl_multi_wakeup` from other threads (immutable pointer).
    private let multi: UnsafeMutableRawPointer
    /// Set by the loop thread once `shutdown` has run (all completions called).
    private let finished = PthreadMutex(false)
    let thread: OSThread

    // Loop-thread only (see the rule above).
    private let dnsClient: AresDNS?
    private let httpsClient: CurlHTTPS

    /// Loop thread: the c-ares side. Only the loop created with a DNS client has one.
    var dns: AresDNS {
        thread.preconditionCurrent()
        guard let dnsClient else { preconditionFailure("DNS runs on the first I/O loop only") }
        return dnsClient
    }

    /// Loop thread: the libcurl side.
    var https: CurlHTTPS {
        thread.preconditionCurrent()
        return httpsClient
    }

    /// `dns`: nil for a loop that only fetches well-knowns.
    init(dns: AresDNS?, https: CurlHTTPS, name: String) throws(NetworkSetupError) {
        self.dnsClient = dns
        self.httpsClient = https
        self.multi = https.multi
        thread = OSThread(name: name)
        do {
            try thread.start { [self] in run() }
        } catch {
            throw .system(error.operation, error.errno)
        }
    }

    /// Runs `job.run` on the loop thread soon, or `job.cancel` right here if the loop has stopped.
    func submit(_ job: Job) {
        let accepted = inbox.withLock { box -> Bool in
            guard !box.closed else { return false }
            box.jobs.append(job)
            if box.jobs.count == 1 { _ = curl_multi_wakeup(multi) }
            return true
        }
        if !accepted { job.cancel() }
    }

    /// Stops the loop: every pending and in-flight operation completes (with an error) exactly
    /// once, then the handles are freed. Blocks until that is done, unless called on the loop
    /// thread itself (from a completion), where it only asks and returns.
    func stop() {
        enum Role { case joiner, waiter, onLoop }
        let onLoop = thread.isCurrent
        let role = inbox.withLock { box -> Role in
            if !box.stopRequested {
                box.stopRequested = true
                if !box.closed { _ = curl_multi_wakeup(multi) }
            }
            if onLoop {
                if !box.joinClaimed { box.joinClaimed = true; box.detach = true }
                return .onLoop
            }
            if !box.joinClaimed { box.joinClaimed = true; return .joiner }
            return .waiter
        }
        switch role {
        case .onLoop:
            return
        case .joiner:
            thread.join()
        case .waiter:
            while !finished.withLock({ $0 }) { usleep(1000) }
        }
    }

    private func run() {
        loop()
        shutdown()
        if inbox.withLock({ $0.detach }) { thread.detach() }
        finished.withLock { $0 = true }
    }

    static let idleWaitMs = 5000

    private func loop() {
        var waitFDs: [curl_waitfd] = []
        while true {
            let (jobs, stopping) = inbox.withLock { box -> ([Job], Bool) in
                let jobs = box.jobs
                box.jobs.removeAll(keepingCapacity: true)
                return (jobs, box.stopRequested)
            }
            for job in jobs { job.run(self) }
            if stopping { break }

            dnsClient?.startQueued()
            httpsClient.startQueued()

            // Wait for curl's sockets, the c-ares sockets, a wakeup, or the nearer timeout.
            dnsClient?.fillWaitFDs(&waitFDs)
            // -1 from either library means "no timer"; the idle cap only bounds a lost wakeup.
            let timeout = [httpsClient.timeoutMs(), dnsClient?.timeoutMs() ?? -1].filter { $0 >= 0 }.min()
                .map { min($0, Self.idleWaitMs) } ?? Self.idleWaitMs
            var ready: Int32 = 0
            _ = waitFDs.withUnsafeMutableBufferPointer { fds in
                curl_multi_poll(multi, fds.baseAddress, UInt32(fds.count), Int32(timeout), &ready)
            }
            dnsClient?.process(waitFDs)
            httpsClient.perform()
        }
    }

    /// On the loop thread: close the inbox (cancelling what is left), fail what is queued or in
    /// flight, then free the handles.
    private func shutdown() {
        let leftover = inbox.withLock { box -> [Job] in
            box.closed = true
            let jobs = box.jobs
            box.jobs = []
            return jobs
        }
        for job in leftover { job.cancel() }
        httpsClient.shutdown()
        dnsClient?.shutdown()
    }
}

public enum NetworkSetupError: Error, Sendable, CustomStringConvertible {
    case libraryInit
    case ares(String)
    case curl(String)
    case caFile(String)
    case system(String, Int32)

    public var description: String {
        switch self {
        case .libraryInit: return "libcurl/c-ares global initialisation failed"
        case .ares(let s): return "c-ares: \(s)"
        case .curl(let s): return "libcurl: \(s)"
        case .caFile(let s): return "CA file: \(s)"
        case .system(let what, let err): return "\(what) failed: \(String(cString: strerror(err)))"
        }
    }
}

/// A FIFO with amortised O(1) pop from the front (no Deque dependency).
struct FIFO<Element> {
    private var items: [Element?] = []
    private var head = 0

    mutating func append(_ e: Element) { items.append(e) }

    mutating func popFirst() -> Element? {
        guard head < items.count else { return nil }
        let e = items[head]
        items[head] = nil
        head += 1
        if head > 64 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return e
    }

    mutating func removeAll() -> [Element] {
        let rest = items[head...].compactMap { $0 }
        items = []
        head = 0
        return rest
    }
}
