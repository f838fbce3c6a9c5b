
/// Step 3's request: `GET https://<hostname>/.well-known/matrix/server`, following redirects here
/// (not in curl) so that every hop's host is resolved by our own DNS client and passes the IP policy.
/// The whole phase, every hop with its DNS lookup, has one budget (`ResolverSettings.wellKnownBudgetMs`)
/// that leaves steps 4–6 their time inside the resolution deadline.
struct WellKnownFetch: Sendable {
    let run: Run
    let host: String

    static let path = "/.well-known/matrix/server"
    static let redirectStatuses: Set<Int> = [301, 302, 303, 307, 308]
    static let timeoutCode = "wellknown_timeout"

    /// Fetches (following redirects) within the phase's budget; a temporary failure is tried again
    /// after `CachePolicy.wellKnownRetryDelay`, up to `attempts` fetches in all, as Synapse does for
    /// a name that recently had a valid well-known, all inside the same budget. A timeout is not:
    /// the attempt used its whole budget, and another would leave steps 4–6 and the kept
    /// delegation no time before the deadline.
    func start(attempts: Int = 1, completion: @escaping @Sendable (WellKnownOutcome) -> Void) {
        let budget = run.settings.wellKnownBudgetMs
        let deadline = run.settings.now() + Double(budget) / 1000
        let once = PthreadMutex<(@Sendable (WellKnownOutcome) -> Void)?>(completion)
        let take: @Sendable () -> (@Sendable (WellKnownOutcome) -> Void)? = { once.withLock { c in defer { c = nil }; return c } }
        let budgetTimer = run.resolver.scheduler.schedule(afterMilliseconds: budget) { [self] in
            // Only a phase still running ends here (and says so in the trace).
            take()?(failed(Self.timeoutCode, "the well-known phase (every redirect) took longer than its \(budget) ms", temporary: true))
        }
        // It holds the run; the run's end lets go of it.
        run.cancelWhenDone(budgetTimer)
        attempt(attempts, deadline: deadline) { take()?($0) }
    }

    private func attempt(_ attempts: Int, deadline: Double, completion: @escaping @Sendable (WellKnownOutcome) -> Void) {
        let url = HTTPSURL(host: host.lowercased(), port: nil, path: Self.path)
        hop(url, visited: [], deadline: deadline) { outcome in
            guard attempts > 1, case .failed(let code, _, true) = outcome.result, code != Self.timeoutCode, !run.isFinished else {
                completion(outcome)
                return
            }
            run.note("well-known: the delegation was recently valid; trying again (\(attempts - 1) more)")
            run.resolver.scheduler.schedule(afterMilliseconds: Int(CachePolicy.wellKnownRetryDelay * 1000)) {
                if run.isFinished { return }
                attempt(attempts - 1, deadline: deadline, completion: completion)
            }
        }
    }

    private func failed(_ code: String, _ message: String, temporary: Bool) -> WellKnownOutcome {
        run.note("well-known: \(code): \(message)")
        return WellKnownOutcome(result: .failed(code: code, message: message, temporary: temporary), headerLifetime: nil)
    }

    private func hop(_ url: HTTPSURL, visited: [String], deadline: Double,
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
        addresses(of: url) { result in
            if run.isFinished { return }
            let remainingMs = Int((deadline - settings.now()) * 1000)
            let addresses: [IPAddress]
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
            guard remainingMs > 0 else {
                completion(failed(Self.timeoutCode, "no time left in the well-known phase for \(url.text)", temporary: true))
                return
            }
            let request = HTTPSRequest(url: url.text, host: url.host, port: url.port ?? 443,
                                       connectTo: addresses,
                                       maxBodyBytes: settings.wellKnownMaxBodyBytes,
                                       connectTimeoutMs: min(settings.wellKnownConnectTimeoutMs, remainingMs),
                                       totalTimeoutMs: remainingMs)
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
                    handle(response, url: url, visited: visited + [url.text], deadline: deadline, completion: completion)
                }
            }
        }
    }

    /// A hop's addresses: an IP literal as it is (a redirect may name one), checked against the IP
    /// policy with no DNS query; a name through `lookupAddresses`.
    private func addresses(of url: HTTPSURL, completion: @escaping @Sendable (Result<[IPAddress], ResolutionFailure>) -> Void) {
        guard let ip = url.ipLiteral else {
            run.lookupAddresses(url.host, isSRVTarget: false) { completion($0.map { $0.map(\.address) }) }
            return
        }
        if let range = run.settings.ipPolicy.denyingRange(ip) {
            completion(.failure(ResolutionFailure(code: .addressDenied,
                message: "\(ip) is in the denied range \(range) (exempt it with --allow-ip)")))
        } else {
            completion(.success([ip]))
        }
    }

    private func handle(_ response: HTTPSResponse, url: HTTPSURL, visited: [String], deadline: Double,
                        completion: @escaping @Sendable (WellKnownOutcome) -> Void) {
        if Self.redirectStatuses.contains(response.status) {
            guard let location = response.values(of: "location").last, !location.isEmpty else {
                completion(failed("wellknown_bad_redirect", "\(response.status) from \(url.text) without a Location", temporary: false))
                return
            }
            switch url.resolving(location) {
            case .success(let next):
                run.note("well-known: GET \(url.text) -> \(response.status) to \(next.text)")
                hop(next, visited: visited, deadline: deadline, completion: completion)
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

extension String {
    /// The string without leading and trailing spaces and tabs.
    public var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
