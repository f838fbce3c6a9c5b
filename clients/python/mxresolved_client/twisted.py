"""Twisted adapter: a real Twisted Protocol over a UNIX client endpoint, returning
Deferreds. Requires the ``twisted`` extra (``pip install './clients/python[twisted]'``).

    from twisted.internet import reactor
    from mxresolved_client.twisted import TwistedClient
    client = TwistedClient(reactor)
    d = client.resolve("matrix.org")      # Deferred[Resolution]
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ConnectionRefusedError as TxConnectionRefused
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from . import _api
from ._codec import Reply
from ._pipeline import (ATTEMPTS, DRAIN_PAUSE, ConnectionLost, Pipeline, connect_delays, is_draining,
                        unavailable)
from .errors import DaemonUnavailable, MxResolvedError, ProtocolError, RequestTimeout


class MxResolvedProtocol(Protocol):
    """A Twisted Protocol over the connection's Pipeline; its waiters are Deferreds."""

    def __init__(self) -> None:
        self.pipe: Pipeline["defer.Deferred[Reply]"] = Pipeline("t")

    @property
    def dead(self) -> bool:
        return self.pipe.dead

    def dataReceived(self, data: bytes) -> None:
        try:
            done, out = self.pipe.receive(data)
        except ProtocolError as e:
            self._die(e)
            return
        self._write(out)
        for d, reply in done:
            d.callback(reply)

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


class TwistedClient(_api.Verbs):
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
        self._proto: Optional[MxResolvedProtocol] = None
        self._connecting = False
        self._waiters: List["defer.Deferred[MxResolvedProtocol]"] = []
        self._closed = False

    def close(self) -> None:
        self._closed = True
        if self._proto is not None:
            self._proto.close()
        self._proto = None

    @defer.inlineCallbacks
    def _open(self) -> Any:
        give_up = self.reactor.seconds() + self.connect_retry
        while True:
            try:
                proto = yield self._open_once(give_up)
                return proto
            except ConnectionLost:
                # A stopping daemon may still accept and answer shutting_down: retry in the window.
                if self.reactor.seconds() + DRAIN_PAUSE >= give_up:
                    raise
                yield _sleep(self.reactor, DRAIN_PAUSE)

    @defer.inlineCallbacks
    def _open_once(self, give_up: float) -> Any:
        endpoint = UNIXClientEndpoint(self.reactor, self.path, timeout=max(1, int(self.timeout)))
        for delay in connect_delays():
            try:
                proto = yield connectProtocol(endpoint, MxResolvedProtocol())
                break
            except (ConnectError, TxConnectionRefused, OSError) as e:
                if self.reactor.seconds() + delay >= give_up:
                    raise DaemonUnavailable(f"cannot connect to mxresolved at {self.path}: {e}")
                yield _sleep(self.reactor, delay)
        if self.do_hello:
            try:
                self.server_info = proto.pipe.accept_hello((yield proto.request("hello", ["1"], {})))
            except BaseException:
                proto.close()
                raise
        return proto

    def _get_proto(self) -> "defer.Deferred[MxResolvedProtocol]":
        if self._closed:
            return defer.fail(MxResolvedError("client is closed"))
        if self._proto is not None and not self._proto.dead:
            return defer.succeed(self._proto)
        w: "defer.Deferred[MxResolvedProtocol]" = defer.Deferred()
        self._waiters.append(w)
        if not self._connecting:
            self._connecting = True
            self._open().addBoth(self._connected)
        return w

    def _connected(self, result: Any) -> None:
        self._connecting = False
        if isinstance(result, MxResolvedProtocol):
            self._proto = result
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if isinstance(result, Failure):
                w.errback(result)
            else:
                w.callback(result)
        return None

    @defer.inlineCallbacks
    def _attempts(self, verb: str, args: Sequence[str], options: Dict[str, str]) -> Any:
        last: Optional[BaseException] = None
        for attempt in range(ATTEMPTS):
            try:
                proto = yield self._get_proto()
                reply = yield proto.request(verb, args, options)
            except ConnectionLost as e:
                last = e
                continue
            if is_draining(reply) and attempt + 1 < ATTEMPTS:
                if self._proto is proto:
                    proto.close()
                    self._proto = None
                continue
            return reply
        raise unavailable(self.path, last)

    def _roundtrip(self, verb: str, args: Sequence[str], options: Dict[str, str],
                   timeout: Optional[float]) -> "defer.Deferred[Reply]":
        d = self._attempts(verb, args, options)

        def on_timeout(f: Failure) -> Any:
            if f.check(defer.TimeoutError, defer.CancelledError):
                raise RequestTimeout("mxresolved did not answer in time")
            return f
        d.addTimeout(self.timeout if timeout is None else timeout, self.reactor)
        d.addErrback(on_timeout)
        return d

    def call(self, c: _api.Call, timeout: Optional[float] = None) -> "defer.Deferred[Any]":
        return self._roundtrip(c.verb, c.args, c.options, timeout).addCallback(c.convert)


def _sleep(reactor: Any, seconds: float) -> "defer.Deferred[None]":
    d: "defer.Deferred[None]" = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
