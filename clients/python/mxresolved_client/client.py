"""Blocking, thread-safe client: one pipelined connection shared by all threads."""
from __future__ import annotations

import socket
import threading
import time
from typing import Any, Dict, Optional, Sequence

from . import _api
from ._codec import Reply
from ._pipeline import ConnectionLost, Pipeline
from ._reconnect import CannotConnect, Reconnecting, run_blocking
from .errors import ProtocolError, RequestTimeout


class _Waiter:
    __slots__ = ("event", "reply", "error")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Optional[Reply] = None
        self.error: Optional[BaseException] = None


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


class Client(Reconnecting[_Connection]):
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
            self._close()

    # The steps of the shared reconnect rule: each blocks until it is done (run_blocking).

    async def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def _connect_once(self, deadline: float) -> _Connection:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(max(0.001, deadline - time.monotonic()))
            s.connect(self.path)
            s.settimeout(None)
        except (FileNotFoundError, ConnectionRefusedError, BlockingIOError, InterruptedError) as e:
            s.close()
            raise CannotConnect(e, retry=True) from e
        except socket.timeout as e:
            s.close()
            raise RequestTimeout(f"timed out connecting to {self.path}") from e
        except OSError as e:
            s.close()
            raise CannotConnect(e, retry=False) from e
        return _Connection(s)

    async def _send(self, conn: _Connection, verb: str, args: Sequence[str], options: Dict[str, str],
                    deadline: float) -> Reply:
        return conn.request(verb, args, options, deadline)

    async def _connection(self, deadline: float) -> _Connection:
        with self._lock:
            return await self._reuse_or_open(deadline)

    def _drop(self, conn: _Connection) -> None:
        with self._lock:
            super()._drop(conn)

    def call(self, c: _api.Call, timeout: Optional[float] = None) -> Any:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return c.convert(run_blocking(self._send_with_retry(c.verb, c.args, c.options, deadline)))
