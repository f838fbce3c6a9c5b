/// The protocol error codes of §7 (resolution errors carry the core's failure codes instead).
public enum ErrorCode: String, CaseIterable, Sendable {
    case badRequest = "bad_request"
    case unknownVerb = "unknown_verb"
    case lineTooLong = "line_too_long"
    case tooManyInFlight = "too_many_in_flight"
    case unsupportedVersion = "unsupported_version"
    case forbidden
    case shuttingDown = "shutting_down"
    case `internal`

    /// Whether the daemon closes the connection after sending it (a client reconnects).
    public var closesConnection: Bool { self == .lineTooLong || self == .shuttingDown }
}
