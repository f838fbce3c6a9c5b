import Foundation
import XCTest
import MXResolve
import Synchronization

/// A real `mxresolved` process for end-to-end tests, pointed at the test world.
final class DaemonProcess: @unchecked Sendable {
    let stateDir: String
    let socketPath: String
    let extraArgs: [String]
    private(set) var process: Process?
    let logPath: String

    static let binDir: String = {
        if let bin = ProcessInfo.processInfo.environment["MXRESOLVED_BIN_DIR"] { return bin }
        // The test bundle sits beside the executables in the build directory.
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("mxresolved").path) {
            url.deleteLastPathComponent()
        }
        return url.path
    }()

    private static let counter = Mutex(0)
    static func nextIndex() -> Int { counter.withLock { $0 += 1; return $0 } }

    static var daemonBinary: String { "\(binDir)/mxresolved" }
    static var ctlBinary: String { "\(binDir)/mxresolvectl" }

    init(world: TestWorld, name: String, socketPath: String? = nil, extraArgs: [String] = []) {
        // Short: a Unix socket path has at most 107 bytes.
        stateDir = "/tmp/mxrt-\(getpid())/\(DaemonProcess.nextIndex())-\(name.prefix(24))"
        try? FileManager.default.removeItem(atPath: stateDir)
        try? FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        self.socketPath = socketPath ?? "\(stateDir)/mxresolved.sock"
        self.logPath = "\(stateDir)/daemon.log"
        self.extraArgs = world.daemonArgs + ["--dns-timeout-ms", "300", "--wellknown-timeout-ms", "1500", "--log-level", "debug"] + extraArgs
    }

    func start(file: StaticString = #filePath, line: UInt = #line) throws {
        precondition(FileManager.default.fileExists(atPath: Self.daemonBinary), "build the executables first (swift build): \(Self.daemonBinary)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.daemonBinary)
        p.arguments = ["--state-dir", stateDir, "--socket", socketPath] + extraArgs
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let logHandle = FileHandle(forWritingAtPath: logPath)!
        logHandle.seekToEndOfFile()
        p.standardError = logHandle
        p.standardOutput = logHandle
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if (try? ControlClient(path: socketPath)) != nil { return }
            if !p.isRunning { break }
            usleep(20_000)
        }
        XCTFail("daemon did not start: \(log())", file: file, line: line)
        throw NSError(domain: "daemon", code: 1)
    }

    func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM) -> Int32 {
        guard let p = process, p.isRunning else { return -1 }
        kill(p.processIdentifier, signal)
        p.waitUntilExit()
        process = nil
        return p.terminationStatus
    }

    func client() throws -> ControlClient { try ControlClient(path: socketPath, timeoutSeconds: 20) }

    /// One request, one parsed response line.
    func ask(_ line: String) throws -> ResponseLine { ResponseLine(try client().request(line).last!) }

    deinit { if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL) } }
}

/// Runs a command, returning (exit status, stdout, stderr).
func runCommand(_ exe: String, _ args: [String], env: [String: String] = [:], stdin: String? = nil) throws -> (Int32, String, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    var e = ProcessInfo.processInfo.environment
    for (k, v) in env { e[k] = v }
    p.environment = e
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let input = Pipe()
    p.standardInput = input
    try p.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try? input.fileHandleForWriting.close()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let r = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: r, as: UTF8.self))
}
