"""Runs proto/vectors.json request vectors against a live daemon over a raw socket."""
from __future__ import annotations

import json
import re
import socket
from typing import Any, Dict, List, Optional

from mxresolved_client._codec import Reply, parse_line


def request_bytes(v: Dict[str, Any]) -> bytes:
    if v.get("encoding") == "latin1":
        return v["request"].encode("latin-1") + b"\n"
    return v["request"].encode("utf-8") + b"\n"


class RawConn:
    def __init__(self, path: str, timeout: float = 15.0) -> None:
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def close(self) -> None:
        self.s.close()

    def readline(self) -> Optional[bytes]:
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def exchange(self, data: bytes) -> List[bytes]:
        """Send one request; return its response lines (entry lines ..., final line)."""
        self.s.sendall(data)
        lines: List[bytes] = []
        while True:
            line = self.readline()
            if line is None:
                raise AssertionError(f"connection closed before a final response; got {lines!r}")
            lines.append(line)
            if not line.startswith(b"entry"):
                return lines

    def is_closed(self) -> bool:
        try:
            self.s.settimeout(5)
            return self.s.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True


def _subset(expected: Any, actual: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected object, got {actual!r}"
        for k, v in expected.items():
            assert k in actual, f"{where}: missing member {k!r} in {actual!r}"
            _subset(v, actual[k], f"{where}.{k}")
    else:
        assert expected == actual, f"{where}: expected {expected!r}, got {actual!r}"


def check(v: Dict[str, Any], lines: List[bytes]) -> Reply:
    name = v["name"]
    exp = v["expect"]
    raw = lines[-1]
    assert b"\r" not in raw, f"{name}: CR in response"
    r = parse_line(raw)
    ctx = f"vector {name!r}: request {v['request'][:80]!r} -> {raw[:300]!r}"
    if exp.get("format") == "json":
        assert r.status == "json", f"{ctx}: expected a JSON object"
        assert (exp["status"] == "ok") == (r.json or {}).get("ok"), ctx
        _subset(exp.get("json_subset", {}), r.json, ctx)
        for k in exp.get("json_present", []):
            assert k in (r.json or {}), f"{ctx}: JSON member {k} missing"
        return r
    assert r.status == exp["status"], ctx
    d = {k: vv for k, vv in reversed(r.fields)}  # first occurrence wins
    if r.id is not None:
        d["id"] = r.id
    for k, want in exp.get("fields", {}).items():
        assert k in d, f"{ctx}: field {k} missing"
        assert d[k] == want, f"{ctx}: {k}={d[k]!r}, expected {want!r}"
    for k in exp.get("present", []):
        assert k in d, f"{ctx}: field {k} missing"
    for k in exp.get("absent", []):
        assert k not in d, f"{ctx}: field {k} must not be present"
    for k, pat in exp.get("field_patterns", {}).items():
        assert k in d and re.search(pat, d[k]), f"{ctx}: {k}={d.get(k)!r} does not match {pat}"
    if "targets" in exp:
        assert r.get_all("target") == exp["targets"], ctx
    if exp.get("first_field"):
        first = raw.split(b" ")[1].split(b"=")[0].decode()
        assert first == exp["first_field"], f"{ctx}: first field is {first}"
    return r


def run_vectors(path: str, vectors: Dict[str, Any]) -> List[str]:
    """Runs every request vector; returns the list of failures (empty = all passed)."""
    failures: List[str] = []
    shared = RawConn(path)
    try:
        for v in vectors["requests"]:
            try:
                if v.get("closes"):
                    c = RawConn(path)
                    try:
                        check(v, c.exchange(request_bytes(v)))
                        assert c.is_closed(), f"vector {v['name']}: connection not closed"
                    finally:
                        c.close()
                    continue
                check(v, shared.exchange(request_bytes(v)))
                if v.get("then"):
                    lines = shared.exchange(v["then"].encode() + b"\n")
                    assert parse_line(lines[-1]).ok, f"vector {v['name']}: follow-up {v['then']!r} -> {lines!r}"
            except (AssertionError, OSError) as e:
                failures.append(f"{v['name']}: {e}")
                shared.close()
                shared = RawConn(path)
    finally:
        shared.close()
    return failures
