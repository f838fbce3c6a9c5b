import XCTest
import MXCore
import MXAdapters
@testable import MXResolve

/// The Prometheus text exposition and the metrics endpoint's HTTP, without a daemon.
final class PrometheusTextTests: XCTestCase {
    func testSecondsAreExactDecimals() {
        XCTAssertEqual(PrometheusText.seconds(nanoseconds: 0), "0")
        XCTAssertEqual(PrometheusText.seconds(nanoseconds: 10_000), "0.00001")
        XCTAssertEqual(PrometheusText.seconds(nanoseconds: 1_500_000), "0.0015")
        XCTAssertEqual(PrometheusText.seconds(nanoseconds: 2_500_000_000), "2.5")
        XCTAssertEqual(PrometheusText.seconds(nanoseconds: 600_000_000_001), "600.000000001")
    }

    func testEscapingAndNames() {
        var p = PrometheusText()
        p.family("mxresolved_x_total", .counter, help: "a \\ b\nc")
        p.sample("mxresolved_x_total", [("code", "a\"b\\c\nd")], 3)
        XCTAssertEqual(p.text, """
        # HELP mxresolved_x_total a \\\\ b\\nc
        # TYPE mxresolved_x_total counter
        mxresolved_x_total{code="a\\"b\\\\c\\nd"} 3

        """)
        XCTAssertTrue(PrometheusText.isValidName("mxresolved_a:b_1"))
        for bad in ["", "1abc", "a-b", "a b", "é"] { XCTAssertFalse(PrometheusText.isValidName(bad), bad) }
    }

    func testHistogramBucketsAreCumulativeWithSumAndCount() {
        let h = LatencyHistogram()
        for ns in [5_000, 10_000, 10_001, 70_000, 3_000_000, 700_000_000_000] { h.record(nanoseconds: ns) }
        var p = PrometheusText()
        p.histogram("mxresolved_t_seconds", help: "t", bounds: LatencyHistogram.bounds, series: [([("cache", "hit")], h.sinceStart)])
        let lines = p.text.split(separator: "\n").map(String.init)
        func bucket(_ le: String) -> String? {
            lines.first { $0.hasPrefix("mxresolved_t_seconds_bucket{cache=\"hit\",le=\"\(le)\"} ") }.map { String($0.split(separator: " ").last!) }
        }
        XCTAssertEqual(bucket("0.00001"), "2", "le is inclusive: 5 µs and 10 µs")
        XCTAssertEqual(bucket("0.000025"), "3")
        XCTAssertEqual(bucket("0.0001"), "4")
        XCTAssertEqual(bucket("0.005"), "5")
        XCTAssertEqual(bucket("600"), "5", "700 s is above every bound")
        XCTAssertEqual(bucket("+Inf"), "6")
        XCTAssertTrue(lines.contains("mxresolved_t_seconds_count{cache=\"hit\"} 6"), p.text)
        XCTAssertTrue(lines.contains("mxresolved_t_seconds_sum{cache=\"hit\"} 700.003095001"), p.text)
        let cumulative = lines.filter { $0.contains("_bucket") }.map { Int($0.split(separator: " ").last!)! }
        XCTAssertEqual(cumulative, cumulative.sorted(), "never decreasing")
        XCTAssertEqual(cumulative.count, LatencyHistogram.bounds.count + 1)
    }

