/// Step 3's request: `GET https://<hostname>/.well-known/matrix/server`, following redirects here
/// (not in curl) so that every hop's host is resolved by our own DNS client and passes the IP policy.
struct WellKnownFetch: Sendable {
    let run: Run
    let host: String

    static let path = "/.well-known/matrix/server"
    static let redirectStatuses: Set<Int> = [301, 302, 303, 307, 308]
    static let timeoutCode = "wellknown_timeout"

    /// Fetches (following redirects); a temporary failure is tried again after
    /// `CachePolicy.wellKnownRetryDelay`, up to `attempts` fetches in all, as Synapse does for a
    /// name that recently had a valid well-known. A timeout is not: the attempt used its whole
    /// budget, and another would leave steps 4–6 and the kept delegation no time before the deadline.
    func start(attempts: Int = 1, completion: @escaping @Sendable (WellKnownOutcome) -> Void) {
        let url = HTTPSURL(host: host.lowercased(), port: nil, path: Self.path)
        hop(url, visited: []) { outcome in
            guard attempts > 1, case .failed(let code, _, true) = outcome.result, code != Self.timeoutCode, !run.isFinished else {
                completion(outcome)
                return
            }
            run.note("well-known: the delegation was recently valid; trying again (\(attempts - 1) more)")
            run.resolver.scheduler.schedule(afterMilliseconds: Int(CachePolicy.wellKnownRetryDelay * 1000)) {
                if run.isFinished { return }
                start(attempts: attempts - 1, completion: completion)
            }
        }
    }

    private func failed(_ code: String, _ message: String, temporary: Bool) -> WellKnownOutcome {
        run.note("well-known: \(code): \(message)")
        return WellKnownOutcome(result: .failed(code: code, message: message, temporary: temporary), headerLifetime: nil)
    }

    private func hop(_ url: HTTPSURL, visited: [String],
                     completion: @escaping @Sendable (WellKnownOutcome) -> Void) {
        let settings = run.settings
        if visited.contains(url.text) {
            completion(failed("wellknown_redirect_loop", "redirect loop back to \(url.text)", temporary: false))
            return
        }
        if visited.count > settings.wellKnownMaxRedirects {
            completion(failed("wellknown_too_many_redirects", "more than \(settings.wellKnownMaxRedirects) redirects", temporary: false))
            return
        }
        run.lookupAddresses(url.host, isSRVTarget: false) { result in
            if run.isFinished { return }
            let addresses: [ResolvedAddress]
            switch result {
            case .success(let a):
                addresses = a
            case .failure(let f):
                let code = f.code == .addressDenied ? "wellknown_address_denied" : "wellknown_dns"
                // Any DNS failure of the host, NXDOMAIN and NODATA included, is temporary (as in Synapse):
                // a delegated domain whose zone breaks for a moment keeps its delegation. Only our own
                // deny list is permanent, since retrying cannot change it.
                let temporary = f.code != .addressDenied
                completion(failed(code, "\(url.text): \(f.message)", temporary: temporary))
                return
            }
            let request = HTTPSRequest(url: url.text, host: url.host, port: url.port ?? 443,
                                       connectTo: addresses.map(\.address),
                                       maxBodyBytes: settings.wellKnownMaxBodyBytes,
                                       connectTimeoutMs: settings.wellKnownConnectTimeoutMs,
                                       totalTimeoutMs: settings.wellKnownTotalTimeoutMs)
            run.httpsGet(request) { result in
                switch result {
                case .failure(let error):
                    let code: String
                    switch error {
                    case .connect: code = "wellknown_connect"
                    case .tls: code = "wellknown_tls"
                    case .timeout: code = Self.timeoutCode
                    case .bodyTooLarge: code = "wellknown_too_large"
                    case .other: code = "wellknown_fetch"
                    }
                    // Synapse counts an oversized body as temporary too; all transport errors may heal.
                    completion(failed(code, "GET \(url.text): \(error)", temporary: true))
                case .success(let response):
                    handle(response, url: url, visited: visited + [url.text], completion: completion)
                }
            }
        }
    }

