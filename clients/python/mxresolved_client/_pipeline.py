"""One connection's protocol state, without I/O, shared by the blocking, asyncio and Twisted
transports: request ids, the in-flight limit, line framing and matching replies to requests.

A transport writes the bytes the pipeline returns, feeds it the bytes it reads, and completes
the waiters (an Event holder, a Future, a Deferred: opaque here) the pipeline hands back."""
from __future__ import annotations

import itertools
from typing import Callable, Dict, Generic, List, Optional, Sequence, Tuple, TypeVar

from ._codec import DEFAULT_MAX_INFLIGHT, Reply, encode_request, parse_line
from .errors import ProtocolError, UnsupportedVersion

MAX_RESPONSE_LINE = 16 * 1024 * 1024

W = TypeVar("W")


class ConnectionLost(Exception):
    """The connection died (or the daemon is draining) before the answer arrived: the
    transports reconnect and resend once."""


class _Pending(Generic[W]):
    __slots__ = ("waiter", "line", "entries")

    def __init__(self, waiter: W, line: bytes) -> None:
        self.waiter = waiter
        self.line = line
        self.entries: List[Reply] = []


class Pipeline(Generic[W]):
    """Requests are sent while fewer than ``max_inflight`` are unanswered and queued beyond that;
    an answer (or a cancel) frees a slot and releases the oldest queued request."""

    def __init__(self, id_prefix: str, max_inflight: int = DEFAULT_MAX_INFLIGHT) -> None:
        self.max_inflight = max_inflight
        self.dead = False
        self._prefix = id_prefix
        self._ids = itertools.count(1)
        self._sent: Dict[str, _Pending[W]] = {}    # insertion order = send order
        self._queued: Dict[str, _Pending[W]] = {}
        self._buf = b""

    def submit(self, verb: str, args: Sequence[str], options: Dict[str, str], waiter: W) -> Tuple[str, bytes]:
        """Registers a request; returns its id and the bytes to write now (empty when queued)."""
        if self.dead:
            raise ConnectionLost("connection is closed")
        rid = f"{self._prefix}{next(self._ids)}"
        p = _Pending(waiter, encode_request(verb, args, options, rid))
        if len(self._sent) < self.max_inflight:
            self._sent[rid] = p
            return rid, p.line
        self._queued[rid] = p
        return rid, b""

    def receive(self, data: bytes) -> Tuple[List[Tuple[W, Reply]], bytes]:
        """Feeds bytes read from the socket; returns the completed requests with their replies
        and the queued request lines that may now be written. Raises ProtocolError on a
        malformed or oversized response (the connection is then unusable)."""
        self._buf += data
        done: List[Tuple[W, Reply]] = []
        while True:
            line, sep, rest = self._buf.partition(b"\n")
            if not sep:
                break
            self._buf = rest
            finished = self._dispatch(parse_line(line))
            if finished is not None:
                done.append(finished)
        if len(self._buf) > MAX_RESPONSE_LINE:
            raise ProtocolError(None, "response line too long")
        return done, self._release()

    def deliver(self, data: bytes, write: Callable[[bytes], None], complete: Callable[[W, Reply], None]) -> None:
        """``receive`` for a transport with one thread: writes the released lines, then completes
        each answered request's waiter."""
        done, out = self.receive(data)
        write(out)
        for waiter, reply in done:
            complete(waiter, reply)

    def _dispatch(self, reply: Reply) -> Optional[Tuple[W, Reply]]:
        if reply.id is not None:
            key = reply.id if reply.id in self._sent else None
        else:
            # An id-less reply (line_too_long, a bad id) answers the oldest request sent.
            key = next(iter(self._sent), None)
        if key is None:
            return None  # a late answer to a request that was cancelled
        p = self._sent[key]
        if not reply.is_final:
            p.entries.append(reply)
            return None
        del self._sent[key]
        reply.entries = p.entries
        return p.waiter, reply

    def _release(self) -> bytes:
        out = b""
        while self._queued and len(self._sent) < self.max_inflight:
            rid = next(iter(self._queued))
            p = self._queued.pop(rid)
            self._sent[rid] = p
            out += p.line
        return out

    def cancel(self, rid: str) -> bytes:
        """Forgets a request (its timeout expired); returns queued lines that may now be written."""
        if self._queued.pop(rid, None) is not None:
            return b""
        if self._sent.pop(rid, None) is None:
            return b""
        return self._release()

    def fail(self) -> List[W]:
        """Marks the connection dead; returns every unanswered request's waiter."""
        self.dead = True
        waiters = [p.waiter for p in self._sent.values()] + [p.waiter for p in self._queued.values()]
        self._sent.clear()
        self._queued.clear()
        return waiters

    def accept_hello(self, reply: Reply) -> Dict[str, object]:
        """Applies the answer to ``hello 1``: the announced in-flight limit; raises
        UnsupportedVersion, or ConnectionLost when the daemon is draining."""
        if reply.ok:
            v = reply.get("max_inflight", "") or ""
            if v.isdigit() and int(v) > 0:
                self.max_inflight = int(v)
            return dict(reply.as_dict())
        code = reply.get("code")
        if code == "unsupported_version":
            raise UnsupportedVersion("unsupported_version", reply.get("msg", "") or "")
        if code == "shutting_down":
            raise ConnectionLost("daemon is shutting down")
        return {}
