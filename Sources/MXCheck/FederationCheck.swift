import MXCore

/// `mxresolvectl check NAME`: the daemon's resolution of NAME, then, from this host, what a
/// remote homeserver does with the answer, every step judged (see docs/check.md).
public struct FederationCheck: Sendable {
    public var serverName: String
    public var timeoutMs: Int
    public var trust: TrustedCAs
    public var daemon: DaemonResolver
    public var nowMs: @Sendable () -> Int64

    public init(serverName: String, timeoutMs: Int, trust: TrustedCAs, daemon: DaemonResolver,
                nowMs: @escaping @Sendable () -> Int64) {
        self.serverName = serverName
        self.timeoutMs = timeoutMs
        self.trust = trust
        self.daemon = daemon
        self.nowMs = nowMs
    }

    /// What the daemon answered, in the shape the checks use.
    struct Answer {
        var step: ResolutionStep
        var targets: [(host: String, port: UInt16, addresses: [IPAddress])]
        var tlsName: String
        var sni: String?
        var hostHeader: String
        var warnings: [String]
        var trace: [String]
    }

    public func run() -> CheckReport {
        let started = TLSProbe.monotonicMs()
        let deadline = started + timeoutMs
        var report = CheckReport(serverName: serverName)
        report.timeoutMs = timeoutMs
        let findings = PthreadMutex<[Finding]>([])
        @Sendable func add(_ f: Finding) { findings.withLock { $0.append(f) } }
        @Sendable func remaining() -> Int { max(1, deadline - TLSProbe.monotonicMs()) }

        let name: ServerName
        do { name = try ServerName(parsing: serverName) } catch {
            add(Finding("resolution", serverName, .error, "'\(serverName.prefix(200))' is not a valid server name: \(error)"))
            report.findings = findings.withLock { $0 }
            return report
        }

        // 1. The daemon's resolution, afresh, with its trail.
        let resolved = daemon.resolve(serverName, timeoutMs: remaining())
        var answer: Answer?
        switch resolved {
        case .failure(let problem):
            add(Finding("resolution", serverName, .error, "could not ask mxresolved: \(problem)"))
        case .success(let json):
            report.resolution = json
            answer = Self.answer(json)
            add(Self.resolutionFinding(json, answer: answer, serverName: serverName))
            if let answer { Self.srvFindings(answer, serverName: serverName).forEach(add) }
        }

        let https: PinnedHTTPS
        do { https = try PinnedHTTPS(trust: trust) } catch {
            add(Finding("tls", serverName, .error, "cannot set up HTTPS with the trusted CAs: \(error)"))
            report.findings = findings.withLock { $0 }
            return report
        }

        // 2. The well-known on every address of its host, and 3. every target address, at once.
        var jobs: [@Sendable () -> Void] = []
        let wellKnown = PthreadMutex<[WellKnownProbe.Seen]>([])
        if case .dns(let host) = name.host, name.port == nil {
            let daemon = self.daemon
            jobs.append {
                let seen = WellKnownProbe.run(host: host, daemon: daemon, https: https, timeoutMs: remaining())
                wellKnown.withLock { $0 = seen.addresses }
                seen.findings.forEach(add)
                ClientDiscovery.run(host: host, addresses: seen.hostAddresses, daemon: daemon, https: https,
                                    timeoutMs: remaining()).forEach(add)
            }
        }
        let targetResults = PthreadMutex<[TargetProbe.Outcome]>([])
        if let answer {
            let (serverName, trust, now) = (self.serverName, self.trust, self.nowMs)
            for target in answer.targets {
                for address in target.addresses {
                    jobs.append {
                        let outcome = TargetProbe.run(serverName: serverName, host: target.host, port: target.port, address: address,
                                                      sni: answer.sni, tlsName: answer.tlsName, trust: trust, https: https,
                                                      nowMs: now(), timeoutMs: remaining())
                        targetResults.withLock { $0.append(outcome) }
                    }
                }
            }
        }
        runConcurrently(jobs)

        // Targets in the answer's order, addresses in the order the daemon gave them.
        var ordered: [TargetProbe.Outcome] = []
        let outcomes = targetResults.withLock { $0 }
        for target in answer?.targets ?? [] {
            for address in target.addresses {
                if let o = outcomes.first(where: { $0.host == target.host && $0.port == target.port && $0.address == address }) {
                    ordered.append(o)
                }
            }
        }
        var all = findings.withLock { $0 }
        all += ordered.flatMap(\.findings)
        report.findings = Diagnosis.apply(to: all, serverName: serverName, answer: answer, targets: ordered,
                                          wellKnown: wellKnown.withLock { $0 })
        report.elapsedMs = TLSProbe.monotonicMs() - started
        return report
    }

