/// The spec step that produced an answer (Server-Server API, "Resolving server names").
/// Raw values are the spec's own numbers.
public enum ResolutionStep: String, Sendable, CaseIterable {
    /// 1. The hostname is an IP literal: use it, with the given port or 8448.
    case ipLiteral = "1"
    /// 2. The hostname is not an IP literal and an explicit port is given: resolve CNAME/AAAA/A.
    case explicitPort = "2"
    /// 3.1. The well-known delegates to an IP literal.
    case delegatedIPLiteral = "3.1"
    /// 3.2. The well-known delegates to a hostname with an explicit port.
    case delegatedExplicitPort = "3.2"
    /// 3.3. Delegated hostname, no port: SRV `_matrix-fed._tcp.<delegated_hostname>`.
    case delegatedMatrixFedSRV = "3.3"
    /// 3.4. [Deprecated] Delegated hostname, no `_matrix-fed` record: SRV `_matrix._tcp.<delegated_hostname>`.
    case delegatedLegacyMatrixSRV = "3.4"
    /// 3.5. Delegated hostname, no SRV record: CNAME/AAAA/A of the delegated hostname, port 8448.
    case delegatedDefaultPort = "3.5"
    /// 4. The well-known failed: SRV `_matrix-fed._tcp.<hostname>`.
    case matrixFedSRV = "4"
    /// 5. [Deprecated] The well-known failed, no `_matrix-fed` record: SRV `_matrix._tcp.<hostname>`.
    case legacyMatrixSRV = "5"
    /// 6. The well-known failed and no SRV record exists: CNAME/AAAA/A of the hostname, port 8448.
    case defaultPort = "6"

    public var words: String {
        switch self {
        case .ipLiteral: return "IP literal"
        case .explicitPort: return "hostname with explicit port"
        case .delegatedIPLiteral: return "well-known delegation to an IP literal"
        case .delegatedExplicitPort: return "well-known delegation with explicit port"
        case .delegatedMatrixFedSRV: return "well-known delegation, then _matrix-fed SRV"
        case .delegatedLegacyMatrixSRV: return "well-known delegation, then deprecated _matrix SRV"
        case .delegatedDefaultPort: return "well-known delegation, no SRV, default port 8448"
        case .matrixFedSRV: return "no well-known, _matrix-fed SRV"
        case .legacyMatrixSRV: return "no well-known, deprecated _matrix SRV"
        case .defaultPort: return "no well-known, no SRV, default port 8448"
        }
    }
}

/// One place to connect to: a host (SRV target, hostname or IP), its port and its addresses.
public struct Target: Sendable, Hashable {
    public var host: String
    public var port: UInt16
    /// The families interleaved, IPv6 first (RFC 8305 §4).
    public var addresses: [IPAddress]
    /// The SRV record's priority and weight, when the target came from one (to reorder cached answers).
    public var srvRank: SRVRank?
    public init(host: String, port: UInt16, addresses: [IPAddress], srvRank: SRVRank? = nil) {
        self.host = host
        self.port = port
        self.addresses = addresses
        self.srvRank = srvRank
    }
}

/// What the well-known step found, remembered on its own so a later resolution can reuse it
/// (skip a fetch while it is fresh, or go straight to step 4 after a failure).
public enum WellKnownResult: Sendable, Hashable {
    /// `m.server` as given (validated).
    case delegated(String)
    /// The fetch failed; `temporary` for transport/TLS/5xx/timeouts/oversize, permanent otherwise.
    case failed(code: String, message: String, temporary: Bool)

    public var isFailure: Bool {
        if case .failed = self { return true }
        return false
    }
}

/// A well-known result with the lifetime its response's headers asked for.
public struct WellKnownOutcome: Sendable, Hashable {
    public var result: WellKnownResult
    /// Seconds from the HTTP cache headers (nil: the headers said nothing; failures: nil).
    public var headerLifetime: Double?
    public init(result: WellKnownResult, headerLifetime: Double?) {
        self.result = result
        self.headerLifetime = headerLifetime
    }
}

