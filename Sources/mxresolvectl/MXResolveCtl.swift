import ArgumentParser
import Foundation
import MXCore
import MXProtocol
import MXAdapters
import MXRender

/// Exit codes (documented in --help, README and mxresolvectl(1)).
enum Exit {
    static let failed = ExitCode(1)
    static let usage = ExitCode(2)
    static let notRunning = ExitCode(3)
    /// The socket refused this user, or the daemon refused a state-changing verb (`forbidden`).
    static let permissionDenied = ExitCode(4)
    /// The daemon accepted the connection but did not answer within --timeout.
    static let timedOut = ExitCode(5)
    static let summary = "Exit codes: 0 resolved/ok, 1 resolution failed, 2 usage error, 3 daemon not running, "
        + "4 permission denied, 5 timed out."

    /// Reports a failure to reach or hear the daemon and gives its exit code.
    static func reporting(_ failure: ControlClient.Failure, timeout: Int) -> ExitCode {
        switch failure {
        case .permissionDenied(let path, let reason):
            warn("mxresolvectl: permission denied on \(path): \(reason)\n"
                 + "Connecting needs write access to the socket: root, the daemon's user, or its group (ls -l \(path)).\n")
            return permissionDenied
        case .timedOut:
            warn("mxresolvectl: mxresolved did not answer within \(timeout) s (--timeout)\n")
            return timedOut
        case .notRunning(let path, _):
            warn("""
            mxresolvectl: mxresolved is not running: \(failure)
            Start it with: systemctl start mxresolved.socket   (or ./scripts/run, or mxresolved --socket \(path))

            """)
            return notRunning
        case .closed, .lineTooLong:
            warn("mxresolvectl: \(failure)\n")
            return failed
        }
    }
}

func warn(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }

struct SocketOption: ParsableArguments {
    @Option(help: "Daemon socket (default: $MXRESOLVED_SOCKET, else /run/mxresolved/socket when it exists, else ./.mxresolved/mxresolved.sock).")
    var socket: String?

    @Option(name: .customLong("timeout"), help: "Seconds to wait for the daemon's answer (default 60; check: seconds per name, default 15).")
    var givenTimeout: Int?
    var timeout: Int { givenTimeout ?? 60 }

    var path: String { SocketPath.resolve(explicit: socket) }

    func connect() throws -> Session {
        do {
            return try Session(path: path, timeout: timeout)
        } catch {
            throw Exit.reporting(error, timeout: timeout)
        }
    }
}

/// A connection to the daemon that reconnects once when the daemon closed it (PROTOCOL.md §8):
/// a closed connection is not a daemon that is not running.
final class Session {
    let path: String
    let timeout: Int
    private var client: ControlClient

    init(path: String, timeout: Int) throws(ControlClient.Failure) {
        self.path = path
        self.timeout = timeout
        client = try ControlClient(path: path, timeoutSeconds: timeout)
    }

    /// Sends a request and returns its response lines; reports failures and exits.
    func send(_ request: Request) throws -> [String] {
        do {
            return try sendOnce(request)
        } catch ControlClient.Failure.closed {
            do { client = try ControlClient(path: path, timeoutSeconds: timeout) } catch {
                warn("mxresolvectl: mxresolved closed the connection; connecting again failed\n")
                throw Exit.reporting(error, timeout: timeout)
            }
            do { return try sendOnce(request) } catch ControlClient.Failure.closed {
                FileHandle.standardError.write(Data("mxresolvectl: mxresolved closed the connection twice without answering \(request.verb.rawValue)\n".utf8))
                throw Exit.failed
            }
        }
    }

    private func sendOnce(_ request: Request) throws -> [String] {
        do { return try client.request(request) } catch ControlClient.Failure.closed {
            throw ControlClient.Failure.closed
        } catch ControlClient.Failure.lineTooLong(let e) {
            FileHandle.standardError.write(Data("mxresolvectl: not sent: \(e)\n".utf8))
            throw Exit.usage
        } catch ControlClient.Failure.timedOut {
            throw Exit.reporting(.timedOut, timeout: timeout)
        } catch {
            FileHandle.standardError.write(Data("mxresolvectl: \(error)\n".utf8))
            throw Exit.failed
        }
    }
}

