#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// sd_notify(3) without libsystemd: each state change is one datagram to the AF_UNIX socket named
/// by NOTIFY_SOCKET (a path, or `@name` in the abstract namespace). Outside systemd, `init` returns nil
/// and the daemon sends nothing.
public final class SystemdNotifier: Sendable {
    private let address: [UInt8]

    public init?(notifySocket: String? = getenv("NOTIFY_SOCKET").map { String(cString: $0) }) {
        guard let path = notifySocket, path.hasPrefix("/") || path.hasPrefix("@"), path.utf8.count < 108 else { return nil }
        var bytes = Array(path.utf8)
        if bytes[0] == UInt8(ascii: "@") { bytes[0] = 0 }
        address = bytes
    }

    /// Sends `state` (e.g. "READY=1\nSTATUS=serving"); false when the datagram could not be sent.
    @discardableResult
    public func send(_ state: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { dst in
            for (i, b) in address.enumerated() { dst[i] = b }
        }
        // An abstract address is exactly as long as its name; a path may include its terminating NUL.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + address.count)
        let payload = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { ptr in
            ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                payload.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
        return sent == payload.count
    }

    /// Half the watchdog interval systemd expects WATCHDOG=1 within (WATCHDOG_USEC), when it is
    /// meant for this process (WATCHDOG_PID absent or ours); nil without a watchdog.
    public static func watchdogPingInterval(
        usec: String? = getenv("WATCHDOG_USEC").map { String(cString: $0) },
        pid: String? = getenv("WATCHDOG_PID").map { String(cString: $0) }
    ) -> DispatchTimeInterval? {
        guard let usec, let micros = Int(usec), micros > 0 else { return nil }
        if let pid, Int32(pid) != getpid() { return nil }
        return .microseconds(micros / 2)
    }
}

/// Sends WATCHDOG=1 only while the daemon's threads answer: each tick sends one probe through every
/// probed thread (I/O loops, socket reactors), and the next tick pings only if all came back. A
/// thread stuck in a loop or a deadlock stops the pings, and systemd restarts the service
/// (WatchdogSec= of mxresolved.service); a stalled Dispatch pool stops the ticks themselves.
final class Watchdog: Sendable {
    typealias Probe = @Sendable (_ answered: @escaping @Sendable () -> Void) -> Void

    private let notifier: SystemdNotifier
    private let probes: [Probe]
    private let unanswered = Atomic<Int>(0)
    private let lateTicks = Atomic<Int>(0)
    private let onLate: @Sendable (_ ticks: Int) -> Void

    /// `onLate`: called on the first tick whose probe is still out, with how many ticks it has been.
    init(notifier: SystemdNotifier, probes: [Probe], onLate: @escaping @Sendable (Int) -> Void) {
        self.notifier = notifier
        self.probes = probes
        self.onLate = onLate
    }

    func tick() {
        guard unanswered.load(ordering: .acquiring) == 0 else {
            let late = lateTicks.add(1, ordering: .relaxed).newValue
            if late == 1 { onLate(late) }
            return
        }
        lateTicks.store(0, ordering: .relaxed)
        notifier.send("WATCHDOG=1")
        unanswered.store(probes.count, ordering: .releasing)
        for probe in probes {
            probe { [self] in _ = unanswered.subtract(1, ordering: .acquiringAndReleasing) }
        }
    }
}

extension Daemon {
    /// Under a systemd watchdog (WATCHDOG_USEC), ticks twice per interval; probes every I/O loop
    /// and socket reactor.
    func startWatchdog() {
        guard let notifier, let interval = SystemdNotifier.watchdogPingInterval() else { return }
        let backend = backend
        var probes: [Watchdog.Probe] = [{ answered in backend.probe(answered) }]
        for reactor in server.reactors { probes.append { answered in reactor.post(answered) } }
        let logger = logger
        let watchdog = Watchdog(notifier: notifier, probes: probes) { _ in
            logger.warning("a daemon thread has not answered the watchdog's probe; systemd restarts the daemon if it stays so")
        }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now(), repeating: interval)
        timer.setEventHandler { watchdog.tick() }
        timer.resume()
        sources.set(timer)
    }
}

/// CLOCK_MONOTONIC in microseconds, as sd_notify's MONOTONIC_USEC wants it.
func monotonicMicroseconds() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1_000_000 + ts.tv_nsec / 1_000
}
