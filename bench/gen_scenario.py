#!/usr/bin/env python3
"""Writes a testworld scenario of N cold names and the list of names to resolve.

nK.<zone>  well-known {"m.server": "dK.<zone>"}   (served by nginx, A = the world's nginx)
dK.<zone>  _matrix-fed._tcp SRV -> tK.<zone>:8448
tK.<zone>  A 127.0.N.20, AAAA ::1
Resolving nK takes: GET https://nK/.well-known/matrix/server, SRV _matrix-fed._tcp.dK, AAAA+A tK
(spec step 3.3), i.e. 1 HTTPS fetch + 1 A lookup for nK itself + 3 DNS queries.
With WK < N (6th argument), only the first WK names have a well-known; the others are SRV-only:
nK has A = the world's "closed" address (connection refused on :443, so the well-known fails fast)
and its own _matrix-fed._tcp SRV -> tK (spec step 4). The test world cannot serve 10,000 well-known
hosts: it puts every well-known host in one certificate made with one `openssl req -addext` argument
(10,000 SANs exceed Linux's 128 KiB per-argument limit), and nginx with thousands of server blocks,
each loading that certificate, does not start within the supervisor's 5 s readiness wait.
usage: gen_scenario.py N ZONE BLOCK OUT.json NAMES.txt [WK]
"""
import json, sys

n, zone, block, out, names_out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
wk = int(sys.argv[6]) if len(sys.argv) > 6 else n
names = {}
for k in range(n):
    if k >= wk:
        names[f"n{k}.{zone}"] = {"a": ["closed"], "srv": {"_matrix-fed._tcp": [{"priority": 10, "weight": 0, "port": 8448,
                                                                               "target": f"t{k}.{zone}"}]}}
        names[f"t{k}.{zone}"] = {"a": [f"{block}.20"], "aaaa": ["::1"]}
        continue
    names[f"n{k}.{zone}"] = {"wellknown": {"json": {"m.server": f"d{k}.{zone}"},
                                          "headers": {"Cache-Control": "max-age=3600"}}}
    names[f"d{k}.{zone}"] = {"srv": {"_matrix-fed._tcp": [{"priority": 10, "weight": 0, "port": 8448,
                                                           "target": f"t{k}.{zone}"}]}}
    names[f"t{k}.{zone}"] = {"a": [f"{block}.20"], "aaaa": ["::1"]}
with open(out, "w") as f:
    json.dump({"ttl": 3600, "names": names}, f)
with open(names_out, "w") as f:
    f.write("".join(f"n{k}.{zone}\n" for k in range(n)))
