import MXCore

/// Client discovery (`/.well-known/matrix/client`, Client-Server API): not federation, so only
/// ever information, but the same admins get it wrong in the same place.
enum ClientDiscovery {
    static func run(host: String, addresses: [IPAddress], daemon: DaemonResolver, https: PinnedHTTPS, timeoutMs: Int) -> [Finding] {
        let url = "https://\(host)/.well-known/matrix/client"
        guard let address = addresses.first else { return [] }
        let started = TLSProbe.monotonicMs()
        let body: [UInt8]
        switch https.get(tlsName: host, port: 443, path: "/.well-known/matrix/client", address: address, timeoutMs: timeoutMs) {
        case .failure(let error):
            return [Finding("client_discovery", url, .info, "\(error): clients must be given the homeserver URL by hand")]
        case .success(let r) where r.status != 200:
            return [Finding("client_discovery", url, .info, "HTTP \(r.status): clients must be given the homeserver URL by hand")]
        case .success(let r):
            body = r.body
        }
        guard let base = (try? JSONValue.parse(body))?["m.homeserver"]?["base_url"]?.string else {
            return [Finding("client_discovery", url, .info, "no m.homeserver.base_url in the body; clients cannot discover the homeserver")]
        }
        var rest = Substring(base)
        guard rest.hasPrefix("https://") else {
            return [Finding("client_discovery", url, .info, "m.homeserver.base_url \(base) is not an https:// URL")]
        }
        rest = rest.dropFirst("https://".count)
        let authority = String(rest.prefix { $0 != "/" })
        let path = rest.dropFirst(authority.count).drop { $0 == "/" }
        guard let name = try? ServerName(parsing: authority) else {
            return [Finding("client_discovery", url, .info, "m.homeserver.base_url \(base) has no valid host")]
        }
        let port = name.port ?? 443
        let left = { max(1, timeoutMs - (TLSProbe.monotonicMs() - started)) }
        guard let json = try? daemon.resolve("\(name.hostForTLS):\(port)", timeoutMs: left()).get(),
              let target = FederationCheck.answer(json)?.targets.first, let first = target.addresses.first else {
            return [Finding("client_discovery", url, .info, "base_url \(base): its host has no usable address")]
        }
        let versionsPath = (path.isEmpty ? "" : "/" + path.split(separator: "/").joined(separator: "/")) + "/_matrix/client/versions"
        switch https.get(tlsName: name.hostForTLS, port: port, path: versionsPath, address: first, timeoutMs: left()) {
        case .failure(let error):
            return [Finding("client_discovery", url, .info, "base_url \(base): GET \(versionsPath) failed: \(error)")]
        case .success(let r):
            let versions = (try? JSONValue.parse(r.body))?["versions"]?.array?.compactMap(\.string) ?? []
            if r.status == 200, !versions.isEmpty {
                return [Finding("client_discovery", url, .ok, "base_url \(base) answers /_matrix/client/versions: "
                                + versions.suffix(3).joined(separator: ", "))]
            }
            return [Finding("client_discovery", url, .info, "base_url \(base): /_matrix/client/versions answered HTTP \(r.status) "
                            + "without a versions list")]
        }
    }
}
