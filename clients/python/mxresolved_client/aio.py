"""asyncio client: concurrent calls are pipelined on one connection with request ids."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, Optional, Sequence

from . import _api
from ._codec import Reply
from ._pipeline import (ATTEMPTS, DRAIN_PAUSE, ConnectionLost, Pipeline, connect_delays, is_draining,
                        unavailable)
from .errors import DaemonUnavailable, MxResolvedError, ProtocolError, RequestTimeout


class _AsyncConnection(asyncio.Protocol):
    """An asyncio Protocol over the connection's Pipeline; its waiters are Futures."""

    def __init__(self) -> None:
        self.pipe: Pipeline["asyncio.Future[Reply]"] = Pipeline("a")
        self.transport: Optional[asyncio.Transport] = None

    @property
    def dead(self) -> bool:
        return self.pipe.dead

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            done, out = self.pipe.receive(data)
        except ProtocolError as e:
            self._die(e)
            return
        self._write(out)
        for fut, reply in done:
            if not fut.done():
                fut.set_result(reply)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._die(ConnectionLost(f"connection lost: {exc}" if exc else "connection closed by the daemon"))

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.pipe.dead:
            self.transport.write(data)

    def _die(self, err: BaseException) -> None:
        for fut in self.pipe.fail():
            if not fut.done():
                fut.set_exception(err)
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        self._die(ConnectionLost("client closed the connection"))

    async def request(self, verb: str, args: Sequence[str], options: Dict[str, str]) -> Reply:
        fut: "asyncio.Future[Reply]" = asyncio.get_running_loop().create_future()
        rid, out = self.pipe.submit(verb, args, options, fut)
        self._write(out)
        try:
            return await fut
        finally:
            if fut.cancelled():
                self._write(self.pipe.cancel(rid))


class AsyncClient(_api.Verbs):
    """asyncio client for mxresolved. Create it inside a running loop (or call methods
    from one); concurrent calls share one pipelined connection. Every call has a timeout;
    after a closed connection the client reconnects and resends once."""

    def __init__(self, path: Optional[str] = None, timeout: float = 5.0, connect_retry: float = 2.0,
                 hello: bool = True) -> None:
        self._configure(path, timeout, connect_retry, hello)
        self._conn: Optional[_AsyncConnection] = None
        self._lock: Optional[asyncio.Lock] = None
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

    async def _open(self, deadline: float) -> _AsyncConnection:
        give_up = min(deadline, time.monotonic() + self.connect_retry)
        while True:
            try:
                return await self._open_once(give_up)
            except ConnectionLost:
                # A stopping daemon may still accept and answer shutting_down: retry in the window.
                if time.monotonic() + DRAIN_PAUSE >= give_up:
                    raise
                await asyncio.sleep(DRAIN_PAUSE)

    async def _open_once(self, give_up: float) -> _AsyncConnection:
        loop = asyncio.get_running_loop()
        for delay in connect_delays():
            try:
                _, conn = await loop.create_unix_connection(_AsyncConnection, self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                if time.monotonic() + delay >= give_up:
                    raise DaemonUnavailable(f"cannot connect to mxresolved at {self.path}: {e}") from e
                await asyncio.sleep(delay)
            except OSError as e:
                raise DaemonUnavailable(f"cannot connect to mxresolved at {self.path}: {e}") from e
        if self.do_hello:
            try:
                self.server_info = conn.pipe.accept_hello(await conn.request("hello", ["1"], {}))
            except BaseException:
                conn.close()
                raise
        return conn

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
        for attempt in range(ATTEMPTS):
            try:
                conn = await self._get_conn(deadline)
                reply = await conn.request(verb, args, options)
            except ConnectionLost as e:
                last = e
                continue
            if is_draining(reply) and attempt + 1 < ATTEMPTS:
                if self._conn is conn:
                    conn.close()
                    self._conn = None
                continue
            return reply
        raise unavailable(self.path, last)

    async def _roundtrip(self, verb: str, args: Sequence[str], options: Dict[str, str],
                         timeout: Optional[float]) -> Reply:
        t = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(self._attempts(verb, args, options, time.monotonic() + t), t)
        except asyncio.TimeoutError:
            raise RequestTimeout("mxresolved did not answer in time") from None

    async def call(self, c: _api.Call, timeout: Optional[float] = None) -> Any:
        return c.convert(await self._roundtrip(c.verb, c.args, c.options, timeout))
