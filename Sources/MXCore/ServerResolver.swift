
/// The spec's "Resolving server names" algorithm (Server-Server API), step by step.
///
/// Each step is one small method named after it; the spec's numbers are in the comments and in
/// `ResolutionStep`. Network work goes through a `LookupBackend`, so the algorithm is tested with
/// fakes and run for real over c-ares and libcurl. Control flow is completion-based: a resolution
/// holds no thread while it waits.
public final class ServerResolver: Sendable {
    public typealias Completion = @Sendable (Result<Resolution, ResolutionFailure>) -> Void

    let backend: any LookupBackend
    private let currentSettings: PthreadMutex<ResolverSettings>
    /// Runs each resolution's deadline.
    let scheduler: any Scheduler

    public init(backend: any LookupBackend, settings: ResolverSettings, scheduler: any Scheduler) {
        self.backend = backend
        self.currentSettings = PthreadMutex(settings)
        self.scheduler = scheduler
    }

    /// The settings new resolutions start with; each resolution keeps the ones it started with.
    public var settings: ResolverSettings {
        get { currentSettings.withLock { $0 } }
        set { currentSettings.withLock { $0 = newValue } }
    }

    /// Resolves `serverName`. `knownWellKnown`, when given, is a still-fresh well-known result from
    /// the cache: step 3's fetch is skipped and its result reused (a remembered failure goes straight
    /// to step 4). `wellKnownAttempts`: how often step 3 fetches before a temporary failure counts
    /// (more than one for a name whose delegation was recently valid). The completion runs exactly
    /// once, on any thread.
    @discardableResult
    public func resolve(_ serverName: String, knownWellKnown: WellKnownOutcome? = nil, wellKnownAttempts: Int = 1,
                        completion: @escaping Completion) -> ResolutionHandle {
        let settings = self.settings
        let run = Run(serverName: serverName, resolver: self, settings: settings, completion: completion)
        let deadline = settings.resolutionTimeoutMs
        // Holds the run until the deadline even if a backend drops its callbacks; the run cancels it
        // when it completes, so a finished run's memory is not kept until then.
        run.cancelWhenDone(scheduler.schedule(afterMilliseconds: deadline) { run.failAtDeadline(deadline) })
        run.start(knownWellKnown: knownWellKnown, wellKnownAttempts: wellKnownAttempts)
        return ResolutionHandle(run: run)
    }
}

/// Lets a caller cancel a resolution; the completion then runs with `cancelled`.
public struct ResolutionHandle: Sendable {
    let run: Run
    public func cancel() { run.fail(.cancelled, "resolution cancelled") }
}

/// One resolution in progress: the steps, the trail of lookups, and a completion that runs once.
final class Run: Sendable {
    let serverName: String
    let resolver: ServerResolver
    let settings: ResolverSettings
    private let state: PthreadMutex<(completion: ServerResolver.Completion?, trace: [String], wellKnown: WellKnownOutcome?,
                                     timers: [any ScheduledWork])>
    private let warnings = PthreadMutex<Set<ResolutionWarning>>([])
    let lookups = OutstandingLookups()

    init(serverName: String, resolver: ServerResolver, settings: ResolverSettings, completion: @escaping ServerResolver.Completion) {
        self.serverName = serverName
        self.resolver = resolver
        self.settings = settings
        self.state = PthreadMutex((completion, [], nil, []))
    }

    /// A timer that holds the run (its deadline, its well-known budget): cancelled when the run
    /// completes, at once if it already has.
    func cancelWhenDone(_ timer: any ScheduledWork) {
        let finished = state.withLock { s in
            if s.completion == nil { return true }
            s.timers.append(timer)
            return false
        }
        if finished { timer.cancel() }
    }

    var backend: any LookupBackend { resolver.backend }

    func finish(_ resolution: Resolution) {
        complete { trace, wellKnown in
            var r = resolution
            r.trace = trace
            r.wellKnown = wellKnown
            r.warnings = warnings.withLock { $0 }.sorted { $0.rawValue < $1.rawValue }
            return .success(r)
        }
    }