/// A successful resolution: everything a worker needs to open the federation connection.
public struct Resolution: Sendable, Hashable {
    public var serverName: String
    public var step: ResolutionStep
    /// In the order to try them (SRV priority, then RFC 2782 weighted order).
    public var targets: [Target]
    /// The `Host` header to send.
    public var hostHeader: String
    /// The name (or IP) the target's certificate must be valid for.
    public var tlsServerName: String
    /// The SNI to send; nil for IP literals, which must not be sent as SNI.
    public var sni: String?
    /// What the well-known step found (nil when the step did not apply: IP literal or explicit port).
    public var wellKnown: WellKnownOutcome?
    /// Smallest TTL of the SRV records used (nil if no SRV record was used).
    public var srvTTL: UInt32?
    /// Smallest TTL of the address records used (nil for IP literals).
    public var addressTTL: UInt32?
    /// Smallest SOA negative TTL of the SRV lookups that found nothing on the way to this answer:
    /// the absence of a record is an ingredient too. Used for the answer's lifetime, not stored.
    public var srvNegativeTTL: UInt32?
    /// Every lookup made and its result, for `--trace`.
    public var trace: [String]
    /// What the answer relies on that the spec forbids but the federation tolerates (counted in statistics).
    public var warnings: [ResolutionWarning] = []

    public init(serverName: String, step: ResolutionStep, targets: [Target], hostHeader: String, tlsServerName: String,
                sni: String?, wellKnown: WellKnownOutcome?, srvTTL: UInt32?, addressTTL: UInt32?,
                srvNegativeTTL: UInt32? = nil, trace: [String]) {
        self.serverName = serverName
        self.step = step
        self.targets = targets
        self.hostHeader = hostHeader
        self.tlsServerName = tlsServerName
        self.sni = sni
        self.wellKnown = wellKnown
        self.srvTTL = srvTTL
        self.addressTTL = addressTTL
        self.srvNegativeTTL = srvNegativeTTL
        self.trace = trace
    }
}

/// Tolerated departures from the spec, each counted in the statistics as `warning_<raw value>`.
public enum ResolutionWarning: String, Sendable, Hashable, CaseIterable {
    /// An SRV target was a CNAME and was followed (RFC 2782 and the spec say it must not be an alias).
    case srvTargetIsCNAME = "srv_target_cname"
}

/// Stable machine codes for failures (also used on the wire).
public enum FailureCode: String, Sendable, CaseIterable {
    case invalidServerName = "invalid_server_name"
    case dnsTimeout = "dns_timeout"
    case dnsServfail = "dns_servfail"
    case dnsRefused = "dns_refused"
    case dnsError = "dns_error"
    case srvTargetIsCNAME = "srv_target_is_cname"
    case srvServiceUnavailable = "srv_service_unavailable"
    case noAddress = "no_address"
    case addressDenied = "address_denied"
    case timeout = "timeout"
    case cancelled = "cancelled"

    public init(_ dns: DNSError) {
        switch dns {
        case .nxdomain, .nodata: self = .noAddress
        case .servfail: self = .dnsServfail
        case .refused: self = .dnsRefused
        case .timeout: self = .dnsTimeout
        case .notImplemented, .other: self = .dnsError
        }
    }
}

/// A failed resolution: a code, a message naming what failed where, and the trail of lookups.
public struct ResolutionFailure: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: FailureCode
    public var message: String
    /// The step being attempted when it failed (nil for invalid names).
    public var step: ResolutionStep?
    public var wellKnown: WellKnownOutcome?
    /// Negative TTL from the DNS server's SOA, when the failure is a "does not exist" answer.
    public var negativeTTL: UInt32?
    /// The deadline passed while a lookup still waited in mxresolved's own queue: a busy daemon,
    /// not the name's failure (never cached).
    public var localQueueTimeout: Bool
    public var trace: [String]

    public init(code: FailureCode, message: String, step: ResolutionStep? = nil, wellKnown: WellKnownOutcome? = nil,
                negativeTTL: UInt32? = nil, localQueueTimeout: Bool = false, trace: [String] = []) {
        self.code = code
        self.message = message
        self.step = step
        self.wellKnown = wellKnown
        self.negativeTTL = negativeTTL
        self.localQueueTimeout = localQueueTimeout
        self.trace = trace
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
