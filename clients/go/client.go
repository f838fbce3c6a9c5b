// Package client is the Go client for mxresolved, the Matrix server-name resolver sidecar
// (socket protocol v1, proto/PROTOCOL.md).
//
// A Client is safe for concurrent use. It keeps a small pool of connections; requests are
// pipelined on them with request ids. Every call honours its context (and a default timeout
// when the context has none). When a connection is found closed (daemon restarted), the
// call reconnects and resends once.
package client

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// PackagedSocketPath is where the packaged daemon (dist/ systemd units) listens.
var PackagedSocketPath = "/run/mxresolved/socket"

// DefaultSocketPath is where scripts/run (no configuration) puts the socket.
var DefaultSocketPath = filepath.Join(".", ".mxresolved", "mxresolved.sock")

// SocketPath is the socket every mxresolved client looks for when given no explicit path:
// $MXRESOLVED_SOCKET, else PackagedSocketPath when it exists, else DefaultSocketPath.
func SocketPath() string {
	if p := os.Getenv("MXRESOLVED_SOCKET"); p != "" {
		return p
	}
	if _, err := os.Stat(PackagedSocketPath); err == nil {
		return PackagedSocketPath
	}
	return DefaultSocketPath
}

// Options configure a Client. Zero values mean the defaults.
type Options struct {
	Path         string        // socket path; default SocketPath()
	PoolSize     int           // connections; default 2
	Timeout      time.Duration // per call when the context has no deadline; default 5s
	ConnectRetry time.Duration // how long to retry connect() while the socket is missing/refusing; default 2s
	FailFast     bool          // no connect retry: a missing or refusing socket is reported at once
	NoHello      bool          // skip the hello handshake on new connections
}

// Client is a concurrency-safe mxresolved client.
type Client struct {
	opts   Options
	slots  []*slot
	next   uint64
	ids    uint64
	closed int32

	infoMu sync.Mutex
	info   map[string]string
}

type slot struct {
	mu   sync.Mutex
	conn *conn
}

// New creates a client; connections are opened lazily.
func New(opts Options) *Client {
	if opts.Path == "" {
		opts.Path = SocketPath()
	}
	if opts.PoolSize <= 0 {
		opts.PoolSize = 2
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.FailFast {
		opts.ConnectRetry = 0
	} else if opts.ConnectRetry <= 0 {
		opts.ConnectRetry = 2 * time.Second
	}
	c := &Client{opts: opts}
	for i := 0; i < opts.PoolSize; i++ {
		c.slots = append(c.slots, &slot{})
	}
	return c
}

// ServerInfo returns the fields of the last successful hello answer (proto, server, max_inflight...).
func (c *Client) ServerInfo() map[string]string {
	c.infoMu.Lock()
	defer c.infoMu.Unlock()
	out := map[string]string{}
	for k, v := range c.info {
		out[k] = v
	}
	return out
}

// Close closes all connections; calls in progress fail.
func (c *Client) Close() error {
	atomic.StoreInt32(&c.closed, 1)
	for _, s := range c.slots {
		s.mu.Lock()
		if s.conn != nil {
			s.conn.close(&errConnLost{"client closed"})
			s.conn = nil
		}
		s.mu.Unlock()
	}
	return nil
}

func (c *Client) nextID() string { return "g" + strconv.FormatUint(atomic.AddUint64(&c.ids, 1), 10) }

// ---- connection --------------------------------------------------------------------------

type pending struct {
	ch      chan result
	seq     uint64
	entries []*Reply
}

type result struct {
	reply *Reply
	err   error
}

type conn struct {
	nc      net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	pending map[string]*pending
	seq     uint64
	dead    bool
	deadErr error
	sem     chan struct{}
}

func (c *Client) dial(ctx context.Context) (*conn, error) {
	giveUp := time.Now().Add(c.opts.ConnectRetry)
	if dl, ok := ctx.Deadline(); ok && dl.Before(giveUp) {
		giveUp = dl
	}
	delay := 20 * time.Millisecond
	var d net.Dialer
	for {
		nc, err := d.DialContext(ctx, "unix", c.opts.Path)
		retryable := false
		if err == nil {
			cn, herr := c.handshake(ctx, nc)
			var lost *errConnLost
			if herr == nil || !errors.As(herr, &lost) {
				return cn, herr
			}
			// A stopping daemon may still accept and answer shutting_down (or close):
			// keep trying within the connect window.
			err, retryable = herr, true
		}
		if ctx.Err() != nil {
			return nil, ctxError(ctx)
		}
		retryable = retryable || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EAGAIN)
		if !retryable || time.Now().Add(delay).After(giveUp) {
			var lost *errConnLost
			if errors.As(err, &lost) {
				return nil, err // reported by Do after its one retry
			}
			return nil, &DaemonUnavailableError{Path: c.opts.Path, Err: err}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctxError(ctx)
		case <-t.C:
		}
		if delay *= 2; delay > 200*time.Millisecond {
			delay = 200 * time.Millisecond
		}
	}
}