    func fail(_ code: FailureCode, _ message: String, step: ResolutionStep? = nil, negativeTTL: UInt32? = nil,
              localQueueTimeout: Bool = false) {
        complete { trace, wellKnown in
            .failure(ResolutionFailure(code: code, message: message, step: step, wellKnown: wellKnown,
                                       negativeTTL: negativeTTL, localQueueTimeout: localQueueTimeout, trace: trace))
        }
    }

    /// Runs the completion once, and cancels the run's timers, which lets go of it. The run's state
    /// is emptied on the way out, because a backend callback still pending may keep the run a while.
    private func complete(_ result: ([String], WellKnownOutcome?) -> Result<Resolution, ResolutionFailure>) {
        let taken: (ServerResolver.Completion, [String], WellKnownOutcome?, [any ScheduledWork])? = state.withLock { s in
            guard let c = s.completion else { return nil }
            let out = (c, s.trace, s.wellKnown, s.timers)
            s = (nil, [], nil, [])
            return out
        }
        guard let (completion, trace, wellKnown, timers) = taken else { return }
        for timer in timers { timer.cancel() }
        completion(result(trace, wellKnown))
    }

    func note(_ line: String) { state.withLock { if $0.completion != nil { $0.trace.append(line) } } }

    /// Something the answer was built on that the spec or an RFC forbids but the federation tolerates.
    func warn(_ warning: ResolutionWarning, _ line: String) {
        warnings.withLock { _ = $0.insert(warning) }
        note("warning: \(line)")
    }

    var isFinished: Bool { state.withLock { $0.completion == nil } }

    // MARK: - The steps

    func start(knownWellKnown: WellKnownOutcome?, wellKnownAttempts: Int) {
        // Validate before any network traffic.
        let name: ServerName
        do {
            name = try ServerName(parsing: serverName)
        } catch {
            fail(.invalidServerName, "'\(serverName.prefix(300))' is not a valid server name: \(error)")
            return
        }

        switch (name.host, name.port) {
        case (.ipv4(let ip), let port), (.ipv6(let ip), let port):
            step1IPLiteral(name, ip: ip, port: port)
        case (.dns(let host), .some(let port)):
            step2ExplicitPort(name, host: host, port: port)
        case (.dns(let host), .none):
            step3WellKnown(name, host: host, known: knownWellKnown, attempts: wellKnownAttempts)
        }
    }

    /// 1. "If the hostname is an IP literal, then that IP address should be used, together with the
    /// given port number, or 8448 if no port is given." Certificate valid for the IP; no SNI;
    /// Host = the server name as given.
    func step1IPLiteral(_ name: ServerName, ip: IPAddress, port: UInt16?) {
        finishWithIPLiteral(step: .ipLiteral, ip: ip, port: port ?? 8448, hostHeader: name.raw)
    }

    /// 2. "If the hostname is not an IP literal, and the server name includes an explicit port,
    /// resolve the hostname to an IP address using CNAME, AAAA or A records." Host = hostname:port;
    /// certificate for the hostname.
    func step2ExplicitPort(_ name: ServerName, host: String, port: UInt16) {
        resolveHostTarget(host: host, port: port, step: .explicitPort, hostHeader: name.raw, tlsName: host)
    }

    /// 3. "If the hostname is not an IP literal, a regular HTTPS request is made to
    /// https://<hostname>/.well-known/matrix/server". An invalid response skips to step 4.
    /// A temporary failure is retried up to `attempts` times in all (the cache asks for it when the
    /// name recently had a valid delegation).
    func step3WellKnown(_ name: ServerName, host: String, known: WellKnownOutcome?, attempts: Int) {
        let proceed: @Sendable (WellKnownOutcome) -> Void = { [self] outcome in
            state.withLock { $0.wellKnown = outcome }
            switch outcome.result {
            case .delegated(let mServer):
                // Validated when fetched; a cached value is re-parsed, never trusted blindly.
                guard let delegated = try? ServerName(parsing: mServer) else {
                    step4MatrixFedSRV(name, host: host)
                    return
                }
                step3Delegated(delegated)
            case .failed:
                step4MatrixFedSRV(name, host: host)
            }
        }
        if let known {
            note("well-known for \(host): from cache: \(describe(known.result))")
            proceed(known)
        } else {
            WellKnownFetch(run: self, host: host).start(attempts: attempts, completion: proceed)
        }
    }

