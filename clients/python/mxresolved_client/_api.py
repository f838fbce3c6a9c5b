"""The verbs, shared by the blocking, asyncio and Twisted clients: how to build each
request and how to turn its reply into a result (or raise)."""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Union

from ._codec import (Reply, cache_entry_from_reply, error_from_reply, resolution_from_reply,
                     statistics_from_reply)
from .types import CachePage, Reresolution

PACKAGED_SOCKET = "/run/mxresolved/socket"
"""Where the packaged daemon (dist/ systemd units) listens."""

DEFAULT_SOCKET = os.path.join(".", ".mxresolved", "mxresolved.sock")
"""Where ``scripts/run`` (no configuration) puts it."""


def socket_path(explicit: Optional[str] = None) -> str:
    """The socket to use, in the order every mxresolved client follows: ``explicit``,
    ``$MXRESOLVED_SOCKET``, ``/run/mxresolved/socket`` when it exists, else
    ``./.mxresolved/mxresolved.sock``."""
    if explicit:
        return explicit
    env = os.environ.get("MXRESOLVED_SOCKET")
    if env:
        return env
    if os.path.exists(PACKAGED_SOCKET):
        return PACKAGED_SOCKET
    return DEFAULT_SOCKET


def default_socket_path() -> str:
    """``socket_path()`` without an explicit path."""
    return socket_path(None)


class Call(NamedTuple):
    verb: str
    args: Sequence[str]
    options: Dict[str, str]
    convert: Callable[[Reply], Any]


def _checked(verb: str, fn: Callable[[Reply], Any]) -> Callable[[Reply], Any]:
    def convert(r: Reply) -> Any:
        if not r.ok:
            raise error_from_reply(r, resolution_verb=verb in ("resolve", "revalidate", "reresolve"))
        return fn(r)
    return convert


def _int_field(key: str) -> Callable[[Reply], int]:
    def f(r: Reply) -> int:
        if r.status == "json":
            return int((r.json or {}).get(key, 0))
        return int(r.get(key, "0") or 0)
    return f


def hello(versions: str = "1") -> Call:
    return Call("hello", [versions], {}, _checked("hello", lambda r: r.as_dict()))


def ping() -> Call:
    return Call("ping", [], {}, _checked("ping", lambda r: None))


def version() -> Call:
    return Call("version", [], {}, _checked("version", lambda r: r.as_dict()))


def resolve(name: str, cache: bool = True, trace: bool = False) -> Call:
    opts: Dict[str, str] = {}
    if not cache:
        opts["cache"] = "no"
    if trace:
        opts["trace"] = "yes"
    return Call("resolve", [name], opts, resolution_from_reply)


def show_cache(name: Optional[str] = None, failures: bool = False, after: Optional[str] = None,
               limit: Optional[int] = None) -> Call:
    opts = {"failures": "yes"} if failures else {}
    if after is not None:
        opts["after"] = after
    if limit is not None:
        opts["limit"] = str(limit)

    def conv(r: Reply) -> CachePage:
        return CachePage([cache_entry_from_reply(e) for e in r.entries], r.get("next"))
    return Call("show-cache", [name] if name is not None else [], opts, _checked("show-cache", conv))


def flush_caches(names: Sequence[str] = (), failures: bool = False) -> Call:
    opts = {"failures": "yes"} if failures else {}
    return Call("flush-caches", list(names), opts, _checked("flush-caches", _int_field("flushed")))


def revalidate(names: Sequence[str]) -> Call:
    return Call("revalidate", list(names), {}, _checked("revalidate", _int_field("queued")))


def reresolve(name: str) -> Call:
    def conv(r: Reply) -> Reresolution:
        retry = r.get("retry_after")
        return Reresolution(server_name=r.get("name", name) or name, started=r.get("started") == "yes",
                            retry_after=int(retry) if retry and retry.isdigit() else None)
    return Call("reresolve", [name], {}, _checked("reresolve", conv))


def statistics() -> Call:
    return Call("statistics", [], {}, _checked("statistics", statistics_from_reply))


def reset_statistics() -> Call:
    return Call("reset-statistics", [], {}, _checked("reset-statistics", lambda r: None))


def raw(verb: str, args: Sequence[str], options: Dict[str, str]) -> Call:
    return Call(verb, list(args), dict(options), lambda r: r)


Stats = Dict[str, Union[int, str]]


class Verbs:
    """The verbs as methods, over ``self.call(Call, timeout)``: a value for the blocking client,
    an awaitable for asyncio, a Deferred for Twisted."""

    def _configure(self, path: Optional[str], timeout: float, connect_retry: float, hello: bool) -> None:
        """The settings every transport shares (see the clients' constructors)."""
        self.path = socket_path(path)
        self.timeout = timeout
        self.connect_retry = connect_retry
        self.do_hello = hello
        self.server_info: Dict[str, Any] = {}

    def call(self, c: Call, timeout: Optional[float] = None) -> Any:
        raise NotImplementedError

    def request(self, verb: str, *args: str, timeout: Optional[float] = None, **options: str) -> Any:
        """Send any request; the raw Reply (an ``err`` reply is returned, not raised)."""
        return self.call(raw(verb, args, options), timeout)

    def hello(self, versions: str = "1", timeout: Optional[float] = None) -> Any:
        return self.call(hello(versions), timeout)

    def ping(self, timeout: Optional[float] = None) -> Any:
        return self.call(ping(), timeout)

    def version(self, timeout: Optional[float] = None) -> Any:
        return self.call(version(), timeout)

    def resolve(self, server_name: str, *, cache: bool = True, trace: bool = False,
                timeout: Optional[float] = None) -> Any:
        """A Resolution; a ResolveError subclass on failure."""
        return self.call(resolve(server_name, cache, trace), timeout)

    def reresolve(self, server_name: str, timeout: Optional[float] = None) -> Any:
        """Ask for a fresh background resolution (rate-limited per name by the daemon): a Reresolution."""
        return self.call(reresolve(server_name), timeout)

    def show_cache(self, server_name: Optional[str] = None, *, failures: bool = False, after: Optional[str] = None,
                   limit: Optional[int] = None, timeout: Optional[float] = None) -> Any:
        """A CachePage: entries after ``after``, at most ``limit``; ``.next`` continues."""
        return self.call(show_cache(server_name, failures, after, limit), timeout)

    def flush_caches(self, *server_names: str, failures: bool = False, timeout: Optional[float] = None) -> Any:
        return self.call(flush_caches(server_names, failures), timeout)

    def revalidate(self, *server_names: str, timeout: Optional[float] = None) -> Any:
        return self.call(revalidate(server_names), timeout)

    def statistics(self, timeout: Optional[float] = None) -> Any:
        return self.call(statistics(), timeout)

    def reset_statistics(self, timeout: Optional[float] = None) -> Any:
        return self.call(reset_statistics(), timeout)
