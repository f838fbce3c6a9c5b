#if canImport(Glibc)
import Glibc
#endif
import Foundation
import XCTest
import MXCore
import MXAdapters
import MXTestSupport

final class OSThreadTests: XCTestCase {
    /// The owner-thread check that loop-only code relies on: true on the thread, false elsewhere.
    func testIsCurrentOnlyOnItsOwnThreadAndJoinWaitsForTheBody() throws {
        let thread = OSThread(name: "mxr-test-thread-long-name")
        let seen = PthreadMutex<(inside: Bool?, name: String?)>((nil, nil))
        XCTAssertFalse(thread.isCurrent, "not started yet")
        try thread.start {
            usleep(20_000)
            let name = try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)
                .trimmingCharacters(in: .newlines)
            seen.withLock { $0 = (thread.isCurrent, name) }
            thread.preconditionCurrent()
        }
        XCTAssertFalse(thread.isCurrent, "the starting thread is not the new thread")
        thread.join()
        XCTAssertEqual(seen.withLock { $0.inside }, true, "join returned after the body ran")
        XCTAssertEqual(seen.withLock { $0.name }, "mxr-test-thread", "Linux keeps the first 15 bytes of the name")
    }

    static let offThreadChildVariable = "MXRESOLVED_OFF_THREAD_CHILD"

    /// Run as a child process by the test below: calls loop-only code from the wrong thread.
    func testOffThreadChild() throws {
        guard ProcessInfo.processInfo.environment[Self.offThreadChildVariable] != nil else { return }
        let thread = OSThread(name: "mxr-owner")
        try thread.start { sleep(5) }
        thread.preconditionCurrent()
        print("CONTINUED")
    }

    /// The owner-thread precondition is enforced, not advisory: a caller on another thread stops the process.
    func testPreconditionCurrentStopsACallerOnAnotherThread() throws {
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let (status, out, err) = try runCommand(exe, ["MXAdaptersTests.OSThreadTests/testOffThreadChild"],
                                                env: [Self.offThreadChildVariable: "1"])
        XCTAssertNotEqual(status, 0)
        XCTAssertFalse(out.contains("CONTINUED"), out)
        XCTAssertTrue(err.contains("must run on thread mxr-owner"), err)
    }

    func testMakeDirectoriesCreatesParentsAndNamesTheFailingStep() throws {
        let base = "/tmp/mxrt-mkdir-\(getpid())"
        try makeDirectories("\(base)/a/b/c")
        try makeDirectories("\(base)/a/b/c")
        var st = stat()
        XCTAssertEqual(stat("\(base)/a/b/c", &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o750)
        XCTAssertTrue(FileManager.default.createFile(atPath: "\(base)/file", contents: Data()))
        XCTAssertThrowsError(try makeDirectories("\(base)/file/sub")) { error in
            XCTAssertEqual(error as? SystemCallError, SystemCallError("mkdir \(base)/file/sub", ENOTDIR))
        }
        try FileManager.default.removeItem(atPath: base)
    }
}
