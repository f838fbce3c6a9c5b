import Foundation
import XCTest
import MXTestSupport
import MXResolve
import MXProtocol

/// A damaged cache file or a full disk never takes the real daemon (or `mxresolvectl show-cache`)
/// down: the file is checked, verified in a child process, moved aside with one log line and
/// rebuilt; write failures are logged once per episode while answers keep coming.
final class CacheDamageTests: XCTestCase {
    static let world = TestWorld.standard
    static let names = (0..<3000).map { "1.3.\($0 / 250).\($0 % 250 + 1)" }
    var daemon: DaemonProcess!
    var mountPoint: String?

    override func tearDown() {
        daemon?.stop()
        daemon = nil
        if let mountPoint { _ = try? runCommand("/bin/umount", ["-l", mountPoint]) }
    }

    var dataFile: String { "\(daemon.stateDir)/cache/data.mdb" }

    /// A daemon that cached `names` and stopped cleanly.
    func stoppedDaemonWithFullCache(_ name: String) throws {
        daemon = DaemonProcess(world: Self.world, name: name)
        try daemon.start()
        let client = try daemon.client()
        for n in Self.names {
            XCTAssertEqual(ResponseLine(try client.request("resolve \(n)").last!)["step"], "1")
        }
        XCTAssertEqual(daemon.stop(), 0)
    }

    /// Offline `mxresolvectl show-cache` on the damaged file: a clear error and a non-zero exit, not a crash.
    func assertCtlRefusesDamagedFile(file: StaticString = #filePath, line: UInt = #line) throws {
        let (rc, _, err) = try runCommand(DaemonProcess.ctlBinary, ["show-cache", "--state-dir", daemon.stateDir,
                                                                    "--socket", "\(daemon.stateDir)/no.sock"])
        XCTAssertTrue(rc == 1 || rc == 3, "exit \(rc) (a crash is 128+signal): \(err)", file: file, line: line)
        XCTAssertTrue(err.contains("damaged"), err, file: file, line: line)
    }

    /// The daemon starts on the damaged file, says once that it moved it aside, answers, and
    /// keeps what it writes from then on.
    func assertDaemonRebuilds(file: StaticString = #filePath, line: UInt = #line) throws {
        try daemon.start()
        let log = daemon.log()
        let lines = log.split(separator: "\n").filter { $0.contains("moved it to") }
        XCTAssertEqual(lines.count, 1, log, file: file, line: line)
        XCTAssertTrue(lines.first?.contains("damaged") ?? false, log, file: file, line: line)
        let aside = try FileManager.default.contentsOfDirectory(atPath: "\(daemon.stateDir)/cache").filter { $0.hasPrefix("data.mdb.bad-") }
        XCTAssertEqual(aside.count, 1, file: file, line: line)
        let client = try daemon.client()
        for n in Self.names.prefix(50) {
            XCTAssertEqual(ResponseLine(try client.request("resolve \(n)").last!)["step"], "1", file: file, line: line)
        }
        let shown = try client.request("show-cache")
        XCTAssertEqual(ResponseLine(shown.last!)["count"], "50", "the rebuilt cache holds what was written since", file: file, line: line)
        XCTAssertEqual(daemon.stop(), 0, "clean stop after the rebuild", file: file, line: line)
        try daemon.start()
        XCTAssertEqual(try daemon.ask("resolve \(Self.names[0])")["source"], "cache", file: file, line: line)
        XCTAssertFalse(daemon.log().contains("moved it to"), "the rebuilt file is kept: \(daemon.log())", file: file, line: line)
    }

    func damage(at offset: Int, _ bytes: [UInt8]) throws {
        let h = try XCTUnwrap(FileHandle(forUpdatingAtPath: dataFile))
        try h.seek(toOffset: UInt64(offset))
        try h.write(contentsOf: Data(bytes))
        try h.close()
    }

    var fileSize: Int { ((try? FileManager.default.attributesOfItem(atPath: dataFile)[.size]) as? Int) ?? 0 }