@main
struct MXResolveCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mxresolvectl",
        abstract: "Query and manage mxresolved, the Matrix server-name resolver.",
        discussion: Exit.summary,
        version: Wire.serverVersion,
        subcommands: [Query.self, Check.self, ShowCache.self, FlushCaches.self, Revalidate.self, Statistics.self, ResetStatistics.self,
                      VerifyCache.self])

    /// ArgumentParser exits 64 (EX_USAGE) on bad usage; resolvectl and unbound-control users expect 2.
    static func main() {
        do {
            var command = try parseAsRoot(verbFirst(Array(CommandLine.arguments.dropFirst())))
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

/// Options given before the verb (`mxresolvectl --socket PATH query NAME`, as with resolvectl and
/// systemctl) are moved after it, where each verb's parser reads them.
func verbFirst(_ args: [String]) -> [String] {
    let verbs = Set(MXResolveCtl.configuration.subcommands.map { $0._commandName } + ["help"])
    let takesValue: Set<String> = ["--socket", "--legend", "--cache", "--state-dir", "--timeout", "--format", "--ca-file", "--ca-directory", "--cache-dir"]
    var i = 0
    while i < args.count {
        let arg = args[i]
        if arg == "--" || arg == "-h" || arg == "--help" || arg == "--version" { return args }
        if verbs.contains(arg) { break }
        guard arg.hasPrefix("-") else { return args }
        i += takesValue.contains(arg) ? 2 : 1
    }
    guard i > 0, i < args.count else { return args }
    return [args[i]] + Array(args[..<i]) + Array(args[(i + 1)...])
}

/// One request per line's worth of names; a name too long for any line is a usage error.
func batches(_ verb: Verb, _ names: [String], options: [RequestOption: String] = [:]) throws -> [Request] {
    do { return try Request.batches(verb, names: names, options: options) } catch {
        FileHandle.standardError.write(Data("mxresolvectl: not sent: \(error)\n".utf8))
        throw Exit.usage
    }
}

/// Sends `names` in as many requests as they need and adds up one numeric field of the answers.
func sumOverBatches(_ verb: Verb, _ names: [String], options: [RequestOption: String] = [:],
                    field: String, socket: SocketOption) throws -> Int {
    let session = try socket.connect()
    var total = 0
    for request in try batches(verb, names, options: options) {
        let r = try session.send(request)[0]
        try check(r)
        total += Int(ResponseLine(r)[field] ?? "") ?? 0
    }
    return total
}

func check(_ line: String) throws {
    let r = ResponseLine(line)
    if r.status == "err" {
        FileHandle.standardError.write(Data("mxresolvectl: \(r["code"] ?? "error"): \(r["msg"] ?? line)\n".utf8))
        throw r["code"] == "forbidden" ? Exit.permissionDenied : r["code"] == "bad_request" ? Exit.usage : Exit.failed
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
        for name in names {
            do { _ = try request(name).line() } catch { throw ValidationError("\(name.prefix(40))...: \(error)") }
        }
    }

    func request(_ name: String) -> Request {
        var options: [RequestOption: String] = [:]
        if cache == "no" { options[.cache] = "no" }
        if trace { options[.trace] = "yes" }
        if json { options[.format] = "json" }
        return Request(.resolve, [name], options: options)
    }

    func run() throws {
        let session = try socket.connect()
        var failed = false
        for name in names {
            let started = Date()
            let response = try session.send(request(name))[0]
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
        var request = Request(.showCache, name.map { [$0] } ?? [])
        if failures { request.options[.failures] = "yes" }
        if json { request.options[.format] = "json" }
        let session: Session
        do {
            session = try Session(path: socket.path, timeout: socket.timeout)
        } catch .notRunning {
            try showFromLMDB()
            return
        } catch {
            // The daemon runs (it refused us or is stuck): its cache file is not ours to read.
            throw Exit.reporting(error, timeout: socket.timeout)
        }
        // A peer that is not an admin gets a page at a time (PROTOCOL.md §5.2): ask on from `next`.
        var count = 0
        var jsonEntries: [Substring] = []
        var page = request
        repeat {
            let lines = try session.send(page)
            let last = lines.last ?? ""
            page.options[.after] = nil
            if json {
                guard let listing = JSONListingPage(last) else { print(last); return }
                if !listing.entries.isEmpty { jsonEntries.append(listing.entries) }
                count += listing.count
                page.options[.after] = listing.next
                continue
            }
            try check(last)
            for l in lines.dropLast() { print(describeEntry(ResponseLine(l))) }
            let final = ResponseLine(last)
            count += Int(final["count"] ?? "") ?? 0
            page.options[.after] = final["next"]
        } while page.options[.after] != nil
        if json {
            print("{\"ok\":true,\"entries\":[" + jsonEntries.joined(separator: ",") + "],\"count\":\(count)}")
        } else {
            print("-- \(count) entries")
        }
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
            // A damaged page can crash whoever maps it: a child (this program's verify-cache) walks it first.
            store = try LMDBStore(directory: dir, mapSizeBytes: 0, readOnly: true,
                                  verifier: CacheVerifier(arguments: ["verify-cache", "--cache-dir"]))
        } catch {
            FileHandle.standardError.write(Data("mxresolvectl: daemon not running at \(socket.path) and no readable cache in \(dir): \(error)\n".utf8))
            throw Exit.notRunning
        }
        let now = Date().timeIntervalSince1970
        var entries: [CacheEntry] = []
        FileHandle.standardError.write(Data("-- daemon not running; reading \(dir) directly\n".utf8))
        store.forEach { e in
            if let name, e.serverName != name { return }
            if e.isFailure && !failures { return }
            entries.append(e)
        }
        // The daemon's own rendering, so both paths print the same.
        if json {
            var o = JSONObject()
            o.bool("ok", true)
            o.raw("entries", JSONObject.array(entries.map { AnswerRender.entryJSON($0, now: now) }))
            o.int("count", entries.count)
            print(o.text)
            return
        }
        for e in entries {
            let line = String(decoding: AnswerRender.entryLine(e, id: nil, now: now), as: UTF8.self)
            print(describeEntry(ResponseLine(line.trimmingCharacters(in: .newlines))))
        }
        print("-- \(entries.count) entries")
    }
}

/// One page of `show-cache format=json`, `{"ok":true,"entries":[...],"count":N,"next":NAME}`: its
/// entries kept as the daemon wrote them, so the pages join into the one object a single page is.
struct JSONListingPage {
    var entries: Substring
    var count: Int
    var next: String?

    init?(_ line: String) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              object["ok"] as? Bool == true, let count = object["count"] as? Int,
              let open = line.range(of: "\"entries\":["), let close = line.range(of: "],\"count\":", options: .backwards),
              open.upperBound <= close.lowerBound else { return nil }
        // Strings in JSON escape every quote, so `],"count":` can only be the end of the array.
        entries = line[open.upperBound..<close.lowerBound]
        self.count = count
        next = object["next"] as? String
    }
}

struct VerifyCache: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the cache file offline, as the daemon does before opening one it did not close cleanly (exit 0 sound, 1 damaged).")
    @Option(help: "State directory holding cache/.") var stateDir: String = "./.mxresolved"
    @Option(help: "The cache directory itself (default: STATE_DIR/cache).") var cacheDir: String?
    func run() throws {
        let verdict = LMDBStore.verify(directory: cacheDir ?? "\(stateDir)/cache")
        print(verdict)
        if !verdict.isSound { throw Exit.failed }
    }
}