    /// 3.1–3.5: the well-known delegated to `<delegated_hostname>[:<delegated_port>]`.
    /// The delegated name is not itself well-known-resolved again (no chaining).
    func step3Delegated(_ delegated: ServerName) {
        switch (delegated.host, delegated.port) {
        case (.ipv4(let ip), let port), (.ipv6(let ip), let port):
            // 3.1 "If <delegated_hostname> is an IP literal, then that IP address should be used
            // together with the <delegated_port> or 8448 if no port is provided." Host = the IP,
            // including the port if one was provided; certificate for the IP.
            finishWithIPLiteral(step: .delegatedIPLiteral, ip: ip, port: port ?? 8448, hostHeader: delegated.raw)
        case (.dns(let dhost), .some(let port)):
            // 3.2 Explicit delegated port: CNAME/AAAA/A of <delegated_hostname>.
            // Host = <delegated_hostname>:<delegated_port>; certificate for <delegated_hostname>.
            resolveHostTarget(host: dhost, port: port, step: .delegatedExplicitPort, hostHeader: delegated.raw, tlsName: dhost)
        case (.dns(let dhost), .none):
            // 3.3 SRV _matrix-fed._tcp.<delegated_hostname>; 3.4 [deprecated] _matrix._tcp; 3.5 port 8448.
            // Host and certificate: <delegated_hostname>.
            srvSteps(host: dhost, hostHeader: dhost, tlsName: dhost,
                     steps: (.delegatedMatrixFedSRV, .delegatedLegacyMatrixSRV, .delegatedDefaultPort))
        }
    }

    /// 4. "If the /.well-known request resulted in an error response", SRV _matrix-fed._tcp.<hostname>;
    /// 5. [deprecated] _matrix._tcp.<hostname>; 6. CNAME/AAAA/A of <hostname>, port 8448.
    /// Host and certificate: <hostname>.
    func step4MatrixFedSRV(_ name: ServerName, host: String) {
        srvSteps(host: host, hostHeader: host, tlsName: host, steps: (.matrixFedSRV, .legacyMatrixSRV, .defaultPort))
    }

    /// The SRV part shared by 3.3–3.5 and 4–6. A step is passed only when its record does not exist
    /// (NXDOMAIN or no SRV answer); SERVFAIL, REFUSED or a timeout fail the resolution, because the
    /// record may exist and silently using another port would be wrong.
    func srvSteps(host: String, hostHeader: String, tlsName: String,
                  steps: (fed: ResolutionStep, legacy: ResolutionStep, fallback: ResolutionStep)) {
        let dnsHost = host.lowercased()
        srvStep("_matrix-fed._tcp.\(dnsHost)", step: steps.fed, hostHeader: hostHeader, tlsName: tlsName, absence: nil) { [self] absence in
            srvStep("_matrix._tcp.\(dnsHost)", step: steps.legacy, hostHeader: hostHeader, tlsName: tlsName, absence: absence) { [self] absence in
                resolveHostTarget(host: host, port: 8448, step: steps.fallback, hostHeader: hostHeader, tlsName: tlsName,
                                  srvNegativeTTL: absence)
            }
        }
    }

