import Foundation
import XCTest
import MXTestSupport

/// Installs the Debian package from scripts/package on this machine and runs what it installed:
/// the daemon as the user its postinst created, with the Swift toolchain hidden, and mxresolvectl
/// against it; then removes the package. Needs root (dpkg); scripts/test runs as root.
final class InstalledPackageTests: XCTestCase {
    /// scripts/test builds the package once per run and passes its path; alone, this test builds it.
    static func packagePath() throws -> String {
        if let deb = ProcessInfo.processInfo.environment["MXRESOLVED_DEB"] { return deb }
        let (status, out, err) = try runCommand("\(TestWorld.repoRoot)/scripts/package", [])
        guard status == 0, let deb = out.split(separator: "\n").last else {
            throw NSError(domain: "scripts/package", code: Int(status), userInfo: [NSLocalizedDescriptionKey: err])
        }
        return String(deb)
    }

    func testInstalledPackageRunsWithoutTheToolchainAndRemovesCleanly() throws {
        guard getuid() == 0 else { throw XCTSkip("installing a package needs root") }
        let deb = try Self.packagePath()
        XCTAssertTrue(FileManager.default.fileExists(atPath: deb), deb)
        // The package is installed machine-wide: two test runs on one machine take turns.
        let lock = open("/tmp/mxresolved-installed-package-test.lock", O_CREAT | O_RDWR, 0o644)
        XCTAssertGreaterThanOrEqual(lock, 0)
        flock(lock, LOCK_EX)
        defer { close(lock) }

        let (installed, installOut, installErr) = try runCommand("/usr/bin/dpkg", ["-i", deb])
        XCTAssertEqual(installed, 0, installOut + installErr)
        defer { _ = try? runCommand("/usr/bin/dpkg", ["--purge", "mxresolved"]) }

        try checkInstalledFiles()
        try checkBinariesNeedNoToolchain()
        try checkInstalledDaemonAndCtlTalk()

        let (removed, _, removeErr) = try runCommand("/usr/bin/dpkg", ["-r", "mxresolved"])
        XCTAssertEqual(removed, 0, removeErr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/usr/bin/mxresolved"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/usr/lib/systemd/system/mxresolved.service"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: "/etc/mxresolved/mxresolved.conf"), "remove keeps the conffile; purge drops it")
    }

    func checkInstalledFiles() throws {
        for path in ["/usr/bin/mxresolved", "/usr/bin/mxresolvectl", "/etc/mxresolved/mxresolved.conf",
                     "/usr/lib/systemd/system/mxresolved.service", "/usr/lib/systemd/system/mxresolved.socket",
                     "/usr/lib/sysusers.d/mxresolved.conf", "/usr/share/man/man8/mxresolved.8.gz",
                     "/usr/share/man/man1/mxresolvectl.1.gz", "/usr/share/bash-completion/completions/mxresolvectl",
                     "/usr/share/zsh/vendor-completions/_mxresolvectl", "/usr/share/fish/vendor_completions.d/mxresolvectl.fish",
                     "/usr/share/doc/mxresolved/copyright"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: path), "\(path) installed")
        }
        // The postinst created the service user.
        let (user, passwd, _) = try runCommand("/usr/bin/getent", ["passwd", "mxresolved"])
        XCTAssertEqual(user, 0, "postinst creates the mxresolved user")
        XCTAssertTrue(passwd.contains(":/var/lib/mxresolved:/usr/sbin/nologin"), passwd)
        // The installed units load: ExecStart, User, and the man pages they cite exist.
        let (verify, verifyOut, verifyErr) = try runCommand("/usr/bin/systemd-analyze",
            ["verify", "/usr/lib/systemd/system/mxresolved.socket", "/usr/lib/systemd/system/mxresolved.service"])
        XCTAssertEqual(verify, 0, verifyOut + verifyErr)
        XCTAssertEqual(verifyErr, "", "systemd-analyze verify has no complaint")
        // The man page is the argument parser's reference plus the hand-written sections.
        let (_, manual, _) = try runCommand("/usr/bin/man", ["-P", "cat", "8", "mxresolved"], env: ["MANWIDTH": "200"])
        XCTAssertTrue(manual.contains("--dns-server"), manual)
        XCTAssertTrue(manual.contains("SocketGroup=matrix-synapse"), manual)
        // Bash completion offers the verbs.
        let (_, completion, completionErr) = try runCommand("/bin/bash", ["-c", """
            source /usr/share/bash-completion/completions/mxresolvectl
            COMP_WORDS=(mxresolvectl fl); COMP_CWORD=1; COMP_LINE='mxresolvectl fl'; COMP_POINT=15
            _mxresolvectl mxresolvectl fl mxresolvectl; echo "${COMPREPLY[@]}"
            """])
        XCTAssertEqual(completion.trimmingCharacters(in: .whitespacesAndNewlines), "flush-caches", completionErr)
    }

    func checkBinariesNeedNoToolchain() throws {
        let (_, dpkgStatus, _) = try runCommand("/usr/bin/dpkg-query", ["-W", "-f=${Version}", "mxresolved"])
        for exe in ["/usr/bin/mxresolved", "/usr/bin/mxresolvectl"] {
            let (status, libs, err) = try runCommand("/usr/bin/ldd", [exe])
            XCTAssertEqual(status, 0, err)
            XCTAssertFalse(libs.contains("not found"), libs)
            XCTAssertFalse(libs.lowercased().contains("swift"), "\(exe) links a Swift toolchain library:\n\(libs)")
            // Run with the toolchain's directory hidden by an empty tmpfs in a private mount namespace.
            let (ran, version, runErr) = try runCommand("/usr/bin/unshare", ["--mount", "/bin/sh", "-c",
                "mount -t tmpfs none \(Self.toolchainDir) && exec \(exe) --version"])
            XCTAssertEqual(ran, 0, runErr)
            let printed = version.trimmingCharacters(in: .whitespacesAndNewlines)
            XCTAssertFalse(printed.isEmpty)
            XCTAssertTrue(dpkgStatus.hasPrefix(printed), "package version \(dpkgStatus) starts with \(exe) --version \(printed)")
        }
    }

    func checkInstalledDaemonAndCtlTalk() throws {
        let dir = "/tmp/mxpkg-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try runCommand("/bin/chown", ["mxresolved:mxresolved", dir])
        let socket = "\(dir)/socket"
        let logPath = "\(dir)/log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        // As the service runs it: the packaged user, no supplementary groups, no toolchain.
        daemon.arguments = ["--mount", "/bin/sh", "-c",
            "mount -t tmpfs none \(Self.toolchainDir) && exec setpriv --reuid mxresolved --regid mxresolved --clear-groups "
            + "/usr/bin/mxresolved --config /etc/mxresolved/mxresolved.conf --state-dir \(dir)/state --socket \(socket)"]
        let log = FileHandle(forWritingAtPath: logPath)!
        daemon.standardError = log
        daemon.standardOutput = log
        try daemon.run()
        defer { if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) } }
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: socket) && daemon.isRunning && Date() < deadline { usleep(20_000) }
        XCTAssertTrue(daemon.isRunning, (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")

        // An IP literal (outside the deny list) resolves without any network: step 1 of the spec.
        let (queried, answer, queryErr) = try runCommand("/usr/bin/mxresolvectl", ["query", "--socket", socket, "1.2.3.4:8448"])
        XCTAssertEqual(queried, 0, queryErr)
        XCTAssertTrue(answer.contains("1.2.3.4:8448"), answer)
        let (stats, counters, statsErr) = try runCommand("/usr/bin/mxresolvectl", ["statistics", "--socket", socket])
        XCTAssertEqual(stats, 0, statsErr)
        XCTAssertTrue(counters.contains("requests="), counters)
        let (showed, cached, _) = try runCommand("/usr/bin/mxresolvectl", ["show-cache", "--socket", socket, "--json"])
        XCTAssertEqual(showed, 0)
        XCTAssertTrue(cached.contains("1.2.3.4"), cached)

        kill(daemon.processIdentifier, SIGTERM)
        daemon.waitUntilExit()
        XCTAssertEqual(daemon.terminationStatus, 0, (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")
        // The cache it wrote belongs to the service user.
        var st = stat()
        XCTAssertEqual(stat("\(dir)/state/cache", &st), 0)
        let (_, uid, _) = try runCommand("/usr/bin/id", ["-u", "mxresolved"])
        XCTAssertEqual(String(st.st_uid), uid.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The directory holding the Swift toolchain that built these tests (…/usr/bin/swift → …/), which
    /// the installed binaries run without; a toolchain installed into /usr itself cannot be hidden.
    static let toolchainDir: String = {
        let swift = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            .map { "\($0)/swift" }.first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/opt/swift/usr/bin/swift"
        let bin = URL(fileURLWithPath: swift).resolvingSymlinksInPath().deletingLastPathComponent()
        let dir = bin.deletingLastPathComponent().deletingLastPathComponent().path
        precondition(!["/", "/usr", ""].contains(dir), "the Swift toolchain is in \(dir), which cannot be hidden")
        return dir
    }()
}
