package client

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fakeServer is a tiny protocol-v1 speaker for unit tests of client logic.
type fakeServer struct {
	path         string
	ln           net.Listener
	closeAfter   int32 // >0: close each connection after this many non-hello requests; -1: never answer
	shuttingDown int32 // answer the first N requests with shutting_down
	helloDrain   int32 // answer the first N hellos with shutting_down
	reresolved   int32 // reresolve requests seen
	connections  int32
	inflight     int32
	maxInflight  int32
	mu           sync.Mutex
	conns        []net.Conn
}

func newFake(dir, name string) *fakeServer {
	p := filepath.Join(dir, name)
	os.Remove(p)
	ln, err := net.Listen("unix", p)
	if err != nil {
		panic(err)
	}
	f := &fakeServer{path: p, ln: ln}
	go f.accept()
	return f
}

func (f *fakeServer) stop() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	os.Remove(f.path)
}

func (f *fakeServer) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		atomic.AddInt32(&f.connections, 1)
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		go f.serve(c)
	}
}

func (f *fakeServer) serve(c net.Conn) {
	defer c.Close()
	var wmu sync.Mutex
	send := func(s string) {
		wmu.Lock()
		c.Write([]byte(s + "\n"))
		wmu.Unlock()
	}
	br := bufio.NewReader(c)
	n := int32(0)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if !strings.HasPrefix(line, "hello") {
			n++
			ca := atomic.LoadInt32(&f.closeAfter)
			if ca < 0 || (ca > 0 && n > ca) {
				return
			}
		}
		go f.answer(line, send)
	}
}

func (f *fakeServer) answer(line string, send func(string)) {
	cur := atomic.AddInt32(&f.inflight, 1)
	defer atomic.AddInt32(&f.inflight, -1)
	for {
		m := atomic.LoadInt32(&f.maxInflight)
		if cur <= m || atomic.CompareAndSwapInt32(&f.maxInflight, m, cur) {
			break
		}
	}
	toks := strings.Fields(line)
	verb := toks[0]
	var args []string
	idf := ""
	for _, t := range toks[1:] {
		if strings.HasPrefix(t, "id=") {
			idf = " " + t
		} else if !strings.Contains(t, "=") {
			a, _ := Unescape(t)
			args = append(args, a)
		}
	}
	if verb != "hello" && atomic.AddInt32(&f.shuttingDown, -1) >= 0 {
		send("err" + idf + " code=shutting_down msg=bye")
		return
	}
	if verb == "hello" && atomic.AddInt32(&f.helloDrain, -1) >= 0 {
		send("err" + idf + " code=shutting_down msg=draining")
		return
	}
	switch verb {
	case "hello":
		send("ok" + idf + " proto=1 server=fake/0 max_line=4096 max_inflight=8")
	case "ping":
		send("ok" + idf + " pong=1")
	case "resolve":
		name := args[0]
		n := Escape(name)
		switch {
		case name == "hang.example":
			return
		case name == "slow.example":
			time.Sleep(500 * time.Millisecond)
		}
		switch {
		case strings.Contains(name, " "):
			send("err" + idf + " name=" + n + " code=invalid_server_name msg=bad source=network ttl=0")
		case strings.HasPrefix(name, "10."):
			send("err" + idf + " name=" + n + " code=address_denied msg=denied source=network ttl=0")
		case name[0] >= '0' && name[0] <= '9':
			send("ok" + idf + " name=" + n + " step=1 source=network ttl=60 host=" + n + " tls_name=" + n + " sni= target=" + n + ",8448," + n)
		default:
			send("ok" + idf + " name=" + n + " step=3.3 source=network ttl=300 host=" + n + " tls_name=" + n + " sni=" + n +
				" target=fed." + n + ",8443,2a01:4f8::10,203.0.114.7 target=fed2." + n + ",443,203.0.114.8 srv_ttl=300 address_ttl=600 future=1")
		}
	case "reresolve":
		n := Escape(args[0])
		switch {
		case strings.Contains(args[0], " "):
			send("err" + idf + " name=" + n + " code=invalid_server_name msg=bad")
		case atomic.AddInt32(&f.reresolved, 1) == 1:
			send("ok" + idf + " name=" + n + " started=yes")
		default:
			send("ok" + idf + " name=" + n + " started=no retry_after=59")
		}
	case "show-cache":
		// One entry per page, as to a peer that is not an admin, continued from after=.
		if !strings.Contains(line, " after=a.example") {
			send("entry" + idf + " name=a.example status=ok ttl=5 step=3.3 host=a.example tls_name=a.example sni=a.example target=a.example,8448,203.0.114.9")
			send("ok" + idf + " count=1 next=a.example")
		} else {
			send("entry" + idf + " name=b.example status=err ttl=7 code=no_address msg=none")
			send("ok" + idf + " count=1")
		}
	case "statistics":
		send("ok" + idf + " requests=10 hits=4 misses=6 stale=0 coalesced=1 inflight=0 note=x")
	case "reset-statistics":
		send("err" + idf + " code=forbidden msg=no")
	default:
		send("err" + idf + " code=unknown_verb msg=unknown")
	}
}
