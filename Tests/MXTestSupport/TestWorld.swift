import Foundation
import MXCore
import MXAdapters

/// A loopback test world (scripts/testworld: dnsmasq + nginx + fault servers) for this test
/// process. The harness's supervisor tears it down when this process exits, however it exits.
public struct TestWorld: Sendable {
    public let dir: String
    public let dnsServer: String
    public let faultDNSServer: String
    public let caFile: String
    public let httpsIP: String
    public let faultHTTPSIP: String
    public let closedIP: String
    /// DNS servers that answer SERVFAIL / REFUSED to everything (fail-over tests).
    public let servfailDNSServer: String
    public let refusedDNSServer: String
    /// The world's HTTP CONNECT proxy (`http://IP:3128`), its log of CONNECT targets, and the
    /// world's own hosts(5) file.
    public let proxy: String
    public var proxyLog: String { "\(dir)/proxy.log" }
    /// The proxy's log so far, one JSON object a line.
    public func proxyLogLines() -> [String] {
        ((try? String(contentsOfFile: proxyLog, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }
    public let hostsFile: String
    /// The daemon flags that point it at this world.
    public let daemonArgs: [String]

    /// `daemonArgs` with these DNS servers, asked in this order, instead of the world's.
    public func daemonArgs(dnsServers: [String]) -> [String] {
        var rest: [String] = []
        var i = 0
        while i < daemonArgs.count {
            if daemonArgs[i] == "--dns-server" { i += 2; continue }
            rest.append(daemonArgs[i])
            i += 1
        }
        return dnsServers.flatMap { ["--dns-server", $0] } + rest
    }

    public static let repoRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The standard scenario on 127.0.50.0/24, shared by every test that needs it; started once.
    public static let standard: TestWorld = {
        do { return try up(scenario: "\(repoRoot)/scripts/scenarios/standard.json", ipBlock: "127.0.50", name: "swift-standard") } catch {
            fatalError("test world failed to start: \(error)")
        }
    }()

    /// Starts the world of a scenario file on the /24 `ipBlock` (one block per world: they run in parallel).
    public static func up(scenario: String, ipBlock: String, name: String) throws -> TestWorld {
        let dir = "\(repoRoot)/.testworld/\(name)"
        let out = try run(["up", "--dir", dir, "--ip-block", ipBlock, "--watch-pid", "\(getpid())", scenario])
        guard let line = out.split(separator: "\n").last, let data = line.data(using: .utf8),
              let j = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TestSupportError("testworld up: bad output: \(out)")
        }
        return TestWorld(dir: j["dir"] as! String, dnsServer: j["dns_server"] as! String, faultDNSServer: j["fault_dns_server"] as! String,
                         caFile: j["ca_file"] as! String, httpsIP: j["https_ip"] as! String, faultHTTPSIP: j["fault_https_ip"] as! String,
                         closedIP: j["closed_ip"] as! String, servfailDNSServer: j["servfail_dns_server"] as! String,
                         refusedDNSServer: j["refused_dns_server"] as! String, proxy: j["proxy"] as! String,
                         hostsFile: j["hosts_file"] as! String, daemonArgs: j["daemon_args"] as! [String])
    }

    /// Starts the world of a scenario given as JSON text.
    public static func up(scenarioJSON: String, ipBlock: String, name: String) throws -> TestWorld {
        try FileManager.default.createDirectory(atPath: "\(repoRoot)/.testworld", withIntermediateDirectories: true)
        let path = "\(repoRoot)/.testworld/\(name).scenario.json"
        try scenarioJSON.write(toFile: path, atomically: true, encoding: .utf8)
        return try up(scenario: path, ipBlock: ipBlock, name: name)
    }

    /// Stops the servers now, before the process exits.
    public func down() { _ = try? Self.run(["down", "--dir", dir]) }

    public var httpsAddress: IPAddress { IPAddress(httpsIP)! }
    public var closedAddress: IPAddress { IPAddress(closedIP)! }

    /// The world's addresses are loopback ones, which the default policy denies.
    public var policy: IPPolicy { IPPolicy(allowed: [CIDR("127.0.0.0/8")!, CIDR("::1/128")!]) }

    /// A network backend's settings for this world: its DNS server and CA, short DNS timeouts.
    public var networkConfig: NetworkConfig {
        var c = NetworkConfig()
        c.dnsServers = [dnsServer]
        c.dnsTimeoutMs = 300
        c.dnsTries = 2
        c.extraCAFile = caFile
        c.userAgent = "mxresolved-tests"
        return c
    }

    /// Upstream requests seen since the last reset: well-known GETs per host, DNS queries per "name TYPE".
    public struct Counts {
        public var wellKnown: [String: Int]
        public var wellKnownHTTP: [String: Int]
        public var dns: [String: Int]
        public func dns(_ name: String, _ type: String) -> Int { dns["\(name) \(type)"] ?? 0 }
        public func dnsTotal(under suffix: String) -> Int { dns.filter { $0.key.split(separator: " ")[0].hasSuffix(suffix) }.values.reduce(0, +) }
    }

    public func counts() throws -> Counts {
        let out = try Self.run(["counts", "--dir", dir])
        let j = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        return Counts(wellKnown: j["wellknown"] as? [String: Int] ?? [:], wellKnownHTTP: j["wellknown_http"] as? [String: Int] ?? [:],
                      dns: j["dns"] as? [String: Int] ?? [:])
    }

    public func resetCounts() throws { _ = try Self.run(["reset-counts", "--dir", dir]) }

    /// Runs scripts/testworld; its stdout, or an error with what it printed.
    @discardableResult
    static func run(_ args: [String]) throws -> String {
        let (status, out, err) = try runCommand("\(repoRoot)/scripts/testworld", args)
        guard status == 0 else { throw TestSupportError("scripts/testworld \(args.joined(separator: " ")) failed (\(status)): \(out)\(err)") }
        return out
    }
}
