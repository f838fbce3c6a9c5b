"""asyncio client: concurrent calls are pipelined on one connection with request ids."""
from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, Dict, List, Optional, Sequence

from . import _api
from ._codec import DEFAULT_MAX_INFLIGHT, Reply, encode_request, parse_line
from .errors import DaemonUnavailable, MxResolvedError, ProtocolError, RequestTimeout, UnsupportedVersion
from .types import CacheEntry, Resolution

_LIMIT = 16 * 1024 * 1024


class _ConnectionLost(Exception):
    pass


class _Pending:
    __slots__ = ("future", "entries")

    def __init__(self, fut: "asyncio.Future[Reply]") -> None:
        self.future = fut
        self.entries: List[Reply] = []


class _AsyncConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_inflight: int) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: Dict[str, _Pending] = {}
        self.slots = asyncio.Semaphore(max_inflight)
        self.dead = False
        self.task = asyncio.ensure_future(self._read_loop())

    async def _read_loop(self) -> None:
        err: BaseException = _ConnectionLost("connection closed by the daemon")
        try:
            while True:
                line = await self.reader.readline()
                if not line.endswith(b"\n"):
                    break
                self._dispatch(parse_line(line[:-1]))
        except ProtocolError as e:
            err = e
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            err = _ConnectionLost(f"connection error: {e}")
        except asyncio.CancelledError:
            err = _ConnectionLost("client closed the connection")
        self._die(err)

    def _dispatch(self, reply: Reply) -> None:
        key: Optional[str] = None
        if reply.id is not None and reply.id in self.pending:
            key = reply.id
        elif reply.id is None and self.pending:
            key = next(iter(self.pending))
        if key is None:
            return
        p = self.pending[key]
        if not reply.is_final:
            p.entries.append(reply)
            return
        del self.pending[key]
        reply.entries = p.entries
        if not p.future.done():
            p.future.set_result(reply)

    def _die(self, err: BaseException) -> None:
        self.dead = True
        pend = list(self.pending.values())
        self.pending.clear()
        for p in pend:
            if not p.future.done():
                p.future.set_exception(err)
        try:
            self.writer.close()
        except Exception:  # pragma: no cover
            pass

    def close(self) -> None:
        if not self.task.done():
            self.task.cancel()
        self._die(_ConnectionLost("client closed the connection"))

    async def request(self, line: bytes, rid: str) -> Reply:
        async with self.slots:
            if self.dead:
                raise _ConnectionLost("connection is closed")
            fut: "asyncio.Future[Reply]" = asyncio.get_running_loop().create_future()
            self.pending[rid] = _Pending(fut)
            try:
                self.writer.write(line)
                await self.writer.drain()
            except (OSError, RuntimeError) as e:
                self._die(_ConnectionLost(f"write failed: {e}"))
            try:
                return await fut
            finally:
                self.pending.pop(rid, None)


