import XCTest
import MXProtocol

final class RequestParseTests: XCTestCase {
    /// The plain-resolve fast path must agree with the general parser on every line it accepts.
    func testFastPathAgreesWithTheGeneralParser() {
        let lines = ["resolve matrix.org", "resolve matrix.org id=a-1", "resolve [::1]:8448 id=x", "resolve 1.2.3.4\r",
                     "resolve a b", "resolve a=b", "resolve ex%41mple.org", "resolve name id=bad!", "resolve name  id=x",
                     "resolve name cache=no", "resolve", "resolve ", "resolve exämple.org", "resolve a\r\r", "resolve a id=\r",
                     "resolve a id=x\r", "resolve a id=", "resolve a ID=x", "resolve a id=x y", "resolve a\tb",
                     "resolve a id=" + String(repeating: "i", count: 64), "resolve a id=" + String(repeating: "i", count: 65)]
        var accepted = 0
        for line in lines {
            let general = Request.parse(Array(line.utf8)[...])
            if let fast = Request.parsePlainResolve(Array(line.utf8)[...]) {
                XCTAssertEqual(general, .success(fast), line.debugDescription)
                accepted += 1
            }
        }
        XCTAssertEqual(accepted, 6)
        let plain = PlainResolve(Array("resolve matrix.org id=a-1\r".utf8)[...])
        XCTAssertEqual(plain.map { String(decoding: $0.name, as: UTF8.self) }, "matrix.org")
        XCTAssertEqual(plain?.id.map { String(decoding: $0, as: UTF8.self) }, "a-1")
        XCTAssertNil(Request.parsePlainResolve(Array("resolve a b".utf8)[...]))
    }

    func parse(_ line: String) -> Result<Request, ParseError> { Request.parse(Array(line.utf8)[...]) }

    func testPrometheusFormatIsAStatisticsValueOnly() {
        XCTAssertEqual(parse("statistics format=prometheus"), .success(Request(.statistics, options: [.format: "prometheus"])))
        for line in ["resolve 1.2.3.4 format=prometheus", "show-cache format=prometheus", "statistics format=openmetrics"] {
            guard case .failure(let e) = parse(line) else { return XCTFail("\(line) accepted") }
            XCTAssertEqual(e.code, .badRequest, line)
        }
        XCTAssertEqual(Verb.statistics.synopsis, "statistics [format=text|json|prometheus]")
    }

    func testEveryVerbParsesWithItsOwnArgumentsAndOptionsOnly() {
        for verb in Verb.allCases {
            let args = Array(repeating: "a.example", count: verb.arguments.lowerBound == 0 && verb == .hello ? 1 : verb.arguments.lowerBound)
            let argText = verb == .hello ? ["1"] : args
            var request = Request(verb, argText, id: "v1")
            for option in verb.options { request.options[option] = option.values(on: verb).last ?? (option == .limit ? "5" : "m.example") }
            XCTAssertEqual(parse(try! request.line()), .success(request), verb.rawValue)
            let foreign = RequestOption.allCases.first { !verb.options.contains($0) }!
            guard case .failure(let e) = parse(try! request.line() + " \(foreign.rawValue)=\(foreign.values(on: verb).first ?? "5")") else {
                return XCTFail("\(verb): \(foreign) accepted")
            }
            XCTAssertEqual(e.code, .badRequest)
            XCTAssertEqual(e.id, "v1")
            if verb.arguments.upperBound < 100 {
                let tooMany = Request(verb, Array(repeating: "1", count: verb.arguments.upperBound + 1))
                guard case .failure(let e2) = parse(try! tooMany.line()) else { return XCTFail("\(verb): too many accepted") }
                XCTAssertEqual(e2.code, .badRequest)
            }
        }
        XCTAssertEqual(parse("PING"), .failure(ParseError(code: .unknownVerb, message: "unknown verb \"PING\"", id: nil)))
    }

    func testAdminVerbsAndStateChangingVerbs() {
        XCTAssertEqual(Set(Verb.allCases.filter(\.adminOnly)), [.flushCaches, .revalidate, .resetStatistics])
        XCTAssertEqual(Set(Verb.allCases.filter(\.changesState)), [.flushCaches, .revalidate, .resetStatistics, .reresolve])
        XCTAssertEqual(Verb.resolve.synopsis, "resolve NAME [cache=yes|no] [trace=yes|no] [format=text|json]")
        XCTAssertEqual(Verb.flushCaches.synopsis, "flush-caches [NAME...] [failures=yes|no]")
        XCTAssertEqual(Verb.showCache.synopsis, "show-cache [NAME] [failures=yes|no] [format=text|json] [after=NAME] [limit=N]")
    }

