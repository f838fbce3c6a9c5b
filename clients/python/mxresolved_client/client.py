"""Blocking, thread-safe client: one pipelined connection shared by all threads."""
from __future__ import annotations

import itertools
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from . import _api
from ._codec import DEFAULT_MAX_INFLIGHT, Reply, encode_request, parse_line
from .errors import DaemonUnavailable, MxResolvedError, ProtocolError, RequestTimeout, UnsupportedVersion
from .types import CacheEntry, Resolution

_MAX_RESPONSE_LINE = 16 * 1024 * 1024


class _ConnectionLost(Exception):
    """Internal: the connection died before the answer arrived (retry once)."""


class _Pending:
    __slots__ = ("event", "reply", "error", "entries")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Optional[Reply] = None
        self.error: Optional[BaseException] = None
        self.entries: List[Reply] = []


def _connect_unix(path: str, deadline: float, retry_window: float) -> socket.socket:
    """Connect, retrying briefly while the socket is absent/refusing (daemon restarting)."""
    give_up = min(deadline, time.monotonic() + retry_window)
    delay = 0.02
    while True:
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
            delay = min(delay * 2, 0.2)
        except socket.timeout as e:
            s.close()
            raise RequestTimeout(f"timed out connecting to {path}") from e
        except OSError as e:
            s.close()
            raise DaemonUnavailable(f"cannot connect to mxresolved at {path}: {e}") from e


class _Connection:
    def __init__(self, sock: socket.socket, max_inflight: int, leftover: bytes) -> None:
        self.sock = sock
        self.wlock = threading.Lock()
        self.plock = threading.Lock()
        self.pending: Dict[str, _Pending] = {}
        self.slots = threading.BoundedSemaphore(max_inflight)
        self.dead = False
        self._buf = leftover
        self.thread = threading.Thread(target=self._read_loop, name="mxresolved-client-reader", daemon=True)
        self.thread.start()

    # -- reader ---------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        err: BaseException = _ConnectionLost("connection closed by the daemon")
        try:
            while True:
                while b"\n" in self._buf:
                    line, self._buf = self._buf.split(b"\n", 1)
                    self._dispatch(parse_line(line))
                if len(self._buf) > _MAX_RESPONSE_LINE:
                    raise ProtocolError(None, "response line too long")
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self._buf += chunk
        except ProtocolError as e:
            err = e
        except OSError as e:
            err = _ConnectionLost(f"connection error: {e}")
        self._die(err)

    def _dispatch(self, reply: Reply) -> None:
        with self.plock:
            p: Optional[_Pending] = None
            if reply.id is not None:
                p = self.pending.get(reply.id)
            elif self.pending:
                # An id-less reply (e.g. line_too_long) goes to the oldest request.
                p = next(iter(self.pending.values()))
            if p is None:
                return  # late answer to a request that timed out
            if not reply.is_final:
                p.entries.append(reply)
                return
            reply.entries = p.entries
            p.reply = reply
            for k, v in list(self.pending.items()):
                if v is p:
                    del self.pending[k]
                    break
        p.event.set()

    def _die(self, err: BaseException) -> None:
        with self.plock:
            self.dead = True
            pend = list(self.pending.values())
            self.pending.clear()
        for p in pend:
            p.error = err
            p.event.set()
        try:
            self.sock.close()
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._die(_ConnectionLost("client closed the connection"))

    # -- requests -------------------------------------------------------------------------------
    def request(self, line: bytes, rid: str, deadline: float) -> Reply:
        if not self.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise RequestTimeout("timed out waiting for a free in-flight slot")
        try:
            p = _Pending()
            with self.plock:
                if self.dead:
                    raise _ConnectionLost("connection is closed")
                self.pending[rid] = p
            try:
                with self.wlock:
                    self.sock.sendall(line)
            except OSError as e:
                self._die(_ConnectionLost(f"write failed: {e}"))
            if not p.event.wait(max(0.0, deadline - time.monotonic())):
                with self.plock:
                    self.pending.pop(rid, None)
                if p.reply is None and p.error is None:
                    raise RequestTimeout("mxresolved did not answer in time")
            if p.error is not None:
                raise p.error
            assert p.reply is not None
            return p.reply
        finally:
            self.slots.release()