    static func answer(_ json: JSONValue) -> Answer? {
        guard json["ok"]?.bool == true, let step = json["step"]?.string.flatMap(ResolutionStep.init(rawValue:)) else { return nil }
        let targets = (json["targets"]?.array ?? []).compactMap { t -> (host: String, port: UInt16, addresses: [IPAddress])? in
            guard let host = t["host"]?.string, let port = t["port"]?.integer.flatMap({ UInt16(exactly: $0) }) else { return nil }
            return (host, port, (t["addresses"]?.array ?? []).compactMap { $0.string.flatMap { IPAddress($0) } })
        }
        return Answer(step: step, targets: targets, tlsName: json["tls_server_name"]?.string ?? "",
                      sni: json["sni"]?.string, hostHeader: json["host_header"]?.string ?? "",
                      warnings: (json["warnings"]?.array ?? []).compactMap(\.string),
                      trace: (json["trace"]?.array ?? []).compactMap(\.string))
    }

    static func resolutionFinding(_ json: JSONValue, answer: Answer?, serverName: String) -> Finding {
        let trace = JSONValue.array(json["trace"]?.array ?? [])
        guard let answer else {
            let code = json["error"]?["code"]?.string ?? "error"
            let message = json["error"]?["message"]?.string ?? json.text
            return Finding("resolution", serverName, .error, "mxresolved could not resolve it: \(code): \(message)",
                           data: .object(["trace": trace]))
        }
        let targets = answer.targets.map { t in
            "\(t.host):\(t.port) [\(t.addresses.map(\.description).joined(separator: " "))]"
        }.joined(separator: ", ")
        return Finding("resolution", serverName, .ok,
                       "step \(answer.step.rawValue) (\(answer.step.words)) -> \(targets); Host \(answer.hostHeader), "
                       + "certificate for \(answer.tlsName), \(answer.sni.map { "SNI \($0)" } ?? "no SNI")",
                       data: .object(["trace": trace, "lifetimes": json["lifetimes"] ?? .null]))
    }

    /// The SRV records consulted, from the trail, and what the spec says of the ones used.
    static func srvFindings(_ answer: Answer, serverName: String) -> [Finding] {
        var out: [Finding] = []
        for line in answer.trace where line.hasPrefix("SRV ") {
            let body = line.dropFirst(4)
            guard let colon = body.firstIndex(of: ":") else { continue }
            out.append(Finding("srv", String(body[..<colon]), .info, String(body[body.index(after: colon)...]).trimmingSpaces))
        }
        switch answer.step {
        case .legacyMatrixSRV, .delegatedLegacyMatrixSRV:
            var f = Finding("srv", serverName, .error, "only the deprecated _matrix._tcp record exists; there is no _matrix-fed._tcp record")
            f.mistake = "legacy_srv_only"
            out.append(f)
        default: break
        }
        for warning in answer.trace where warning.hasPrefix("warning: SRV target") {
            var f = Finding("srv", serverName, .error, String(warning.dropFirst("warning: ".count)))
            f.mistake = "srv_target_cname"
            out.append(f)
        }
        return out
    }
}
