"""Wire codec for protocol v1: %XX escaping, request encoding, response-line parsing
and conversion of replies to typed results / exceptions. Pure functions, no I/O."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .errors import (PROTOCOL_ERROR_CODES, MxResolvedError, ProtocolError, ResolveError, protocol_error,
                     resolve_error)
from .types import CacheEntry, Lifetimes, Resolution, Target

MAX_LINE = 4096
DEFAULT_MAX_INFLIGHT = 256
PROTO_VERSION = 1

_KEY_RE = re.compile(r"[a-z0-9_]+\Z")
_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_HEX = b"0123456789ABCDEF"


def escape(value: Union[str, bytes], extra: bytes = b"") -> str:
    """Escape a value: every byte outside 0x21-0x7E, every '%' (and any byte in
    ``extra``) becomes %XX with upper-case hex."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    out = bytearray()
    for b in data:
        if b < 0x21 or b > 0x7E or b == 0x25 or b in extra:
            out += b"%" + bytes((_HEX[b >> 4], _HEX[b & 15]))
        else:
            out.append(b)
    return out.decode("ascii")


def unescape_bytes(text: str) -> bytes:
    """Decode the %XX form; raises ValueError on a malformed escape or a raw byte
    outside 0x21-0x7E."""
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        o = ord(c)
        if c == "%":
            h = text[i + 1:i + 3]
            if len(h) != 2 or not all(ch in "0123456789abcdefABCDEF" for ch in h):
                raise ValueError(f"bad %-escape at offset {i}")
            out.append(int(h, 16))
            i += 3
            continue
        if o < 0x21 or o > 0x7E:
            raise ValueError(f"raw character {c!r} in escaped value")
        out.append(o)
        i += 1
    return bytes(out)


def unescape(text: str) -> str:
    """Decode the %XX form to text (invalid UTF-8 is replaced with U+FFFD)."""
    return unescape_bytes(text).decode("utf-8", "replace")


def valid_id(request_id: str) -> bool:
    return bool(_ID_RE.match(request_id))


def encode_request(verb: str, args: Sequence[str] = (), options: Optional[Dict[str, str]] = None,
                   request_id: Optional[str] = None) -> bytes:
    """Build one request line (with LF). Arguments are escaped (including '='), option
    values are escaped. Raises ValueError for a line over MAX_LINE bytes."""
    parts = [verb]
    for a in args:
        parts.append(escape(a, b"="))
    for k, v in (options or {}).items():
        if not _KEY_RE.match(k):
            raise ValueError(f"bad option key {k!r}")
        parts.append(f"{k}={escape(v)}")
    if request_id is not None:
        if not valid_id(request_id):
            raise ValueError(f"bad request id {request_id!r}")
        parts.append(f"id={request_id}")
    line = " ".join(parts).encode("ascii")
    if len(line) > MAX_LINE:
        raise ValueError(f"request line is {len(line)} bytes; the protocol allows {MAX_LINE}")
    return line + b"\n"


@dataclass
class Reply:
    """One parsed response line (or a final line with its ``entry`` lines attached).
    ``status`` is "ok", "err", "entry" or "json"."""
    status: str
    id: Optional[str]
    fields: List[Tuple[str, str]] = field(default_factory=list)
    json: Optional[Dict[str, Any]] = None
    entries: List["Reply"] = field(default_factory=list)

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        for k, v in self.fields:
            if k == key:
                return v
        return default

    def get_all(self, key: str) -> List[str]:
        return [v for k, v in self.fields if k == key]

    def as_dict(self) -> Dict[str, Union[str, List[str]]]:
        d: Dict[str, Union[str, List[str]]] = {}
        for k, v in self.fields:
            if k in d:
                prev = d[k]
                d[k] = (prev if isinstance(prev, list) else [prev]) + [v]
            else:
                d[k] = v
        return d

    @property
    def ok(self) -> bool:
        if self.status == "json":
            return bool(self.json and self.json.get("ok") is True)
        return self.status == "ok"

    @property
    def is_final(self) -> bool:
        return self.status != "entry"