class Client:
    """Blocking client for mxresolved, safe to share between threads.

    Requests from all threads are pipelined on one connection with request ids.
    Every call has a timeout (``timeout`` here, or per call). If the connection turns
    out closed (daemon restarted), the client reconnects and resends once.
    """

    def __init__(self, path: Optional[str] = None, timeout: float = 5.0, connect_retry: float = 2.0,
                 hello: bool = True) -> None:
        self.path = path or _api.default_socket_path()
        self.timeout = timeout
        self.connect_retry = connect_retry
        self.do_hello = hello
        self.server_info: Dict[str, Any] = {}
        self._lock = threading.Lock()
        self._conn: Optional[_Connection] = None
        self._ids = itertools.count(1)
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

    def _next_id(self) -> str:
        return f"p{next(self._ids)}"

    def _get_conn(self, deadline: float) -> _Connection:
        with self._lock:
            if self._closed:
                raise MxResolvedError("client is closed")
            if self._conn is not None and not self._conn.dead:
                return self._conn
            give_up = min(deadline, time.monotonic() + self.connect_retry)
            while True:
                sock = _connect_unix(self.path, deadline, max(0.0, give_up - time.monotonic()))
                try:
                    max_inflight, leftover = self._handshake(sock, deadline)
                    break
                except _ConnectionLost:
                    # A daemon that is stopping may still accept (and answer shutting_down or
                    # close): keep trying within the connect window; the new one will take over.
                    sock.close()
                    if time.monotonic() + 0.05 >= give_up:
                        raise
                    time.sleep(0.05)
                except BaseException:
                    sock.close()
                    raise
            self._conn = _Connection(sock, max_inflight, leftover)
            return self._conn

    def _handshake(self, sock: socket.socket, deadline: float) -> "tuple[int, bytes]":
        if not self.do_hello:
            return DEFAULT_MAX_INFLIGHT, b""
        rid = self._next_id()
        buf = b""
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(encode_request("hello", ["1"], request_id=rid))
            while b"\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise _ConnectionLost("connection closed during hello")
                buf += chunk
            sock.settimeout(None)
        except socket.timeout:
            raise RequestTimeout("mxresolved did not answer hello in time") from None
        except OSError as e:
            raise _ConnectionLost(f"hello failed: {e}") from e
        line, leftover = buf.split(b"\n", 1)
        r = parse_line(line)
        if r.ok:
            self.server_info = r.as_dict()
            try:
                return max(1, int(r.get("max_inflight", str(DEFAULT_MAX_INFLIGHT)) or 0)), leftover
            except ValueError:
                return DEFAULT_MAX_INFLIGHT, leftover
        if r.get("code") == "unsupported_version":
            raise UnsupportedVersion("unsupported_version", r.get("msg", "") or "")
        if r.get("code") == "shutting_down":
            raise _ConnectionLost("daemon is shutting down")
        return DEFAULT_MAX_INFLIGHT, leftover

    def _roundtrip(self, verb: str, args: Sequence[str], options: Dict[str, str],
                   timeout: Optional[float]) -> Reply:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        last: Optional[BaseException] = None
        for attempt in range(2):
            rid = self._next_id()
            line = encode_request(verb, args, options, rid)
            conn: Optional[_Connection] = None
            try:
                conn = self._get_conn(deadline)
                reply = conn.request(line, rid, deadline)
            except _ConnectionLost as e:
                last = e
                continue
            if not reply.ok and reply.status != "json" and reply.get("code") == "shutting_down" and attempt == 0:
                with self._lock:
                    if self._conn is conn:
                        conn.close()
                        self._conn = None
                last = None
                continue
            return reply
        raise DaemonUnavailable(f"mxresolved at {self.path} is unavailable: {last or 'shutting down'}")

    def call(self, c: _api.Call, timeout: Optional[float] = None) -> Any:
        return c.convert(self._roundtrip(c.verb, c.args, c.options, timeout))

    # -- verbs ------------------------------------------------------------------------------------
    def request(self, verb: str, *args: str, timeout: Optional[float] = None, **options: str) -> Reply:
        """Send any request; returns the raw Reply (does not raise on ``err``)."""
        return self.call(_api.raw(verb, args, options), timeout)

    def hello(self, versions: str = "1", timeout: Optional[float] = None) -> Dict[str, Any]:
        return self.call(_api.hello(versions), timeout)

    def ping(self, timeout: Optional[float] = None) -> None:
        self.call(_api.ping(), timeout)

    def version(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        return self.call(_api.version(), timeout)

    def resolve(self, server_name: str, *, cache: bool = True, trace: bool = False,
                timeout: Optional[float] = None) -> Resolution:
        """Resolve a server name; raises a ResolveError subclass on failure."""
        return self.call(_api.resolve(server_name, cache, trace), timeout)

    def show_cache(self, server_name: Optional[str] = None, *, failures: bool = False,
                   timeout: Optional[float] = None) -> List[CacheEntry]:
        return self.call(_api.show_cache(server_name, failures), timeout)

    def flush_caches(self, *server_names: str, failures: bool = False, timeout: Optional[float] = None) -> int:
        return self.call(_api.flush_caches(server_names, failures), timeout)

    def revalidate(self, *server_names: str, timeout: Optional[float] = None) -> int:
        return self.call(_api.revalidate(server_names), timeout)

    def statistics(self, timeout: Optional[float] = None) -> _api.Stats:
        return self.call(_api.statistics(), timeout)

    def reset_statistics(self, timeout: Optional[float] = None) -> None:
        self.call(_api.reset_statistics(), timeout)
