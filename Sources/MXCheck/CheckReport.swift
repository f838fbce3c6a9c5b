import MXCore

/// How one check came out. `error` means federation with the name would not work (or works only
/// by a rule the spec forbids or deprecates); `warning` works today but deserves a look; `info` is
/// shown for understanding and never fails.
public enum Verdict: String, Sendable, Comparable, CaseIterable {
    case ok, info, warning, error

    public static func < (a: Verdict, b: Verdict) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// One check's outcome: what was checked, on what, the verdict, what was seen, and what to do.
public struct Finding: Sendable {
    /// A stable machine name: resolution, srv, well_known, well_known_consistent, connect, tls,
    /// certificate, version, keys, client_discovery.
    public var check: String
    /// What it was about: a URL, `host:port` with the address, or the server name.
    public var subject: String
    public var verdict: Verdict
    public var detail: String
    /// What to change, for the usual mistakes (seed documents); nil when nothing is wrong.
    public var hint: String?
    /// The mistake recognised, when one is (a stable code: cert_base_domain, port_8448_closed, ...).
    public var mistake: String?
    /// Structured data for --json (headers, certificate, keys...).
    public var data: JSONValue?

    public init(_ check: String, _ subject: String, _ verdict: Verdict, _ detail: String, data: JSONValue? = nil) {
        self.check = check
        self.subject = subject
        self.verdict = verdict
        self.detail = detail
        self.data = data
    }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["check": .string(check), "subject": .string(subject),
                                      "verdict": .string(verdict.rawValue), "detail": .string(detail)]
        if let hint { o["hint"] = .string(hint) }
        if let mistake { o["mistake"] = .string(mistake) }
        if let data { o["data"] = data }
        return .object(o)
    }
}

/// Everything `mxresolvectl check NAME` found.
public struct CheckReport: Sendable {
    public var serverName: String
    public var findings: [Finding] = []
    /// The daemon's `resolve NAME cache=no trace=yes format=json` answer, as it came.
    public var resolution: JSONValue?
    public var elapsedMs = 0
    public var timeoutMs = 0

    public init(serverName: String) { self.serverName = serverName }

    /// Federation would work: nothing was judged an error.
    public var federationOK: Bool { !findings.contains { $0.verdict == .error } }

    public func count(_ verdict: Verdict) -> Int { findings.filter { $0.verdict == verdict }.count }

    public var json: JSONValue {
        .object(["server_name": .string(serverName), "federation_ok": .bool(federationOK),
                 "elapsed_ms": .integer(Int64(elapsedMs)), "timeout_ms": .integer(Int64(timeoutMs)),
                 "resolution": resolution ?? .null, "checks": .array(findings.map(\.json)),
                 "mistakes": .array(Array(Set(findings.compactMap(\.mistake))).sorted().map(JSONValue.string))])
    }

    /// The report for a terminal: one line per check, hints under the failing ones, a verdict line.
    public var text: String {
        var lines: [String] = []
        for f in findings {
            let tag = "[\(f.verdict == .ok ? "ok" : f.verdict.rawValue.uppercased())]"
            lines.append("\((tag + String(repeating: " ", count: 10)).prefix(10))\(f.check) \(f.subject): \(f.detail)")
            if let hint = f.hint { lines.append("          hint: \(hint)") }
        }
        let errors = count(.error), warnings = count(.warning)
        let seconds = Double(elapsedMs) / 1000
        let summary = federationOK
            ? "-- federation with \(serverName) would work"
            : "-- federation with \(serverName) would NOT work"
        lines.append("\(summary): \(errors) error\(errors == 1 ? "" : "s"), \(warnings) warning\(warnings == 1 ? "" : "s"), "
                     + "\(findings.count) checks in \(String(format1: seconds)) s.")
        return lines.joined(separator: "\n")
    }
}

extension String {
    /// One decimal, without Foundation.
    init(format1 value: Double) {
        let tenths = Int((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
