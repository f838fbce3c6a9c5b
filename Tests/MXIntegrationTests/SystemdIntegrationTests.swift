import Foundation
import XCTest
import MXTestSupport
import MXProtocol
@testable import MXResolve
import MXCore

/// The daemon under systemd's eyes, through the real binary: sd_notify datagrams (READY, WATCHDOG,
/// RELOADING, STOPPING) to a NOTIFY_SOCKET this test listens on, journal log lines, and SIGHUP
/// reloads of the config file that keep the cache and the connections.
final class SystemdIntegrationTests: XCTestCase {
    /// One daemon started from a config file with the given environment, its stderr in `log`.
    final class ServiceProcess {
        let dir: String
        let socket: String
        let configPath: String
        let logPath: String
        let process = Process()

        /// `journal`: JOURNAL_STREAM names the log file, as systemd names the journal stream it gives a service.
        init(name: String, config: String, environment: [String: String] = [:], journal: Bool = false) throws {
            dir = "/tmp/mxsd-\(getpid())-\(DaemonProcess.nextIndex())-\(name)"
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            socket = "\(dir)/socket"
            configPath = "\(dir)/mxresolved.conf"
            logPath = "\(dir)/log"
            try writeConfig(config)
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            process.executableURL = URL(fileURLWithPath: DaemonProcess.daemonBinary)
            process.arguments = ["--config", configPath, "--state-dir", "\(dir)/state", "--socket", socket]
            var env = ProcessInfo.processInfo.environment
            for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "LISTEN_FDS", "LISTEN_PID"] { env[key] = nil }
            env.merge(environment) { _, new in new }
            if journal {
                var st = stat()
                guard stat(logPath, &st) == 0 else { throw TestSupportError("stat \(logPath)") }
                env["JOURNAL_STREAM"] = "\(st.st_dev):\(st.st_ino)"
            }
            process.environment = env
            let log = FileHandle(forWritingAtPath: logPath)!
            process.standardError = log
            process.standardOutput = log
            try process.run()
        }

        func writeConfig(_ text: String) throws { try text.write(toFile: configPath, atomically: true, encoding: .utf8) }
        func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

        func waitForSocket() throws {
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline && process.isRunning {
                if (try? ControlClient(path: socket)) != nil { return }
                usleep(20_000)
            }
            throw TestSupportError("daemon did not start: \(log())")
        }

        func ask(_ line: String) throws -> ResponseLine { ResponseLine(try ControlClient(path: socket, timeoutSeconds: 20).request(line).last!) }

        @discardableResult
        func stop() -> Int32 {
            guard process.isRunning else { return process.terminationStatus }
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            return process.terminationStatus
        }

        deinit {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// systemd's side of sd_notify: a datagram socket collecting what the daemon sends.
    final class NotifyListener {
        let path: String
        let fd: Int32

        /// `path`: a file, or `@name` in the abstract namespace (systemd may give either).
        init(path: String) throws {
            self.path = path
            unlink(path)
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            var bytes = Array(path.utf8)
            if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
            withUnsafeMutableBytes(of: &addr.sun_path) { dst in for (i, b) in bytes.enumerated() { dst[i] = b } }
            let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
            let bound = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            guard bound == 0 else { throw TestSupportError("bind \(path): errno \(errno)") }
        }

        /// The next datagram, or nil after `timeout` seconds.
        func next(timeout: Double = 10) -> String? {
            var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            return n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : nil
        }

        /// Datagrams until one contains `field` (that one included); fails after `timeout`.
        func until(_ field: String, timeout: Double = 10) -> [String] {
            var seen: [String] = []
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline, let message = next(timeout: max(0.05, deadline.timeIntervalSinceNow)) {
                seen.append(message)
                if message.split(separator: "\n").contains(Substring(field)) { return seen }
            }
            XCTFail("no \(field) within \(timeout) s; got \(seen)")
            return seen
        }

        deinit { close(fd); unlink(path) }
    }

    func testReadyThenWatchdogPingsThenStopping() throws {
        let listener = try NotifyListener(path: "/tmp/mxsd-notify-\(getpid())-1")
        let daemon = try ServiceProcess(name: "notify", config: "log-level = info\n",
                                        environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "200000"])
        let ready = listener.until("READY=1")
        XCTAssertEqual(ready.count, 1, "READY=1 is the first message: \(ready)")
        XCTAssertTrue(ready[0].contains("STATUS=serving on \(daemon.socket)"), ready[0])
        // Connections are accepted once READY=1 is sent.
        XCTAssertNoThrow(try ControlClient(path: daemon.socket))
        // 200 ms watchdog: a ping every 100 ms while every thread answers its probe.
        var pings = 0
        let until = Date().addingTimeInterval(1)
        while Date() < until, let message = listener.next(timeout: 0.5) { if message == "WATCHDOG=1" { pings += 1 } }
        XCTAssertGreaterThanOrEqual(pings, 5, "watchdog pings in one second")
        kill(daemon.process.processIdentifier, SIGTERM)
        let stopping = listener.until("STOPPING=1")
        XCTAssertTrue(stopping.allSatisfy { $0 == "WATCHDOG=1" || $0.hasPrefix("STOPPING=1") }, "\(stopping)")
        XCTAssertEqual(daemon.stop(), 0)
    }

