import Foundation
import XCTest
import Synchronization
import MXCore
import MXTestSupport
import MXProtocol

/// `show-cache` on a large cache, against the real daemon: the listing is read off the reactor and
/// streamed a page at a time under the connection's output budget, so hits on the same reactor stay
/// fast, clients that never read cost bounded memory, and peers that are not admins page through.
final class CacheListingTests: XCTestCase {
    static let world = TestWorld.standard
    var daemon: DaemonProcess!

    override func tearDown() {
        daemon?.stop()
        daemon = nil
    }

    /// IP literals: cached at once, no upstream traffic.
    static func names(_ n: Int) -> [String] { (0..<n).map { "1.\(4 + $0 / 62_500).\($0 / 250 % 250).\($0 % 250 + 1)" } }

    /// A daemon with one reactor thread (every connection shares it) whose cache holds `count` names.
    func startDaemon(_ name: String, caching count: Int, extraArgs: [String] = []) throws -> [String] {
        daemon = DaemonProcess(world: Self.world, name: name, extraArgs: ["--socket-threads", "1"] + extraArgs)
        try daemon.start()
        let names = Self.names(count)
        let client = try daemon.client()
        var start = 0
        while start < names.count {
            let batch = names[start..<min(start + 200, names.count)]
            try client.sendBytes(Array(batch.enumerated().map { "resolve \($0.element) id=f\($0.offset)\n" }.joined().utf8))
            for _ in batch { XCTAssertEqual(ResponseLine(try client.readLine()).status, "ok") }
            start += batch.count
        }
        return names
    }

    /// The lines of one `show-cache` answer: its `entry` lines and the final line.
    static func listing(_ client: ControlClient, _ request: String) throws -> (entries: [ResponseLine], final: ResponseLine) {
        let lines = try client.request(request).map(ResponseLine.init)
        return (Array(lines.dropLast()), lines.last!)
    }

    // MARK: The reactor stays free

