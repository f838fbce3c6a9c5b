#!/usr/bin/env python3
"""Writes a testworld scenario of N cold names and the list of names to resolve.

nK.<zone>  well-known {"m.server": "dK.<zone>"}   (served by nginx, A = the world's nginx)
dK.<zone>  _matrix-fed._tcp SRV -> tK.<zone>:8448
tK.<zone>  A 127.0.N.20, AAAA ::1
Resolving nK takes: GET https://nK/.well-known/matrix/server, SRV _matrix-fed._tcp.dK, AAAA+A tK
(spec step 3.3), i.e. 1 HTTPS fetch + 1 A lookup for nK itself + 3 DNS queries.
With WK < N (6th argument), only the first WK names have a well-known; the others are SRV-only:
nK has A = the world's "closed" address (connection refused on :443, so the well-known fails fast)
and its own _matrix-fed._tcp SRV -> tK (spec step 4).
--wildcard-cert sets the scenario's "wildcard_cert": the well-known hosts share one certificate for
*.<zone> (one SAN, as a real host's certificate has a few, instead of one SAN per host) and nginx
serves them from one server block, so 10,000 distinct well-known hosts come up in seconds.
usage: gen_scenario.py [--wildcard-cert] N ZONE BLOCK OUT.json NAMES.txt [WK]
"""
import json, sys

args = [a for a in sys.argv[1:] if a != "--wildcard-cert"]
wildcard = len(args) < len(sys.argv) - 1
n, zone, block, out, names_out = int(args[0]), args[1], args[2], args[3], args[4]
wk = int(args[5]) if len(args) > 5 else n
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
scenario = {"ttl": 3600, "names": names}
if wildcard:
    scenario["wildcard_cert"] = True
with open(out, "w") as f:
    json.dump(scenario, f)
with open(names_out, "w") as f:
    f.write("".join(f"n{k}.{zone}\n" for k in range(n)))
