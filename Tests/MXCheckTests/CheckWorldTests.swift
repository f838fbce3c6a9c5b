import Foundation
import XCTest
import MXTestSupport

/// `mxresolvectl check` end to end: the real daemon and the real CLI against the check scenario
/// (scripts/scenarios/check.json): one homeserver set up right, one name per usual mistake.
final class CheckWorldTests: XCTestCase {
    nonisolated(unsafe) static var world: TestWorld!
    nonisolated(unsafe) static var daemon: DaemonProcess!

    override class func setUp() {
        super.setUp()
        do {
            world = try TestWorld.up(scenario: "\(TestWorld.repoRoot)/scripts/scenarios/check.json", ipBlock: "127.0.77", name: "swift-check")
            daemon = DaemonProcess(world: world, name: "check")
            try daemon.start()
        } catch {
            fatalError("check world failed to start: \(error)")
        }
    }

    override class func tearDown() {
        daemon?.stop()
        super.tearDown()
    }

    struct Report {
        let status: Int32
        let json: [String: Any]
        let stderr: String
        var checks: [[String: Any]] { json["checks"] as? [[String: Any]] ?? [] }
        var mistakes: [String] { json["mistakes"] as? [String] ?? [] }
        func checks(_ name: String, _ verdict: String) -> [[String: Any]] {
            checks.filter { $0["check"] as? String == name && $0["verdict"] as? String == verdict }
        }
        func hint(for mistake: String) -> String {
            checks.first { $0["mistake"] as? String == mistake }?["hint"] as? String ?? ""
        }
    }

    func check(_ name: String, _ extra: [String] = []) throws -> Report {
        let (status, out, err) = try runCommand(DaemonProcess.ctlBinary, ["check", name, "--json", "--socket", Self.daemon.socketPath] + extra)
        let data = Data(out.split(separator: "\n").last.map(String.init)?.utf8 ?? "".utf8)
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        XCTAssertEqual(json["server_name"] as? String, name, "stdout: \(out)\nstderr: \(err)")
        return Report(status: status, json: json, stderr: err)
    }

    /// Exit 1, exactly `mistakes` recognised, and the hint of the first one saying `hint`.
    @discardableResult
    func assertMistakes(_ name: String, _ mistakes: [String], hint: String, file: StaticString = #filePath, line: UInt = #line) throws -> Report {
        let r = try check(name)
        XCTAssertEqual(r.status, 1, file: file, line: line)
        XCTAssertEqual(r.mistakes, mistakes, file: file, line: line)
        XCTAssertTrue(r.hint(for: mistakes[0]).contains(hint), "\(r.checks)", file: file, line: line)
        return r
    }

