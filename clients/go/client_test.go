package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAndClient starts a fake daemon in the test's own directory and a client with options o on it;
// both stop when the test ends.
func fakeAndClient(t *testing.T, o Options) (*fakeServer, *Client) {
	f := newFake(t.TempDir(), "f.sock")
	t.Cleanup(f.stop)
	o.Path = f.path
	c := New(o)
	t.Cleanup(func() { c.Close() })
	return f, c
}

func TestFakeResolveAndVerbs(t *testing.T) {
	_, c := fakeAndClient(t, Options{PoolSize: 1})
	ctx := context.Background()
	r, err := c.Resolve(ctx, "m.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Targets) != 2 || r.Targets[0].Port != 8443 || r.Targets[0].Addresses[0] != "2a01:4f8::10" || r.SNI == nil || *r.SNI != "m.example" {
		t.Fatalf("bad resolution %+v", r)
	}
	if l := r.Lifetimes; l.WellKnownMaxAge != nil || l.SRVTTL == nil || *l.SRVTTL != 300 || l.AddressTTL == nil || *l.AddressTTL != 600 {
		t.Fatalf("lifetimes %+v", l)
	}
	if rr, err := c.Reresolve(ctx, "m.example"); err != nil || rr != (Reresolution{"m.example", true, 0}) {
		t.Fatalf("reresolve: %+v %v", rr, err)
	}
	if rr, err := c.Reresolve(ctx, "m.example"); err != nil || rr != (Reresolution{"m.example", false, 59}) {
		t.Fatalf("reresolve again: %+v %v", rr, err)
	}
	if _, err := c.Reresolve(ctx, "bad name"); !errors.Is(err, ErrInvalidServerName) {
		t.Fatalf("reresolve bad name: %v", err)
	}
	ip, err := c.Resolve(ctx, "1.2.3.4")
	if err != nil || ip.SNI != nil || ip.TLSServerName != "1.2.3.4" || ip.Step != "1" {
		t.Fatalf("ip literal: %+v %v", ip, err)
	}
	_, err = c.Resolve(ctx, "bad name")
	var re *ResolveError
	if !errors.As(err, &re) || re.Code != "invalid_server_name" || re.ServerName != "bad name" || !errors.Is(err, ErrInvalidServerName) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err = c.Resolve(ctx, "10.1.2.3"); !errors.Is(err, ErrAddressDenied) {
		t.Fatalf("denied: %v", err)
	}
	if err := c.ResetStatistics(ctx); !errors.Is(err, ErrForbidden) {
		t.Fatalf("forbidden: %v", err)
	}
	entries, err := c.ShowCache(ctx, "", true)
	if err != nil || len(entries) != 2 || entries[0].Resolution == nil || entries[1].Code != "no_address" {
		t.Fatalf("show-cache: %+v %v", entries, err)
	}
	page, next, err := c.ShowCachePage(ctx, "", true, "", 1)
	if err != nil || len(page) != 1 || page[0].ServerName != "a.example" || next != "a.example" {
		t.Fatalf("show-cache page: %+v %q %v", page, next, err)
	}
	st, err := c.Statistics(ctx)
	if err != nil || st["requests"] != 10 {
		t.Fatalf("stats %v %v", st, err)
	}
	if c.ServerInfo()["max_inflight"] != "8" {
		t.Fatalf("server info %v", c.ServerInfo())
	}
	if _, err := c.Do(ctx, "flurb", nil); err != nil {
		t.Fatal(err)
	}
}

func TestFakePipeliningOutOfOrder(t *testing.T) {
	f, c := fakeAndClient(t, Options{PoolSize: 2})
	ctx := context.Background()
	var order []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	one := func(n string) {
		defer wg.Done()
		r, err := c.Resolve(ctx, n)
		if err != nil || r.ServerName != n {
			t.Errorf("%s: %v", n, err)
			return
		}
		mu.Lock()
		order = append(order, n)
		mu.Unlock()
	}
	wg.Add(1)
	go one("slow.example")
	time.Sleep(50 * time.Millisecond)
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go one(fmt.Sprintf("n%d.example", i))
	}
	wg.Wait()
	if len(order) != 61 || order[60] != "slow.example" {
		t.Fatalf("slow answer should come last: %v", order)
	}
	if n := atomic.LoadInt32(&f.connections); n > 2 {
		t.Fatalf("%d connections for a pool of 2", n)
	}
	if m := atomic.LoadInt32(&f.maxInflight); m > 16 {
		t.Fatalf("max in flight %d exceeds 2 conns x 8", m)
	}
}

