import MXCore

/// One target address as a remote homeserver uses it: TCP, TLS with the answer's SNI, the
/// certificate for the answer's TLS name, then the version and signed-keys endpoints.
enum TargetProbe {
    struct Outcome: Sendable {
        var host: String
        var port: UInt16
        var address: IPAddress
        var tls: TLSProbeResult
        var findings: [Finding]
        var subject: String { "\(host):\(port) [\(address)]" }
    }

    static func run(serverName: String, host: String, port: UInt16, address: IPAddress, sni: String?, tlsName: String,
                    trust: TrustedCAs, https: PinnedHTTPS, nowMs: Int64, timeoutMs: Int) -> Outcome {
        let started = TLSProbe.monotonicMs()
        let subject = "\(host):\(port) [\(address)]"
        let tls = TLSProbe.run(address: address, port: port, sni: sni, tlsName: tlsName, trust: trust, timeoutMs: timeoutMs)
        var out = Outcome(host: host, port: port, address: address, tls: tls, findings: [])
        guard tls.connected else {
            out.findings.append(Finding("connect", subject, .error, "TCP connection failed: \(tls.connectError ?? "?")"))
            return out
        }
        out.findings.append(Finding("connect", subject, .ok, "TCP connected in \(tls.connectMs ?? 0) ms"))
        guard tls.handshakeDone else {
            var f = Finding("tls", subject, .error, "TLS handshake \(sni.map { "with SNI \($0) " } ?? "without SNI ")failed: "
                            + (tls.handshakeError ?? "?"))
            if tls.handshakeTimedOut {
                f.hint = "Something accepts TCP on \(address) port \(port) but never answers the TLS handshake: a homeserver or reverse "
                    + "proxy that hangs (restart it, look at its load and logs), or a port forward to a service that does not speak TLS."
            }
            out.findings.append(f)
            return out
        }
        let cert = tls.certificate
        let shown = cert.map { "certificate \($0.subject) for \($0.altNames.isEmpty ? "no alt names" : $0.altNames.joined(separator: ", ")), "
            + "issued by \($0.issuer), expires \($0.notAfterText)" } ?? "no certificate"
        guard tls.certificateValid else {
            out.findings.append(Finding("certificate", subject, .error, "not valid for \(tlsName): \(tls.verifyError ?? "?") (\(shown))",
                                        data: cert?.json))
            return out
        }
        out.findings.append(Finding("certificate", subject, .ok, "\(tls.tlsVersion ?? "TLS") \(sni.map { "SNI \($0)" } ?? "no SNI"), "
                                    + "valid for \(tlsName): \(shown)", data: cert?.json))

        let left = { timeoutMs - (TLSProbe.monotonicMs() - started) }
        let budget = left()
        switch https.get(tlsName: tlsName, port: port, path: "/_matrix/federation/v1/version", address: address, timeoutMs: max(1, budget)) {
        case .failure(.timeout):
            out.findings.append(Finding("version", subject, .error, "GET /_matrix/federation/v1/version timed out: no answer within \(budget) ms"))
        case .failure(let error):
            out.findings.append(Finding("version", subject, .error, "GET /_matrix/federation/v1/version failed: \(error)"))
        case .success(let r):
            let server = (try? JSONValue.parse(r.body))?["server"]
            if r.status == 200, let server, server.object != nil {
                out.findings.append(Finding("version", subject, .ok, "\(server["name"]?.string ?? "?") \(server["version"]?.string ?? "?")",
                                            data: server))
            } else {
                out.findings.append(Finding("version", subject, .error, "GET /_matrix/federation/v1/version answered HTTP \(r.status) "
                                            + "without {\"server\": {...}}: \(String(decoding: r.body.prefix(200), as: UTF8.self))"))
            }
        }
        guard left() > 0 else {
            out.findings.append(Finding("keys", subject, .error, "GET /_matrix/key/v2/server not sent: the check's time bound ran out"))
            return out
        }
        switch https.get(tlsName: tlsName, port: port, path: "/_matrix/key/v2/server", address: address, timeoutMs: left()) {
        case .failure(.timeout):
            out.findings.append(Finding("keys", subject, .error, "GET /_matrix/key/v2/server timed out: no answer within the time bound"))
        case .failure(let error):
            out.findings.append(Finding("keys", subject, .error, "GET /_matrix/key/v2/server failed: \(error)"))
        case .success(let r) where r.status != 200:
            out.findings.append(Finding("keys", subject, .error, "GET /_matrix/key/v2/server answered HTTP \(r.status)"))
        case .success(let r):
            let keys = ServerKeys.check(body: r.body, serverName: serverName, nowMs: nowMs)
            if keys.ok {
                let until = keys.validUntilMs.map { "valid for \(($0 - nowMs) / 1000) s more" } ?? ""
                out.findings.append(Finding("keys", subject, .ok, "\(keys.keyIDs.joined(separator: ", ")) signed by \(serverName), "
                                            + "signatures verify, \(until)", data: keys.json))
            } else {
                var f = Finding("keys", subject, .error, keys.problems.joined(separator: "; "), data: keys.json)
                if !keys.matchingServerName, let other = keys.serverName {
                    f.hint = "This address answers for \(other), not \(serverName): the delegation points at another homeserver, "
                        + "or its server_name setting is not \(serverName)."
                }
                out.findings.append(f)
            }
        }
        return out
    }
}