    func testAllGood() throws {
        let r = try check("good.test")
        XCTAssertEqual(r.status, 0, "\(r.json)")
        XCTAssertEqual(r.json["federation_ok"] as? Bool, true)
        XCTAssertEqual(r.mistakes, [])
        for name in ["resolution", "well_known", "connect", "certificate", "version", "keys", "client_discovery"] {
            XCTAssertEqual(r.checks(name, "ok").count, 1, "\(name) ok once: \(r.checks)")
        }
        let keys = r.checks("keys", "ok").first?["data"] as? [String: Any]
        XCTAssertEqual(keys?["all_ed25519_signatures_ok"] as? Bool, true)
        XCTAssertEqual(keys?["server_name"] as? String, "good.test")
        let resolution = r.json["resolution"] as? [String: Any]
        XCTAssertEqual(resolution?["step"] as? String, "3.2")
        // The homeserver saw the check's requests with the answer's SNI and Host.
        let log = (try? String(contentsOfFile: "\(Self.world.dir)/homeserver.log", encoding: .utf8)) ?? ""
        XCTAssertTrue(log.contains(#""sni": "hs-good.test", "host": "hs-good.test:8450", "port": 8450, "method": "GET", "uri": "/_matrix/key/v2/server""#), log)
    }

    func testTextReportEndsWithTheVerdict() throws {
        let (status, out, _) = try runCommand(DaemonProcess.ctlBinary, ["--socket", Self.daemon.socketPath, "check", "good.test"])
        XCTAssertEqual(status, 0)
        XCTAssertTrue(out.contains("[ok]      keys hs-good.test:8450 [127.0.77.12]: ed25519:testworld signed by good.test"), out)
        XCTAssertTrue(out.hasSuffix("s.\n") && out.contains("-- federation with good.test would work: 0 errors"), out)
    }

    func testCertificateForTheBaseDomainMissing() throws {
        try assertMistakes("nocert.test", ["cert_base_domain"], hint: "Serve a certificate for nocert.test")
    }

    func testPort8448Closed() throws {
        try assertMistakes("closed8448.test", ["port_8448_closed"], hint: "Open TCP 8448")
    }

    func testReverseProxyNotServingTheWellKnown() throws {
        let r = try assertMistakes("noproxy.test", ["port_8448_closed", "well_known_not_served"], hint: "Open TCP 8448")
        XCTAssertTrue(r.hint(for: "well_known_not_served").contains("location = /.well-known/matrix/server"), "\(r.checks)")
    }

    func testWellKnownWithASchemeAndAPath() throws {
        let r = try assertMistakes("wkscheme.test", ["port_8448_closed", "well_known_scheme_or_path"], hint: "Open TCP 8448")
        XCTAssertTrue(r.hint(for: "well_known_scheme_or_path").contains(#"{"m.server": "hs-good.test:8450"}"#), "\(r.checks)")
    }

    func testSRVTargetThatIsACNAME() throws {
        let r = try assertMistakes("srvcname.test", ["srv_target_cname"], hint: "RFC 2782")
        // Everything else works: the CNAME is the only thing wrong.
        XCTAssertEqual(r.checks("keys", "ok").count, 1)
    }

    func testLegacySRVWithoutMatrixFed() throws {
        try assertMistakes("legacyonly.test", ["legacy_srv_only"], hint: "Add a _matrix-fed._tcp record for legacyonly.test")
    }

    func testIPv6PublishedButUnreachable() throws {
        let r = try assertMistakes("v6broken.test", ["ipv6_unreachable"], hint: "publishes the IPv6 address ::1")
        XCTAssertEqual(r.checks("keys", "ok").count, 1, "IPv4 works")
    }

    func testExpiredCertificate() throws {
        let r = try assertMistakes("certexpired.test", ["cert_expired"], hint: "The certificate expired on ")
        let cert = r.checks("certificate", "error")
        XCTAssertEqual(cert.count, 1, "\(r.checks)")
        XCTAssertTrue((cert.first?["detail"] as? String ?? "").contains("certificate has expired"), "\(cert)")
        XCTAssertEqual(r.checks("version", "ok").count + r.checks("keys", "ok").count, 0, "nothing is requested over a refused certificate")
    }

    func testUntrustedCertificate() throws {
        let r = try assertMistakes("certuntrusted.test", ["cert_untrusted"], hint: "The certificate's issuer /CN=selfsigned is untrusted (self-signed certificate)")
        XCTAssertTrue(r.hint(for: "cert_untrusted").contains("public CA"), "\(r.checks)")
        let cert = r.checks("certificate", "error")
        XCTAssertTrue((cert.first?["detail"] as? String ?? "").contains("self-signed certificate"), "\(cert)")
    }

    /// `check NAME --timeout 2` for a target that stalls: it waits for the target, ends at its
    /// bound (plus the CLI's start-up on a loaded machine) and fails.
    func checkStalled(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> Report {
        let started = Date()
        let r = try check(name, ["--timeout", "2"])
        let took = Date().timeIntervalSince(started)
        XCTAssertGreaterThan(took, 1.5, "the stalled step was waited for", file: file, line: line)
        XCTAssertLessThan(took, 4.0, "bounded by --timeout 2", file: file, line: line)
        XCTAssertEqual(r.status, 1, file: file, line: line)
        return r
    }

    /// The target accepts TCP and never answers the TLS handshake: the handshake is named as
    /// timed out.
    func testStalledTLSHandshakeEndsAtTheTimeBound() throws {
        let r = try checkStalled("stalltls.test")
        XCTAssertEqual(r.checks("connect", "ok").count, 1, "\(r.checks)")
        let tls = r.checks("tls", "error")
        XCTAssertEqual(tls.count, 1, "\(r.checks)")
        XCTAssertTrue((tls.first?["detail"] as? String ?? "").contains("with SNI hs-silent.test failed: timed out: no TLS answer within"), "\(tls)")
        XCTAssertTrue((tls.first?["hint"] as? String ?? "").contains("never answers the TLS handshake"), "\(tls)")
        XCTAssertEqual(r.checks("certificate", "ok").count + r.checks("certificate", "error").count, 0)
    }

    /// TLS completes, the version request never gets an answer: that request is named as timed
    /// out, the keys request is not sent past the bound.
    func testStalledResponseEndsAtTheTimeBound() throws {
        let r = try checkStalled("stallhttp.test")
        XCTAssertEqual(r.checks("certificate", "ok").count, 1, "\(r.checks)")
        let version = r.checks("version", "error")
        XCTAssertTrue((version.first?["detail"] as? String ?? "").contains("GET /_matrix/federation/v1/version timed out: no answer within"), "\(version)")
        let keys = r.checks("keys", "error")
        XCTAssertTrue((keys.first?["detail"] as? String ?? "").contains("not sent: the check's time bound ran out"), "\(keys)")
    }

    func testBadKeySignature() throws {
        let r = try check("badkeys.test")
        XCTAssertEqual(r.status, 1)
        let keys = r.checks("keys", "error")
        XCTAssertEqual(keys.count, 1, "\(r.checks)")
        XCTAssertTrue((keys.first?["detail"] as? String ?? "").contains("signature does not verify"))
    }

    func testWellKnownDiffersBetweenAddresses() throws {
        let r = try check("split.test")
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.mistakes.contains("well_known_split"), "\(r.mistakes)")
        XCTAssertEqual(r.checks("well_known", "ok").count, 2, "both addresses answer a valid well-known")
    }

    func testUnresolvableNameFails() throws {
        let r = try check("nothing-here.test")
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.checks("resolution", "error").count, 1)
    }

    func testDaemonNotRunningExits3() throws {
        let (status, _, err) = try runCommand(DaemonProcess.ctlBinary, ["check", "good.test", "--socket", "/tmp/mxrt-none/nothing.sock"])
        XCTAssertEqual(status, 3, err)
    }

    func testTimeoutOption() throws {
        let started = Date()
        let r = try check("good.test", ["--timeout", "2"])
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
        XCTAssertEqual(r.json["timeout_ms"] as? Int, 2000)
        XCTAssertEqual(r.status, 0)
        XCTAssertEqual(try runCommand(DaemonProcess.ctlBinary, ["check", "good.test", "--timeout", "0", "--socket", Self.daemon.socketPath]).0, 2)
    }
}
