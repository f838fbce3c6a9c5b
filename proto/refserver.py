#!/usr/bin/env python3
"""Reference implementation of the mxresolved socket protocol v1 (proto/PROTOCOL.md), for
checking proto/vectors.json and the client test harnesses while the real daemon is not
available. It is NOT a resolver: it answers IP literals (step 1, with the default IP deny
list) and validates server names exactly like Sources/MXCore/ServerName.swift; every DNS
name fails with no_address.

usage: refserver.py --socket PATH [--state-dir DIR] [other args ignored]
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import signal
import sys
import time
from typing import Dict, List, Optional, Tuple

MAX_LINE, MAX_INFLIGHT = 4096, 256
ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
KEY_RE = re.compile(r"[a-z0-9_]+\Z")
VERBS = {"hello", "ping", "version", "resolve", "show-cache", "flush-caches", "revalidate", "reresolve",
         "statistics", "reset-statistics"}
RERESOLVE_INTERVAL, RERESOLVE_NAMES = 60.0, 4096
OPTIONS = {"resolve": {"cache", "trace", "format"}, "show-cache": {"failures", "format", "after", "limit"},
           "flush-caches": {"failures"}, "statistics": {"format"}}
DENIED = [ipaddress.ip_network(n) for n in [
    "0.0.0.0/32", "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "192.0.0.0/24", "169.254.0.0/16", "192.88.99.0/24", "198.18.0.0/15", "192.0.2.0/24",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4",
    "::/128", "::1/128", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8", "fec0::/10"]]
TTL = 3600


def esc(v: str) -> str:
    return "".join(chr(b) if 0x21 <= b <= 0x7E and b != 0x25 else "%%%02X" % b for b in v.encode())


def unesc(v: str) -> str:
    out = bytearray()
    i = 0
    while i < len(v):
        if v[i] == "%":
            h = v[i + 1:i + 3]
            if len(h) != 2 or not re.fullmatch(r"[0-9A-Fa-f]{2}", h):
                raise ValueError("bad %-escape")
            out.append(int(h, 16))
            i += 3
        else:
            out += v[i].encode()
            i += 1
    return out.decode("utf-8")  # raises on invalid UTF-8


class Fail(Exception):
    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


def parse_server_name(text: str) -> Tuple[str, str, Optional[int]]:
    """-> (kind ipv4|ipv6|dns, host, port). Mirrors ServerNameParser."""
    bad = lambda m: Fail("invalid_server_name", m)  # noqa: E731
    if not text:
        raise bad("server name is empty")
    if any(ord(c) > 0x7F for c in text):
        raise bad("server name contains non-ASCII characters: use the punycode A-label (xn--...) form")
    if len(text) > 255:
        raise bad(f"server name is {len(text)} characters; at most 255 are allowed")
    port_part = None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise bad(f"'{text}' is not a valid IPv6 address")
        host, rest = text[:close + 1], text[close + 1:]
        if rest:
            if not rest.startswith(":"):
                raise bad(f"'{text}' is not a valid IPv6 address")
            port_part = rest[1:]
    else:
        if text.count(":") > 1:
            raise bad("IPv6 literal must be enclosed in brackets, e.g. [2001:db8::1]:8448")
        host, _, port_part = text.partition(":") if ":" in text else (text, "", None)
    port = None
    if port_part is not None:
        if not (1 <= len(port_part) <= 5 and port_part.isdigit()):
            raise bad(f"port '{port_part}' is not a number of 1 to 5 digits")
        port = int(port_part)
        if not 1 <= port <= 65535:
            raise bad(f"port {port_part} is out of range: ports are 1 to 65535")
    if not host:
        raise bad("server name is empty")
    if host.startswith("["):
        inner = host[1:-1]
        try:
            if not 2 <= len(inner) <= 45:
                raise ValueError
            return "ipv6", str(ipaddress.IPv6Address(inner)), port
        except ValueError:
            raise bad(f"'{inner}' is not a valid IPv6 address") from None
    labels = host.split(".")
    if len(labels) == 4 and all(1 <= len(x) <= 3 and x.isdigit() for x in labels):
        try:
            return "ipv4", str(ipaddress.IPv4Address(host)), port
        except ValueError:
            raise bad(f"'{host}' looks like an IPv4 address but is not a valid one") from None
    for c in host:
        if not (c.isascii() and (c.isalnum() or c in "-.")):
            raise bad(f"server name contains the character {c!r}, which is not allowed in a hostname")
    for label in labels:
        if not label:
            raise bad("server name has an empty DNS label (leading, trailing or doubled dot)")
        if len(label) > 63:
            raise bad(f"DNS label '{label[:20]}...' is {len(label)} characters; a label may have at most 63")
        if label.startswith("-") or label.endswith("-"):
            raise bad(f"DNS label '{label}' starts or ends with a hyphen")
    return "dns", host, port


def denied(addr: str) -> Optional[str]:
    ip = ipaddress.ip_address(addr)
    cands = [ip]
    if ip.version == 6:
        b = ip.packed
        if b[:10] == bytes(10) and b[10:12] == b"\xff\xff" or b[:12] == bytes(12) and b[12:15] != bytes(3):
            cands.append(ipaddress.IPv4Address(b[12:16]))
        elif b[:2] == b"\x20\x02":
            cands.append(ipaddress.IPv4Address(b[2:6]))
    for c in cands:
        for n in DENIED:
            if c.version == n.version and c in n:
                return str(n)
    return None


class Server:
    def __init__(self) -> None:
        self.cache: Dict[str, Tuple[dict, float]] = {}
        self.failures: Dict[str, Tuple[dict, float]] = {}
        # Counters since start (Prometheus reads these); `statistics` shows them since the last reset.
        self.stats = dict(requests=0, hits=0, misses=0, stale=0, coalesced=0, inflight=0)
        self.reset_at = dict.fromkeys(self.stats, 0)
        self.shutting_down = False
        self.conns: set = set()
        self.reresolved: Dict[str, float] = {}  # name -> start of its last reresolve

    def resolve(self, name: str, use_cache: bool) -> Tuple[bool, dict, str]:
        now = time.monotonic()
        if use_cache and name in self.cache and self.cache[name][1] > now:
            self.stats["hits"] += 1
            return True, self.cache[name][0], "cache"
        if use_cache and name in self.failures and self.failures[name][1] > now:
            self.stats["hits"] += 1
            return False, self.failures[name][0], "cache"
        self.stats["misses"] += 1
        try:
            kind, host, port = parse_server_name(name)
            if kind == "dns":
                raise Fail("no_address", "the reference server resolves only IP literals")
            rng = denied(host)
            if rng:
                raise Fail("address_denied", f"{host} is in the denied range {rng}")
            p = port or 8448
            res = {"name": name, "step": "1", "host": name, "tls_name": host, "sni": "",
                   "targets": [(host, p, [host])], "trace": [f"{name} is an IP literal: step 1"]}
            self.cache[name] = (res, now + TTL)
            return True, res, "network"
        except Fail as f:
            res = {"name": name, "code": f.code, "msg": f.msg, "ttl": 0,
                   "trace": [f"{f.code}: {f.msg}"]}
            if f.code not in ("invalid_server_name", "address_denied"):
                res["ttl"] = 30
                self.failures[name] = (res, now + 30)
            return False, res, "network"

    def ttl(self, name: str, table: Dict[str, Tuple[dict, float]]) -> int:
        return max(0, int(table[name][1] - time.monotonic())) if name in table else 0

    def prometheus(self) -> List[str]:
        """The counters since start in the Prometheus text format (a few of the daemon's families)."""
        st = self.stats
        return ["# HELP mxresolved_requests_total Request lines read from clients, every verb.",
                "# TYPE mxresolved_requests_total counter",
                f"mxresolved_requests_total {st['requests']}",
                "# HELP mxresolved_resolve_requests_total resolve requests by whether the cache answered them.",
                "# TYPE mxresolved_resolve_requests_total counter",
                f'mxresolved_resolve_requests_total{{cache="hit"}} {st["hits"]}',
                f'mxresolved_resolve_requests_total{{cache="miss"}} {st["misses"]}',
                "# HELP mxresolved_resolutions_inflight Resolutions in flight now.",
                "# TYPE mxresolved_resolutions_inflight gauge",
                f"mxresolved_resolutions_inflight {st['inflight']}"]

    def handle(self, line: bytes) -> Tuple[List[str], bool]:
        """-> (response lines, close connection)"""
        def err(code: str, msg: str, rid: Optional[str] = None) -> Tuple[List[str], bool]:
            return [f"err{' id=' + rid if rid else ''} code={code} msg={esc(msg)}"], False
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return err("bad_request", "request line is not valid UTF-8")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            return err("bad_request", "request line contains control characters")
        toks = [t for t in text.split(" ") if t]
        if not toks:
            return err("bad_request", "empty request")
        verb, args, opts = toks[0], [], {}
        try:
            for t in toks[1:]:
                if "=" in t:
                    k, v = t.split("=", 1)
                    if not KEY_RE.match(k) or k in opts:
                        raise ValueError(f"bad or repeated option {k!r}")
                    opts[k] = unesc(v)
                else:
                    args.append(unesc(t))
        except ValueError as e:
            return err("bad_request", str(e))
        rid = opts.pop("id", None)
        if rid is not None and not ID_RE.match(rid):
            return err("bad_request", "id must be 1-64 characters of [A-Za-z0-9._-]")
        idf = f" id={rid}" if rid else ""
        if verb not in VERBS:
            return err("unknown_verb", f'unknown verb "{verb}"', rid)
        for k, v in opts.items():
            if k not in OPTIONS.get(verb, set()):
                return err("bad_request", f"unknown option {k}", rid)
            if k == "after":
                continue
            if k == "limit":
                if not re.fullmatch(r"[0-9]{1,9}", v) or int(v) == 0:
                    return err("bad_request", "limit must be a whole number from 1 to 999999999", rid)
                continue
            allowed = ("yes", "no")
            if k == "format":
                allowed = ("text", "json", "prometheus") if verb == "statistics" else ("text", "json")
            if v not in allowed:
                return err("bad_request", f"{k} must be one of {'/'.join(allowed)}", rid)
        if self.shutting_down:
            return err("shutting_down", "mxresolved is shutting down", rid)
        self.stats["requests"] += 1
        js = opts.get("format") == "json"
        if verb == "hello":
            if len(args) != 1 or not re.fullmatch(r"[0-9]+(,[0-9]+)*", args[0]):
                return err("bad_request", "usage: hello VERSIONS", rid)
            if "1" not in args[0].split(","):
                return [f"err{idf} code=unsupported_version msg={esc('this daemon speaks version 1')} supported=1"], False
            return [f"ok{idf} proto=1 server=mxresolved/0.1.0 max_line={MAX_LINE} max_inflight={MAX_INFLIGHT}"], False
        if verb in ("ping", "version", "statistics", "reset-statistics") and args:
            return err("bad_request", f"{verb} takes no arguments", rid)
        if verb == "ping":
            return [f"ok{idf} pong=1"], False
        if verb == "version":
            return [f"ok{idf} version=0.1.0 proto=1"], False
        if verb == "resolve":
            if len(args) != 1:
                return err("bad_request", "usage: resolve NAME [cache=no] [trace=yes] [format=json]", rid)
            name = args[0]
            ok, res, source = self.resolve(name, opts.get("cache", "yes") == "yes")
            trace = res["trace"] if opts.get("trace") == "yes" else []
            if ok:
                ttl = self.ttl(name, self.cache)
                if js:
                    o = {"ok": True, **({"id": rid} if rid else {}), "server_name": name,
                         "targets": [{"host": h, "port": p, "addresses": a} for h, p, a in res["targets"]],
                         "host_header": res["host"], "tls_server_name": res["tls_name"], "sni": res["sni"] or None,
                         "step": res["step"], "source": source, "expires_in": ttl, "trace": trace}
                    return [json.dumps(o, separators=(",", ":"))], False
                tg = " ".join("target=" + esc(f"{h},{p},{','.join(a)}") for h, p, a in res["targets"])
                tr = "".join(" trace=" + esc(t) for t in trace)
                return [f"ok{idf} name={esc(name)} step={res['step']} source={source} ttl={ttl} host={esc(res['host'])} "
                        f"tls_name={esc(res['tls_name'])} sni={esc(res['sni'])} {tg}{tr}"], False
            ttl = self.ttl(name, self.failures)
            if js:
                o = {"ok": False, **({"id": rid} if rid else {}), "server_name": name,
                     "error": {"code": res["code"], "message": res["msg"]}, "source": source, "expires_in": ttl,
                     "trace": trace}
                return [json.dumps(o, separators=(",", ":"))], False
            tr = "".join(" trace=" + esc(t) for t in trace)
            return [f"err{idf} name={esc(name)} code={res['code']} msg={esc(res['msg'])} source={source} ttl={ttl}{tr}"], False
        if verb == "show-cache":
            if len(args) > 1:
                return err("bad_request", "usage: show-cache [NAME]", rid)
            listed = []  # (name, line, obj) in the order of the names' UTF-8 bytes
            for name, (res, _) in self.cache.items():
                ttl = self.ttl(name, self.cache)
                tg = " ".join("target=" + esc(f"{h},{p},{','.join(a)}") for h, p, a in res["targets"])
                listed.append((name, f"entry{idf} name={esc(name)} status=ok ttl={ttl} step={res['step']} host={esc(res['host'])} "
                                     f"tls_name={esc(res['tls_name'])} sni={esc(res['sni'])} {tg}",
                               {"server_name": name, "ok": True, "stale": False, "expires_in": ttl, "step": res["step"],
                                "targets": [{"host": h, "port": p, "addresses": a} for h, p, a in res["targets"]],
                                "host_header": res["host"], "tls_server_name": res["tls_name"], "sni": res["sni"] or None}))
            if opts.get("failures") == "yes":
                for name, (res, _) in self.failures.items():
                    ttl = self.ttl(name, self.failures)
                    listed.append((name, f"entry{idf} name={esc(name)} status=err ttl={ttl} code={res['code']} msg={esc(res['msg'])}",
                                   {"server_name": name, "ok": False, "expires_in": ttl,
                                    "error": {"code": res["code"], "message": res["msg"]}}))
            listed.sort(key=lambda e: e[0].encode())
            if args:
                listed = [e for e in listed if e[0] == args[0]]
            else:
                after = opts.get("after")
                if after is not None:
                    listed = [e for e in listed if e[0].encode() > after.encode()]
                limit = int(opts["limit"]) if "limit" in opts else None  # every peer is an admin here
                if limit is not None and len(listed) > limit:
                    listed = listed[:limit]
                    nxt = listed[-1][0]
                else:
                    nxt = None
            nxt = None if args else nxt
            if js:
                o = {"ok": True, **({"id": rid} if rid else {}), "entries": [e[2] for e in listed], "count": len(listed)}
                if nxt is not None:
                    o["next"] = nxt
                return [json.dumps(o, separators=(",", ":"))], False
            return [e[1] for e in listed] + [f"ok{idf} count={len(listed)}" + (f" next={esc(nxt)}" if nxt is not None else "")], False
        if verb == "flush-caches":
            n = 0
            if opts.get("failures") != "yes":  # failures=yes: only the negative cache
                names = args or list(self.cache)
                n += sum(1 for x in names if self.cache.pop(x, None) is not None)
            fn = args or list(self.failures)
            n += sum(1 for x in fn if self.failures.pop(x, None) is not None)
            return [f"ok{idf} flushed={n}"], False
        if verb == "revalidate":
            if not args:
                return err("bad_request", "usage: revalidate NAME...", rid)
            for a in args:
                try:
                    parse_server_name(a)
                except Fail as f:
                    return [f"err{idf} name={esc(a)} code={f.code} msg={esc(f.msg)}"], False
            return [f"ok{idf} queued={len(args)}"], False
        if verb == "reresolve":
            if len(args) != 1:
                return err("bad_request", "usage: reresolve NAME", rid)
            try:
                parse_server_name(args[0])
            except Fail as f:
                return [f"err{idf} name={esc(args[0])} code={f.code} msg={esc(f.msg)}"], False
            now = time.monotonic()
            last = self.reresolved.get(args[0])
            if last is not None and now - last < RERESOLVE_INTERVAL:
                retry = max(1, int(-(-(last + RERESOLVE_INTERVAL - now) // 1)))
                return [f"ok{idf} name={esc(args[0])} started=no retry_after={retry}"], False
            self.reresolved.pop(args[0], None)
            while len(self.reresolved) >= RERESOLVE_NAMES:  # oldest first (insertion order)
                self.reresolved.pop(next(iter(self.reresolved)))
            self.reresolved[args[0]] = now
            return [f"ok{idf} name={esc(args[0])} started=yes"], False
        if verb == "statistics":
            if opts.get("format") == "prometheus":
                lines = [f"entry{idf} text={esc(t)}" for t in self.prometheus()]
                return lines + [f"ok{idf} count={len(lines)}"], False
            view = {k: v - self.reset_at[k] for k, v in self.stats.items()}
            if js:
                return [json.dumps({"ok": True, **({"id": rid} if rid else {}), "statistics": view},
                                   separators=(",", ":"))], False
            return [f"ok{idf} " + " ".join(f"{k}={v}" for k, v in view.items())], False
        if verb == "reset-statistics":
            for k in self.stats:
                if k != "inflight":
                    self.reset_at[k] = self.stats[k]
            return [f"ok{idf}"], False
        return err("internal", "unhandled verb", rid)

    async def serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.add(writer)
        buf = b""
        try:
            while True:
                while b"\n" not in buf:
                    if len(buf) > MAX_LINE + 1 or (len(buf) > MAX_LINE and not buf.endswith(b"\r")):
                        writer.write(b"err code=line_too_long msg=request%20line%20exceeds%204096%20bytes\n")
                        await writer.drain()
                        return
                    chunk = await reader.read(65536)
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\n", 1)
                body = line[:-1] if line.endswith(b"\r") else line
                if len(body) > MAX_LINE:
                    writer.write(b"err code=line_too_long msg=request%20line%20exceeds%204096%20bytes\n")
                    await writer.drain()
                    return
                lines, close = self.handle(line)
                writer.write("".join(x + "\n" for x in lines).encode())
                await writer.drain()
                if close:
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            self.conns.discard(writer)
            writer.close()


async def main(argv: List[str]) -> None:
    path = argv[argv.index("--socket") + 1] if "--socket" in argv else "./.mxresolved/mxresolved.sock"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    srv = Server()
    server = await asyncio.start_unix_server(srv.serve_conn, path=path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    # Like a draining daemon: keep accepting for a moment, answering shutting_down.
    srv.shutting_down = True
    await asyncio.sleep(float(os.environ.get("REFSERVER_DRAIN", "0.5")))
    server.close()
    for w in list(srv.conns):
        w.close()
    try:
        os.unlink(path)
    except OSError:
        pass


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
