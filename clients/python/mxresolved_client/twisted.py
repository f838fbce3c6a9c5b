"""Twisted adapter: a real Twisted Protocol over a UNIX client endpoint, returning
Deferreds. Requires the ``twisted`` extra (``pip install './clients/python[twisted]'``).

    from twisted.internet import reactor
    from mxresolved_client.twisted import TwistedClient
    client = TwistedClient(reactor)
    d = client.resolve("matrix.org")      # Deferred[Resolution]
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ConnectionRefusedError as TxConnectionRefused
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from . import _api
from ._codec import DEFAULT_MAX_INFLIGHT, Reply, encode_request, parse_line
from .errors import DaemonUnavailable, MxResolvedError, ProtocolError, RequestTimeout, UnsupportedVersion
from .types import CacheEntry, Resolution

_MAX_RESPONSE_LINE = 16 * 1024 * 1024


class _ConnectionLost(Exception):
    pass


class MxResolvedProtocol(Protocol):
    """Line protocol: writes request lines, matches response lines to Deferreds by id."""

    def __init__(self) -> None:
        self._buf = b""
        self.pending: Dict[str, "tuple[defer.Deferred[Reply], List[Reply]]"] = {}
        self.connected_ = False
        self.dead = False
        self.max_inflight = DEFAULT_MAX_INFLIGHT
        self._waiting: List["defer.Deferred[None]"] = []

    def connectionMade(self) -> None:
        self.connected_ = True

    def dataReceived(self, data: bytes) -> None:
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            try:
                reply = parse_line(line)
            except ProtocolError as e:
                self._fail_all(e)
                self.transport.loseConnection()
                return
            self._dispatch(reply)
        if len(self._buf) > _MAX_RESPONSE_LINE:
            self._fail_all(ProtocolError(None, "response line too long"))
            self.transport.loseConnection()

    def _dispatch(self, reply: Reply) -> None:
        key: Optional[str] = None
        if reply.id is not None and reply.id in self.pending:
            key = reply.id
        elif reply.id is None and self.pending:
            key = next(iter(self.pending))
        if key is None:
            return
        d, entries = self.pending[key]
        if not reply.is_final:
            entries.append(reply)
            return
        del self.pending[key]
        reply.entries = entries
        self._release_slot()
        d.callback(reply)

    def _release_slot(self) -> None:
        if self._waiting and len(self.pending) < self.max_inflight:
            self._waiting.pop(0).callback(None)

    def _fail_all(self, err: BaseException) -> None:
        self.dead = True
        pend = list(self.pending.values())
        self.pending.clear()
        for d, _ in pend:
            d.errback(Failure(err))
        waiting, self._waiting = self._waiting, []
        for w in waiting:
            w.errback(Failure(err))

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._fail_all(_ConnectionLost(f"connection lost: {reason.getErrorMessage() if reason else ''}"))

    @defer.inlineCallbacks
    def request(self, line: bytes, rid: str) -> Any:
        """Deferred[Reply]. Waits for a free in-flight slot first."""
        while len(self.pending) >= self.max_inflight:
            w: "defer.Deferred[None]" = defer.Deferred()
            self._waiting.append(w)
            yield w
        if self.dead:
            raise _ConnectionLost("connection is closed")
        d: "defer.Deferred[Reply]" = defer.Deferred()
        self.pending[rid] = (d, [])
        self.transport.write(line)
        try:
            reply = yield d
        finally:
            if self.pending.pop(rid, None) is not None:
                self._release_slot()
        return reply

    def forget(self, rid: str) -> None:
        if self.pending.pop(rid, None) is not None:
            self._release_slot()


class TwistedClient:
    """Deferred-returning mxresolved client over one pipelined UNIX connection.
    Calls time out after ``timeout`` seconds (RequestTimeout); after a lost connection
    the client reconnects and resends once (DaemonUnavailable if that fails too)."""

    def __init__(self, reactor: Any = None, path: Optional[str] = None, timeout: float = 5.0,
                 connect_retry: float = 2.0, hello: bool = True) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor
            reactor = _reactor
        self.reactor = reactor
        self.path = path or _api.default_socket_path()
        self.timeout = timeout
        self.connect_retry = connect_retry
        self.do_hello = hello
        self.server_info: Dict[str, Any] = {}
        self._proto: Optional[MxResolvedProtocol] = None
        self._connecting = False
        self._waiters: List["defer.Deferred[MxResolvedProtocol]"] = []
        self._ids = itertools.count(1)
        self._closed = False

    def _next_id(self) -> str:
        return f"t{next(self._ids)}"

    def close(self) -> None:
        self._closed = True
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.loseConnection()
        self._proto = None

    @defer.inlineCallbacks
    def _open(self) -> Any:
        give_up = self.reactor.seconds() + self.connect_retry
        while True:
            try:
                proto = yield self._open_once(give_up)
                return proto
            except _ConnectionLost:
                # A stopping daemon may still accept and answer shutting_down: retry in the window.
                if self.reactor.seconds() + 0.05 >= give_up:
                    raise
                yield _sleep(self.reactor, 0.05)

    @defer.inlineCallbacks
    def _open_once(self, give_up: float) -> Any:
        endpoint = UNIXClientEndpoint(self.reactor, self.path, timeout=max(1, int(self.timeout)))
        delay = 0.02
        while True:
            try:
                proto = yield connectProtocol(endpoint, MxResolvedProtocol())
                break
            except (ConnectError, TxConnectionRefused, OSError) as e:
                if self.reactor.seconds() + delay >= give_up:
                    raise DaemonUnavailable(f"cannot connect to mxresolved at {self.path}: {e}")
                yield _sleep(self.reactor, delay)
                delay = min(delay * 2, 0.2)
        if self.do_hello:
            rid = self._next_id()
            r = yield proto.request(encode_request("hello", ["1"], request_id=rid), rid)
            if r.ok:
                self.server_info = r.as_dict()
                v = r.get("max_inflight", "")
                if v and v.isdigit() and int(v) > 0:
                    proto.max_inflight = int(v)
            elif r.get("code") == "unsupported_version":
                proto.transport.loseConnection()
                raise UnsupportedVersion("unsupported_version", r.get("msg", "") or "")
            elif r.get("code") == "shutting_down":
                proto.transport.loseConnection()
                raise _ConnectionLost("daemon is shutting down")
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
    def _attempts(self, verb: str, args: Sequence[str], options: Dict[str, str], state: Dict[str, Any]) -> Any:
        last: Optional[BaseException] = None
        for attempt in range(2):
            rid = self._next_id()
            line = encode_request(verb, args, options, rid)
            try:
                proto = yield self._get_proto()
                state["proto"], state["rid"] = proto, rid
                reply = yield proto.request(line, rid)
            except _ConnectionLost as e:
                last = e
                continue
            if not reply.ok and reply.status != "json" and reply.get("code") == "shutting_down" and attempt == 0:
                if self._proto is proto:
                    proto.transport.loseConnection()
                    self._proto = None
                continue
            return reply
        raise DaemonUnavailable(f"mxresolved at {self.path} is unavailable: {last or 'shutting down'}")

    def _roundtrip(self, verb: str, args: Sequence[str], options: Dict[str, str],
                   timeout: Optional[float]) -> "defer.Deferred[Reply]":
        state: Dict[str, Any] = {}
        d = self._attempts(verb, args, options, state)
        t = self.timeout if timeout is None else timeout

        def on_timeout(f: Failure) -> Any:
            if f.check(defer.TimeoutError, defer.CancelledError):
                if "proto" in state:
                    state["proto"].forget(state["rid"])
                raise RequestTimeout("mxresolved did not answer in time")
            return f
        d.addTimeout(t, self.reactor)
        d.addErrback(on_timeout)
        return d

    def call(self, c: _api.Call, timeout: Optional[float] = None) -> "defer.Deferred[Any]":
        return self._roundtrip(c.verb, c.args, c.options, timeout).addCallback(c.convert)

    def request(self, verb: str, *args: str, timeout: Optional[float] = None,
                **options: str) -> "defer.Deferred[Reply]":
        return self.call(_api.raw(verb, args, options), timeout)

    def hello(self, versions: str = "1", timeout: Optional[float] = None) -> "defer.Deferred[Dict[str, Any]]":
        return self.call(_api.hello(versions), timeout)

    def ping(self, timeout: Optional[float] = None) -> "defer.Deferred[None]":
        return self.call(_api.ping(), timeout)

    def version(self, timeout: Optional[float] = None) -> "defer.Deferred[Dict[str, Any]]":
        return self.call(_api.version(), timeout)

    def resolve(self, server_name: str, *, cache: bool = True, trace: bool = False,
                timeout: Optional[float] = None) -> "defer.Deferred[Resolution]":
        return self.call(_api.resolve(server_name, cache, trace), timeout)

    def show_cache(self, server_name: Optional[str] = None, *, failures: bool = False,
                   timeout: Optional[float] = None) -> "defer.Deferred[List[CacheEntry]]":
        return self.call(_api.show_cache(server_name, failures), timeout)

    def flush_caches(self, *server_names: str, failures: bool = False,
                     timeout: Optional[float] = None) -> "defer.Deferred[int]":
        return self.call(_api.flush_caches(server_names, failures), timeout)

    def revalidate(self, *server_names: str, timeout: Optional[float] = None) -> "defer.Deferred[int]":
        return self.call(_api.revalidate(server_names), timeout)

    def statistics(self, timeout: Optional[float] = None) -> "defer.Deferred[_api.Stats]":
        return self.call(_api.statistics(), timeout)

    def reset_statistics(self, timeout: Optional[float] = None) -> "defer.Deferred[None]":
        return self.call(_api.reset_statistics(), timeout)


def _sleep(reactor: Any, seconds: float) -> "defer.Deferred[None]":
    d: "defer.Deferred[None]" = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
