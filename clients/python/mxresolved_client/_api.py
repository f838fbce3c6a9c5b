"""The verbs, shared by the blocking, asyncio and Twisted clients: how to build each
request and how to turn its reply into a result (or raise)."""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Union

from ._codec import (Reply, cache_entry_from_reply, error_from_reply, resolution_from_reply,
                     statistics_from_reply)
from .types import CacheEntry, Resolution

DEFAULT_SOCKET = os.path.join(".", ".mxresolved", "mxresolved.sock")


def default_socket_path() -> str:
    """``$MXRESOLVED_SOCKET``, else ``./.mxresolved/mxresolved.sock``."""
    return os.environ.get("MXRESOLVED_SOCKET") or DEFAULT_SOCKET


class Call(NamedTuple):
    verb: str
    args: Sequence[str]
    options: Dict[str, str]
    convert: Callable[[Reply], Any]


def _checked(verb: str, fn: Callable[[Reply], Any]) -> Callable[[Reply], Any]:
    def convert(r: Reply) -> Any:
        if not r.ok:
            raise error_from_reply(r, resolution_verb=verb in ("resolve", "revalidate"))
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


def show_cache(name: Optional[str] = None, failures: bool = False) -> Call:
    opts = {"failures": "yes"} if failures else {}

    def conv(r: Reply) -> List[CacheEntry]:
        return [cache_entry_from_reply(e) for e in r.entries]
    return Call("show-cache", [name] if name is not None else [], opts, _checked("show-cache", conv))


def flush_caches(names: Sequence[str] = (), failures: bool = False) -> Call:
    opts = {"failures": "yes"} if failures else {}
    return Call("flush-caches", list(names), opts, _checked("flush-caches", _int_field("flushed")))


def revalidate(names: Sequence[str]) -> Call:
    return Call("revalidate", list(names), {}, _checked("revalidate", _int_field("queued")))


def statistics() -> Call:
    return Call("statistics", [], {}, _checked("statistics", statistics_from_reply))


def reset_statistics() -> Call:
    return Call("reset-statistics", [], {}, _checked("reset-statistics", lambda r: None))


def raw(verb: str, args: Sequence[str], options: Dict[str, str]) -> Call:
    return Call(verb, list(args), dict(options), lambda r: r)


Stats = Dict[str, Union[int, str]]
