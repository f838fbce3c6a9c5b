"""Twisted adapter: a real Twisted Protocol over a UNIX client endpoint, returning
Deferreds. Requires the ``twisted`` extra (``pip install './clients/python[twisted]'``).

    from twisted.internet import reactor
    from mxresolved_client.twisted import TwistedClient
    client = TwistedClient(reactor)
    d = client.resolve("matrix.org")      # Deferred[Resolution]
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ConnectionRefusedError as TxConnectionRefused
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from . import _api
from ._codec import Reply
from ._pipeline import ConnectionLost, Pipeline
from ._reconnect import CannotConnect, Reconnecting
from .errors import MxResolvedError, ProtocolError, RequestTimeout


class MxResolvedProtocol(Protocol):
    """A Twisted Protocol over the connection's Pipeline; its waiters are Deferreds."""

    def __init__(self) -> None:
        self.pipe: Pipeline["defer.Deferred[Reply]"] = Pipeline("t")

    @property
    def dead(self) -> bool:
        return self.pipe.dead

    def dataReceived(self, data: bytes) -> None:
        try:
            self.pipe.deliver(data, self._write, defer.Deferred.callback)
        except ProtocolError as e:
            self._die(e)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._die(ConnectionLost(f"connection lost: {reason.getErrorMessage() if reason else ''}"))

    def _write(self, data: bytes) -> None:
        if data and not self.pipe.dead:
            self.transport.write(data)

    def _die(self, err: BaseException) -> None:
        was_dead = self.pipe.dead
        for d in self.pipe.fail():
            d.errback(Failure(err))
        if not was_dead and self.transport is not None:
            self.transport.loseConnection()

    def close(self) -> None:
        self._die(ConnectionLost("client closed the connection"))

    def request(self, verb: str, args: Sequence[str], options: Dict[str, str]) -> "defer.Deferred[Reply]":
        """Deferred[Reply]; cancelling it (a timeout) forgets the request."""
        rid = ""

        def cancel(_: "defer.Deferred[Reply]") -> None:
            self._write(self.pipe.cancel(rid))
        d: "defer.Deferred[Reply]" = defer.Deferred(canceller=cancel)
        rid, out = self.pipe.submit(verb, args, options, d)
        self._write(out)
        return d


class TwistedClient(Reconnecting[MxResolvedProtocol]):
    """Deferred-returning mxresolved client over one pipelined UNIX connection.
    Calls time out after ``timeout`` seconds (RequestTimeout); after a lost connection
    the client reconnects and resends once (DaemonUnavailable if that fails too)."""

    def __init__(self, reactor: Any = None, path: Optional[str] = None, timeout: float = 5.0,
                 connect_retry: float = 2.0, hello: bool = True) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.reactor = reactor
        self._configure(path, timeout, connect_retry, hello)
        self._conn: Optional[MxResolvedProtocol] = None
        self._connecting = False
        self._waiters: List["defer.Deferred[MxResolvedProtocol]"] = []
        self._closed = False

    def close(self) -> None:
        self._close()

    def _now(self) -> float:
        return float(self.reactor.seconds())

    def _sleep(self, seconds: float) -> "defer.Deferred[None]":
        d: "defer.Deferred[None]" = defer.Deferred()
        self.reactor.callLater(seconds, d.callback, None)
        return d

    async def _connect_once(self, deadline: float) -> MxResolvedProtocol:
        endpoint = UNIXClientEndpoint(self.reactor, self.path, timeout=max(1, int(self.timeout)))
        try:
            proto: MxResolvedProtocol = await connectProtocol(endpoint, MxResolvedProtocol())
        except (ConnectError, TxConnectionRefused, OSError) as e:
            raise CannotConnect(e, retry=True) from e
        return proto

    def _send(self, conn: MxResolvedProtocol, verb: str, args: Sequence[str], options: Dict[str, str],
              deadline: float) -> "defer.Deferred[Reply]":
        return conn.request(verb, args, options)

    def _connection(self, deadline: float) -> "defer.Deferred[MxResolvedProtocol]":
        if self._closed:
            return defer.fail(MxResolvedError("client is closed"))
        if self._conn is not None and not self._conn.dead:
            return defer.succeed(self._conn)
        w: "defer.Deferred[MxResolvedProtocol]" = defer.Deferred()
        self._waiters.append(w)
        if not self._connecting:
            self._connecting = True
            # Opened without a deadline: the callers waiting for it time out on their own.
            defer.ensureDeferred(self._open(math.inf)).addBoth(self._connected)
        return w

    def _connected(self, result: Any) -> None:
        self._connecting = False
        if isinstance(result, MxResolvedProtocol):
            self._conn = result
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if isinstance(result, Failure):
                w.errback(result)
            else:
                w.callback(result)
        return None

    def _roundtrip(self, verb: str, args: Sequence[str], options: Dict[str, str],
                   timeout: Optional[float]) -> "defer.Deferred[Reply]":
        d = defer.ensureDeferred(self._send_with_retry(verb, args, options, math.inf))

        def on_timeout(f: Failure) -> Any:
            if f.check(defer.TimeoutError, defer.CancelledError):
                raise RequestTimeout("mxresolved did not answer in time")
            return f
        d.addTimeout(self.timeout if timeout is None else timeout, self.reactor)
        d.addErrback(on_timeout)
        return d

    def call(self, c: _api.Call, timeout: Optional[float] = None) -> "defer.Deferred[Any]":
        return self._roundtrip(c.verb, c.args, c.options, timeout).addCallback(c.convert)
