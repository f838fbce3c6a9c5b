"""Typed results."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Union


@dataclass(frozen=True)
class Target:
    """One place to connect to: try ``addresses`` in order (IPv6 first), on ``port``."""
    host: str
    port: int
    addresses: List[str]


@dataclass(frozen=True)
class Lifetimes:
    """How long each ingredient of an answer was good for when fetched, in seconds; ``None``
    when that ingredient was not used (or, for the well-known, its cache headers said nothing).
    The answer's ``expires_in`` is derived from them (docs/caching.md)."""
    well_known_max_age: Optional[int] = None
    srv_ttl: Optional[int] = None
    address_ttl: Optional[int] = None


@dataclass(frozen=True)
class Resolution:
    """A successful answer for ``server_name``.

    * ``targets``: in the order to try them.
    * ``host_header``: the HTTP ``Host`` header to send.
    * ``tls_server_name``: the name (or bare IP) the certificate must be valid for.
    * ``sni``: the SNI to send, ``None`` for IP literals (send no SNI).
    * ``step``: the spec step ("1", "2", "3.1" ... "6").
    * ``source``: "network", "cache" or "stale".
    * ``expires_in``: seconds until the answer expires (0 when stale).
    * ``lifetimes``: the lifetime of each ingredient (well-known, SRV, addresses).
    """
    server_name: str
    targets: List[Target]
    host_header: str
    tls_server_name: str
    sni: Optional[str]
    step: str
    source: str
    expires_in: int
    trace: List[str] = field(default_factory=list)
    lifetimes: Lifetimes = field(default_factory=Lifetimes)


@dataclass(frozen=True)
class Reresolution:
    """The daemon's answer to ``reresolve``: whether a fresh background resolution started, or
    else how many seconds until the name may be re-resolved again."""
    server_name: str
    started: bool
    retry_after: Optional[int]


class CachePage(list):  # type: ignore[type-arg]
    """The ``CacheEntry`` list of one ``show-cache`` answer. ``next`` is set when the daemon
    stopped at the page's limit (at most 1000 entries for a peer that is not an admin): pass it
    as ``after=`` for the following page; ``None`` at the end of the cache."""

    def __init__(self, entries: Iterable["CacheEntry"] = (), next: Optional[str] = None) -> None:
        super().__init__(entries)
        self.next = next


@dataclass(frozen=True)
class CacheEntry:
    """One ``show-cache`` entry. ``resolution`` is set for ``status == "ok"``;
    ``code``/``message`` for cached failures. ``fields`` holds every raw field."""
    server_name: str
    status: str
    expires_in: Optional[int]
    stale: bool
    resolution: Optional[Resolution]
    code: Optional[str]
    message: Optional[str]
    fields: Dict[str, Union[str, List[str]]]