    func testShowCacheLimitIsAPositiveCount() {
        for good in ["1", "1000", "999999999"] {
            XCTAssertEqual(parse("show-cache limit=\(good)"), .success(Request(.showCache, options: [.limit: good])), good)
        }
        for bad in ["0", "-1", "", "x", "1e3", " 5", "1000000000", "+5"] {
            guard case .failure(let e) = parse("show-cache limit=\(Wire.escape(bad))") else { return XCTFail("limit=\(bad) accepted") }
            XCTAssertEqual(e.code, .badRequest, bad)
        }
        XCTAssertEqual(parse("show-cache after=a%20b"), .success(Request(.showCache, options: [.after: "a b"])))
        XCTAssertEqual(parse("show-cache after="), .success(Request(.showCache, options: [.after: ""])))
    }

    /// A name that looks like an option stays a name on the wire.
    func testArgumentsAreEscapedSoTheyNeverReadAsOptions() throws {
        for name in ["id=x", "cache=no", "a b", "100%", "exämple.org", "x\ny"] {
            let line = try Request(.flushCaches, [name]).line()
            XCTAssertEqual(parse(line), .success(Request(.flushCaches, [name])), line)
        }
        XCTAssertEqual(try Request(.flushCaches, ["id=x"]).line(), "flush-caches id%3Dx")
    }

    func testOverLongLinesAreRefusedLocallyAndBatchesFit() throws {
        let name = String(repeating: "a", count: Wire.maxLineBytes - "resolve ".utf8.count)
        XCTAssertEqual(try Request(.resolve, [name]).line().utf8.count, Wire.maxLineBytes)
        XCTAssertThrowsError(try Request(.resolve, [name + "a"]).line())
        let names = (0..<1000).map { "name-\($0).example.org" }
        let batches = try Request.batches(.flushCaches, names: names)
        XCTAssertGreaterThan(batches.count, 1)
        XCTAssertEqual(batches.flatMap(\.arguments), names)
        for b in batches { XCTAssertLessThanOrEqual(try b.line().utf8.count, Wire.maxLineBytes) }
        XCTAssertEqual(try Request.batches(.flushCaches, names: []).map { try $0.line() }, ["flush-caches"])
        XCTAssertThrowsError(try Request.batches(.revalidate, names: ["ok.example", name + "aaaaa"]))
    }

    func testResponseLinesRoundTrip() {
        var b = ResponseLine.Builder("ok", id: "q1")
        b.field("name", "a b=c")
        b.field("n", 3)
        let r = ResponseLine(String(decoding: b.line().dropLast(), as: UTF8.self))
        XCTAssertEqual(r.status, "ok")
        XCTAssertEqual(r.fields.map(\.key), ["id", "name", "n"])
        XCTAssertEqual(r["name"], "a b=c")
        let e = ResponseLine(String(decoding: ResponseLine.error(.tooManyInFlight, "x", id: nil).dropLast(), as: UTF8.self))
        XCTAssertEqual(e.errorCode, .tooManyInFlight)
        XCTAssertTrue(ErrorCode.lineTooLong.closesConnection)
    }
}

final class SocketPathTests: XCTestCase {
    func testOrderExplicitThenEnvironmentThenPackagedWhenPresentThenLocal() {
        let none: (String) -> Bool = { _ in false }
        let packaged: (String) -> Bool = { $0 == SocketPath.packaged }
        XCTAssertEqual(SocketPath.resolve(explicit: "/x.sock", environment: "/env.sock", exists: packaged), "/x.sock")
        XCTAssertEqual(SocketPath.resolve(explicit: nil, environment: "/env.sock", exists: packaged), "/env.sock")
        XCTAssertEqual(SocketPath.resolve(explicit: "", environment: "", exists: packaged), "/run/mxresolved/socket")
        XCTAssertEqual(SocketPath.resolve(explicit: nil, environment: nil, exists: none), "./.mxresolved/mxresolved.sock")
    }
}
