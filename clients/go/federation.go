package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ResolutionResult mirrors gomatrixserverlib's fclient.ResolutionResult: where to connect
// (Destination, an address and port from the daemon's answer), the Host header to send, and
// the name the server's certificate must be valid for (also the SNI; Go sends none for IPs).
type ResolutionResult struct {
	Destination   string
	Host          string
	TLSServerName string
}

// FallbackResolver resolves a server name when the daemon cannot be reached, for example
// gomatrixserverlib's fclient.ResolveServer adapted to ResolutionResult.
type FallbackResolver func(ctx context.Context, serverName string) ([]ResolutionResult, error)

// ErrNoFallback wraps the daemon's unavailability when no FallbackResolver is configured.
var ErrNoFallback = errors.New("mxresolved is unavailable and no fallback resolver is configured")

type noFallbackError struct{ err error }

func (e *noFallbackError) Error() string   { return ErrNoFallback.Error() + ": " + e.err.Error() }
func (e *noFallbackError) Unwrap() error   { return e.err }
func (e *noFallbackError) Is(t error) bool { return t == ErrNoFallback }

// Federation resolves Matrix server names through mxresolved and sends matrix-federation://
// requests where the answers say. Use it as an http.RoundTripper (with gomatrixserverlib:
// fclient.WithTransport(f)); it is safe for concurrent use.
type Federation struct {
	Client    *Client
	Fallback  FallbackResolver // used when the daemon is unreachable; nil: fail at once
	TLSConfig *tls.Config      // base TLS settings (RootCAs, MinVersion...); ServerName is set per answer
	Dialer    *net.Dialer      // default: 30 s connect timeout

	mu         sync.Mutex
	transports map[string]*http.Transport // by TLS server name, as gomatrixserverlib keeps them
}

// NewFederation returns a Federation over a fail-fast client of the socket at path (""
// means SocketPath()): a missing or refusing socket goes to fallback without a retry loop.
func NewFederation(path string, fallback FallbackResolver) *Federation {
	return &Federation{Client: New(Options{Path: path, FailFast: true}), Fallback: fallback}
}

// ResolveServer resolves serverName: one result per address of the answer's targets, in the
// order to try them. When the daemon is unreachable it asks the fallback resolver, or fails at
// once with an error matching both ErrDaemonUnavailable and ErrNoFallback.
func (f *Federation) ResolveServer(ctx context.Context, serverName string) ([]ResolutionResult, error) {
	res, err := f.Client.Resolve(ctx, serverName)
	if err != nil {
		if !errors.Is(err, ErrDaemonUnavailable) && !errors.Is(err, ErrTimeout) {
			return nil, err
		}
		if f.Fallback == nil {
			return nil, &noFallbackError{err}
		}
		return f.Fallback(ctx, serverName)
	}
	var out []ResolutionResult
	for _, t := range res.Targets {
		for _, a := range t.Addresses {
			out = append(out, ResolutionResult{Destination: net.JoinHostPort(a, strconv.Itoa(t.Port)),
				Host: res.HostHeader, TLSServerName: res.TLSServerName})
		}
	}
	return out, nil
}

// RoundTrip sends a matrix-federation://NAME/path request to NAME's destinations in order,
// with the answer's Host header and TLS name; other schemes are refused. When every
// destination fails to connect it asks the daemon to re-resolve NAME.
func (f *Federation) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "matrix-federation" {
		return nil, fmt.Errorf("mxresolved: unsupported URL scheme %q (want matrix-federation)", req.URL.Scheme)
	}
	serverName := req.URL.Host
	results, err := f.ResolveServer(req.Context(), serverName)
	if err != nil {
		return nil, err
	}
	if len(results) == 0 {
		return nil, fmt.Errorf("mxresolved: no destination for %s", serverName)
	}
	var firstErr error
	unreachable := true
	for i, r := range results {
		out := req.Clone(req.Context())
		if i > 0 && req.Body != nil {
			if req.GetBody == nil {
				break // the body may be consumed and cannot be sent again
			}
			if out.Body, err = req.GetBody(); err != nil {
				break
			}
		}
		u := *req.URL
		u.Scheme, u.Host = "https", r.Destination
		out.URL, out.Host = &u, r.Host
		resp, err := f.transport(r.TLSServerName).RoundTrip(out)
		if err == nil {
			return resp, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		unreachable = unreachable && isConnectFailure(err)
	}
	if unreachable {
		go f.reresolve(serverName)
	}
	return nil, firstErr
}

func (f *Federation) reresolve(serverName string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = f.Client.Reresolve(ctx, serverName) // best effort: the daemon rate-limits and may be down
}

func isConnectFailure(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || (errors.As(err, &op) && op.Op == "dial")
}

func (f *Federation) transport(tlsName string) *http.Transport {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.transports[tlsName]; ok {
		return t
	}
	cfg := &tls.Config{}
	if f.TLSConfig != nil {
		cfg = f.TLSConfig.Clone()
	}
	cfg.ServerName = tlsName
	dialer := f.Dialer
	if dialer == nil {
		dialer = &net.Dialer{Timeout: 30 * time.Second}
	}
	t := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSClientConfig:     cfg,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 5,
		IdleConnTimeout:     2 * time.Minute,
	}
	if f.transports == nil {
		f.transports = map[string]*http.Transport{}
	}
	f.transports[tlsName] = t
	return t
}

// CloseIdleConnections closes idle federation connections.
func (f *Federation) CloseIdleConnections() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.transports {
		t.CloseIdleConnections()
	}
}
