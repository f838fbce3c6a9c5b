import Foundation
import XCTest
import MXTestSupport
@testable import MXResolve
import MXProtocol

final class DaemonConfigTests: XCTestCase {
    func testConfigFileKeysAndErrorsNameTheKeyAndReason() throws {
        var c = DaemonConfig()
        try c.load(file: """
        # resolver sidecar
        dns-server = 127.0.0.53:53
        dns-server = [::1]:5353
        allow-ip = 127.0.0.0/8   # test world
        socket-mode = 0600
        cache-map-size-mb = 64
        """, path: "t.conf")
        XCTAssertEqual(c.dnsServers, ["127.0.0.53:53", "[::1]:5353"])
        XCTAssertEqual(c.allowIP, ["127.0.0.0/8"])
        XCTAssertEqual(c.socketMode, 0o600)
        XCTAssertEqual(c.cacheMapSizeMB, 64)
        let bad: [(String, String, String)] = [
            ("dns-server = nonsense", "dns-server", "is not ADDR"),
            ("allow-ip = 10.0.0.0/99", "allow-ip", "is not an address range"),
            ("dns-tries = 0", "dns-tries", "whole number in 1...10"),
            ("frobnicate = 1", "frobnicate", "unknown key"),
            ("just words", "t.conf:1", "expected 'key = value'"),
            ("socket-mode = 999", "socket-mode", "octal"),
        ]
        for (text, key, reason) in bad {
            var d = DaemonConfig()
            XCTAssertThrowsError(try d.load(file: text, path: "t.conf")) { error in
                let p = error as! DaemonConfig.Problem
                XCTAssertEqual(p.key, key, text)
                XCTAssertTrue(p.reason.contains(reason), "\(text): \(p.reason)")
            }
        }
    }

    func testCommandLineFlagsOverrideTheFileAndListsReplaceOrAddAsTheTableSays() throws {
        let file = """
        dns-server = 127.0.0.53
        allow-ip = 10.0.0.0/8
        deny-ip = 192.0.2.0/24
        dns-tries = 3
        """
        let read: (String) -> String? = { $0 == "f.conf" ? file : nil }
        let action = try DaemonCommandLine.parse(["--config", "f.conf", "--dns-tries=5", "--dns-server", "[::1]:5353",
                                                  "--dns-server", "127.0.0.1", "--allow-ip", "fd00::/8",
                                                  "--deny-ip", "198.51.100.0/24", "--state-dir", "/tmp/x"], readFile: read)
        guard case .run(let c) = action else { return XCTFail("\(action)") }
        XCTAssertEqual(c.dnsTries, 5, "a flag overrides the file")
        XCTAssertEqual(c.dnsServers, ["[::1]:5353", "127.0.0.1"], "dns-server flags replace the file's list")
        XCTAssertEqual(c.allowIP, ["fd00::/8"], "allow-ip flags replace the file's list")
        XCTAssertEqual(c.denyIP, ["192.0.2.0/24", "198.51.100.0/24"], "deny-ip flags add to the file's list")
        XCTAssertEqual(c.stateDir, "/tmp/x")
        XCTAssertEqual(try DaemonCommandLine.parse(["--socket-mode", "0600", "--help"], readFile: read), .help)
        guard case .dumpConfig(let d) = try DaemonCommandLine.parse(["--dump-config", "--dns-tries", "4"], readFile: read) else {
            return XCTFail("--dump-config")
        }
        XCTAssertEqual(d.dnsTries, 4)

        let bad: [([String], DaemonCommandLine.Failure)] = [
            (["--frobnicate", "1"], .usage("unknown option '--frobnicate'")),
            (["--dns-tries"], .usage("--dns-tries needs a value")),
            (["stray"], .usage("unexpected argument 'stray'")),
            (["--dns-tries", "0"], .config(.init(key: "dns-tries", reason: "'0' is not a whole number in 1...10"))),
            (["--config", "missing.conf"], .config(.init(key: "config", reason: "cannot read 'missing.conf'"))),
            (["--config", "f.conf", "--log-level", "loud"],
             .config(.init(key: "log-level", reason: "'loud' is not one of trace, debug, info, notice, warning, error, critical"))),
        ]
        for (arguments, expected) in bad {
            XCTAssertThrowsError(try DaemonCommandLine.parse(arguments, readFile: read), "\(arguments)") { error in
                XCTAssertEqual(error as? DaemonCommandLine.Failure, expected)
            }
        }
    }

