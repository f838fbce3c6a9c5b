import Foundation
import XCTest
import MXTestSupport
import MXProtocol

/// mxresolvectl's exit codes for a daemon it cannot use: 3 not running (CtlTests), 4 permission
/// denied (by the socket's mode, or the daemon's `forbidden`), 5 timed out.
final class CtlExitCodeTests: XCTestCase {
    /// mxresolvectl as the unprivileged user `nobody`, with no supplementary groups.
    func ctlAsNobody(_ args: [String]) throws -> (Int32, String, String) {
        try runCommand("/usr/bin/setpriv", ["--reuid", "nobody", "--regid", "nogroup", "--clear-groups", DaemonProcess.ctlBinary] + args)
    }

    func testSocketThatRefusesTheUserIsPermissionDenied() throws {
        guard getuid() == 0 else { throw XCTSkip("switching to the user nobody needs root") }
        let daemon = DaemonProcess(world: TestWorld.standard, name: "ctl-eacces", extraArgs: ["--socket-mode", "0600"])
        try daemon.start()
        defer { daemon.stop() }
        let (rc, _, err) = try ctlAsNobody(["statistics", "--socket", daemon.socketPath])
        XCTAssertEqual(rc, 4, err)
        XCTAssertTrue(err.contains("permission denied on \(daemon.socketPath)"), err)
        XCTAssertTrue(err.contains("group"), "says who may connect: \(err)")
        // show-cache does not mistake a refusing daemon for a stopped one (and read its cache file).
        let (showRC, _, showErr) = try ctlAsNobody(["show-cache", "--socket", daemon.socketPath, "--state-dir", daemon.stateDir])
        XCTAssertEqual(showRC, 4, showErr)
        XCTAssertFalse(showErr.contains("reading"), showErr)
    }

    func testStateChangingVerbRefusedByTheDaemonIsPermissionDenied() throws {
        guard getuid() == 0 else { throw XCTSkip("switching to the user nobody needs root") }
        let daemon = DaemonProcess(world: TestWorld.standard, name: "ctl-forbidden", extraArgs: ["--socket-mode", "0666"])
        try daemon.start()
        defer { daemon.stop() }
        let (queried, _, queryErr) = try ctlAsNobody(["query", "1.2.3.4", "--socket", daemon.socketPath])
        XCTAssertEqual(queried, 0, "anyone who may connect may resolve: \(queryErr)")
        let (rc, _, err) = try ctlAsNobody(["flush-caches", "--socket", daemon.socketPath])
        XCTAssertEqual(rc, 4, err)
        XCTAssertTrue(err.contains("forbidden"), err)
    }

    /// A socket that accepts connections (the kernel's backlog) but never answers.
    func testDaemonThatDoesNotAnswerTimesOut() throws {
        let path = "/tmp/mxrt-\(getpid())-silent.sock"
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd); unlink(path) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { dst in for (i, b) in path.utf8.enumerated() { dst[i] = b } }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(listen(fd, 8), 0)
        let started = Date()
        let (rc, _, err) = try runCommand(DaemonProcess.ctlBinary, ["statistics", "--socket", path, "--timeout", "1"])
        XCTAssertEqual(rc, 5, err)
        XCTAssertTrue(err.contains("did not answer within 1 s"), err)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "bounded by --timeout")
    }
}