struct FlushCaches: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Forget cached answers: all, the given names, or (with --failures) cached failures too.")
    @OptionGroup var socket: SocketOption
    @Argument(help: "Server names (default: all).") var names: [String] = []
    @Flag(help: "Also remove cached failures (with no names: only failures are kept out).") var failures = false
    func run() throws {
        let flushed = try sumOverBatches(.flushCaches, names, options: failures ? [.failures: "yes"] : [:],
                                         field: "flushed", socket: socket)
        print("flushed \(flushed) entries")
    }
}

struct Revalidate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Refetch names now, serving the old answer until the new one arrives.")
    @OptionGroup var socket: SocketOption
    @Argument(help: "Server names.") var names: [String]
    func run() throws {
        let queued = try sumOverBatches(.revalidate, names, field: "queued", socket: socket)
        print("queued \(queued) names")
    }
}

struct Statistics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show counters as name=value lines (unbound-control style), JSON, or Prometheus text.",
        discussion: "--format=prometheus prints the Prometheus text exposition (format 0.0.4), counters since the daemon started "
            + "(reset-statistics leaves them alone), for node_exporter's textfile collector: "
            + "mxresolvectl statistics --format=prometheus > DIR/mxresolved.prom.$$ && mv DIR/mxresolved.prom.$$ DIR/mxresolved.prom")

    enum Format: String, ExpressibleByArgument, CaseIterable { case text, json, prometheus }

    @OptionGroup var socket: SocketOption
    @Flag(help: "Print JSON (the same as --format=json).") var json = false
    @Option(help: "Output format.") var format: Format = .text

    func run() throws {
        let format = json ? .json : format
        var request = Request(.statistics)
        if format != .text { request.options[.format] = format.rawValue }
        let lines = try socket.connect().send(request)
        if format == .json { print(lines[0]); return }
        try check(lines.last ?? "")
        if format == .prometheus {
            // Lines go out as they are: the format's own text, one `entry text=` line each.
            print(lines.dropLast().map { ResponseLine($0)["text"] ?? "" }.joined(separator: "\n"))
            return
        }
        for f in ResponseLine(lines[0]).fields { print("\(f.key)=\(f.value)") }
    }
}

struct ResetStatistics: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Zero the counters.")
    @OptionGroup var socket: SocketOption
    func run() throws {
        let r = try socket.connect().send(Request(.resetStatistics))[0]
        try check(r)
        print("ok")
    }
}