func (c *Client) handshake(ctx context.Context, nc net.Conn) (*conn, error) {
	br := bufio.NewReaderSize(nc, 64*1024)
	maxInflight := DefaultMaxInflight
	if !c.opts.NoHello {
		line, _ := EncodeRequest("hello", []string{strconv.Itoa(ProtocolVersion)}, nil, c.nextID())
		if dl, ok := ctx.Deadline(); ok {
			_ = nc.SetDeadline(dl)
		}
		if _, err := nc.Write(line); err != nil {
			nc.Close()
			return nil, c.hsErr(ctx, err)
		}
		s, err := br.ReadString('\n')
		if err != nil {
			nc.Close()
			return nil, c.hsErr(ctx, err)
		}
		_ = nc.SetDeadline(time.Time{})
		r, err := ParseLine(s[:len(s)-1])
		if err != nil {
			nc.Close()
			return nil, err
		}
		if r.OK() {
			c.infoMu.Lock()
			c.info = r.Map()
			c.infoMu.Unlock()
			if n, err := strconv.Atoi(r.Map()["max_inflight"]); err == nil && n > 0 {
				maxInflight = n
			}
		} else if code, _ := r.Get("code"); code == "unsupported_version" || code == "shutting_down" {
			nc.Close()
			if code == "shutting_down" {
				return nil, &errConnLost{"daemon is shutting down"}
			}
			return nil, ErrorFromReply(r, false)
		}
	}
	cn := &conn{nc: nc, pending: map[string]*pending{}, sem: make(chan struct{}, maxInflight)}
	go cn.readLoop(br)
	return cn, nil
}

func (c *Client) hsErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctxError(ctx)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &TimeoutError{Err: context.DeadlineExceeded}
	}
	return &errConnLost{"hello: " + err.Error()}
}

func (cn *conn) readLoop(br *bufio.Reader) {
	for {
		s, err := br.ReadString('\n')
		if err != nil {
			cn.close(&errConnLost{"connection closed by the daemon"})
			return
		}
		if len(s) > maxResponseLineSize {
			cn.close(&ProtocolError{Message: "response line too long"})
			return
		}
		r, perr := ParseLine(s[:len(s)-1])
		if perr != nil {
			cn.close(perr)
			return
		}
		cn.dispatch(r)
	}
}

func (cn *conn) dispatch(r *Reply) {
	cn.mu.Lock()
	var key string
	var p *pending
	if r.HasID {
		key, p = r.ID, cn.pending[r.ID]
	} else {
		for k, q := range cn.pending { // id-less answer: the oldest request
			if p == nil || q.seq < p.seq {
				key, p = k, q
			}
		}
	}
	if p == nil {
		cn.mu.Unlock()
		return
	}
	if !r.final() {
		p.entries = append(p.entries, r)
		cn.mu.Unlock()
		return
	}
	delete(cn.pending, key)
	r.Entries = p.entries
	cn.mu.Unlock()
	p.ch <- result{reply: r}
}

func (cn *conn) close(err error) {
	cn.mu.Lock()
	if cn.dead {
		cn.mu.Unlock()
		return
	}
	cn.dead, cn.deadErr = true, err
	ps := cn.pending
	cn.pending = map[string]*pending{}
	cn.mu.Unlock()
	cn.nc.Close()
	for _, p := range ps {
		p.ch <- result{err: err}
	}
}

