"""asyncio client: concurrent calls are pipelined on one connection with request ids."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, Optional, Sequence

from . import _api
from ._codec import Reply
from ._pipeline import ConnectionLost, Pipeline
from ._reconnect import CannotConnect, Reconnecting
from .errors import ProtocolError, RequestTimeout


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
            self.pipe.deliver(data, self._write, _settle)
        except ProtocolError as e:
            self._die(e)

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


def _settle(fut: "asyncio.Future[Reply]", reply: Reply) -> None:
    if not fut.done():  # a call whose timeout cancelled it
        fut.set_result(reply)


class AsyncClient(Reconnecting[_AsyncConnection]):
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
        self._close()

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _connect_once(self, deadline: float) -> _AsyncConnection:
        try:
            _, conn = await asyncio.get_running_loop().create_unix_connection(_AsyncConnection, self.path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise CannotConnect(e, retry=True) from e
        except OSError as e:
            raise CannotConnect(e, retry=False) from e
        return conn

    async def _send(self, conn: _AsyncConnection, verb: str, args: Sequence[str], options: Dict[str, str],
                    deadline: float) -> Reply:
        return await conn.request(verb, args, options)

    async def _connection(self, deadline: float) -> _AsyncConnection:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            return await self._reuse_or_open(deadline)

    async def _roundtrip(self, verb: str, args: Sequence[str], options: Dict[str, str],
                         timeout: Optional[float]) -> Reply:
        t = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(self._send_with_retry(verb, args, options, time.monotonic() + t), t)
        except asyncio.TimeoutError:
            raise RequestTimeout("mxresolved did not answer in time") from None

    async def call(self, c: _api.Call, timeout: Optional[float] = None) -> Any:
        return c.convert(await self._roundtrip(c.verb, c.args, c.options, timeout))
