// Runs `LMDBStore.verify` in a child process, so that a damaged page that makes a mapped read
// crash kills the child, not the daemon (or mxresolvectl). The child is this program again
// (/proc/self/exe) with the arguments that make it verify and exit.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct CacheVerifier: Sendable {
    /// The program to run, and the arguments before the directory: `mxresolved --verify-cache`.
    public var executable: String
    public var arguments: [String]
    /// A walk of the largest map takes well under a second; a child that loops on a damaged page is killed.
    public var timeoutSeconds: Double

    public init(executable: String = CacheVerifier.thisProgram, arguments: [String], timeoutSeconds: Double = 60) {
        self.executable = executable
        self.arguments = arguments
        self.timeoutSeconds = timeoutSeconds
    }

    /// The running program's own file (still the same file if it was replaced on disk since, on Linux).
    public static var thisProgram: String {
        #if os(Linux)
        return "/proc/self/exe"
        #else
        return CommandLine.arguments[0]
        #endif
    }

    /// A build with a sanitizer (`scripts/test --sanitize`): its options reach the child too, so the
    /// child's reports land where the run collects them, with the sanitizer's handlers for SIGSEGV
    /// and SIGBUS off, because dying of that signal is how the child reports a damaged page.
    static func sanitizerOptions() -> [String] {
        ["TSAN_OPTIONS", "ASAN_OPTIONS", "LSAN_OPTIONS"].compactMap { name in
            guard let value = getenv(name) else { return nil }
            let options = String(cString: value)
            return name == "LSAN_OPTIONS" ? "\(name)=\(options)" : "\(name)=\(options):handle_segv=0:handle_sigbus=0"
        }
    }

    /// What the child's exit says: 0 sound, 1 damaged (its last output line says why), killed by a
    /// signal or the time limit damaged; anything else (it could not run) unavailable.
    public func verify(_ directory: String) -> CacheVerdict {
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else { return .unavailable("pipe: \(String(cString: strerror(errno)))") }
        let (readFD, writeFD) = (pipeFDs[0], pipeFDs[1])
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, writeFD, 1)
        posix_spawn_file_actions_addclose(&actions, readFD)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = [executable] + arguments + [directory]
        // A crash in the child is the expected way to learn of some damage: no backtrace for it.
        var env = ["SWIFT_BACKTRACE=enable=no"]
        if let path = getenv("PATH") { env.append("PATH=" + String(cString: path)) }
        env += Self.sanitizerOptions()
        var pid: pid_t = 0
        let rc = withCStrings(argv) { cArgv in
            withCStrings(env) { cEnv in posix_spawn(&pid, executable, &actions, nil, cArgv, cEnv) }
        }
        close(writeFD)
        defer { close(readFD) }
        guard rc == 0 else { return .unavailable("cannot run \(executable): \(String(cString: strerror(rc)))") }

        var output: [UInt8] = []
        let deadline = monotonicSeconds() + timeoutSeconds
        var timedOut = false
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let left = deadline - monotonicSeconds()
            if left <= 0 { timedOut = true; break }
            var pfd = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, Int32(min(left, 1) * 1000) + 1)
            if ready < 0 && errno != EINTR { break }
            if ready <= 0 { continue }
            let n = buffer.withUnsafeMutableBytes { read(readFD, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if output.count < 16384 { output += buffer[0..<n] }
        }
        if timedOut { kill(pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let lastLine = String(decoding: output, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
        if timedOut { return .damaged("verifying it did not finish within \(Int(timeoutSeconds)) s") }
        let signal = status & 0x7f
        if signal != 0 { return .damaged("reading it crashed the verifier (signal \(signal))") }
        switch (status >> 8) & 0xff {
        case 0: return Self.parseSound(lastLine) ?? .sound(entries: 0, pages: 0)
        case 1: return .damaged(lastLine.hasPrefix("damaged: ") ? String(lastLine.dropFirst(9)) : lastLine)
        case let code: return .unavailable("\(executable) exited with status \(code): \(lastLine)")
        }
    }

    /// "sound: N entries in P pages", as `CacheVerdict.description` prints it.
    static func parseSound(_ line: String) -> CacheVerdict? {
        let words = line.split(separator: " ")
        guard words.count == 6, words[0] == "sound:", let entries = Int(words[1]), let pages = Int(words[4]) else { return nil }
        return .sound(entries: entries, pages: pages)
    }
}

private func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// `body` with `strings` as a NULL-terminated array of C strings (argv, envp).
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return body(pointers)
}
