import Foundation
import XCTest
import MXTestSupport
import MXResolve
import MXProtocol

/// Prometheus metrics from the real daemon: `mxresolvectl statistics --format=prometheus` and the
/// `metrics-listen` HTTP endpoint, validated by prometheus_client's parser, across reset-statistics,
/// and the endpoint's bounds against scrapers that misbehave.
final class MetricsTests: XCTestCase {
    static let world = TestWorld.standard
    var daemon: DaemonProcess!
    var port: UInt16 = 0

    override func setUpWithError() throws {
        port = UInt16(19_300 + DaemonProcess.nextIndex())
        daemon = DaemonProcess(world: Self.world, name: "metrics-\(name.filter { $0.isLetter }.suffix(16))",
                               extraArgs: ["--metrics-listen", "127.0.0.1:\(port)"])
        try daemon.start()
    }

    override func tearDown() {
        daemon.stop()
        daemon = nil
    }

    /// The start-up line is logged just after the socket accepts: wait for it (bounded).
    func waitForLog(_ text: String) -> Bool {
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if daemon.log().contains(text) { return true }
            usleep(20_000)
        }
        return false
    }

    func ctl(_ args: [String]) throws -> (Int32, String, String) {
        try runCommand(DaemonProcess.ctlBinary, args + ["--socket", daemon.socketPath])
    }

    /// The body of `GET /metrics`; fails the test on any other answer.
    func scrape() throws -> String {
        let answer = try http("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Prometheus/2.53\r\n\r\n")
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), String(answer.prefix(200)))
        XCTAssertTrue(answer.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
        return answer.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
    }

    func http(_ request: String, timeout: Double = 10) throws -> String {
        let s = try TCPClient(port: port, timeout: timeout)
        defer { s.close() }
        try s.send(Array(request.utf8))
        return String(decoding: try s.readToEnd(), as: UTF8.self)
    }

    func testBothPathsParseWithPrometheusClientAndStayMonotonicAcrossReset() throws {
        let client = try daemon.client()
        _ = try client.request("resolve wk-port.test")          // miss, step 3.2
        for _ in 0..<20 { _ = try client.request("resolve wk-port.test") }   // hits
        _ = try client.request("resolve srv-servfail.test")     // a failure
        _ = try client.request("flurb")                          // a protocol error

        let (rc, ctlBefore, err) = try ctl(["--format=prometheus", "statistics"])
        XCTAssertEqual(rc, 0, err)
        let httpBefore = try scrape()
        for text in [ctlBefore, httpBefore] {
            let lines = Set(text.split(separator: "\n").map(String.init))
            XCTAssertTrue(lines.contains("mxresolved_resolutions_total{step=\"3.2\"} 1"), text)
            XCTAssertTrue(lines.contains("mxresolved_resolution_failures_total{code=\"dns_servfail\"} 1"), text)
            XCTAssertTrue(lines.contains("mxresolved_resolve_duration_seconds_count{cache=\"hit\"} 20"), text)
            XCTAssertTrue(lines.contains("mxresolved_resolve_duration_seconds_count{cache=\"miss\"} 2"), text)
            XCTAssertTrue(lines.contains("mxresolved_protocol_errors_total 1"), text)
            XCTAssertTrue(lines.contains { $0.hasPrefix("mxresolved_dns_queries_total{result=\"servfail\"} ") && !$0.hasSuffix(" 0") }, text)
            XCTAssertTrue(lines.contains("mxresolved_cache_entries 2"), text)
        }

        XCTAssertEqual(try ctl(["reset-statistics"]).0, 0)
        let afterReset = try daemon.ask("statistics")
        XCTAssertEqual(afterReset["hits"], "0", "the statistics verb counts from the reset")
        XCTAssertEqual(afterReset["step_3_2"], nil)
        XCTAssertEqual(afterReset["dns_queries_servfail"], "0")
        _ = try client.request("resolve wk-port.test")
        let (rc2, ctlAfter, _) = try ctl(["statistics", "--format", "prometheus"])
        XCTAssertEqual(rc2, 0)
        let httpAfter = try scrape()
        XCTAssertTrue(httpAfter.contains("\nmxresolved_resolve_duration_seconds_count{cache=\"hit\"} 21\n"), httpAfter)
        XCTAssertTrue(ctlAfter.contains("\nmxresolved_resolutions_total{step=\"3.2\"} 1\n"), ctlAfter)

        // The reference parser: every family typed and documented, histograms cumulative, and no
        // counter smaller after the reset than before it.
        let dir = daemon.stateDir
        let files = [("ctl-before", ctlBefore), ("http-before", httpBefore), ("ctl-after", ctlAfter), ("http-after", httpAfter)].map { name, text in
            let path = "\(dir)/\(name).prom"
            _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
            return path
        }
        let (prc, out, perr) = try runCommand("/usr/bin/env", ["python3", "\(TestWorld.repoRoot)/Tests/prometheus/check_exposition.py",
                                                               files[0], files[1], "--then", files[2], files[3]])
        XCTAssertEqual(prc, 0, out + perr)
        XCTAssertTrue(out.contains("checked 4 files"), out + perr)
    }

    func testTheValidatorCatchesACounterThatWentDown() throws {
        // The check above is only worth something if it can fail: feed it a reset counter.
        let text = try scrape()
        let before = "\(daemon.stateDir)/before.prom", after = "\(daemon.stateDir)/after.prom"
        _ = FileManager.default.createFile(atPath: before, contents: Data(text.replacingOccurrences(of: "mxresolved_requests_total 0", with: "mxresolved_requests_total 5").utf8))
        _ = FileManager.default.createFile(atPath: after, contents: Data(text.utf8))
        XCTAssertTrue(text.contains("mxresolved_requests_total 0\n"), text)
        let (rc, out, _) = try runCommand("/usr/bin/env", ["python3", "\(TestWorld.repoRoot)/Tests/prometheus/check_exposition.py", before, "--then", after])
        XCTAssertEqual(rc, 1, out)
        XCTAssertTrue(out.contains("mxresolved_requests_total") && out.contains("went down"), out)
    }

    func testEndpointRefusesWhatItDoesNotServe() throws {
        XCTAssertTrue(try http("POST /metrics HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd").hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"))
        XCTAssertTrue(try http("GET /debug HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        XCTAssertTrue(try http("hello\r\n\r\n").hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        let head = try http("HEAD /metrics HTTP/1.1\r\n\r\n")
        XCTAssertTrue(head.hasPrefix("HTTP/1.1 200 OK\r\n") && head.hasSuffix("\r\n\r\n"), head)
        let huge = "GET /metrics HTTP/1.1\r\nX-Padding: " + String(repeating: "a", count: MetricsServer.maxRequestBytes) + "\r\n\r\n"
        XCTAssertTrue(try http(huge).hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        _ = try scrape()
    }

    func testEndpointSurvivesClientsThatNeverSendOrNeverRead() throws {
        // A scraper that never sends its request: the others are served meanwhile, and it is
        // answered 408 and closed at the deadline.
        let silent = try TCPClient(port: port, timeout: Double(MetricsServer.deadlineSeconds) + 5)
        defer { silent.close() }
        // One that asks and never reads, with a receive buffer far smaller than the answer.
        let deaf = try TCPClient(port: port, timeout: 10, receiveBuffer: 1024)
        defer { deaf.close() }
        for _ in 0..<50 { try deaf.send(Array("GET /metrics HTTP/1.1\r\n\r\n".utf8)) }
        let started = Date()
        for _ in 0..<5 { XCTAssertTrue(try scrape().contains("mxresolved_requests_total")) }
        XCTAssertLessThan(Date().timeIntervalSince(started), 3, "scrapes are not held up by the stuck peers")
        let late = String(decoding: try silent.readToEnd(), as: UTF8.self)
        let waited = Date().timeIntervalSince(started)
        XCTAssertTrue(late.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), late)
        XCTAssertLessThan(waited, Double(MetricsServer.deadlineSeconds) + 2, "closed at its deadline")
        _ = try scrape()
    }

    func testConnectionsBeyondTheLimitAreAnswered503() throws {
        let idle = try (0..<MetricsServer.maxConnections).map { _ in try TCPClient(port: port, timeout: 10) }
        defer { idle.forEach { $0.close() } }
        // Give the metrics thread time to accept them all: the next connection is one too many.
        usleep(300_000)
        let refused = try http("GET /metrics HTTP/1.1\r\n\r\n")
        XCTAssertTrue(refused.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), String(refused.prefix(200)))
        idle.forEach { $0.close() }
        usleep(300_000)
        _ = try scrape()
        XCTAssertTrue(waitForLog("metrics=http://127.0.0.1:\(port)/metrics"), daemon.log())
    }

    func testOffByDefault() throws {
        daemon.stop()
        daemon = DaemonProcess(world: Self.world, name: "metrics-off")
        try daemon.start()
        XCTAssertThrowsError(try TCPClient(port: port, timeout: 2), "nothing listens without metrics-listen")
        XCTAssertTrue(waitForLog("metrics=off"), daemon.log())
    }
}

/// A blocking TCP client on 127.0.0.1 with a receive timeout.
final class TCPClient {
    let fd: Int32

    init(port: UInt16, timeout: Double, receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: \(errno)") }
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr)
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw TestSupportError("connect 127.0.0.1:\(port): \(String(cString: strerror(e)))")
        }
    }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw TestSupportError("send: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    /// Everything until the server closes; throws on the receive timeout.
    func readToEnd() throws -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return out }
            if n < 0 {
                if errno == ECONNRESET && !out.isEmpty { return out }
                throw TestSupportError("recv after \(out.count) bytes: \(String(cString: strerror(errno)))")
            }
            out += buffer[0..<n]
        }
    }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
    }

    deinit { Glibc.close(fd) }
}