    /// One SRV step: its records when there are some, else `notFound` with the smallest negative TTL
    /// of the lookups that found nothing so far (`absence`). An owner name longer than DNS allows
    /// (253 characters) cannot have records: it is not found without a query.
    func srvStep(_ owner: String, step: ResolutionStep, hostHeader: String, tlsName: String, absence: UInt32?,
                 notFound: @escaping @Sendable (UInt32?) -> Void) {
        guard owner.utf8.count <= ServerNameParser.maxDNSNameLength else {
            note("SRV \(owner.prefix(40))…: not queried, \(owner.utf8.count) characters is longer than DNS allows")
            notFound(absence)
            return
        }
        querySRV(owner) { [self] result in
            note("SRV \(owner): \(describe(result))")
            switch result {
            case .success(let records) where !records.isEmpty:
                useSRV(records, name: owner, step: step, hostHeader: hostHeader, tlsName: tlsName, srvNegativeTTL: absence)
            case .success:
                notFound(absence)
            case .failure(let error) where error.meansSRVNotFound:
                notFound([absence, error.negativeTTL].compactMap { $0 }.min())
            case .failure(let error):
                fail(FailureCode(error), "SRV lookup of \(owner) failed: \(error)", step: step)
            }
        }
    }

    /// Turns SRV records into ordered targets with addresses.
    func useSRV(_ records: [SRVRecord], name: String, step: ResolutionStep, hostHeader: String, tlsName: String, srvNegativeTTL: UInt32?) {
        // RFC 2782: a single record with target "." means the service is decidedly not available.
        if records.count == 1, records[0].target == "." || records[0].target.isEmpty {
            fail(.srvServiceUnavailable, "\(name) has target \".\": the service is decidedly not available here", step: step)
            return
        }
        let usable = records.filter { $0.target != "." && !$0.target.isEmpty }
        let ordered = SRVOrder.order(usable, randomBelow: settings.randomBelow)
        let srvTTL = usable.map(\.ttl).min()
        let distinctHosts = Array(Set(ordered.map { $0.target.lowercased() }))

        // Resolve every distinct target at once; join when all have answered.
        let join = Join<String, Result<[ResolvedAddress], ResolutionFailure>>(count: distinctHosts.count) { [self] byHost in
            var targets: [Target] = []
            var ttl: UInt32?
            var firstFailure: ResolutionFailure?
            for record in ordered {
                switch byHost[record.target.lowercased()] {
                case .success(let addresses)?:
                    targets.append(Target(host: record.target, port: record.port, addresses: addresses.map(\.address),
                                          srvRank: record.rank))
                    ttl = min(ttl ?? .max, addresses.map(\.ttl).min() ?? .max)
                case .failure(let f)?:
                    if firstFailure == nil { firstFailure = f }
                case nil:
                    break
                }
            }
            if targets.isEmpty {
                let f = firstFailure ?? ResolutionFailure(code: .noAddress, message: "no SRV target of \(name) has an address")
                fail(f.code, "\(name): \(f.message)", step: step, negativeTTL: f.negativeTTL)
                return
            }
            finish(Resolution(serverName: serverName, step: step, targets: targets, hostHeader: hostHeader,
                              tlsServerName: tlsName, sni: tlsName, wellKnown: nil, srvTTL: srvTTL, addressTTL: ttl,
                              srvNegativeTTL: srvNegativeTTL, trace: []))
        }
        for host in distinctHosts {
            lookupAddresses(host, isSRVTarget: true) { join.set(host, $0) }
        }
    }

    /// Steps 2, 3.2, 3.5 and 6: one host, one port.
    func resolveHostTarget(host: String, port: UInt16, step: ResolutionStep, hostHeader: String, tlsName: String,
                           srvNegativeTTL: UInt32? = nil) {
        lookupAddresses(host.lowercased(), isSRVTarget: false) { [self] result in
            switch result {
            case .success(let addresses):
                finish(Resolution(serverName: serverName, step: step,
                                  targets: [Target(host: host, port: port, addresses: addresses.map(\.address))],
                                  hostHeader: hostHeader, tlsServerName: tlsName, sni: tlsName, wellKnown: nil,
                                  srvTTL: nil, addressTTL: addresses.map(\.ttl).min(), srvNegativeTTL: srvNegativeTTL, trace: []))
            case .failure(let f):
                fail(f.code, f.message, step: step, negativeTTL: f.negativeTTL)
            }
        }
    }