func TestFakeTimeout(t *testing.T) {
	_, c := fakeAndClient(t, Options{PoolSize: 1, Timeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := c.Resolve(context.Background(), "hang.example")
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want timeout, got %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("timeout took too long")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Resolve(ctx, "hang.example"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("ctx timeout: %v", err)
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("connection unusable after timeout: %v", err)
	}
}

func TestFakeReconnect(t *testing.T) {
	dir := t.TempDir()
	f := newFake(dir, "r.sock")
	c := New(Options{Path: f.path, PoolSize: 1})
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	f.stop()
	f = newFake(dir, "r.sock")
	if _, err := c.Resolve(ctx, "1.2.3.4"); err != nil {
		t.Fatalf("no transparent reconnect: %v", err)
	}
	// socket missing for a while: the reconnect waits for it (ConnectRetry)
	f.stop()
	later := make(chan *fakeServer, 1)
	go func() { time.Sleep(400 * time.Millisecond); later <- newFake(dir, "r.sock") }()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("slow restart: %v", err)
	}
	(<-later).stop()
}

func TestFakeRetryOnceThenUnavailable(t *testing.T) {
	dir := t.TempDir()
	f := newFake(dir, "c.sock")
	atomic.StoreInt32(&f.closeAfter, 1)
	c := New(Options{Path: f.path, PoolSize: 1})
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("retry after close: %v", err)
	}
	c.Close()
	f.stop()

	f = newFake(dir, "n.sock")
	defer f.stop()
	atomic.StoreInt32(&f.closeAfter, -1)
	c = New(Options{Path: f.path, PoolSize: 1})
	defer c.Close()
	if err := c.Ping(ctx); !errors.Is(err, ErrDaemonUnavailable) {
		t.Fatalf("want unavailable: %v", err)
	}
	if n := atomic.LoadInt32(&f.connections); n != 2 {
		t.Fatalf("want exactly one reconnect, got %d connections", n)
	}
}

func TestFakeShuttingDownRetries(t *testing.T) {
	f := newFake(t.TempDir(), "s.sock")
	defer f.stop()
	atomic.StoreInt32(&f.shuttingDown, 1)
	c := New(Options{Path: f.path, PoolSize: 1})
	defer c.Close()
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := atomic.LoadInt32(&f.connections); n != 2 {
		t.Fatalf("connections %d", n)
	}
}

func TestFakeDrainingDaemonDuringReconnect(t *testing.T) {
	f, c := fakeAndClient(t, Options{PoolSize: 1})
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	atomic.StoreInt32(&f.shuttingDown, 1)
	atomic.StoreInt32(&f.helloDrain, 3)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatalf("draining daemon: %v", err)
	}
	if n := atomic.LoadInt32(&f.connections); n != 5 {
		t.Fatalf("connections %d, want 5", n)
	}
}

func TestNoDaemon(t *testing.T) {
	c := New(Options{Path: t.TempDir() + "/none.sock", ConnectRetry: 200 * time.Millisecond})
	defer c.Close()
	if err := c.Ping(context.Background()); !errors.Is(err, ErrDaemonUnavailable) {
		t.Fatalf("want unavailable: %v", err)
	}
}

func TestSocketPathOrder(t *testing.T) {
	// explicit path, $MXRESOLVED_SOCKET, /run/mxresolved/socket when it exists, ./.mxresolved/
	packaged := filepath.Join(t.TempDir(), "packaged.sock")
	saved := PackagedSocketPath
	PackagedSocketPath = packaged
	defer func() { PackagedSocketPath = saved }()
	t.Setenv("MXRESOLVED_SOCKET", "/x/y.sock")
	if p := New(Options{Path: "/explicit.sock"}).opts.Path; p != "/explicit.sock" {
		t.Fatal(p)
	}
	if SocketPath() != "/x/y.sock" {
		t.Fatal(SocketPath())
	}
	if err := os.WriteFile(packaged, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if SocketPath() != "/x/y.sock" {
		t.Fatal(SocketPath())
	}
	t.Setenv("MXRESOLVED_SOCKET", "")
	if SocketPath() != packaged {
		t.Fatal(SocketPath())
	}
	os.Remove(packaged)
	if SocketPath() != ".mxresolved/mxresolved.sock" && SocketPath() != "./.mxresolved/mxresolved.sock" {
		t.Fatal(SocketPath())
	}
}