    /// A watchdog meant for another process (WATCHDOG_PID) gets no pings. The notify socket is in
    /// the abstract namespace here.
    func testNoPingsForAnotherProcessesWatchdog() throws {
        let listener = try NotifyListener(path: "@mxsd-notify-\(getpid())-2")
        let daemon = try ServiceProcess(name: "otherpid", config: "",
                                        environment: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"])
        _ = listener.until("READY=1")
        XCTAssertNil(listener.next(timeout: 0.5), "no message after READY=1")
        XCTAssertEqual(daemon.stop(), 0)
        XCTAssertEqual(listener.until("STOPPING=1").count, 1)
    }

    /// JOURNAL_STREAM naming stderr: syslog priority prefixes, no timestamp. Naming anything else:
    /// the plain format with a timestamp.
    func testJournalStreamLinesCarryPriorityAndNoTimestamp() throws {
        // READY=1 says the signal handlers are in place (the socket accepts before that).
        let listener = try NotifyListener(path: "/tmp/mxsd-notify-\(getpid())-5")
        let journal = try ServiceProcess(name: "journal", config: "log-level = info\ncache-map-size-mb = 64\n",
                                         environment: ["NOTIFY_SOCKET": listener.path], journal: true)
        _ = listener.until("READY=1")
        // A warning: a setting that a reload cannot change.
        try journal.writeConfig("log-level = info\ncache-map-size-mb = 65\n")
        kill(journal.process.processIdentifier, SIGHUP)
        try waitFor("warning line") { journal.log().contains("takes effect at the next restart") }
        XCTAssertEqual(journal.stop(), 0)
        let lines = journal.log().split(separator: "\n")
        XCTAssertFalse(lines.isEmpty)
        for line in lines {
            XCTAssertTrue(line.hasPrefix("<6>info ") || line.hasPrefix("<4>warning ") || line.hasPrefix("<7>debug "), String(line))
            XCTAssertNil(line.range(of: #"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"#, options: .regularExpression), "no timestamp: \(line)")
        }
        XCTAssertTrue(lines.contains { $0.hasPrefix("<4>warning mxresolved: ") && $0.contains("cache-map-size-mb changed") })

        let elsewhere = try ServiceProcess(name: "plain", config: "", environment: ["JOURNAL_STREAM": "1:2"])
        try elsewhere.waitForSocket()
        XCTAssertEqual(elsewhere.stop(), 0)
        for line in elsewhere.log().split(separator: "\n") {
            XCTAssertNotNil(line.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} info "#, options: .regularExpression), String(line))
        }
    }

    /// SIGHUP re-reads the file: log level, DNS servers, address lists and the CA file change in
    /// place; the cache and an open connection survive; a bad file changes nothing; a setting read
    /// only at start is named in the log.
    func testSIGHUPReloadsTheConfigFileKeepingCacheAndConnections() throws {
        let world = TestWorld.standard
        let worldSettings = configLines(world.daemonArgs)
        // Start: no DNS server that answers, no CA of the world, info level, the world's addresses denied.
        let deadDNS = "127.0.0.1:9"
        let start = "log-level = info\ndns-timeout-ms = 200\ndns-tries = 1\nwellknown-timeout-ms = 1500\ndns-server = \(deadDNS)\n"
        let listener = try NotifyListener(path: "/tmp/mxsd-notify-\(getpid())-3")
        let daemon = try ServiceProcess(name: "reload", config: start, environment: ["NOTIFY_SOCKET": listener.path])
        _ = listener.until("READY=1")

        let literal = try daemon.ask("resolve 1.2.3.4:8448")
        XCTAssertEqual(literal.status, "ok")
        let name = "wk-noport.test"
        XCTAssertEqual(try daemon.ask("resolve \(name) cache=no").status, "err", "no DNS server answers yet")
        XCTAssertFalse(daemon.log().contains("debug "), "info level: no debug line yet")
        let connection = try ControlClient(path: daemon.socket, timeoutSeconds: 20)
        XCTAssertEqual(ResponseLine(try connection.request("resolve 1.2.3.4:8448").last!).status, "ok")
        let hitsBefore = Int(try daemon.ask("statistics")["hits"] ?? "") ?? -1

        // The world's DNS server, CA file and allowed loopback ranges; debug level; a start-only setting.
        try daemon.writeConfig("log-level = debug\ndns-timeout-ms = 200\ndns-tries = 1\nwellknown-timeout-ms = 1500\n"
                               + worldSettings + "cache-map-size-mb = 300\n")
        kill(daemon.process.processIdentifier, SIGHUP)
        let reload = listener.until("READY=1")
        XCTAssertTrue(reload.first?.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") ?? false, "\(reload)")

        let resolved = try daemon.ask("resolve \(name) cache=no")
        XCTAssertEqual(resolved.status, "ok", "resolves through the reloaded DNS server, CA file and allow list: \(resolved.fields)\n\(daemon.log())")
        XCTAssertTrue(daemon.log().contains("debug mxresolved:"), "debug lines after the reload")
        XCTAssertTrue(daemon.log().contains("cache-map-size-mb changed; it takes effect at the next restart"), daemon.log())
        // The connection opened before the reload still answers, and the cached answer is still a hit.
        XCTAssertEqual(ResponseLine(try connection.request("resolve 1.2.3.4:8448").last!).status, "ok")
        XCTAssertGreaterThan(Int(try daemon.ask("statistics")["hits"] ?? "") ?? -1, hitsBefore, "the cache survived")

        // A file that does not parse changes nothing.
        try daemon.writeConfig("log-level = loud\n")
        kill(daemon.process.processIdentifier, SIGHUP)
        _ = listener.until("READY=1")
        XCTAssertTrue(daemon.log().contains("reload failed; the running settings stay"), daemon.log())
        XCTAssertEqual(try daemon.ask("resolve \(name) cache=no").status, "ok", "still the reloaded DNS server")

        // A CA file that does not load leaves the trusted CAs as they were.
        let badCA = "\(daemon.dir)/bad-ca.pem"
        try "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".write(toFile: badCA, atomically: true, encoding: .utf8)
        try daemon.writeConfig("log-level = debug\ndns-timeout-ms = 200\ndns-tries = 1\nwellknown-timeout-ms = 1500\n"
                               + worldSettings.replacingOccurrences(of: "ca-file = \(world.caFile)", with: "ca-file = \(badCA)")
                               + "cache-map-size-mb = 300\n")
        kill(daemon.process.processIdentifier, SIGHUP)
        _ = listener.until("READY=1")
        XCTAssertTrue(daemon.log().contains("reload: ca-file not changed: cannot load '\(badCA)'"), daemon.log())
        XCTAssertEqual(try daemon.ask("resolve \(name) cache=no").status, "ok", "still trusts the world's CA")

        // Back to the system's resolv.conf cannot be done in place; the DNS servers stay.
        try daemon.writeConfig("log-level = debug\ndns-timeout-ms = 200\ndns-tries = 1\nwellknown-timeout-ms = 1500\n"
                               + worldSettings.split(separator: "\n").filter { !$0.hasPrefix("dns-server") }.map { $0 + "\n" }.joined()
                               + "cache-map-size-mb = 300\n")
        kill(daemon.process.processIdentifier, SIGHUP)
        _ = listener.until("READY=1")
        XCTAssertTrue(daemon.log().contains("dns-server not changed: going back to the system's resolv.conf needs a restart"), daemon.log())
        XCTAssertEqual(daemon.stop(), 0)
    }

    /// The watchdog pings only while every probe comes back, and says once that one is late.
    func testWatchdogPingsOnlyWhileProbesAnswer() throws {
        let listener = try NotifyListener(path: "/tmp/mxsd-notify-\(getpid())-4")
        let notifier = try XCTUnwrap(SystemdNotifier(notifySocket: listener.path))
        let pending = PthreadMutex<[@Sendable () -> Void]>([])
        let lateReports = PthreadMutex(0)
        let probe: Watchdog.Probe = { answered in pending.withLock { $0.append(answered) } }
        let watchdog = Watchdog(notifier: notifier, probes: [probe, probe]) { _ in lateReports.withLock { $0 += 1 } }

        watchdog.tick()
        XCTAssertEqual(listener.next(timeout: 1), "WATCHDOG=1")
        // One of two probes answers: no ping, one report however many ticks pass.
        pending.withLock { $0.removeFirst()() }
        watchdog.tick()
        watchdog.tick()
        XCTAssertNil(listener.next(timeout: 0.3))
        XCTAssertEqual(lateReports.withLock { $0 }, 1)
        // Both answered: pings again.
        pending.withLock { $0.removeFirst()() }
        watchdog.tick()
        XCTAssertEqual(listener.next(timeout: 1), "WATCHDOG=1")
    }

    /// `--key value` pairs of the test world as config file lines.
    func configLines(_ args: [String]) -> String {
        stride(from: 0, to: args.count - 1, by: 2).map { "\(args[$0].dropFirst(2)) = \(args[$0 + 1])\n" }.joined()
    }

    func waitFor(_ what: String, timeout: Double = 10, _ condition: () -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !condition() {
            if Date() > deadline { throw TestSupportError("timed out waiting for \(what)") }
            usleep(20_000)
        }
    }
}