class AsyncClient:
    """asyncio client for mxresolved. Create it inside a running loop (or call methods
    from one); concurrent calls share one pipelined connection. Every call has a timeout;
    after a closed connection the client reconnects and resends once."""

    def __init__(self, path: Optional[str] = None, timeout: float = 5.0, connect_retry: float = 2.0,
                 hello: bool = True) -> None:
        self.path = path or _api.default_socket_path()
        self.timeout = timeout
        self.connect_retry = connect_retry
        self.do_hello = hello
        self.server_info: Dict[str, Any] = {}
        self._conn: Optional[_AsyncConnection] = None
        self._lock: Optional[asyncio.Lock] = None
        self._ids = itertools.count(1)
        self._closed = False

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _next_id(self) -> str:
        return f"a{next(self._ids)}"

    async def _open(self, deadline: float) -> _AsyncConnection:
        give_up = min(deadline, time.monotonic() + self.connect_retry)
        while True:
            try:
                return await self._open_once(deadline, give_up)
            except _ConnectionLost:
                # A stopping daemon may still accept and answer shutting_down: retry in the window.
                if time.monotonic() + 0.05 >= give_up:
                    raise
                await asyncio.sleep(0.05)

    async def _open_once(self, deadline: float, give_up: float) -> _AsyncConnection:
        delay = 0.02
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path, limit=_LIMIT)
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                if time.monotonic() + delay >= give_up:
                    raise DaemonUnavailable(f"cannot connect to mxresolved at {self.path}: {e}") from e
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)
            except OSError as e:
                raise DaemonUnavailable(f"cannot connect to mxresolved at {self.path}: {e}") from e
        max_inflight = DEFAULT_MAX_INFLIGHT
        if self.do_hello:
            try:
                writer.write(encode_request("hello", ["1"], request_id=self._next_id()))
                await writer.drain()
                line = await reader.readline()
            except OSError as e:
                writer.close()
                raise _ConnectionLost(f"hello failed: {e}") from e
            if not line.endswith(b"\n"):
                writer.close()
                raise _ConnectionLost("connection closed during hello")
            r = parse_line(line[:-1])
            if r.ok:
                self.server_info = r.as_dict()
                v = r.get("max_inflight", "")
                if v and v.isdigit() and int(v) > 0:
                    max_inflight = int(v)
            elif r.get("code") == "unsupported_version":
                writer.close()
                raise UnsupportedVersion("unsupported_version", r.get("msg", "") or "")
            elif r.get("code") == "shutting_down":
                writer.close()
                raise _ConnectionLost("daemon is shutting down")
        return _AsyncConnection(reader, writer, max_inflight)

    async def _get_conn(self, deadline: float) -> _AsyncConnection:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._closed:
                raise MxResolvedError("client is closed")
            if self._conn is None or self._conn.dead:
                self._conn = await self._open(deadline)
            return self._conn

    async def _attempts(self, verb: str, args: Sequence[str], options: Dict[str, str], deadline: float) -> Reply:
        last: Optional[BaseException] = None
        for attempt in range(2):
            rid = self._next_id()
            line = encode_request(verb, args, options, rid)
            try:
                conn = await self._get_conn(deadline)
                reply = await conn.request(line, rid)
            except _ConnectionLost as e:
                last = e
                continue
            if not reply.ok and reply.status != "json" and reply.get("code") == "shutting_down" and attempt == 0:
                if self._conn is conn:
                    conn.close()
                    self._conn = None
                continue
            return reply
        raise DaemonUnavailable(f"mxresolved at {self.path} is unavailable: {last or 'shutting down'}")

    async def _roundtrip(self, verb: str, args: Sequence[str], options: Dict[str, str],
                         timeout: Optional[float]) -> Reply:
        t = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(self._attempts(verb, args, options, time.monotonic() + t), t)
        except asyncio.TimeoutError:
            raise RequestTimeout("mxresolved did not answer in time") from None

    async def call(self, c: _api.Call, timeout: Optional[float] = None) -> Any:
        return c.convert(await self._roundtrip(c.verb, c.args, c.options, timeout))

    async def request(self, verb: str, *args: str, timeout: Optional[float] = None, **options: str) -> Reply:
        return await self.call(_api.raw(verb, args, options), timeout)

    async def hello(self, versions: str = "1", timeout: Optional[float] = None) -> Dict[str, Any]:
        return await self.call(_api.hello(versions), timeout)

    async def ping(self, timeout: Optional[float] = None) -> None:
        await self.call(_api.ping(), timeout)

    async def version(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        return await self.call(_api.version(), timeout)

    async def resolve(self, server_name: str, *, cache: bool = True, trace: bool = False,
                      timeout: Optional[float] = None) -> Resolution:
        return await self.call(_api.resolve(server_name, cache, trace), timeout)

    async def show_cache(self, server_name: Optional[str] = None, *, failures: bool = False,
                         timeout: Optional[float] = None) -> List[CacheEntry]:
        return await self.call(_api.show_cache(server_name, failures), timeout)

    async def flush_caches(self, *server_names: str, failures: bool = False,
                           timeout: Optional[float] = None) -> int:
        return await self.call(_api.flush_caches(server_names, failures), timeout)

    async def revalidate(self, *server_names: str, timeout: Optional[float] = None) -> int:
        return await self.call(_api.revalidate(server_names), timeout)

    async def statistics(self, timeout: Optional[float] = None) -> _api.Stats:
        return await self.call(_api.statistics(), timeout)

    async def reset_statistics(self, timeout: Optional[float] = None) -> None:
        await self.call(_api.reset_statistics(), timeout)
