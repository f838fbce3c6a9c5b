import MXCore

/// `GET https://NAME/.well-known/matrix/server` on every address of NAME: what each answered, and
/// whether they agree (a server that reaches another address sees another delegation).
enum WellKnownProbe {
    static let path = "/.well-known/matrix/server"

    /// What one address answered.
    struct Seen: Sendable {
        var address: IPAddress
        var status: Int?
        var error: String?
        /// `m.server` as written in the body, valid or not.
        var rawMServer: String?
        /// Why the body is not a usable delegation (nil: valid or not a 200).
        var problem: String?

        /// What servers would conclude from it: equal keys are the same delegation.
        var outcome: String {
            if let error { return "no answer (\(error))" }
            if status == 200 { return problem.map { "invalid: \($0)" } ?? "m.server \(rawMServer ?? "?")" }
            return "HTTP \(status ?? 0)"
        }
    }

    struct Result: Sendable {
        var findings: [Finding] = []
        var addresses: [Seen] = []
        var hostAddresses: [IPAddress] = []
    }

    static func run(host: String, daemon: DaemonResolver, https: PinnedHTTPS, timeoutMs: Int) -> Result {
        var result = Result()
        let url = "https://\(host)\(path)"
        let started = TLSProbe.monotonicMs()
        // The well-known host's addresses as the daemon sees them (its DNS, its deny list).
        switch daemon.resolve("\(host):443", timeoutMs: timeoutMs) {
        case .failure(let problem):
            result.findings.append(Finding("well_known", url, .warning, "could not ask mxresolved for \(host)'s addresses: \(problem)"))
            return result
        case .success(let json):
            guard let addresses = FederationCheck.answer(json)?.targets.first?.addresses, !addresses.isEmpty else {
                let message = json["error"]?["message"]?.string ?? "no address"
                result.findings.append(Finding("well_known", url, .info, "\(host) has no usable address (\(message)): no well-known, "
                                               + "servers go on to SRV records and port 8448"))
                return result
            }
            result.hostAddresses = addresses
        }
        let left = max(1, timeoutMs - (TLSProbe.monotonicMs() - started))
        let seen = PthreadMutex<[IPAddress: (Seen, Finding)]>([:])
        runConcurrently(result.hostAddresses.map { address in
            { @Sendable in
                let probe = probe(host: host, address: address, https: https, timeoutMs: left)
                seen.withLock { $0[address] = probe }
            }
        })
        let byAddress = seen.withLock { $0 }
        for address in result.hostAddresses {
            guard let (s, f) = byAddress[address] else { continue }
            result.addresses.append(s)
            result.findings.append(f)
        }
        if result.addresses.count > 1 {
            let outcomes = Set(result.addresses.map(\.outcome))
            if outcomes.count > 1 {
                var f = Finding("well_known_consistent", url, .error, "the addresses of \(host) answer differently: "
                                + result.addresses.map { "\($0.address): \($0.outcome)" }.joined(separator: "; "))
                f.mistake = "well_known_split"
                f.hint = "Servers that reach different addresses see different delegations. Serve the same "
                    + "/.well-known/matrix/server on every address of \(host) (IPv4 and IPv6, every load-balanced backend)."
                result.findings.append(f)
            } else {
                result.findings.append(Finding("well_known_consistent", url, .ok,
                                               "all \(result.addresses.count) addresses of \(host) answer the same"))
            }
        }
        return result
    }

    static func probe(host: String, address: IPAddress, https: PinnedHTTPS, timeoutMs: Int) -> (Seen, Finding) {
        let subject = "https://\(host)\(path) [\(address)]"
        var seen = Seen(address: address)
        switch https.get(tlsName: host, port: 443, path: path, address: address, timeoutMs: timeoutMs, maxBodyBytes: 50 * 1024) {
        case .failure(let error):
            seen.error = "\(error)"
            // Without a web server on NAME an SRV-only setup is normal; a broken one deserves a look.
            let verdict: Verdict
            if case .connect = error { verdict = .info } else { verdict = .warning }
            return (seen, Finding("well_known", subject, verdict, "\(error): servers treat this as no well-known and go on to "
                                  + "SRV records and port 8448 (and cache the failure for up to an hour)"))
        case .success(let response):
            seen.status = response.status
            var data: [String: JSONValue] = ["status": .integer(Int64(response.status))]
            var headers: [String: JSONValue] = [:]
            for h in response.headers where ["content-type", "cache-control", "expires", "location", "age"].contains(h.name) {
                headers[h.name] = .string(h.value)
            }
            data["headers"] = .object(headers)
            data["body"] = .string(String(decoding: response.body.prefix(2000), as: UTF8.self))
            let cacheHeaders = ["cache-control", "expires"].compactMap { n in response.values(of: n).first.map { "\(n): \($0)" } }
            let lifetime = cacheHeaders.isEmpty ? "no cache headers (servers keep it 24 h)" : cacheHeaders.joined(separator: ", ")
            if (300...399).contains(response.status) {
                let location = response.values(of: "location").first ?? "(no Location)"
                return (seen, Finding("well_known", subject, .info, "HTTP \(response.status) redirect to \(location) (servers follow it)",
                                      data: .object(data)))
            }
            guard response.status == 200 else {
                let verdict: Verdict = response.status == 404 ? .info : .warning
                return (seen, Finding("well_known", subject, verdict, "HTTP \(response.status): no delegation by well-known; servers go on "
                                      + "to SRV records and port 8448", data: .object(data)))
            }
            seen.rawMServer = (try? JSONValue.parse(response.body))?["m.server"]?.string
            switch WellKnownBody.delegation(from: response.body) {
            case .success(let delegated):
                return (seen, Finding("well_known", subject, .ok, "m.server \(delegated.raw); \(lifetime)", data: .object(data)))
            case .failure(let problem):
                seen.problem = problem.description
                var f = Finding("well_known", subject, .error, "HTTP 200 but unusable, so servers ignore it and go on to SRV records "
                                + "and port 8448: \(problem)", data: .object(data))
                if let raw = seen.rawMServer, raw.contains("://") || raw.contains("/") {
                    f.mistake = "well_known_scheme_or_path"
                    f.hint = "m.server is a server name, hostname[:port] only, with no scheme and no path: write "
                        + "{\"m.server\": \"\(bareServerName(raw))\"}."
                } else {
                    f.hint = "Serve JSON of the form {\"m.server\": \"matrix.\(host):443\"}."
                }
                return (seen, f)
            }
        }
    }

    /// `https://matrix.example.com:443/` -> `matrix.example.com:443`.
    static func bareServerName(_ raw: String) -> String {
        var s = Substring(raw)
        if let r = s.firstRange(of: "://") { s = s[r.upperBound...] }
        if let slash = s.firstIndex(of: "/") { s = s[..<slash] }
        return String(s)
    }
}
