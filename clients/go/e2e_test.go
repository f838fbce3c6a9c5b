package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// testDaemon runs the real mxresolved (MXRESOLVED_BIN + MXRESOLVED_TEST_ARGS) on a temp socket.
type testDaemon struct {
	t      *testing.T
	bin    string
	args   []string
	socket string
	state  string
	log    string
	cmd    *exec.Cmd
	exited chan struct{}
}

func startDaemon(t *testing.T) *testDaemon {
	bin := os.Getenv("MXRESOLVED_BIN")
	if bin == "" {
		t.Skip("MXRESOLVED_BIN not set (no daemon binary)")
	}
	dir, err := os.MkdirTemp("/tmp", "mxg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &testDaemon{t: t, bin: bin, args: strings.Fields(os.Getenv("MXRESOLVED_TEST_ARGS")),
		socket: filepath.Join(dir, "d.sock"), state: filepath.Join(dir, "state"), log: filepath.Join(dir, "daemon.log")}
	os.MkdirAll(d.state, 0o755)
	d.start()
	t.Cleanup(d.stop)
	return d
}

func (d *testDaemon) start() {
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	argv := append([]string{"--socket", d.socket, "--state-dir", d.state}, d.args...)
	d.cmd = exec.Command(d.bin, argv...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("start daemon: %v", err)
	}
	logf.Close()
	exited := make(chan struct{})
	d.exited = exited
	go func(c *exec.Cmd) { c.Wait(); close(exited) }(d.cmd)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			d.t.Fatalf("daemon exited early: %s", d.tail())
		default:
		}
		if nc, err := net.DialTimeout("unix", d.socket, time.Second); err == nil {
			nc.SetDeadline(time.Now().Add(2 * time.Second))
			nc.Write([]byte("ping\n"))
			buf := make([]byte, 64)
			n, _ := nc.Read(buf)
			nc.Close()
			if strings.HasPrefix(string(buf[:n]), "ok") {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("daemon did not answer within 30s: %s", d.tail())
}

func (d *testDaemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
	time.Sleep(50 * time.Millisecond)
	d.cmd = nil
}

func (d *testDaemon) tail() string {
	b, _ := os.ReadFile(d.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func TestE2EVectors(t *testing.T) {
	d := startDaemon(t)
	runRequestVectors(t, d.socket)
}

func TestE2EResolveAndErrors(t *testing.T) {
	d := startDaemon(t)
	c := New(Options{Path: d.socket, Timeout: 10 * time.Second})
	defer c.Close()
	ctx := context.Background()
	r, err := c.Resolve(ctx, "1.2.3.4")
	if err != nil {
		t.Fatal(err)
	}
	if r.Step != "1" || r.HostHeader != "1.2.3.4" || r.TLSServerName != "1.2.3.4" || r.SNI != nil ||
		len(r.Targets) != 1 || r.Targets[0].Host != "1.2.3.4" || r.Targets[0].Port != 8448 {
		t.Fatalf("1.2.3.4: %+v", r)
	}
	r6, err := c.Resolve(ctx, "[2a01:4f8::1]:8449")
	if err != nil || r6.HostHeader != "[2a01:4f8::1]:8449" || r6.TLSServerName != "2a01:4f8::1" || r6.Targets[0].Port != 8449 {
		t.Fatalf("ipv6: %+v %v", r6, err)
	}
	for _, bad := range []string{"bad name", "exämple.com", "example.com:0", "example.com:70000", "::1"} {
		_, err := c.Resolve(ctx, bad)
		var re *ResolveError
		if !errors.As(err, &re) || !errors.Is(err, ErrInvalidServerName) || re.ServerName != bad {
			t.Errorf("%q: want invalid_server_name, got %v", bad, err)
		}
	}
	if _, err := c.Resolve(ctx, "10.1.2.3"); !errors.Is(err, ErrAddressDenied) {
		t.Errorf("10.1.2.3: %v", err)
	}
	if _, err := c.Resolve(ctx, "[2001:db8::1]:8449"); !errors.Is(err, ErrAddressDenied) {
		t.Errorf("2001:db8::1: %v", err)
	}
	if st, err := c.Statistics(ctx); err != nil || st["requests"] < 1 {
		t.Errorf("statistics %v %v", st, err)
	}
	if _, err := c.ShowCache(ctx, "", true); err != nil {
		t.Errorf("show-cache: %v", err)
	}
	if name := os.Getenv("MXRESOLVED_TEST_RESOLVABLE"); name != "" {
		rr, err := c.Resolve(ctx, name)
		if err != nil || len(rr.Targets) == 0 || len(rr.Targets[0].Addresses) == 0 {
			t.Fatalf("%s: %+v %v", name, rr, err)
		}
		if name == "wk-noport.test" { // the test world's well-known + _matrix-fed SRV name
			if rr.Step != "3.3" || rr.HostHeader != "delegated.test" || rr.TLSServerName != "delegated.test" ||
				rr.Targets[0].Host != "srvtarget.test" || rr.Targets[0].Port != 8443 {
				t.Errorf("%s: unexpected answer %+v", name, rr)
			}
			if l := rr.Lifetimes; l.SRVTTL == nil || l.AddressTTL == nil {
				t.Errorf("%s: the answer used an SRV and addresses but lacks their lifetimes: %+v", name, l)
			}
		}
	}
}

func TestE2EConcurrent(t *testing.T) {
	d := startDaemon(t)
	c := New(Options{Path: d.socket, Timeout: 20 * time.Second, PoolSize: 3})
	defer c.Close()
	var wg sync.WaitGroup
	var failures int32
	for i := 0; i < 400; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			n := fmt.Sprintf("1.2.%d.%d", i/200, i%200+1)
			r, err := c.Resolve(context.Background(), n)
			if err != nil || r.ServerName != n || r.Targets[0].Addresses[0] != n {
				atomic.AddInt32(&failures, 1)
				t.Errorf("%s: %+v %v", n, r, err)
			}
		}(i)
	}
	wg.Wait()
}

func TestE2ERestartMidUse(t *testing.T) {
	d := startDaemon(t)
	c := New(Options{Path: d.socket, Timeout: 30 * time.Second, ConnectRetry: 20 * time.Second, PoolSize: 2})
	defer c.Close()
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	var stop int32
	var ok, bad int64
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			n := fmt.Sprintf("1.2.3.%d", i+1)
			for atomic.LoadInt32(&stop) == 0 {
				if r, err := c.Resolve(context.Background(), n); err != nil || r.ServerName != n {
					atomic.AddInt64(&bad, 1)
					t.Errorf("during restart: %v", err)
				} else {
					atomic.AddInt64(&ok, 1)
				}
			}
		}(i)
	}
	time.Sleep(500 * time.Millisecond)
	before := atomic.LoadInt64(&ok)
	d.stop()
	d.start()
	time.Sleep(500 * time.Millisecond)
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	if before == 0 || atomic.LoadInt64(&ok) <= before || bad != 0 {
		t.Fatalf("ok before %d, total %d, failures %d", before, ok, bad)
	}
	d.stop()
	c2 := New(Options{Path: d.socket, ConnectRetry: 300 * time.Millisecond})
	defer c2.Close()
	if err := c2.Ping(context.Background()); !errors.Is(err, ErrDaemonUnavailable) {
		t.Fatalf("stopped daemon: %v", err)
	}
}
