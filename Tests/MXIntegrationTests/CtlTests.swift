import Foundation
import XCTest
import MXTestSupport
import MXResolve
import MXProtocol

/// mxresolvectl against the real daemon: output, JSON, every exit code.
final class CtlTests: XCTestCase {
    static let world = TestWorld.standard
    var daemon: DaemonProcess!

    override func setUpWithError() throws {
        daemon = DaemonProcess(world: Self.world, name: "ctl-\(name.filter { $0.isLetter })")
        try daemon.start()
    }

    override func tearDown() { daemon.stop() }

    func ctl(_ args: [String]) throws -> (Int32, String, String) {
        try runCommand(DaemonProcess.ctlBinary, args + ["--socket", daemon.socketPath])
    }

    func testGoldenHumanOutputForThreeKindsOfAnswer() throws {
        let (rc, out, _) = try ctl(["query", "--legend=no", "1.2.3.4", "wk-noport.test", "[::1]:8449"])
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(out, """
        1.2.3.4: step 1 (IP literal)
          target 1: 1.2.3.4:8448  1.2.3.4
          Host header: 1.2.3.4
          TLS name: 1.2.3.4 (send no SNI: IP literal)
        wk-noport.test: step 3.3 (well-known delegation, then _matrix-fed SRV)
          target 1: srvtarget.test:8443  ::1 127.0.0.22
          target 2: srvtarget2.test:8444  127.0.0.23
          Host header: delegated.test
          TLS name: delegated.test (SNI delegated.test)
        [::1]:8449: step 1 (IP literal)
          target 1: [::1]:8449  ::1
          Host header: [::1]:8449
          TLS name: ::1 (send no SNI: IP literal)

        """)
        let (rc2, out2, _) = try ctl(["query", "srv-legacy.test"])
        XCTAssertEqual(rc2, 0)
        XCTAssertTrue(out2.hasPrefix("srv-legacy.test: step 5 (no well-known, deprecated _matrix SRV)\n  target 1: a.srv-legacy.test:8448  127.0.0.46\n  Host header: srv-legacy.test\n"), out2)
        XCTAssertTrue(out2.contains("-- Information acquired via network"), out2)
        let (_, cached, _) = try ctl(["query", "srv-legacy.test"])
        XCTAssertTrue(cached.contains("-- Information acquired via cache"), cached)
    }

    func testFailureExitCodeAndMessage() throws {
        let (rc, out, _) = try ctl(["query", "--legend=no", "srv-dot.test"])
        XCTAssertEqual(rc, 1)
        XCTAssertTrue(out.hasPrefix("srv-dot.test: resolve call failed: srv_service_unavailable: "), out)
    }

    func testJSONParsesBack() throws {
        let (rc, out, _) = try ctl(["query", "--json", "wk-ip6.test"])
        XCTAssertEqual(rc, 0)
        let j = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        XCTAssertEqual(j["server_name"] as? String, "wk-ip6.test")
        XCTAssertEqual(j["step"] as? String, "3.1")
        XCTAssertEqual(j["host_header"] as? String, "[::1]")
        XCTAssertEqual(j["tls_server_name"] as? String, "::1")
        XCTAssertTrue(j["sni"] is NSNull)
        let targets = j["targets"] as! [[String: Any]]
        XCTAssertEqual(targets.first?["port"] as? Int, 8448)
        XCTAssertEqual(targets.first?["addresses"] as? [String], ["::1"])
        XCTAssertNotNil(j["expires_in"] as? Int)
        XCTAssertEqual(j["source"] as? String, "network")

        let (rc2, out2, _) = try ctl(["query", "--json", "denied.test:8448"])
        XCTAssertEqual(rc2, 1)
        let e = try JSONSerialization.jsonObject(with: Data(out2.utf8)) as! [String: Any]
        XCTAssertEqual((e["error"] as? [String: Any])?["code"] as? String, "address_denied")
    }

    func testTraceAndCacheNo() throws {
        _ = try ctl(["query", "wk-port.test"])
        let (rc, out, _) = try ctl(["query", "--trace", "--cache=no", "wk-port.test"])
        XCTAssertEqual(rc, 0)
        XCTAssertTrue(out.contains("trace: well-known: GET https://wk-port.test/.well-known/matrix/server -> 200 m.server=target.test:8449"), out)
        XCTAssertTrue(out.contains("-- Information acquired via network"), out)
    }