    /// Every setting's help, form and default reach --help; the config file of any settings loads back to them.
    func testHelpAndConfigFileComeFromTheSettingsTable() throws {
        XCTAssertEqual(Set(DaemonConfig.keys).count, DaemonConfig.settings.count, "one entry per key")
        // Wrapped lines joined again: "(default: X)" may be split over two lines.
        let help = DaemonCommandLine.helpText.split(whereSeparator: { $0 == " " || $0 == "\n" }).joined(separator: " ")
        for s in DaemonConfig.settings {
            XCTAssertTrue(help.contains("--\(s.key) <\(s.valueName)>"), s.key)
            XCTAssertTrue(help.contains(s.helpWithDefault), s.key)
        }
        var c = DaemonConfig()
        for (key, value) in [("dns-server", "127.0.0.53"), ("dns-server", "[::1]:5353"), ("socket-mode", "0600"),
                             ("dns-timeout-ms", "700"), ("deny-ip", "192.0.2.0/24"), ("log-level", "debug"),
                             ("socket", "/tmp/s.sock"), ("io-threads", "3")] {
            try c.set(key, value)
        }
        var back = DaemonConfig()
        try back.load(file: c.configFile, path: "dump")
        XCTAssertEqual(back, c)
        XCTAssertTrue(c.configFile.contains("\ndns-server = 127.0.0.53\ndns-server = [::1]:5353\n"))
        XCTAssertTrue(c.configFile.contains("\n# dns-tries = 2\n"), "defaults are shown commented out")
        var defaults = DaemonConfig()
        try defaults.load(file: DaemonConfig().configFile, path: "defaults")
        XCTAssertEqual(defaults, DaemonConfig(), "the default file changes nothing")
    }

    func testDaemonRefusesBadConfigAtStartAndHelpListsEveryKey() throws {
        let dir = "/tmp/mxrt-cfg-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "dns-tries = many\n".write(toFile: "\(dir)/bad.conf", atomically: true, encoding: .utf8)
        let (rc, _, err) = try runCommand(DaemonProcess.daemonBinary, ["--config", "\(dir)/bad.conf", "--state-dir", dir])
        XCTAssertEqual(rc, 2)
        XCTAssertTrue(err.contains("config key 'dns-tries'"), err)
        let (rc2, _, err2) = try runCommand(DaemonProcess.daemonBinary, ["--allow-ip", "banana", "--state-dir", dir])
        XCTAssertEqual(rc2, 2)
        XCTAssertTrue(err2.contains("'allow-ip'"), err2)
        let (_, help, _) = try runCommand(DaemonProcess.daemonBinary, ["--help"])
        for key in DaemonConfig.keys { XCTAssertTrue(help.contains("--\(key)"), "--help lists --\(key)") }
    }

    /// systemd socket activation: the listening socket arrives as fd 3 with LISTEN_FDS/LISTEN_PID.
    func testSocketActivation() throws {
        let world = TestWorld.standard
        let dir = "/tmp/mxrt-sa-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let sock = "\(dir)/activated.sock"
        unlink(sock)
        // python stands in for systemd: bind, put the socket on fd 3, exec the daemon in the same pid.
        let launcher = """
        import os, socket, sys
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(sys.argv[1]); s.listen(16)
        os.dup2(s.fileno(), 3); os.set_inheritable(3, True)
        os.environ["LISTEN_FDS"] = "1"; os.environ["LISTEN_PID"] = str(os.getpid())
        os.execv(sys.argv[2], [sys.argv[2]] + sys.argv[3:])
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", launcher, sock, DaemonProcess.daemonBinary, "--state-dir", dir, "--socket", "\(dir)/unused.sock"] + world.daemonArgs
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { p.terminate(); p.waitUntilExit() }
        var client: ControlClient?
        for _ in 0..<200 where client == nil {
            client = try? ControlClient(path: sock)
            if client == nil { usleep(25_000) }
        }
        let c = try XCTUnwrap(client)
        XCTAssertEqual(ResponseLine(try c.request("resolve wk-port.test").last!)["step"], "3.2")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/unused.sock"), "no socket of its own was bound")
    }

    func testProxyComesFromTheConfigElseTheEnvironment() throws {
        var c = DaemonConfig()
        XCTAssertNil(try c.outboundProxy(environment: [:]))
        let env = ["https_proxy": "http://env-proxy:3128", "no_proxy": "env.test"]
        XCTAssertEqual(try c.outboundProxy(environment: env)?.url, "http://env-proxy:3128")
        XCTAssertEqual(try c.outboundProxy(environment: env)?.bypasses("a.env.test"), true)
        try c.set("https-proxy", "proxy.example.com")
        try c.set("no-proxy", "conf.test")
        let p = try c.outboundProxy(environment: env)
        XCTAssertEqual(p?.url, "http://proxy.example.com:1080")
        XCTAssertEqual(p?.bypasses("a.env.test"), false)
        XCTAssertEqual(p?.bypasses("conf.test"), true)
        XCTAssertThrowsError(try c.set("https-proxy", "socks5://x"))
        XCTAssertEqual(DaemonConfig().hostsFile, "/etc/hosts")
    }
}
