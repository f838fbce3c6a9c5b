"""A small fake mxresolved for unit tests of client logic (pipelining, ids, timeouts,
reconnects). It speaks protocol v1 but resolves from a canned table."""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import List, Optional, Set

from mxresolved_client._codec import escape, unescape

SLOW = {"slow.example": 0.5}
HANG = {"hang.example"}


class FakeServer:
    def __init__(self, path: str, close_after: Optional[int] = None, shutting_down: int = 0,
                 hello_shutting_down: int = 0) -> None:
        self.path = path
        self.close_after = close_after          # close each connection after N non-hello requests
        self.shutting_down = shutting_down      # answer the first N requests with shutting_down
        self.hello_shutting_down = hello_shutting_down  # answer the first N hellos with shutting_down
        self.requests: List[str] = []
        self.reresolved: Set[str] = set()
        self.connections = 0
        self.max_seen_inflight = 0
        self._inflight = 0
        self._lock = threading.Lock()
        self._socks: List[socket.socket] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(path):
            os.unlink(path)
        self.sock.bind(path)
        self.sock.listen(64)
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for s in list(self._socks):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _accept(self) -> None:
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._socks.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        wlock = threading.Lock()
        buf = b""
        count = 0

        def send(line: str) -> None:
            with wlock:
                try:
                    c.sendall(line.encode() + b"\n")
                except OSError:
                    pass
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.decode("utf-8", "replace").rstrip("\r")
                    self.requests.append(line)
                    toks = line.split()
                    verb = toks[0] if toks else ""
                    if verb != "hello":
                        count += 1
                        if self.close_after is not None and count > self.close_after:
                            c.shutdown(socket.SHUT_RDWR)
                            c.close()
                            return
                    threading.Thread(target=self._answer, args=(line, send), daemon=True).start()
        except OSError:
            return

    def _answer(self, line: str, send) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self._inflight += 1
            self.max_seen_inflight = max(self.max_seen_inflight, self._inflight)
        try:
            self._answer2(line, send)
        finally:
            with self._lock:
                self._inflight -= 1

    def _answer2(self, line: str, send) -> None:  # type: ignore[no-untyped-def]
        toks = line.split()
        verb, rest = (toks[0], toks[1:]) if toks else ("", [])
        args = [unescape(t) for t in rest if "=" not in t]
        opts = dict(t.split("=", 1) for t in rest if "=" in t)
        idf = f" id={opts['id']}" if "id" in opts else ""
        if verb != "hello" and self.shutting_down > 0:
            self.shutting_down -= 1
            send(f"err{idf} code=shutting_down msg=bye")
            return
        if verb == "hello" and self.hello_shutting_down > 0:
            self.hello_shutting_down -= 1
            send(f"err{idf} code=shutting_down msg=draining")
        elif verb == "hello":
            send(f"ok{idf} proto=1 server=fake/0.0.1 max_line=4096 max_inflight=8")
        elif verb == "ping":
            send(f"ok{idf} pong=1")
        elif verb == "version":
            send(f"ok{idf} version=0.0.1 proto=1")
        elif verb == "resolve":
            name = args[0]
            if name in HANG:
                return
            time.sleep(SLOW.get(name, 0))
            n = escape(name)
            if " " in name:
                send(f"err{idf} name={n} code=invalid_server_name msg=bad%20char source=network ttl=0")
            elif name.startswith("10."):
                send(f"err{idf} name={n} code=address_denied msg=denied source=network ttl=0")
            elif name.startswith("servfail."):
                send(f"err{idf} name={n} code=dns_servfail msg=x source=network ttl=30")
            elif name[0].isdigit():
                send(f"ok{idf} name={n} step=1 source=network ttl=3600 host={n} tls_name={n} sni= "
                     f"target={n},8448,{n}")
            else:
                tr = " trace=srv%20lookup trace=a%20lookup" if opts.get("trace") == "yes" else ""
                send(f"ok{idf} name={n} step=3.3 source=network ttl=300 host={n} tls_name={n} sni={n} "
                     f"target=fed.{n},8443,2a01:4f8::10,203.0.114.7 target=fed2.{n},443,203.0.114.8 "
                     f"srv_ttl=300 address_ttl=600 future=yes{tr}")
        elif verb == "show-cache":
            entries = [("a.example", f"entry{idf} name=a.example status=ok ttl=5 step=3.3 host=a.example tls_name=a.example "
                                     f"sni=a.example target=a.example,8448,203.0.114.9"),
                       ("b.example", f"entry{idf} name=b.example status=err ttl=7 code=no_address msg=none")]
            entries = [e for e in entries if e[0] > unescape(opts.get("after", ""))]
            page = entries[:int(opts.get("limit", "1000"))]
            for _, line in page:
                send(line)
            send(f"ok{idf} count={len(page)}" + (f" next={page[-1][0]}" if len(page) < len(entries) else ""))
        elif verb == "flush-caches":
            send(f"ok{idf} flushed={len(args)}")
        elif verb == "reresolve":
            n = escape(args[0])
            with self._lock:
                first = args[0] not in self.reresolved
                self.reresolved.add(args[0])
            if " " in args[0]:
                send(f"err{idf} name={n} code=invalid_server_name msg=bad%20char")
            elif first:
                send(f"ok{idf} name={n} started=yes")
            else:
                send(f"ok{idf} name={n} started=no retry_after=59")
        elif verb == "revalidate":
            send(f"ok{idf} queued={len(args)}")
        elif verb == "statistics":
            send(f"ok{idf} requests=10 hits=4 misses=6 stale=0 coalesced=1 inflight=0 new_thing=x")
        elif verb == "reset-statistics":
            send(f"err{idf} code=forbidden msg=not%20allowed")
        else:
            send(f"err{idf} code=unknown_verb msg=unknown")
