import MXCore

/// Recognises the usual delegation mistakes (the seed documents admins read) in the findings and
/// attaches what to change. Each mistake has a stable code in `Finding.mistake`.
enum Diagnosis {
    static func apply(to findings: [Finding], serverName: String, answer: FederationCheck.Answer?,
                      targets: [TargetProbe.Outcome], wellKnown: [WellKnownProbe.Seen]) -> [Finding] {
        var out = findings
        let step = answer?.step
        let usedDefaultPort = step == .defaultPort || step == .delegatedDefaultPort
        let srvWithoutWellKnown = step == .matrixFedSRV || step == .legacyMatrixSRV
        let anyTargetFailed = targets.contains { o in o.findings.contains { $0.verdict == .error } }
        let host = (try? ServerName(parsing: serverName)).map { $0.hostForTLS } ?? serverName

        for i in out.indices where out[i].verdict == .error && out[i].hint == nil {
            let f = out[i]
            guard let outcome = targets.first(where: { $0.subject == f.subject }) else { continue }
            switch f.check {
            case "connect":
                let v4Works = targets.contains { $0.host == outcome.host && $0.port == outcome.port && !$0.address.isIPv6 && $0.tls.connected }
                if outcome.address.isIPv6 && v4Works {
                    out[i].mistake = "ipv6_unreachable"
                    out[i].hint = "\(outcome.host) publishes the IPv6 address \(outcome.address), but nothing answers there on port "
                        + "\(outcome.port) while IPv4 works. Servers with IPv6 try it first, and IPv6-only servers cannot reach you at all: "
                        + "make the homeserver or reverse proxy listen on IPv6 and open the firewall for it, or remove the AAAA record."
                } else if outcome.port == 8448 && usedDefaultPort {
                    out[i].mistake = "port_8448_closed"
                    out[i].hint = "Servers use port 8448 because \(step == .delegatedDefaultPort ? "the well-known names no port and no SRV record exists" : "there is no well-known delegation and no SRV record"), "
                        + "and nothing answers there. Open TCP 8448 to the homeserver (firewall, port forwarding, a reverse proxy listening "
                        + "on 8448), or delegate to port 443: serve https://\(host)/.well-known/matrix/server with "
                        + "{\"m.server\": \"\(outcome.host):443\"}."
                } else {
                    out[i].hint = "Nothing answers on \(outcome.address) port \(outcome.port): start the homeserver or reverse proxy there, "
                        + "or open the firewall for this port."
                }
            case "certificate":
                let names = outcome.tls.certificate?.altNames.joined(separator: ", ") ?? "no names"
                let tlsName = answer?.tlsName ?? host
                switch outcome.tls.verifyCode {
                case TLSProbeResult.hostnameMismatch, TLSProbeResult.ipMismatch:
                    if srvWithoutWellKnown && outcome.host.lowercased() != tlsName.lowercased() {
                        out[i].mistake = "cert_base_domain"
                        out[i].hint = "With SRV delegation and no well-known, servers check the certificate on \(outcome.host):\(outcome.port) "
                            + "against \(tlsName) itself, not against \(outcome.host); it is valid only for \(names). Serve a certificate "
                            + "for \(tlsName) on that port (copy it to \(outcome.host) and renew it there too), or delegate with "
                            + "https://\(tlsName)/.well-known/matrix/server {\"m.server\": \"\(outcome.host):\(outcome.port)\"} so that a "
                            + "certificate for \(outcome.host) suffices."
                    } else {
                        out[i].mistake = "cert_name"
                        out[i].hint = "The certificate is valid for \(names) but servers check it against \(tlsName): add \(tlsName) "
                            + "to the certificate, or point the delegation at a name the certificate holds."
                    }
                case TLSProbeResult.expired, TLSProbeResult.notYetValid:
                    let notAfter = outcome.tls.certificate?.notAfterText ?? "?"
                    out[i].mistake = "cert_expired"
                    out[i].hint = (outcome.tls.verifyCode == TLSProbeResult.expired ? "The certificate expired on \(notAfter)"
                                   : "The certificate is not valid yet (is this host's or the server's clock wrong?)")
                        + ": renew it (and reload the server that serves it); check that the renewal job runs."
                case TLSProbeResult.selfSigned, TLSProbeResult.selfSignedInChain, TLSProbeResult.noIssuer, TLSProbeResult.noIssuerLocally, 2:
                    let issuer = outcome.tls.certificate?.issuer ?? "?"
                    out[i].mistake = "cert_untrusted"
                    out[i].hint = "The certificate's issuer \(issuer) is untrusted (\(outcome.tls.verifyError ?? "no trusted CA")): "
                        + "other servers accept only a chain to a public CA. Use a certificate from a public CA and serve the full "
                        + "chain (fullchain.pem, not cert.pem)."
                default:
                    break
                }
            default:
                break
            }
        }

        // The reverse proxy does not serve the well-known: it answers for the name but not the
        // delegation, and the fallback servers then use does not work.
        let proxyAnswered = wellKnown.contains { $0.status == 404 || ($0.status == 200 && $0.problem != nil && $0.rawMServer == nil) }
        if proxyAnswered && usedDefaultPort && anyTargetFailed {
            for i in out.indices where out[i].check == "well_known" && out[i].mistake == nil
                && (out[i].detail.hasPrefix("HTTP 404") || out[i].verdict == .error) {
                out[i].verdict = .error
                out[i].mistake = "well_known_not_served"
                out[i].hint = "The web server for \(host) answers, but not with the delegation, so servers fell back to port 8448, "
                    + "which does not work. Serve it from the reverse proxy, e.g. nginx: location = /.well-known/matrix/server "
                    + "{ default_type application/json; return 200 '{\"m.server\": \"matrix.\(host):443\"}'; } "
                    + "(or serve_server_wellknown: true in Synapse when \(host):443 reaches it)."
            }
        }
        for i in out.indices where out[i].check == "srv" && out[i].verdict == .error && out[i].hint == nil {
            switch out[i].mistake {
            case "legacy_srv_only":
                let prefix = step == .delegatedLegacyMatrixSRV ? "the delegated host" : host
                out[i].hint = "Add a _matrix-fed._tcp record for \(prefix) with the same priority, weight, port and target as the "
                    + "_matrix._tcp one. The spec (v1.8) deprecates _matrix._tcp; servers are free to stop looking it up."
            case "srv_target_cname":
                out[i].hint = "An SRV target must be a name with A/AAAA records itself (RFC 2782, and the spec): point the SRV record "
                    + "at the name the CNAME leads to, or replace the CNAME with A/AAAA records. Synapse follows it, strict servers "
                    + "and the federation tester do not."
            default: break
            }
        }
        return out
    }
}
