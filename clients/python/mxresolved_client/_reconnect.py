"""How every transport gets a connection and sends a request, written once: connect (retrying
while a restarting daemon's socket is absent or refusing), say hello (again on a new connection
while a stopping daemon still answers shutting_down), and send a request at most twice.

The rule is a coroutine over a few steps each client provides (connect once, send on a
connection, sleep, the shared connection); it does no I/O itself. asyncio runs it as it is,
Twisted through ``ensureDeferred`` (its steps return Deferreds), and the blocking client in one
go with ``run_blocking`` (its steps never suspend)."""
from __future__ import annotations

import time
from typing import Any, Awaitable, Coroutine, Dict, Generic, Iterator, Optional, Protocol, Sequence, TypeVar

from . import _api
from ._codec import Reply
from ._pipeline import ConnectionLost, Pipeline
from .errors import DaemonUnavailable, MxResolvedError

ATTEMPTS = 2
"""A request is sent at most twice: once, and once more after a reconnect."""

DRAIN_PAUSE = 0.05
"""Seconds between reconnects while a stopping daemon still accepts and answers shutting_down."""


def connect_delays() -> Iterator[float]:
    """Pauses between connect attempts while the socket is absent or refusing (a restart)."""
    delay = 0.02
    while True:
        yield delay
        delay = min(delay * 2, 0.2)


def is_draining(reply: Reply) -> bool:
    """The daemon refused the request because it is stopping: reconnect and resend."""
    return not reply.ok and reply.status != "json" and reply.get("code") == "shutting_down"


class CannotConnect(Exception):
    """One connect attempt failed; ``retry`` when the socket is absent or refusing, which a
    restarting daemon shows for a moment."""

    def __init__(self, cause: BaseException, retry: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.retry = retry


class Connection(Protocol):
    """What the rule needs of a transport's connection."""
    pipe: Pipeline[Any]

    def close(self) -> None: ...


C = TypeVar("C", bound=Connection)
T = TypeVar("T")


class Reconnecting(_api.Verbs, Generic[C]):
    """A client over one shared connection of type C; subclasses provide the steps below."""

    _conn: Optional[C]
    _closed: bool

    def _now(self) -> float:
        return time.monotonic()

    def _sleep(self, seconds: float) -> Awaitable[None]:
        raise NotImplementedError

    def _connect_once(self, deadline: float) -> Awaitable[C]:
        """One connect attempt; CannotConnect when it fails (other errors end the call)."""
        raise NotImplementedError

    def _send(self, conn: C, verb: str, args: Sequence[str], options: Dict[str, str],
              deadline: float) -> Awaitable[Reply]:
        """One request on ``conn``; ConnectionLost when the connection dies first. Transports whose
        calls time out on their own (asyncio's wait_for, Twisted's addTimeout) ignore ``deadline``."""
        raise NotImplementedError

    def _connection(self, deadline: float) -> Awaitable[C]:
        """The shared connection, opened by ``_open`` (once, however many callers wait) when there
        is none or it died."""
        raise NotImplementedError

    async def _reuse_or_open(self, deadline: float) -> C:
        """``_connection`` for a caller that holds the transport's lock."""
        if self._closed:
            raise MxResolvedError("client is closed")
        if self._conn is None or self._conn.pipe.dead:
            self._conn = await self._open(deadline)
        return self._conn

    def _close(self) -> None:
        """Closes the shared connection for good: later calls raise MxResolvedError."""
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _drop(self, conn: C) -> None:
        """Closes ``conn`` and forgets it unless another caller has replaced it already."""
        if self._conn is conn:
            conn.close()
            self._conn = None

    async def _send_with_retry(self, verb: str, args: Sequence[str], options: Dict[str, str],
                               deadline: float) -> Reply:
        """The reply to a request sent at most ATTEMPTS times: again on a new connection when the
        connection dies or the daemon answers shutting_down."""
        last: Optional[BaseException] = None
        for attempt in range(ATTEMPTS):
            try:
                conn = await self._connection(deadline)
                reply = await self._send(conn, verb, args, options, deadline)
            except ConnectionLost as e:
                last = e
                continue
            if is_draining(reply) and attempt + 1 < ATTEMPTS:
                self._drop(conn)
                continue
            return reply
        raise DaemonUnavailable(f"mxresolved at {self.path} is unavailable: {last or 'shutting down'}")

    async def _open(self, deadline: float) -> C:
        """A new connection that has said hello, within ``connect_retry`` seconds (and ``deadline``)."""
        give_up = min(deadline, self._now() + self.connect_retry)
        while True:
            conn = await self._connect(give_up, deadline)
            try:
                if self.do_hello:
                    reply = await self._send(conn, "hello", ["1"], {}, deadline)
                    self.server_info = conn.pipe.accept_hello(reply)
                return conn
            except ConnectionLost:
                # A stopping daemon may still accept and answer shutting_down: retry in the window.
                conn.close()
                if self._now() + DRAIN_PAUSE >= give_up:
                    raise
                await self._sleep(DRAIN_PAUSE)
            except BaseException:
                conn.close()
                raise

    async def _connect(self, give_up: float, deadline: float) -> C:
        for delay in connect_delays():
            try:
                return await self._connect_once(deadline)
            except CannotConnect as e:
                if not e.retry or self._now() + delay >= give_up:
                    raise DaemonUnavailable(f"cannot connect to mxresolved at {self.path}: {e}") from e.cause
                await self._sleep(delay)
        raise AssertionError("connect_delays() is endless")


def run_blocking(steps: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine whose steps all complete without suspending (the blocking client's)."""
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    steps.close()
    raise RuntimeError("a blocking step suspended")
