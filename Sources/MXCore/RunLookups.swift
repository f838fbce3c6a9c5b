
/// A run's lookups in flight, each stamped when it was handed to the backend. At the deadline this
/// tells a slow name from a busy daemon: once sent, no lookup outlives its own timeout, so one still
/// outstanding after longer than that has spent the difference waiting in mxresolved's own queue
/// (the backend's bounded DNS and fetch slots), and the timeout says nothing about the name.
final class OutstandingLookups: Sendable {
    private struct Lookup {
        var since: Double
        var boundSeconds: Double
    }
    private let state = PthreadMutex<(next: Int, open: [Int: Lookup])>((0, [:]))

    func begin(at now: Double, boundMilliseconds: Int) -> Int {
        state.withLock { s in
            s.next += 1
            s.open[s.next] = Lookup(since: now, boundSeconds: Double(boundMilliseconds) / 1000)
            return s.next
        }
    }

    func end(_ id: Int) { state.withLock { _ = $0.open.removeValue(forKey: id) } }

    /// Whether a lookup still open has been waiting longer than it can take once started (plus a
    /// second for scheduling).
    func anyWaitedInQueue(at now: Double) -> Bool {
        state.withLock { s in s.open.values.contains { now - $0.since > $0.boundSeconds + 1 } }
    }
}

extension Run {
    /// The backend's lookups, tracked for `failAtDeadline`.
    func querySRV(_ name: String, completion: @escaping @Sendable (Result<[SRVRecord], DNSError>) -> Void) {
        let id = lookups.begin(at: settings.now(), boundMilliseconds: settings.dnsLookupMaxMs)
        backend.querySRV(name) { [lookups] result in
            lookups.end(id)
            completion(result)
        }
    }

    func queryAddresses(_ host: String, completion: @escaping @Sendable (Result<AddressSet, DNSError>) -> Void) {
        let id = lookups.begin(at: settings.now(), boundMilliseconds: settings.dnsLookupMaxMs)
        backend.queryAddresses(host) { [lookups] result in
            lookups.end(id)
            completion(result)
        }
    }

    func httpsGet(_ request: HTTPSRequest, completion: @escaping @Sendable (Result<HTTPSResponse, HTTPSError>) -> Void) {
        let id = lookups.begin(at: settings.now(), boundMilliseconds: request.totalTimeoutMs)
        backend.httpsGet(request) { [lookups] result in
            lookups.end(id)
            completion(result)
        }
    }

    /// The resolution's deadline passed. When a lookup was still waiting in the daemon's own queue,
    /// the failure is marked so the cache does not remember it as the name's.
    func failAtDeadline(_ deadlineMs: Int) {
        if lookups.anyWaitedInQueue(at: settings.now()) {
            fail(.timeout, "resolution did not finish within \(deadlineMs) ms: a lookup was still waiting in mxresolved's own queue",
                 localQueueTimeout: true)
        } else {
            fail(.timeout, "resolution did not finish within \(deadlineMs) ms")
        }
    }
}
