import Foundation
import MXResolve
import MXProtocol
import MXCore

/// A real `mxresolved` process for end-to-end tests, pointed at the test world.
public final class DaemonProcess: @unchecked Sendable {
    public let stateDir: String
    public let socketPath: String
    let extraArgs: [String]
    public private(set) var process: Process?
    public let logPath: String

    public static let binDir: String = {
        if let bin = ProcessInfo.processInfo.environment["MXRESOLVED_BIN_DIR"] { return bin }
        // The test bundle sits beside the executables in the build directory.
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("mxresolved").path) {
            url.deleteLastPathComponent()
        }
        return url.path
    }()

    private static let counter = PthreadMutex(0)
    public static func nextIndex() -> Int { counter.withLock { $0 += 1; return $0 } }

    public static var daemonBinary: String { "\(binDir)/mxresolved" }
    public static var ctlBinary: String { "\(binDir)/mxresolvectl" }

    let environment: [String: String]?

    /// `dnsServers`: the DNS servers instead of the world's (in this order); `environment`: the
    /// daemon's whole environment instead of the test process's.
    public init(world: TestWorld, name: String, socketPath: String? = nil, extraArgs: [String] = [],
                dnsServers: [String]? = nil, environment: [String: String]? = nil) {
        // Short: a Unix socket path has at most 107 bytes.
        stateDir = "/tmp/mxrt-\(getpid())/\(DaemonProcess.nextIndex())-\(name.prefix(24))"
        try? FileManager.default.removeItem(atPath: stateDir)
        try? FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        self.socketPath = socketPath ?? "\(stateDir)/mxresolved.sock"
        self.logPath = "\(stateDir)/daemon.log"
        self.environment = environment
        let worldArgs = dnsServers.map { world.daemonArgs(dnsServers: $0) } ?? world.daemonArgs
        self.extraArgs = worldArgs + ["--dns-timeout-ms", "300", "--wellknown-timeout-ms", "1500", "--log-level", "debug"] + extraArgs
    }

    /// Starts the daemon and waits until it accepts connections; the error carries its log.
    public func start() throws {
        precondition(FileManager.default.fileExists(atPath: Self.daemonBinary), "build the executables first (swift build): \(Self.daemonBinary)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.daemonBinary)
        p.arguments = ["--state-dir", stateDir, "--socket", socketPath] + extraArgs
        if let environment { p.environment = environment }
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
        throw TestSupportError("daemon did not start: \(log())")
    }

    public func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) -> Int32 {
        guard let p = process, p.isRunning else { return -1 }
        kill(p.processIdentifier, signal)
        p.waitUntilExit()
        process = nil
        return p.terminationStatus
    }

    public func client() throws -> ControlClient { try ControlClient(path: socketPath, timeoutSeconds: 20) }

    /// The daemon's resident memory (VmRSS) in KiB.
    public var residentKiB: Int { MXTestSupport.residentKiB(process?.processIdentifier ?? 0) }

    /// One request, one parsed response line.
    public func ask(_ line: String) throws -> ResponseLine { ResponseLine(try client().request(line).last!) }

    deinit { if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL) } }
}

/// A process's resident memory (VmRSS) in KiB; 0 when it is gone.
public func residentKiB(_ pid: Int32) -> Int {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
}
