import Foundation
import XCTest
import MXCore

/// The loopback test world (scripts/testworld: dnsmasq + nginx + fault servers) for this test
/// process. Started once; the harness's supervisor tears it down when this process exits,
/// however it exits.
struct TestWorld: Sendable {
    let dir: String
    let dnsServer: String
    let caFile: String
    let httpsIP: String
    let faultHTTPSIP: String
    let closedIP: String
    let daemonArgs: [String]

    static let repoRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let standard: TestWorld = {
        do { return try up(scenario: "\(repoRoot)/scripts/scenarios/standard.json", ipBlock: "127.0.50", name: "swift-standard") } catch {
            fatalError("test world failed to start: \(error)")
        }
    }()

    static func up(scenario: String, ipBlock: String, name: String) throws -> TestWorld {
        let dir = "\(repoRoot)/.testworld/\(name)"
        let out = try run("\(repoRoot)/scripts/testworld", ["up", "--dir", dir, "--ip-block", ipBlock,
                                                              "--watch-pid", "\(getpid())", scenario])
        guard let line = out.split(separator: "\n").last, let data = line.data(using: .utf8),
              let j = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw NSError(domain: "testworld", code: 1, userInfo: [NSLocalizedDescriptionKey: "bad output: \(out)"])
        }
        return TestWorld(dir: j["dir"] as! String, dnsServer: j["dns_server"] as! String, caFile: j["ca_file"] as! String,
                         httpsIP: j["https_ip"] as! String, faultHTTPSIP: j["fault_https_ip"] as! String,
                         closedIP: j["closed_ip"] as! String, daemonArgs: j["daemon_args"] as! [String])
    }

    /// Upstream requests seen since the last reset: well-known GETs per host, DNS queries per "name TYPE".
    struct Counts {
        var wellKnown: [String: Int]
        var wellKnownHTTP: [String: Int]
        var dns: [String: Int]
        func dns(_ name: String, _ type: String) -> Int { dns["\(name) \(type)"] ?? 0 }
        func dnsTotal(under suffix: String) -> Int { dns.filter { $0.key.split(separator: " ")[0].hasSuffix(suffix) }.values.reduce(0, +) }
    }

    func counts() throws -> Counts {
        let out = try Self.run("\(Self.repoRoot)/scripts/testworld", ["counts", "--dir", dir])
        let j = try JSONSerialization.jsonObject(with: Data(out.utf8)) as! [String: Any]
        return Counts(wellKnown: j["wellknown"] as? [String: Int] ?? [:], wellKnownHTTP: j["wellknown_http"] as? [String: Int] ?? [:],
                      dns: j["dns"] as? [String: Int] ?? [:])
    }

    func resetCounts() throws { _ = try Self.run("\(Self.repoRoot)/scripts/testworld", ["reset-counts", "--dir", dir]) }

    var policy: IPPolicy { IPPolicy(allowed: [CIDR("127.0.0.0/8")!, CIDR("::1/128")!]) }

    @discardableResult
    static func run(_ exe: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard p.terminationStatus == 0 else {
            throw NSError(domain: "run", code: Int(p.terminationStatus), userInfo: [NSLocalizedDescriptionKey: "\(exe) \(args) failed: \(text)"])
        }
        return text
    }
}