    func testResetMovesTheStatisticsViewButNotTheCountersSinceStart() {
        let stats = Statistics()
        stats.requests.add(5)
        stats.hits.add(3)
        stats.count(step: .delegatedMatrixFedSRV)
        stats.count(failure: .dnsServfail)
        stats.hitLatency.record(nanoseconds: 40_000)
        stats.reset()
        stats.requests.add()
        let view = Dictionary(stats.snapshot(extra: []), uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(view["requests"], 1)
        XCTAssertEqual(view["hits"], 0)
        XCTAssertNil(view["step_3_3"], "zero since the reset")
        XCTAssertEqual(view["hit_latency_p50_us"], 0)
        XCTAssertEqual(stats.requests.sinceStart, 6)
        XCTAssertEqual(stats.hitLatency.sinceStart.count, 1)
        let text = metrics(stats).text
        for line in ["mxresolved_requests_total 6", "mxresolved_resolve_requests_total{cache=\"hit\"} 3",
                     "mxresolved_resolutions_total{step=\"3.3\"} 1", "mxresolved_resolution_failures_total{code=\"dns_servfail\"} 1",
                     "mxresolved_resolve_duration_seconds_count{cache=\"hit\"} 1",
                     "mxresolved_dns_queries_total{result=\"servfail\"} 2", "mxresolved_wellknown_fetches_total{result=\"tls\"} 1",
                     "mxresolved_dns_failovers_total 3", "mxresolved_cache_entries 7", "mxresolved_cache_evictions_total 4"] {
            XCTAssertTrue(text.split(separator: "\n").contains(Substring(line)), "\(line) in\n\(text)")
        }
    }

    func testEveryFamilyIsDocumentedTypedAndNamedByConvention() {
        let lines = metrics(Statistics()).text.split(separator: "\n").map(String.init)
        var typed: [String: String] = [:]
        var helped: Set<String> = []
        for line in lines {
            let words = line.split(separator: " ", maxSplits: 3).map(String.init)
            if line.hasPrefix("# HELP ") { helped.insert(words[2]); continue }
            if line.hasPrefix("# TYPE ") { typed[words[2]] = words[3]; continue }
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            XCTAssertTrue(name.hasPrefix("mxresolved_"), line)
            let family = ["_bucket", "_sum", "_count"].reduce(name) { n, s in typed[n] == nil && n.hasSuffix(s) ? String(n.dropLast(s.count)) : n }
            guard let type = typed[family] else { XCTFail("sample before its TYPE: \(line)"); continue }
            XCTAssertTrue(helped.contains(family), "HELP of \(family)")
            if type == "counter" { XCTAssertTrue(name.hasSuffix("_total"), line) }
            if type != "counter" { XCTAssertFalse(name.hasSuffix("_total") && type == "gauge", line) }
        }
        XCTAssertEqual(typed["mxresolved_resolve_duration_seconds"], "histogram")
        XCTAssertEqual(lines.filter { $0.hasPrefix("mxresolved_resolutions_total{") }.count, ResolutionStep.allCases.count,
                       "every step present from the start")
        XCTAssertEqual(lines.filter { $0.hasPrefix("mxresolved_resolution_failures_total{") }.count, FailureCode.allCases.count)
    }

    func metrics(_ stats: Statistics) -> DaemonMetrics {
        var network = NetworkCounters()
        network.dnsServfail = 2
        network.httpsTLS = 1
        network.dnsFailovers = 3
        return DaemonMetrics(stats: stats, network: network,
                             cache: CacheStoreStatistics(entries: 7, usedBytes: 4096, capacityBytes: 1 << 20, evictions: 4),
                             cacheMemoryEntries: 7, resolutionsInflight: 0)
    }

    // MARK: the endpoint's HTTP

    func testRequestHeadScan() {
        XCTAssertEqual(MetricsHTTP.scan(Array("GET /metrics HTTP/1.1\r\nHost: x\r\n".utf8), limit: 100), .incomplete)
        XCTAssertEqual(MetricsHTTP.scan(Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8), limit: 100), .complete(end: 34))
        XCTAssertEqual(MetricsHTTP.scan(Array("GET /metrics HTTP/1.0\n\n".utf8), limit: 100), .complete(end: 23))
        XCTAssertEqual(MetricsHTTP.scan(Array(repeating: 0x41, count: 100), limit: 100), .tooLarge)
    }

    func answer(_ request: String) -> (status: String, head: String, body: String) {
        let text = String(decoding: MetricsHTTP.response(to: Array(request.utf8)[...], metrics: { "mxresolved_x 1\n" }), as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        return (text.components(separatedBy: "\r\n")[0], parts[0], parts.dropFirst().joined())
    }

    func testOnlyGetAndHeadOfMetricsAreServed() {
        let ok = answer("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(ok.status, "HTTP/1.1 200 OK")
        XCTAssertTrue(ok.head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"), ok.head)
        XCTAssertTrue(ok.head.contains("Content-Length: 15"), ok.head)
        XCTAssertTrue(ok.head.contains("Connection: close"), ok.head)
        XCTAssertEqual(ok.body, "mxresolved_x 1\n")
        XCTAssertEqual(answer("GET /metrics?x=1 HTTP/1.0\r\n\r\n").status, "HTTP/1.1 200 OK")
        let head = answer("HEAD /metrics HTTP/1.1\r\n\r\n")
        XCTAssertEqual(head.status, "HTTP/1.1 200 OK")
        XCTAssertTrue(head.head.contains("Content-Length: 15"), head.head)
        XCTAssertEqual(head.body, "")
        let post = answer("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        XCTAssertEqual(post.status, "HTTP/1.1 405 Method Not Allowed")
        XCTAssertTrue(post.head.contains("Allow: GET, HEAD"), post.head)
        XCTAssertEqual(answer("GET / HTTP/1.1\r\n\r\n").status, "HTTP/1.1 404 Not Found")
        XCTAssertEqual(answer("GET /metrics HTTP/2.0\r\n\r\n").status, "HTTP/1.1 505 HTTP Version Not Supported")
        for garbage in ["\r\n\r\n", "GET\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n", "G(T /metrics HTTP/1.1\r\n\r\n", "GET /metrics FTP\r\n\r\n"] {
            XCTAssertEqual(answer(garbage).status, "HTTP/1.1 400 Bad Request", garbage)
        }
    }

    func testListenAddressNeedsAnIPAndAPort() {
        XCTAssertEqual(DaemonConfig.parseListenAddress("127.0.0.1:9367")?.port, 9367)
        XCTAssertEqual(DaemonConfig.parseListenAddress("[::1]:9367")?.host, "::1")
        for bad in ["127.0.0.1", "localhost:9367", "::1:9367", "127.0.0.1:0", "127.0.0.1:70000", "[::1]", ":9367"] {
            XCTAssertNil(DaemonConfig.parseListenAddress(bad), bad)
        }
        var config = DaemonConfig()
        XCTAssertThrowsError(try config.set("metrics-listen", "localhost:9367"))
        XCTAssertNoThrow(try config.set("metrics-listen", "127.0.0.1:9367"))
        XCTAssertEqual(config.metricsListen, "127.0.0.1:9367")
        XCTAssertNil(DaemonConfig().metricsListen, "off by default")
    }
}