    func testAdminVerbsAndStatistics() throws {
        _ = try ctl(["query", "wk-port.test", "srv-servfail.test"])
        var (rc, out, _) = try ctl(["show-cache"])
        XCTAssertEqual(rc, 0)
        XCTAssertTrue(out.contains("wk-port.test  step 3.2"), out)
        XCTAssertFalse(out.contains("srv-servfail.test"), out)
        (rc, out, _) = try ctl(["show-cache", "--failures"])
        XCTAssertTrue(out.contains("srv-servfail.test  FAILED dns_servfail"), out)
        (rc, out, _) = try ctl(["show-cache", "--json"])
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any])["count"] as? Int, 1)
        (rc, out, _) = try ctl(["revalidate", "wk-port.test"])
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(out, "queued 1 names\n")
        (rc, out, _) = try ctl(["statistics"])
        XCTAssertEqual(rc, 0)
        XCTAssertTrue(out.contains("\nhits="), out)
        XCTAssertTrue(out.hasPrefix("requests="), out)
        (rc, out, _) = try ctl(["statistics", "--json"])
        XCTAssertNotNil((try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any])["statistics"])
        (rc, out, _) = try ctl(["reset-statistics"])
        XCTAssertEqual(rc, 0)
        (rc, out, _) = try ctl(["flush-caches", "--failures"])
        XCTAssertEqual(out, "flushed 1 entries\n")
        (rc, out, _) = try ctl(["flush-caches"])
        XCTAssertEqual(rc, 0)
    }

    func testUsageAndNotRunningExitCodes() throws {
        XCTAssertEqual(try ctl(["query"]).0, 2)
        XCTAssertEqual(try ctl(["frobnicate"]).0, 2)
        XCTAssertEqual(try ctl(["query", "--legend=maybe", "x.test"]).0, 2)
        _ = try ctl(["query", "wk-port.test"])
        daemon.stop()
        let (rc, _, err) = try ctl(["query", "wk-port.test"])
        XCTAssertEqual(rc, 3)
        XCTAssertTrue(err.contains(daemon.socketPath), err)
        XCTAssertTrue(err.contains("Start it with"), err)
        // show-cache still works, reading LMDB directly.
        let (rc2, out2, err2) = try runCommand(DaemonProcess.ctlBinary, ["show-cache", "--socket", daemon.socketPath, "--state-dir", daemon.stateDir])
        XCTAssertEqual(rc2, 0, err2)
        XCTAssertTrue(out2.contains("wk-port.test  step 3.2"), out2)
        // --json too, in the daemon's own shape; options before the verb as well.
        let (rc3, out3, err3) = try runCommand(DaemonProcess.ctlBinary, ["--socket", daemon.socketPath, "--state-dir", daemon.stateDir,
                                                                         "show-cache", "--json"])
        XCTAssertEqual(rc3, 0, err3)
        let shown = try JSONSerialization.jsonObject(with: Data(out3.utf8)) as? [String: Any]
        let entries = shown?["entries"] as? [[String: Any]] ?? []
        XCTAssertEqual(shown?["count"] as? Int, entries.count)
        XCTAssertTrue(entries.contains { $0["server_name"] as? String == "wk-port.test" && $0["step"] as? String == "3.2" }, out3)
    }

    // MARK: Escaping, local limits, closed connections (issue 13 item 6)

    func testNamesThatLookLikeOptionsAreNamesOnTheWire() throws {
        _ = try ctl(["query", "wk-port.test", "1.2.3.4"])
        var (rc, out, _) = try ctl(["flush-caches", "id=x"])
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(out, "flushed 0 entries\n", "id=x is a server name, not an option")
        XCTAssertEqual(try daemon.ask("show-cache")["count"], "2", "nothing was flushed")
        (rc, out, _) = try ctl(["query", "--legend=no", "cache=no"])
        XCTAssertEqual(rc, 1)
        XCTAssertTrue(out.hasPrefix("cache=no: resolve call failed: invalid_server_name: "), out)
        (rc, out, _) = try ctl(["revalidate", "a b"])
        XCTAssertEqual(rc, 1)
    }

    func testOverLongRequestsAreRefusedLocallyAndManyNamesAreBatched() throws {
        let long = String(repeating: "a", count: Wire.maxLineBytes)
        let before = try daemon.ask("statistics")["requests"]
        let (rc, _, err) = try ctl(["query", long])
        XCTAssertEqual(rc, 2)
        XCTAssertTrue(err.contains("longer than the protocol's 4096"), err)
        XCTAssertEqual(try daemon.ask("statistics")["requests"], String(Int(before ?? "0")! + 1), "nothing was sent")
        let names = (0..<600).map { "n\($0).example.org" }
        let (rc2, out2, err2) = try ctl(["flush-caches"] + names)
        XCTAssertEqual(rc2, 0, err2)
        XCTAssertEqual(out2, "flushed 0 entries\n")
    }

    func testEnvironmentVariableNamesTheSocket() throws {
        let (rc, out, err) = try runCommand(DaemonProcess.ctlBinary, ["query", "--legend=no", "1.2.3.4"],
                                            env: ["MXRESOLVED_SOCKET": daemon.socketPath])
        XCTAssertEqual(rc, 0, err)
        XCTAssertTrue(out.hasPrefix("1.2.3.4: step 1"), out)
    }

    /// A peer that answers one error and closes: ctl reconnects, and never says "not running".
    func testConnectionClosedAfterAnErrorIsNotReportedAsNotRunning() throws {
        let path = "\(daemon.stateDir)/closing.sock"
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertEqual(UnixSocket.withAddress(path) { bind(listener, $0, $1) }, 0)
        listen(listener, 4)
        defer { close(listener); unlink(path) }
        Thread.detachNewThread {
            for _ in 0..<2 {
                let fd = accept(listener, nil, nil)
                guard fd >= 0 else { return }
                var buf = [UInt8](repeating: 0, count: 4096)
                _ = read(fd, &buf, buf.count)
                let reply = Array("err code=shutting_down msg=stopping\n".utf8)
                _ = write(fd, reply, reply.count)
                close(fd)
            }
        }
        let (rc, out, err) = try runCommand(DaemonProcess.ctlBinary, ["query", "--legend=no", "a.test", "b.test", "--socket", path])
        XCTAssertEqual(rc, 1, err)
        XCTAssertFalse(err.contains("not running"), err)
        XCTAssertEqual(out, "a.test: resolve call failed: shutting_down: stopping\nb.test: resolve call failed: shutting_down: stopping\n")
    }
}
