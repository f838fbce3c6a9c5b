import ArgumentParser
import Foundation
import MXCore
import MXResolve
import MXAdapters

/// Exit codes (documented in --help): 0 resolved, 1 resolution failed, 2 usage error, 3 daemon not running.
enum Exit {
    static let failed = ExitCode(1)
    static let usage = ExitCode(2)
    static let notRunning = ExitCode(3)
}

struct SocketOption: ParsableArguments {
    @Option(help: "Daemon socket (default: $MXRESOLVED_SOCKET, else ./.mxresolved/mxresolved.sock).")
    var socket: String = ProcessInfo.processInfo.environment["MXRESOLVED_SOCKET"] ?? "./.mxresolved/mxresolved.sock"

    func connect() throws -> ControlClient {
        do {
            return try ControlClient(path: socket)
        } catch {
            FileHandle.standardError.write(Data("""
            mxresolvectl: mxresolved is not running: \(error)
            Start it with: swift run mxresolved --socket \(socket)   (or ./scripts/run)

            """.utf8))
            throw Exit.notRunning
        }
    }
}

@main
struct MXResolveCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mxresolvectl",
        abstract: "Query and manage mxresolved, the Matrix server-name resolver.",
        discussion: "Exit codes: 0 resolved/ok, 1 resolution failed, 2 usage error, 3 daemon not running.",
        subcommands: [Query.self, ShowCache.self, FlushCaches.self, Revalidate.self, Statistics.self, ResetStatistics.self])

    /// ArgumentParser exits 64 (EX_USAGE) on bad usage; resolvectl and unbound-control users expect 2.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error).rawValue == 64 {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

func send(_ client: ControlClient, _ line: String) throws -> [String] {
    do { return try client.request(line) } catch {
        FileHandle.standardError.write(Data("mxresolvectl: \(error)\n".utf8))
        throw Exit.notRunning
    }
}

func check(_ line: String) throws {
    let r = ResponseLine(line)
    if r.status == "err" {
        FileHandle.standardError.write(Data("mxresolvectl: \(r["code"] ?? "error"): \(r["msg"] ?? line)\n".utf8))
        throw r["code"] == "forbidden" || r["code"] == "bad_request" ? Exit.usage : Exit.failed
    }
}

struct Query: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Resolve server names and show where to connect.")
    @OptionGroup var socket: SocketOption
    @Argument(help: "Server names.") var names: [String]
    @Option(help: "Print legend lines (yes/no).") var legend: String = "yes"
    @Flag(help: "Print JSON, one object per line.") var json = false
    @Flag(help: "Show every lookup made and its result.") var trace = false
    @Option(help: "Use the cache (yes/no); no resolves afresh.") var cache: String = "yes"

    func validate() throws {
        guard !names.isEmpty else { throw ValidationError("give at least one server name") }
        guard ["yes", "no"].contains(legend), ["yes", "no"].contains(cache) else { throw ValidationError("--legend and --cache take yes or no") }
    }

    func run() throws {
        let client = try socket.connect()
        var failed = false
        for name in names {
            var line = "resolve \(Wire.escape(name))"
            if cache == "no" { line += " cache=no" }
            if trace { line += " trace=yes" }
            if json { line += " format=json" }
            let started = Date()
            let response = try send(client, line)[0]
            let elapsed = Date().timeIntervalSince(started)
            if json {
                print(response)
                if !response.hasPrefix("{\"ok\":true") { failed = true }
                continue
            }
            let r = ResponseLine(response)
            if r.status == "ok" {
                let step = ResolutionStep(rawValue: r["step"] ?? "").map { "\($0.rawValue) (\($0.words))" } ?? (r["step"] ?? "?")
                print("\(name): step \(step)")
                for (i, t) in r.all("target").enumerated() {
                    let parts = t.split(separator: ",").map(String.init)
                    guard parts.count >= 3 else { continue }
                    let host = parts[0].contains(":") ? "[\(parts[0])]" : parts[0]
                    print("  target \(i + 1): \(host):\(parts[1])  \(parts[2...].joined(separator: " "))")
                }
                print("  Host header: \(r["host"] ?? "")")
                let sni = (r["sni"] ?? "").isEmpty ? "send no SNI: IP literal" : "SNI \(r["sni"]!)"
                print("  TLS name: \(r["tls_name"] ?? "") (\(sni))")
            } else {
                failed = true
                print("\(name): resolve call failed: \(r["code"] ?? "error"): \(r["msg"] ?? "")")
            }
            for t in r.all("trace") { print("  trace: \(t)") }
            if legend == "yes" {
                let source = r["source"] ?? "?"
                let how = source == "cache" ? "cache" : source == "stale" ? "cache (stale, being refreshed)" : "network"
                print("-- Information acquired via \(how) in \(String(format: "%.1f", elapsed * 1000)) ms.")
                print("-- Valid for \(r["ttl"] ?? "0") s.")
            }
        }
        if failed { throw Exit.failed }
    }
}

