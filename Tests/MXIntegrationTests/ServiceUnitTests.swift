import Foundation
import XCTest
import MXTestSupport

/// The shipped systemd units and sysusers file, checked with systemd's own tools (no running systemd needed).
final class ServiceUnitTests: XCTestCase {
    static let dist = "\(TestWorld.repoRoot)/dist"

    func testServiceExposureIsAtMostTwo() throws {
        let (status, out, err) = try runCommand("/usr/bin/systemd-analyze",
                                                ["security", "--offline=yes", "--no-pager", "\(Self.dist)/mxresolved.service"])
        XCTAssertEqual(status, 0, err)
        let overall = out.split(separator: "\n").first { $0.contains("Overall exposure level for mxresolved.service:") }
        let score = overall.flatMap { line in
            line.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
        }
        let exposure = try XCTUnwrap(score, "no overall exposure in: \(out)")
        XCTAssertLessThanOrEqual(exposure, 2.0, out)
    }

    func testServiceIsNotifyWithWatchdogReloadAndNetworkOnline() throws {
        let unit = try UnitFile(path: "\(Self.dist)/mxresolved.service")
        XCTAssertEqual(unit["Service", "Type"], ["notify"])
        XCTAssertEqual(unit["Service", "NotifyAccess"], ["main"])
        let watchdog = try XCTUnwrap(unit["Service", "WatchdogSec"].first)
        XCTAssertFalse(["0", "infinity", ""].contains(watchdog))
        XCTAssertEqual(unit["Service", "ExecReload"], ["/bin/kill -HUP $MAINPID"])
        XCTAssertTrue(unit["Unit", "Wants"].contains("network-online.target"))
        XCTAssertTrue(unit["Unit", "After"].contains("network-online.target"))
        XCTAssertEqual(unit["Service", "User"], ["mxresolved"])
    }

    func testSocketGroupIsTheServiceGroupAndTheDropInIsDocumented() throws {
        let socket = try UnitFile(path: "\(Self.dist)/mxresolved.socket")
        XCTAssertEqual(socket["Socket", "ListenStream"], ["/run/mxresolved/socket"])
        XCTAssertEqual(socket["Socket", "SocketGroup"], ["mxresolved"])
        XCTAssertEqual(socket["Socket", "SocketMode"], ["0660"])
        XCTAssertTrue(socket.text.contains("#   SocketGroup=matrix-synapse"), "the drop-in that changes the group is documented")
    }

    /// systemd-sysusers creates the user and group the units name, in an empty root.
    func testSysusersCreatesTheServiceUserAndGroup() throws {
        let root = NSTemporaryDirectory() + "sysusers-\(getpid())"
        try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (status, _, err) = try runCommand("/usr/bin/systemd-sysusers", ["--root=\(root)", "\(Self.dist)/mxresolved.sysusers"])
        XCTAssertEqual(status, 0, err)
        let passwd = try String(contentsOfFile: root + "/etc/passwd", encoding: .utf8)
        let group = try String(contentsOfFile: root + "/etc/group", encoding: .utf8)
        let user = try XCTUnwrap(passwd.split(separator: "\n").first { $0.hasPrefix("mxresolved:") }).split(separator: ":", omittingEmptySubsequences: false)
        let grp = try XCTUnwrap(group.split(separator: "\n").first { $0.hasPrefix("mxresolved:") }).split(separator: ":", omittingEmptySubsequences: false)
        XCTAssertEqual(user[3], grp[2], "the user's primary group is mxresolved")
        XCTAssertLessThan(Int(user[2]) ?? 0, 1000, "a system user")
        XCTAssertEqual(user[6], "/usr/sbin/nologin")
    }
}

/// A systemd unit file's `Key=value` lines by section; repeated keys and space-separated lists accumulate.
struct UnitFile {
    let text: String
    private var values: [String: [String]] = [:]

    init(path: String) throws {
        text = try String(contentsOfFile: path, encoding: .utf8)
        var section = ""
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") { section = String(line.dropFirst().dropLast()); continue }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = "\(section).\(line[..<eq])"
            let value = String(line[line.index(after: eq)...])
            values[key, default: []] += key.hasSuffix(".ExecReload") || key.hasSuffix(".ExecStart") || key.hasSuffix(".Description")
                ? [value] : value.split(separator: " ").map(String.init)
        }
    }

    subscript(section: String, key: String) -> [String] { values["\(section).\(key)"] ?? [] }
}