    func randomBytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255) } }

    func testTruncatedFileIsMovedAsideAndRebuilt() throws {
        try stoppedDaemonWithFullCache("trunc")
        truncate(dataFile, off_t(fileSize / 2))
        try assertCtlRefusesDamagedFile()
        try assertDaemonRebuilds()
    }

    func testRandomBytesInTheMainDatabaseAreMovedAsideAndRebuilt() throws {
        try stoppedDaemonWithFullCache("random")
        // The main database's root page (from the newer meta page) holds both databases' roots.
        let file = try XCTUnwrap(FileHandle(forReadingAtPath: dataFile))
        let metas = try XCTUnwrap(try file.read(upToCount: 4096 + 152))
        try file.close()
        func u64(_ at: Int) -> Int { (0..<8).reduce(0) { $0 | Int(metas[at + $1]) << (8 * $1) } }
        let newer = u64(144) >= u64(4096 + 144) ? 0 : 4096
        try damage(at: u64(newer + 128) * 4096 + 16, randomBytes(200))
        try assertCtlRefusesDamagedFile()
        try assertDaemonRebuilds()
    }

    func testZeroedPagesAreMovedAsideAndRebuilt() throws {
        try stoppedDaemonWithFullCache("zeroed")
        try damage(at: 2 * 4096, [UInt8](repeating: 0, count: 32 * 4096))
        try assertCtlRefusesDamagedFile()
        try assertDaemonRebuilds()
    }

    func testSixtyFourKiBOfNoiseIsMovedAsideNotSilentlyHalfRead() throws {
        try stoppedDaemonWithFullCache("noise")
        try damage(at: fileSize / 2 / 4096 * 4096, randomBytes(64 << 10))
        try assertCtlRefusesDamagedFile()
        try assertDaemonRebuilds()
    }

    func testIntactFileClosedCleanlyOrKilledIsKept() throws {
        try stoppedDaemonWithFullCache("intact")
        try daemon.start()
        XCTAssertEqual(try daemon.ask("resolve \(Self.names[2999])")["source"], "cache")
        daemon.stop(signal: SIGKILL) // not closed cleanly: verified in the child at the next start
        try daemon.start()
        XCTAssertEqual(ResponseLine(try daemon.client().request("show-cache").last!)["count"], "3000")
        XCTAssertFalse(daemon.log().contains("moved it to"), daemon.log())
        let (rc, out, _) = try runCommand(DaemonProcess.daemonBinary, ["--verify-cache", "\(daemon.stateDir)/cache"])
        XCTAssertEqual(rc, 0, out)
        XCTAssertTrue(out.hasPrefix("sound: 3000 entries"), out)
    }

    // MARK: Full file system

    /// A tmpfs of `size` that the test owns (needs root to mount).
    func smallFileSystem(_ size: String) throws -> String {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root") }
        let dir = "/tmp/mxrt-\(getpid())-fullfs-\(DaemonProcess.nextIndex())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let (rc, _, err) = try runCommand("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", dir])
        guard rc == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(err)") }
        mountPoint = dir
        return dir
    }

    /// Fills the file system holding `dir` until writes fail.
    func fill(_ dir: String) throws {
        let (_, _, err) = try runCommand("/bin/dd", ["if=/dev/zero", "of=\(dir)/filler", "bs=4096"])
        XCTAssertTrue(err.contains("No space left"), err)
    }

    func testFullFileSystemAtStartAndWhileRunningKeepsAnsweringAndLogsOncePerEpisode() throws {
        let fs = try smallFileSystem("2m")
        try fill(fs)
        daemon = DaemonProcess(world: Self.world, name: "fullfs", extraArgs: ["--state-dir", "\(fs)/state"])
        try daemon.start()
        let client = try daemon.client()
        for n in Self.names.prefix(200) {
            XCTAssertEqual(ResponseLine(try client.request("resolve \(n)").last!)["step"], "1", "answered while nothing can be written")
        }
        func failing() -> Int { daemon.log().split(separator: "\n").filter { $0.contains("cache writes fail") }.count }
        XCTAssertEqual(failing(), 1, daemon.log())
        XCTAssertFalse(daemon.log().contains("cache write failed"), "not once per write: \(daemon.log())")

        // Space comes back: the next write after the retry pause opens the cache and persists.
        try FileManager.default.removeItem(atPath: "\(fs)/filler")
        usleep(5_500_000)
        XCTAssertEqual(try daemon.ask("resolve \(Self.names[500])")["step"], "1")
        XCTAssertTrue(daemon.log().contains("cache writes work again"), daemon.log())
        XCTAssertEqual(try daemon.ask("show-cache \(Self.names[500])")["count"], "1", "persisted once writable")

        // Full again while running: one more episode, one line, answers all the way.
        try fill(fs)
        for n in Self.names[1000..<2500] {
            XCTAssertEqual(ResponseLine(try client.request("resolve \(n)").last!)["step"], "1")
        }
        XCTAssertEqual(failing(), 2, daemon.log())
        XCTAssertFalse(daemon.log().contains("cache write failed"), daemon.log())
        XCTAssertEqual(daemon.stop(), 0, daemon.log())
    }
}
