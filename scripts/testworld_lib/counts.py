"""Request counting from the servers' logs, relative to the last reset-counts."""
import json
import os
import re

LOGS = {"dns": "dnsmasq.log", "faultdns": "faultdns.log", "nginx": "nginx/access.log",
        "faulthttps": "faulthttps.log", "homeserver": "homeserver.log"}
WK_PATH = "/.well-known/matrix/server"
DNSMASQ_Q = re.compile(r"query\[([A-Za-z0-9=]+)\] (\S+) from ")


def _offsets_path(d):
    return os.path.join(d, "counts-offsets.json")


def _read_since(d, key):
    p = os.path.join(d, LOGS[key])
    try:
        off = json.load(open(_offsets_path(d))).get(key, 0)
    except (OSError, ValueError):
        off = 0
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(off if off <= size else 0)
            data = f.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    return lines[:-1]  # drop a partial last line


def reset(d):
    offs = {}
    for k, rel in LOGS.items():
        try:
            offs[k] = os.path.getsize(os.path.join(d, rel))
        except FileNotFoundError:
            offs[k] = 0
    with open(_offsets_path(d), "w") as f:
        json.dump(offs, f)


def _bump(m, k):
    m[k] = m.get(k, 0) + 1


def _json_lines(d, key):
    for ln in _read_since(d, key):
        try:
            yield json.loads(ln)
        except ValueError:
            continue


def counts(d):
    out = {"wellknown": {}, "wellknown_http": {}, "https_other": {}, "dns": {}, "dns_fault_server": {}, "homeserver": {}}
    for ln in _read_since(d, "dns"):
        m = DNSMASQ_Q.search(ln)
        if m:
            _bump(out["dns"], f"{m.group(2).lower().rstrip('.')} {m.group(1)}")
    for e in _json_lines(d, "faultdns"):
        _bump(out["dns_fault_server"], f"{e['name']} {e['type']}")
    for key in ("nginx", "faulthttps"):
        for e in _json_lines(d, key):
            host = (e.get("host") or e.get("sni") or "").lower()
            if e.get("uri", "").split("?")[0] == WK_PATH:
                _bump(out["wellknown_http" if e.get("scheme") == "http" else "wellknown"], host)
            else:
                _bump(out["https_other"], f"{host} {e.get('uri')}")
    for e in _json_lines(d, "homeserver"):
        _bump(out["homeserver"], f"{e.get('host')} {e.get('uri', '').split('?')[0]}")
    return out