    func finishWithIPLiteral(step: ResolutionStep, ip: IPAddress, port: UInt16, hostHeader: String) {
        if let range = settings.ipPolicy.denyingRange(ip) {
            fail(.addressDenied, "\(ip) is in the denied range \(range) (exempt it with --allow-ip)", step: step)
            return
        }
        finish(Resolution(serverName: serverName, step: step,
                          targets: [Target(host: ip.description, port: port, addresses: [ip])],
                          hostHeader: hostHeader, tlsServerName: ip.description, sni: nil, wellKnown: nil,
                          srvTTL: nil, addressTTL: nil, trace: []))
    }

    /// AAAA/A of `host` with the IP policy applied. As Synapse does against DNS rebinding, a name
    /// with any denied address is refused as a whole. An SRV target that is a CNAME is followed, as
    /// Synapse and Go's resolver do (element-hq/synapse#19201): RFC 2782 and the spec forbid it, but
    /// refusing it would cut off servers that federate with everyone else; it is a warning.
    func lookupAddresses(_ host: String, isSRVTarget: Bool,
                         completion: @escaping @Sendable (Result<[ResolvedAddress], ResolutionFailure>) -> Void) {
        queryAddresses(host) { [self] result in
            switch result {
            case .success(let set):
                note("AAAA/A \(host): \(set.all.map { "\($0.address) ttl=\($0.ttl)" }.joined(separator: " "))"
                     + (set.cnameChain.isEmpty ? "" : " via CNAME \(set.cnameChain.joined(separator: " -> "))")
                     + (set.source == .hostsFile ? " (from the hosts file)" : ""))
                if isSRVTarget, !set.cnameChain.isEmpty {
                    warn(.srvTargetIsCNAME, "SRV target \(host) is a CNAME (to \(set.cnameChain.last ?? "?")), which RFC 2782 "
                         + "forbids; followed, as Synapse does")
                }
                for a in set.all {
                    if let range = settings.ipPolicy.denyingRange(a.address) {
                        completion(.failure(ResolutionFailure(code: .addressDenied,
                            message: "\(host) has address \(a.address) in the denied range \(range) (exempt it with --allow-ip)")))
                        return
                    }
                }
                if set.all.isEmpty {
                    completion(.failure(ResolutionFailure(code: .noAddress, message: "\(host) has no AAAA or A record")))
                    return
                }
                completion(.success(set.all))
            case .failure(let error):
                note("AAAA/A \(host): \(error)")
                completion(.failure(ResolutionFailure(code: FailureCode(error),
                    message: "address lookup of \(host) failed: \(error)", negativeTTL: error.negativeTTL)))
            }
        }
    }
}

func describe(_ result: Result<[SRVRecord], DNSError>) -> String {
    switch result {
    case .success(let records) where records.isEmpty: return "no records"
    case .success(let records):
        return records.map { "\($0.priority) \($0.weight) \($0.port) \($0.target) ttl=\($0.ttl)" }.joined(separator: ", ")
    case .failure(let e): return e.description
    }
}

func describe(_ result: WellKnownResult) -> String {
    switch result {
    case .delegated(let s): return "m.server \(s)"
    case .failed(let code, let message, let temporary): return "failed (\(code), \(temporary ? "temporary" : "permanent")): \(message)"
    }
}

/// Collects `count` keyed results from concurrent callbacks, then calls `done` once.
final class Join<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let state: PthreadMutex<[Key: Value]>
    private let count: Int
    private let done: @Sendable ([Key: Value]) -> Void

    init(count: Int, done: @escaping @Sendable ([Key: Value]) -> Void) {
        self.state = PthreadMutex([:])
        self.count = count
        self.done = done
        if count == 0 { done([:]) }
    }

    func set(_ key: Key, _ value: Value) {
        let complete: [Key: Value]? = state.withLock { s in
            s[key] = value
            return s.count == count ? s : nil
        }
        if let complete { done(complete) }
    }
}