    func testHitsOnTheSameReactorStayFastWhileListingsRun() throws {
        let names = try startDaemon("listing-latency", caching: 10_000)
        let hit = "resolve \(names[1234])"
        let hitter = try daemon.client()
        XCTAssertEqual(ResponseLine(try hitter.request(hit)[0])["source"], "cache")

        let listings = PthreadMutex(0)
        let stop = Atomic<Bool>(false)
        let lister = try daemon.client()
        let listerDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            while !stop.load(ordering: .relaxed) {
                guard let shown = try? Self.listing(lister, "show-cache"), shown.final["count"] == "10000" else { break }
                listings.withLock { $0 += 1 }
            }
            listerDone.signal()
        }
        var latencies: [Double] = []
        let until = Date().addingTimeInterval(6)
        while Date() < until {
            let started = Date()
            XCTAssertEqual(ResponseLine(try hitter.request(hit)[0])["source"], "cache")
            latencies.append(Date().timeIntervalSince(started))
            usleep(2_000)
        }
        stop.store(true, ordering: .relaxed)
        XCTAssertEqual(listerDone.wait(timeout: .now() + 60), .success)
        let done = listings.withLock { $0 }
        latencies.sort()
        let worst = latencies.last ?? 0
        print("listing-latency: \(done) listings of 10000 entries; \(latencies.count) hits, median \(Int(latencies[latencies.count / 2] * 1e6)) µs, "
              + "p99 \(Int(latencies[latencies.count * 99 / 100] * 1e6)) µs, max \(Int(worst * 1e6)) µs")
        XCTAssertGreaterThanOrEqual(done, 2, "the listings ran meanwhile")
        // A listing on the reactor held every connection on it for the whole walk (0.6-1 s here).
        XCTAssertLessThan(worst, 0.25, "a hit waited for a listing")
    }

    // MARK: Clients that never read

    func testClientsThatNeverReadTheirListingsCostBoundedMemory() throws {
        _ = try startDaemon("listing-rss", caching: 10_000)
        let before = daemon.residentKiB

        // Each asks for its listing 20 times (about 4 MB each as JSON) and reads nothing. The window
        // is long enough for a reactor that renders whole listings to have rendered them all.
        var silent: [ControlClient] = []
        for _ in 0..<8 {
            let c = try daemon.client()
            _ = fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK)
            let requests = Array(String(repeating: "show-cache format=json failures=yes\n", count: 20).utf8)
            _ = requests.withUnsafeBytes { send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            silent.append(c)
        }
        var peak = before
        for _ in 0..<120 {
            usleep(100_000)
            peak = max(peak, daemon.residentKiB)
        }
        print("listing-rss: 8 clients that never read their listings: RSS \(before) -> peak \(peak) KiB")
        // Whole listings held per client came to 48 MB here; the budget (1 MiB) and a page each to about 11 MB.
        XCTAssertLessThan(peak - before, 20 * 1024, "memory grew with the listings nobody reads")

        // The daemon still serves everyone else, and frees the connections when they go.
        XCTAssertEqual(try daemon.ask("resolve \(Self.names(1)[0])")["source"], "cache")
        silent.removeAll()
        let whole = try daemon.client()
        XCTAssertTrue(try whole.request("show-cache format=json")[0].hasPrefix("{\"ok\":true,\"entries\":[{"))
        XCTAssertEqual(try Self.listing(whole, "show-cache").final["count"], "10000")
    }

    // MARK: Paging

    func testPagingListsEveryEntryExactlyOnce() throws {
        let names = try startDaemon("listing-pages", caching: 2_345)
        let client = try daemon.client()
        for format in ["text", "json"] {
            var seen: [String] = []
            var after: String?
            var pages = 0
            repeat {
                let request = "show-cache limit=300 format=\(format)" + (after.map { " after=\(Wire.escape($0))" } ?? "")
                if format == "json" {
                    let line = try client.request(request)[0]
                    let page = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
                    let entries = try XCTUnwrap(page["entries"] as? [[String: Any]])
                    XCTAssertEqual(page["count"] as? Int, entries.count)
                    seen += entries.compactMap { $0["server_name"] as? String }
                    after = page["next"] as? String
                } else {
                    let shown = try Self.listing(client, request)
                    XCTAssertEqual(shown.final["count"], "\(shown.entries.count)")
                    seen += shown.entries.compactMap { $0["name"] }
                    after = shown.final["next"]
                }
                pages += 1
                XCTAssertLessThanOrEqual(seen.count, pages * 300, "limit=300 is kept")
            } while after != nil && pages < 100
            XCTAssertEqual(pages, 8, format)
            XCTAssertEqual(seen.count, names.count, "\(format): every entry once")
            XCTAssertEqual(Set(seen), Set(names), format)
        }
        // An admin's listing without a limit is the whole cache, in one answer.
        XCTAssertEqual(try Self.listing(client, "show-cache").final["count"], "2345")
        XCTAssertNil(try Self.listing(client, "show-cache").final["next"])
    }

    func testPeersThatAreNotAdminsGetBoundedPagesAndMxresolvectlPagesThrough() throws {
        guard getuid() == 0 else { throw XCTSkip("switching to the user nobody needs root") }
        let names = try startDaemon("listing-nobody", caching: 2_500, extraArgs: ["--socket-mode", "0666"])
        // One connection as nobody: the first page, then a limit above the bound.
        let script = """
        import socket, sys
        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rb")
        for request in (b"show-cache\\n", b"show-cache limit=5000\\n", b"show-cache limit=10\\n"):
            s.sendall(request)
            n = 0
            while True:
                line = f.readline().decode()
                if not line.startswith("entry"): break
                n += 1
            print(n, line.strip())
        """
        let (rc, out, err) = try runCommand("/usr/bin/setpriv", ["--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                                                                 "/usr/bin/python3", "-c", script, daemon.socketPath])
        XCTAssertEqual(rc, 0, err)
        let pages = out.split(separator: "\n").map { $0.split(separator: " ", maxSplits: 1) }
        XCTAssertEqual(pages.count, 3, out)
        for (page, limit) in zip(pages, [1000, 1000, 10]) {
            XCTAssertEqual(page.first.map(String.init), "\(limit)", out)
            let final = ResponseLine(String(page.last ?? ""))
            XCTAssertEqual(final["count"], "\(limit)", out)
            XCTAssertEqual(final["next"], names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }[limit - 1], out)
        }

        // mxresolvectl as nobody asks page after page: every entry, once.
        let ctl = ["/usr/bin/setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", DaemonProcess.ctlBinary,
                   "show-cache", "--socket", daemon.socketPath]
        let (textRC, text, textErr) = try runCommand(ctl[0], Array(ctl.dropFirst()))
        XCTAssertEqual(textRC, 0, textErr)
        let listed = text.split(separator: "\n").filter { !$0.hasPrefix("--") }.map { String($0.split(separator: " ")[0]) }
        XCTAssertEqual(listed.count, names.count)
        XCTAssertEqual(Set(listed), Set(names))
        XCTAssertTrue(text.hasSuffix("-- 2500 entries\n"), String(text.suffix(100)))
        let (jsonRC, json, jsonErr) = try runCommand(ctl[0], Array(ctl.dropFirst()) + ["--json"])
        XCTAssertEqual(jsonRC, 0, jsonErr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let entries = try XCTUnwrap(object["entries"] as? [[String: Any]])
        XCTAssertEqual(object["count"] as? Int, 2500)
        XCTAssertEqual(Set(entries.compactMap { $0["server_name"] as? String }), Set(names))
        XCTAssertEqual(entries.count, 2500)
    }

    // MARK: Order

    /// A listing among pipelined requests: id-less answers in request order, the listing's lines
    /// contiguous, an id'd hit before or after it but never inside.
    func testListingKeepsItsPlaceAmongPipelinedRequests() throws {
        let names = try startDaemon("listing-order", caching: 3_000)
        let client = try daemon.client()
        try client.sendBytes(Array("ping id=p1\nshow-cache\nresolve \(names[7]) id=h1\nversion\nshow-cache limit=3\nping\n".utf8))
        var lines: [ResponseLine] = []
        while lines.filter({ $0.status != "entry" }).count < 6 { lines.append(ResponseLine(try client.readLine())) }
        let finals = lines.enumerated().filter { $0.element.status != "entry" }
        let idless = finals.filter { $0.element["id"] == nil }.map(\.element)
        XCTAssertEqual(idless.map { $0["count"] ?? $0["version"] ?? $0["pong"] ?? "?" }, ["3000", Wire.serverVersion, "3", "1"])
        // Entry lines come only right before their listing's final line.
        let firstListingEnd = finals.first { $0.element["count"] == "3000" }!.offset
        XCTAssertEqual(lines[(firstListingEnd - 3000)..<firstListingEnd].filter { $0.status == "entry" }.count, 3000)
        let secondListingEnd = finals.first { $0.element["count"] == "3" }!.offset
        XCTAssertEqual(lines[(secondListingEnd - 3)..<secondListingEnd].filter { $0.status == "entry" }.count, 3)
        XCTAssertEqual(lines.filter { $0.status == "entry" }.count, 3003)
        XCTAssertEqual(lines.first { $0["id"] == "h1" }?["source"], "cache")
    }
}