def parse_line(line: Union[str, bytes]) -> Reply:
    """Parse one response line (without LF; a trailing CR is tolerated).
    Raises ProtocolError(code=None) when malformed."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(None, "response line is not UTF-8") from None
    if line.endswith("\r"):
        line = line[:-1]
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ProtocolError(None, f"bad JSON response: {e}") from None
        if not isinstance(obj, dict):
            raise ProtocolError(None, "JSON response is not an object")
        rid = obj.get("id")
        return Reply("json", rid if isinstance(rid, str) else None, [], obj)
    parts = line.split(" ")
    status = parts[0]
    if status not in ("ok", "err", "entry"):
        raise ProtocolError(None, f"unexpected response line {line[:80]!r}")
    fields: List[Tuple[str, str]] = []
    rid: Optional[str] = None
    for i, p in enumerate(parts[1:]):
        k, sep, v = p.partition("=")
        if not sep or not _KEY_RE.match(k):
            raise ProtocolError(None, f"malformed field {p[:40]!r} in response")
        try:
            value = unescape(v)
        except ValueError as e:
            raise ProtocolError(None, f"malformed value for {k}: {e}") from None
        if k == "id" and i == 0:
            rid = value
        else:
            fields.append((k, value))
    return Reply(status, rid, fields)


def _int(v: Any, what: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ProtocolError(None, f"{what} is not an integer: {v!r}") from None


def parse_target(value: str) -> Target:
    parts = value.split(",")
    if len(parts) < 2:
        raise ProtocolError(None, f"malformed target {value!r}")
    return Target(host=parts[0], port=_int(parts[1], "target port"), addresses=parts[2:])


_LIFETIME_KEYS = ("well_known_max_age", "srv_ttl", "address_ttl")


def _optional_int(v: Any, what: str) -> Optional[int]:
    return None if v is None or v == "" else _int(v, what)


def lifetimes_from_fields(r: Reply) -> Lifetimes:
    return Lifetimes(*(_optional_int(r.get(k), k) for k in _LIFETIME_KEYS))


def lifetimes_from_json(o: Any) -> Lifetimes:
    if not isinstance(o, dict):
        return Lifetimes()
    return Lifetimes(*(_optional_int(o.get(k), k) for k in _LIFETIME_KEYS))


def resolution_from_fields(r: Reply) -> Resolution:
    def need(k: str) -> str:
        v = r.get(k)
        if v is None:
            raise ProtocolError(None, f"resolve answer lacks {k}=")
        return v
    sni = r.get("sni", "")
    return Resolution(
        server_name=need("name"),
        targets=[parse_target(t) for t in r.get_all("target")],
        host_header=need("host"),
        tls_server_name=need("tls_name"),
        sni=sni if sni else None,
        step=need("step"),
        source=r.get("source", "network") or "network",
        expires_in=_int(r.get("ttl", "0"), "ttl"),
        trace=r.get_all("trace"),
        lifetimes=lifetimes_from_fields(r),
    )


def resolution_from_json(o: Dict[str, Any]) -> Resolution:
    try:
        targets = [Target(host=str(t["host"]), port=_int(t["port"], "port"),
                          addresses=[str(a) for a in t.get("addresses", [])]) for t in o.get("targets", [])]
        sni = o.get("sni")
        return Resolution(
            server_name=str(o["server_name"]), targets=targets, host_header=str(o["host_header"]),
            tls_server_name=str(o["tls_server_name"]), sni=str(sni) if sni else None, step=str(o["step"]),
            source=str(o.get("source", "network")), expires_in=_int(o.get("expires_in", 0), "expires_in"),
            trace=[str(x) for x in o.get("trace", []) or []], lifetimes=lifetimes_from_json(o.get("lifetimes")))
    except (KeyError, TypeError, AttributeError) as e:
        raise ProtocolError(None, f"malformed JSON resolution: {e!r}") from None


def error_from_reply(r: Reply, resolution_verb: bool = False) -> MxResolvedError:
    """The exception for an ``err`` (or JSON ok:false) reply."""
    if r.status == "json":
        o = r.json or {}
        e = o.get("error") if isinstance(o.get("error"), dict) else {}
        code = str(e.get("code", "")) or None
        msg = str(e.get("message", ""))
        name = o.get("server_name")
        source = o.get("source")
        exp = o.get("expires_in")
        trace = o.get("trace") or []
    else:
        code = r.get("code")
        msg = r.get("msg", "") or ""
        name = r.get("name")
        source = r.get("source")
        exp = r.get("ttl")
        trace = r.get_all("trace")
    if code and code not in PROTOCOL_ERROR_CODES and (resolution_verb or name is not None):
        return resolve_error(code, msg, server_name=name, source=source,
                             expires_in=int(exp) if exp is not None and str(exp).isdigit() else None,
                             trace=list(trace))
    return protocol_error(code, msg or "request failed")


def resolution_from_reply(r: Reply) -> Resolution:
    if not r.ok:
        raise error_from_reply(r, resolution_verb=True)
    if r.status == "json":
        return resolution_from_json(r.json or {})
    return resolution_from_fields(r)


def cache_entry_from_reply(e: Reply) -> CacheEntry:
    status = e.get("status", "ok") or "ok"
    ttl = e.get("ttl")
    res: Optional[Resolution] = None
    if status == "ok" and e.get("host") is not None:
        res = resolution_from_fields(Reply("ok", None, list(e.fields) + [("source", "cache")]))
    return CacheEntry(server_name=e.get("name", "") or "", status=status,
                      expires_in=int(ttl) if ttl and ttl.isdigit() else None, stale=e.get("stale") == "yes",
                      resolution=res, code=e.get("code"), message=e.get("msg"), fields=e.as_dict())


def statistics_from_reply(r: Reply) -> Dict[str, Union[int, str]]:
    if r.status == "json":
        stats = (r.json or {}).get("statistics", {})
        return {str(k): v for k, v in stats.items()}
    return {k: (int(v) if v.isdigit() else v) for k, v in r.fields}
