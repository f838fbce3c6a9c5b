"""Blocking, thread-safe client: one pipelined connection shared by all threads."""
from __future__ import annotations

import socket
import threading
import time
from typing import Any, Dict, Optional, Sequence

from . import _api
from ._codec import Reply
from ._pipeline import (ATTEMPTS, DRAIN_PAUSE, ConnectionLost, Pipeline, connect_delays, is_draining,
                        unavailable)
from .errors import DaemonUnavailable, MxResolvedError, ProtocolError, RequestTimeout


class _Waiter:
    __slots__ = ("event", "reply", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Optional[Reply] = None
        self.error: Optional[BaseException] = None


def _connect_unix(path: str, deadline: float, retry_window: float) -> socket.socket:
    """Connect, retrying briefly while the socket is absent/refusing (daemon restarting)."""
    give_up = min(deadline, time.monotonic() + retry_window)
    for delay in connect_delays():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            s.connect(path)
            s.settimeout(None)
            return s
        except (FileNotFoundError, ConnectionRefusedError, BlockingIOError, InterruptedError) as e:
            s.close()
            if time.monotonic() + delay >= give_up:
                raise DaemonUnavailable(f"cannot connect to mxresolved at {path}: {e}") from e
            time.sleep(delay)
        except socket.timeout as e:
            s.close()
            raise RequestTimeout(f"timed out connecting to {path}") from e
        except OSError as e:
            s.close()
            raise DaemonUnavailable(f"cannot connect to mxresolved at {path}: {e}") from e
    raise AssertionError("connect_delays() is endless")


class _Connection:
    """A socket, its Pipeline (guarded by ``plock``) and a reader thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pipe: Pipeline[_Waiter] = Pipeline("p")
        self.plock = threading.Lock()
        self.wlock = threading.Lock()
        self.thread = threading.Thread(target=self._read_loop, name="mxresolved-client-reader", daemon=True)
        self.thread.start()

    @property
    def dead(self) -> bool:
        return self.pipe.dead

    def _read_loop(self) -> None:
        err: BaseException = ConnectionLost("connection closed by the daemon")
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                with self.plock:
                    done, out = self.pipe.receive(chunk)
                self._send(out)
                for w, reply in done:
                    w.reply = reply
                    w.event.set()
        except ProtocolError as e:
            err = e
        except OSError as e:
            err = ConnectionLost(f"connection error: {e}")
        self._die(err)

    def _send(self, data: bytes) -> None:
        if not data:
            return
        try:
            with self.wlock:
                self.sock.sendall(data)
        except OSError as e:
            self._die(ConnectionLost(f"write failed: {e}"))

    def _die(self, err: BaseException) -> None:
        with self.plock:
            waiters = self.pipe.fail()
        for w in waiters:
            w.error = err
            w.event.set()
        try:
            self.sock.close()
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._die(ConnectionLost("client closed the connection"))

    def request(self, verb: str, args: Sequence[str], options: Dict[str, str], deadline: float) -> Reply:
        w = _Waiter()
        with self.plock:
            rid, out = self.pipe.submit(verb, args, options, w)
        self._send(out)
        if not w.event.wait(max(0.0, deadline - time.monotonic())):
            with self.plock:
                out = self.pipe.cancel(rid)
            self._send(out)
            if w.reply is None and w.error is None:
                raise RequestTimeout("mxresolved did not answer in time")
        if w.error is not None:
            raise w.error
        assert w.reply is not None
        return w.reply


class Client(_api.Verbs):
    """Blocking client for mxresolved, safe to share between threads.

    Requests from all threads are pipelined on one connection with request ids.
    Every call has a timeout (``timeout`` here, or per call). If the connection turns
    out closed (daemon restarted), the client reconnects and resends once.
    """

    def __init__(self, path: Optional[str] = None, timeout: float = 5.0, connect_retry: float = 2.0,
                 hello: bool = True) -> None:
        self._configure(path, timeout, connect_retry, hello)
        self._lock = threading.Lock()
        self._conn: Optional[_Connection] = None
        self._closed = False

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _get_conn(self, deadline: float) -> _Connection:
        with self._lock:
            if self._closed:
                raise MxResolvedError("client is closed")
            if self._conn is not None and not self._conn.dead:
                return self._conn
            give_up = min(deadline, time.monotonic() + self.connect_retry)
            while True:
                conn = _Connection(_connect_unix(self.path, deadline, max(0.0, give_up - time.monotonic())))
                try:
                    if self.do_hello:
                        self.server_info = conn.pipe.accept_hello(conn.request("hello", ["1"], {}, deadline))
                    break
                except ConnectionLost:
                    # A daemon that is stopping may still accept (and answer shutting_down or
                    # close): keep trying within the connect window; the new one will take over.
                    conn.close()
                    if time.monotonic() + DRAIN_PAUSE >= give_up:
                        raise
                    time.sleep(DRAIN_PAUSE)
                except BaseException:
                    conn.close()
                    raise
            self._conn = conn
            return conn

    def _roundtrip(self, verb: str, args: Sequence[str], options: Dict[str, str],
                   timeout: Optional[float]) -> Reply:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        last: Optional[BaseException] = None
        for attempt in range(ATTEMPTS):
            conn: Optional[_Connection] = None
            try:
                conn = self._get_conn(deadline)
                reply = conn.request(verb, args, options, deadline)
            except ConnectionLost as e:
                last = e
                continue
            if is_draining(reply) and attempt + 1 < ATTEMPTS:
                with self._lock:
                    if self._conn is conn:
                        conn.close()
                        self._conn = None
                last = None
                continue
            return reply
        raise unavailable(self.path, last)

    def call(self, c: _api.Call, timeout: Optional[float] = None) -> Any:
        return c.convert(self._roundtrip(c.verb, c.args, c.options, timeout))