func (cn *conn) isDead() bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.dead
}

func (cn *conn) roundtrip(ctx context.Context, line []byte, id string) (*Reply, error) {
	select {
	case cn.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctxError(ctx)
	}
	defer func() { <-cn.sem }()
	p := &pending{ch: make(chan result, 1)}
	cn.mu.Lock()
	if cn.dead {
		cn.mu.Unlock()
		return nil, &errConnLost{"connection is closed"}
	}
	cn.seq++
	p.seq = cn.seq
	cn.pending[id] = p
	cn.mu.Unlock()

	cn.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		_ = cn.nc.SetWriteDeadline(dl)
	}
	_, err := cn.nc.Write(line)
	cn.wmu.Unlock()
	if err != nil {
		cn.close(&errConnLost{"write failed: " + err.Error()})
	}
	select {
	case res := <-p.ch:
		return res.reply, res.err
	case <-ctx.Done():
		cn.mu.Lock()
		delete(cn.pending, id)
		cn.mu.Unlock()
		select { // the answer may have raced the deadline
		case res := <-p.ch:
			return res.reply, res.err
		default:
		}
		return nil, ctxError(ctx)
	}
}

// ---- calls -------------------------------------------------------------------------------

func (c *Client) getConn(ctx context.Context, s *slot) (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if atomic.LoadInt32(&c.closed) != 0 {
		return nil, errors.New("mxresolved: client is closed")
	}
	if s.conn != nil && !s.conn.isDead() {
		return s.conn, nil
	}
	cn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	s.conn = cn
	return cn, nil
}

// Do sends one request and returns the raw reply (an "err" reply is not an error here).
func (c *Client) Do(ctx context.Context, verb string, args []string, opts ...Option) (*Reply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	s := c.slots[atomic.AddUint64(&c.next, 1)%uint64(len(c.slots))]
	var last error
	for attempt := 0; attempt < 2; attempt++ {
		id := c.nextID()
		line, err := EncodeRequest(verb, args, opts, id)
		if err != nil {
			return nil, err
		}
		cn, err := c.getConn(ctx, s)
		if err == nil {
			var r *Reply
			r, err = cn.roundtrip(ctx, line, id)
			if err == nil {
				if code, _ := r.Get("code"); r.Status == "err" && code == "shutting_down" && attempt == 0 {
					cn.close(&errConnLost{"daemon is shutting down"})
					last = &ProtocolError{Code: code, Message: "daemon is shutting down"}
					continue
				}
				return r, nil
			}
		}
		var lost *errConnLost
		if !errors.As(err, &lost) {
			return nil, err
		}
		last = err
	}
	return nil, &DaemonUnavailableError{Path: c.opts.Path, Err: last}
}

func (c *Client) doOK(ctx context.Context, verb string, args []string, opts ...Option) (*Reply, error) {
	r, err := c.Do(ctx, verb, args, opts...)
	if err != nil {
		return nil, err
	}
	if !r.OK() {
		return nil, ErrorFromReply(r, verb == "resolve" || verb == "revalidate" || verb == "reresolve")
	}
	return r, nil
}

// ResolveOptions for Resolve.
type ResolveOptions struct {
	NoCache bool // cache=no: look up again even if cached
	Trace   bool // trace=yes: fill Resolution.Trace
}

// Resolve resolves a server name. Failures are *ResolveError (errors.Is(err, ErrNoAddress)...).
func (c *Client) Resolve(ctx context.Context, serverName string, ro ...ResolveOptions) (*Resolution, error) {
	var opts []Option
	for _, o := range ro {
		if o.NoCache {
			opts = append(opts, Option{"cache", "no"})
		}
		if o.Trace {
			opts = append(opts, Option{"trace", "yes"})
		}
	}
	r, err := c.Do(ctx, "resolve", []string{serverName}, opts...)
	if err != nil {
		return nil, err
	}
	return ResolutionFromReply(r)
}