    private func handle(_ response: HTTPSResponse, url: HTTPSURL, visited: [String],
                        completion: @escaping @Sendable (WellKnownOutcome) -> Void) {
        if Self.redirectStatuses.contains(response.status) {
            guard let location = response.values(of: "location").last, !location.isEmpty else {
                completion(failed("wellknown_bad_redirect", "\(response.status) from \(url.text) without a Location", temporary: false))
                return
            }
            switch url.resolving(location) {
            case .success(let next):
                run.note("well-known: GET \(url.text) -> \(response.status) to \(next.text)")
                hop(next, visited: visited, completion: completion)
            case .failure(let problem):
                completion(failed(problem.code, "\(url.text) redirects to \(location.prefix(200)): \(problem.message)", temporary: false))
            }
            return
        }
        guard response.status == 200 else {
            // "non-200 response … skip to step 4"; 5xx may heal, anything else is the server's answer.
            completion(failed("wellknown_http_\(response.status)", "GET \(url.text) returned HTTP \(response.status)",
                              temporary: (500...599).contains(response.status)))
            return
        }
        switch WellKnownBody.delegation(from: response.body) {
        case .success(let delegated):
            let lifetime = CachePolicy.headerLifetime(response.headers, now: run.settings.now())
            run.note("well-known: GET \(url.text) -> 200 m.server=\(delegated.raw)"
                     + (lifetime.map { " (cache headers: \(Int($0)) s)" } ?? " (no cache headers)"))
            completion(WellKnownOutcome(result: .delegated(delegated.raw), headerLifetime: lifetime))
        case .failure(let problem):
            completion(failed(problem.code, "GET \(url.text): \(problem)", temporary: false))
        }
    }
}

/// The small part of URL handling redirects need: https only, a host, an optional port, a path.
struct HTTPSURL: Sendable, Hashable {
    var host: String
    var port: UInt16?
    var path: String

    var text: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return "https://\(h)\(port.map { ":\($0)" } ?? "")\(path)"
    }

    struct Problem: Error {
        var code: String
        var message: String
    }

    /// Resolves a Location header (absolute, scheme-relative, absolute-path or relative) against self.
    func resolving(_ location: String) -> Result<HTTPSURL, Problem> {
        let trimmed = location.trimmingSpaces
        if let schemeEnd = trimmed.range(of: "://") {
            let scheme = trimmed[..<schemeEnd.lowerBound].lowercased()
            guard scheme == "https" else {
                return .failure(Problem(code: "wellknown_redirect_not_https", message: "only https redirects are followed, not \(scheme)"))
            }
            return Self.parseAuthorityAndPath(String(trimmed[schemeEnd.upperBound...]))
        }
        if trimmed.hasPrefix("//") {
            return Self.parseAuthorityAndPath(String(trimmed.dropFirst(2)))
        }
        if trimmed.hasPrefix("/") {
            return .success(HTTPSURL(host: host, port: port, path: trimmed))
        }
        let base = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        return .success(HTTPSURL(host: host, port: port, path: base + "/" + trimmed))
    }

    static func parseAuthorityAndPath(_ rest: String) -> Result<HTTPSURL, Problem> {
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = String(rest[..<slash])
        var path = String(rest[slash...])
        if path.isEmpty || !path.hasPrefix("/") { path = "/" + path }
        if authority.contains("@") {
            return .failure(Problem(code: "wellknown_bad_redirect", message: "credentials in a redirect URL are refused"))
        }
        guard let name = try? ServerName(parsing: authority) else {
            return .failure(Problem(code: "wellknown_bad_redirect", message: "redirect host '\(authority.prefix(100))' is not a valid host"))
        }
        return .success(HTTPSURL(host: name.hostForTLS.lowercased(), port: name.port, path: path))
    }
}

extension String {
    /// The string without leading and trailing spaces and tabs.
    public var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