struct ShowCache: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show cached answers (read from LMDB directly when the daemon is down).")
    @OptionGroup var socket: SocketOption
    @Argument(help: "Only this server name.") var name: String?
    @Flag(help: "Include cached failures.") var failures = false
    @Flag(help: "Print JSON.") var json = false
    @Option(help: "State directory holding cache/ (for reading LMDB when the daemon is down).") var stateDir: String = "./.mxresolved"

    func run() throws {
        var line = "show-cache"
        if let name { line += " \(Wire.escape(name))" }
        if failures { line += " failures=yes" }
        if json { line += " format=json" }
        guard let client = try? ControlClient(path: socket.socket) else {
            try showFromLMDB()
            return
        }
        let lines = try send(client, line)
        if json { lines.forEach { print($0) }; return }
        try check(lines.last ?? "")
        for l in lines.dropLast() { print(describeEntry(ResponseLine(l))) }
        print("-- \(ResponseLine(lines.last!)["count"] ?? "0") entries")
    }

    func describeEntry(_ r: ResponseLine) -> String {
        let name = r["name"] ?? "?"
        if r["status"] == "ok" {
            let targets = r.all("target").map { t -> String in
                let p = t.split(separator: ",")
                return p.count >= 2 ? "\(p[0]):\(p[1])" : t
            }.joined(separator: " ")
            return "\(name)  step \(r["step"] ?? "?")  ttl \(r["ttl"] ?? "0")s\(r["stale"] == "yes" ? " (stale)" : "")  host \(r["host"] ?? "")  -> \(targets)"
        }
        return "\(name)  FAILED \(r["code"] ?? "?")  ttl \(r["ttl"] ?? "0")s  \(r["msg"] ?? "")"
    }

    /// The daemon is down: read the LMDB file read-only.
    func showFromLMDB() throws {
        let dir = "\(stateDir)/cache"
        let store: LMDBStore
        do {
            store = try LMDBStore(directory: dir, mapSizeBytes: 0, readOnly: true)
        } catch {
            FileHandle.standardError.write(Data("mxresolvectl: daemon not running at \(socket.socket) and no readable cache in \(dir): \(error)\n".utf8))
            throw Exit.notRunning
        }
        let now = Date().timeIntervalSince1970
        var count = 0
        FileHandle.standardError.write(Data("-- daemon not running; reading \(dir) directly\n".utf8))
        store.forEach { e in
            if let name, e.serverName != name { return }
            if e.isFailure && !failures { return }
            count += 1
            let ttl = max(0, Int(e.expiresAt - now))
            if let a = e.answer {
                let targets = a.targets.map { "\($0.host):\($0.port)" }.joined(separator: " ")
                print("\(e.serverName)  step \(a.step.rawValue)  ttl \(ttl)s\(now >= e.expiresAt ? " (stale)" : "")  host \(a.hostHeader)  -> \(targets)")
            } else if let f = e.failure {
                print("\(e.serverName)  FAILED \(f.code.rawValue)  ttl \(ttl)s  \(f.message)")
            }
        }
        print("-- \(count) entries")
    }
}

struct FlushCaches: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Forget cached answers: all, the given names, or (with --failures) cached failures too.")
    @OptionGroup var socket: SocketOption
    @Argument(help: "Server names (default: all).") var names: [String] = []
    @Flag(help: "Also remove cached failures (with no names: only failures are kept out).") var failures = false
    func run() throws {
        let client = try socket.connect()
        var line = "flush-caches"
        for n in names { line += " \(Wire.escape(n))" }
        if failures { line += " failures=yes" }
        let r = try send(client, line)[0]
        try check(r)
        print("flushed \(ResponseLine(r)["flushed"] ?? "0") entries")
    }
}

struct Revalidate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Refetch names now, serving the old answer until the new one arrives.")
    @OptionGroup var socket: SocketOption
    @Argument(help: "Server names.") var names: [String]
    func run() throws {
        let client = try socket.connect()
        let r = try send(client, "revalidate " + names.map { Wire.escape($0) }.joined(separator: " "))[0]
        try check(r)
        print("queued \(ResponseLine(r)["queued"] ?? "0") names")
    }
}

struct Statistics: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show counters as name=value lines (unbound-control style).")
    @OptionGroup var socket: SocketOption
    @Flag(help: "Print JSON.") var json = false
    func run() throws {
        let client = try socket.connect()
        let r = try send(client, json ? "statistics format=json" : "statistics")[0]
        if json { print(r); return }
        try check(r)
        for f in ResponseLine(r).fields { print("\(f.key)=\(f.value)") }
    }
}

struct ResetStatistics: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Zero the counters.")
    @OptionGroup var socket: SocketOption
    func run() throws {
        let client = try socket.connect()
        let r = try send(client, "reset-statistics")[0]
        try check(r)
        print("ok")
    }
}