// Hello negotiates version 1 and returns the daemon's fields.
func (c *Client) Hello(ctx context.Context) (map[string]string, error) {
	r, err := c.doOK(ctx, "hello", []string{strconv.Itoa(ProtocolVersion)})
	if err != nil {
		return nil, err
	}
	return r.Map(), nil
}

// Ping checks the daemon answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.doOK(ctx, "ping", nil)
	return err
}

// Version returns version= and proto=.
func (c *Client) Version(ctx context.Context) (map[string]string, error) {
	r, err := c.doOK(ctx, "version", nil)
	if err != nil {
		return nil, err
	}
	return r.Map(), nil
}

// ShowCache lists cached answers (of one name if serverName != ""), with failures if asked. It
// asks page after page while the daemon names a next one (a peer that is not an admin gets at
// most 1000 entries per request, PROTOCOL.md §5.2).
func (c *Client) ShowCache(ctx context.Context, serverName string, failures bool) ([]CacheEntry, error) {
	var out []CacheEntry
	after := ""
	for {
		page, next, err := c.ShowCachePage(ctx, serverName, failures, after, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		after = next
	}
}

// ShowCachePage lists one page of cached answers: those after the name `after` (from the first
// if ""), at most `limit` of them (0: as many as the daemon gives). `next` is the `after` of the
// following page, "" at the end.
func (c *Client) ShowCachePage(ctx context.Context, serverName string, failures bool, after string, limit int) (entries []CacheEntry, next string, err error) {
	var args []string
	if serverName != "" {
		args = []string{serverName}
	}
	var opts []Option
	if failures {
		opts = append(opts, Option{"failures", "yes"})
	}
	if after != "" {
		opts = append(opts, Option{"after", after})
	}
	if limit > 0 {
		opts = append(opts, Option{"limit", strconv.Itoa(limit)})
	}
	r, err := c.doOK(ctx, "show-cache", args, opts...)
	if err != nil {
		return nil, "", err
	}
	entries = make([]CacheEntry, 0, len(r.Entries))
	for _, e := range r.Entries {
		entries = append(entries, cacheEntryFromReply(e))
	}
	next, _ = r.Get("next")
	return entries, next, nil
}

// FlushCaches removes cached answers (all when names is empty); returns how many.
func (c *Client) FlushCaches(ctx context.Context, names []string, failures bool) (int, error) {
	var opts []Option
	if failures {
		opts = append(opts, Option{"failures", "yes"})
	}
	r, err := c.doOK(ctx, "flush-caches", names, opts...)
	if err != nil {
		return 0, err
	}
	return atoiField(r, "flushed")
}

// Revalidate queues background re-resolution; returns how many were queued.
func (c *Client) Revalidate(ctx context.Context, names ...string) (int, error) {
	r, err := c.doOK(ctx, "revalidate", names)
	if err != nil {
		return 0, err
	}
	return atoiField(r, "queued")
}

// Reresolve asks the daemon for a fresh background resolution of a name (after every target
// of its answer failed to connect); the daemon starts at most one per name per minute.
func (c *Client) Reresolve(ctx context.Context, serverName string) (Reresolution, error) {
	r, err := c.doOK(ctx, "reresolve", []string{serverName})
	if err != nil {
		return Reresolution{}, err
	}
	out := Reresolution{ServerName: serverName}
	if n, ok := r.Get("name"); ok {
		out.ServerName = n
	}
	started, _ := r.Get("started")
	out.Started = started == "yes"
	out.RetryAfter, err = atoiField(r, "retry_after")
	return out, err
}

// Statistics returns the daemon's integer counters (non-integer fields are skipped).
func (c *Client) Statistics(ctx context.Context) (map[string]int64, error) {
	r, err := c.doOK(ctx, "statistics", nil)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, f := range r.Fields {
		if n, err := strconv.ParseInt(f.Value, 10, 64); err == nil {
			out[f.Key] = n
		}
	}
	return out, nil
}

// ResetStatistics zeroes the counters.
func (c *Client) ResetStatistics(ctx context.Context) error {
	_, err := c.doOK(ctx, "reset-statistics", nil)
	return err
}
