package client

import (
	"context"
	"errors"
	"fmt"
)

// Sentinels for errors.Is.
var (
	// ErrDaemonUnavailable: cannot connect, or the connection failed again after one reconnect.
	ErrDaemonUnavailable = errors.New("mxresolved: daemon unavailable")
	// ErrTimeout: the call's context/timeout expired before the answer.
	ErrTimeout = errors.New("mxresolved: request timed out")

	// Resolution error families (match a *ResolveError with errors.Is).
	ErrInvalidServerName = errors.New("mxresolved: invalid server name")
	ErrDNS               = errors.New("mxresolved: DNS failure")
	ErrSRV               = errors.New("mxresolved: unusable SRV answer")
	ErrNoAddress         = errors.New("mxresolved: no address")
	ErrAddressDenied     = errors.New("mxresolved: address denied")
	ErrResolveTimeout    = errors.New("mxresolved: resolution timed out")

	// Protocol errors with their own sentinel (match a *ProtocolError with errors.Is).
	ErrForbidden          = errors.New("mxresolved: forbidden")
	ErrUnsupportedVersion = errors.New("mxresolved: unsupported protocol version")
)

var protocolCodes = map[string]bool{
	"bad_request": true, "unknown_verb": true, "line_too_long": true, "too_many_in_flight": true,
	"unsupported_version": true, "forbidden": true, "shutting_down": true, "internal": true,
}

var families = map[string]string{
	"invalid_server_name": "invalid_server_name",
	"dns_timeout":         "dns", "dns_servfail": "dns", "dns_refused": "dns", "dns_error": "dns",
	"srv_target_is_cname": "srv", "srv_service_unavailable": "srv",
	"no_address": "no_address", "address_denied": "address_denied", "timeout": "timeout",
}

var familySentinels = map[string]error{
	"invalid_server_name": ErrInvalidServerName, "dns": ErrDNS, "srv": ErrSRV,
	"no_address": ErrNoAddress, "address_denied": ErrAddressDenied, "timeout": ErrResolveTimeout,
}

// ResolveError is a failed resolution, with the daemon's stable Code.
type ResolveError struct {
	Code       string
	Message    string
	ServerName string
	Source     string // "network" or "cache"
	ExpiresIn  int    // how long the failure stays cached
	Trace      []string
}

func (e *ResolveError) Error() string {
	return fmt.Sprintf("mxresolved: resolving %q: %s: %s", e.ServerName, e.Code, e.Message)
}

// Family groups codes: "invalid_server_name", "dns", "srv", "no_address", "address_denied",
// "timeout", or "other" for codes this client does not know.
func (e *ResolveError) Family() string {
	if f, ok := families[e.Code]; ok {
		return f
	}
	return "other"
}

// Is matches the family sentinels (errors.Is(err, ErrDNS)).
func (e *ResolveError) Is(target error) bool {
	s, ok := familySentinels[e.Family()]
	return ok && s == target
}

// ProtocolError is a protocol-level rejection (Code is bad_request, unknown_verb, forbidden, ...)
// or an unparseable answer (Code "").
type ProtocolError struct {
	Code    string
	Message string
}

func (e *ProtocolError) Error() string {
	if e.Code == "" {
		return "mxresolved: protocol error: " + e.Message
	}
	return "mxresolved: " + e.Code + ": " + e.Message
}

// Is matches ErrForbidden and ErrUnsupportedVersion.
func (e *ProtocolError) Is(target error) bool {
	return (target == ErrForbidden && e.Code == "forbidden") ||
		(target == ErrUnsupportedVersion && e.Code == "unsupported_version")
}

// DaemonUnavailableError wraps the cause; errors.Is(err, ErrDaemonUnavailable) is true.
type DaemonUnavailableError struct {
	Path string
	Err  error
}

func (e *DaemonUnavailableError) Error() string {
	return fmt.Sprintf("mxresolved: daemon at %s unavailable: %v", e.Path, e.Err)
}
func (e *DaemonUnavailableError) Unwrap() error   { return e.Err }
func (e *DaemonUnavailableError) Is(t error) bool { return t == ErrDaemonUnavailable }

// TimeoutError: errors.Is(err, ErrTimeout) and errors.Is(err, context.DeadlineExceeded) (or Canceled).
type TimeoutError struct{ Err error }

func (e *TimeoutError) Error() string   { return "mxresolved: request timed out: " + e.Err.Error() }
func (e *TimeoutError) Unwrap() error   { return e.Err }
func (e *TimeoutError) Is(t error) bool { return t == ErrTimeout }

func ctxError(ctx context.Context) error {
	if ctx.Err() == context.Canceled {
		return ctx.Err()
	}
	return &TimeoutError{Err: ctx.Err()}
}

// errConnLost is internal: the connection died before the answer (retry once).
type errConnLost struct{ msg string }

func (e *errConnLost) Error() string { return "connection lost: " + e.msg }
