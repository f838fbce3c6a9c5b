"""Scenario JSON -> normalized zone + generated configs (dnsmasq, nginx, certs).

Runs in the `up` process, before the supervisor starts; every error here is a
scenario error reported to the caller.
"""
import ipaddress
import json
import os
import re
import subprocess
import time

WK_PATH = "/.well-known/matrix/server"
DNS_FAULTS = ("servfail", "refused", "stall", "trunc", "wrongid", "nxdomain", "notimp")
RTYPES = ("A", "AAAA", "CNAME", "SRV")


class ScenarioError(Exception):
    pass


def addrs_for(block):
    """Fixed layout of one world inside 127.0.N.0/24."""
    return {
        "dns": f"{block}.53",         # dnsmasq (the one address the daemon gets)
        "faultdns": f"{block}.54",    # python fault DNS (dnsmasq forwards owners to it)
        "https": f"{block}.10",       # nginx :443 (+ :80)
        "faulthttps": f"{block}.11",  # python fault HTTPS :443
        "closed": f"{block}.99",      # nothing listens here
        "homeserver": f"{block}.12",  # fake remote homeserver (homeserver.py)
        "blackhole": f"{block}.14",   # :443 listens with a full accept queue: SYNs are dropped
        "blackhole2": f"{block}.15",  # the same, a second address
        "silent": f"{block}.16",      # :443 and :8448 accept TCP and never send a byte (a stalled TLS handshake)
        "servfaildns": f"{block}.55", # DNS answering SERVFAIL to everything
        "refuseddns": f"{block}.56",  # DNS answering REFUSED to everything
        "proxy": f"{block}.57",       # HTTP CONNECT proxy on :3128
    }


def _fault_ok(f):
    if f in DNS_FAULTS:
        return True
    m = re.fullmatch(r"(delay|flaky):(\d+)", f or "")
    return bool(m)


def _check_name(n):
    if not re.fullmatch(r"[a-z0-9_*.-]+", n) or n.startswith(".") or n.endswith("."):
        raise ScenarioError(f"bad DNS name {n!r} (lowercase, no trailing dot)")


def _conf_str(s, what):
    """A string embedded in nginx config: quoted; refuse `$` (variable syntax)."""
    if "$" in s or "\n" in s:
        raise ScenarioError(f"{what}: '$' and newlines are not allowed: {s!r}")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def normalize(scn, block):
    """Return (owners, wellknown) with symbolic addresses resolved.

    owners[name] = {"A": [...], "AAAA": [...], "CNAME": str|None, "SRV": [...],
                    "ttl": int, "faults": {"A"|"AAAA"|"CNAME"|"SRV"|"*": fault}}
    wellknown[host] = normalized well-known spec (see testworld.md)
    """
    if not isinstance(scn, dict) or not isinstance(scn.get("names"), dict):
        raise ScenarioError('scenario must be an object with "names": {...}')
    ad = addrs_for(block)
    default_ttl = int(scn.get("ttl", 300))
    owners = {}
    wellknown = {}

    def owner(n):
        _check_name(n)
        return owners.setdefault(n, {"A": [], "AAAA": [], "CNAME": None, "SRV": [],
                                     "ttl": default_ttl, "faults": {}, "srv_ttl": None})

    def set_faults(o, f, where):
        if f is None:
            return
        if isinstance(f, str):
            f = {"*": f}
        if not isinstance(f, dict):
            raise ScenarioError(f"{where}: dns_fault must be a string or {{TYPE: fault}}")
        for t, v in f.items():
            t = t.upper() if t != "*" else t
            if t != "*" and t not in RTYPES:
                raise ScenarioError(f"{where}: dns_fault type {t!r} not one of {RTYPES}")
            if not _fault_ok(v):
                raise ScenarioError(f"{where}: unknown dns_fault {v!r}")
            o["faults"][t] = v

    for name, spec in scn["names"].items():
        # "{https}": nginx's own address, for a well-known served to a client that connects to an IP literal.
        name = name.lower().replace("{https}", ad["https"])
        if not isinstance(spec, dict):
            raise ScenarioError(f"{name}: entry must be an object")
        if re.fullmatch(r"[0-9.]+", name):
            if set(spec) - {"wellknown", "comment"}:
                raise ScenarioError(f"{name}: an IP literal has only a wellknown (no DNS records)")
            wellknown[name] = _norm_wellknown(name, spec.get("wellknown") or {}, ad)
            continue
        unknown = set(spec) - {"a", "aaaa", "cname", "srv", "ttl", "dns_fault", "wellknown", "comment"}
        if unknown:
            raise ScenarioError(f"{name}: unknown keys {sorted(unknown)}")
        o = owner(name)
        o["ttl"] = int(spec.get("ttl", default_ttl))
        wk = spec.get("wellknown")
        if wk is not None:
            wellknown[name] = _norm_wellknown(name, wk, ad)
        need_fault_https = bool(wk) and (wellknown[name]["stall_mid_body"] or wellknown[name]["no_response"])
        a = spec.get("a")
        if a is None and wk is not None and "aaaa" not in spec and "cname" not in spec:
            a = ["auto"]
        for v in a or []:
            if v == "auto":
                v = ad["faulthttps"] if need_fault_https else ad["https"]
            elif v in ("https", "faulthttps", "closed", "homeserver", "blackhole", "blackhole2", "silent"):
                v = ad[v]
            ipaddress.IPv4Address(v)
            o["A"].append(v)
        for v in spec.get("aaaa") or []:
            if v in ("https", "closed", "blackhole", "blackhole2"):
                # The IPv4-mapped form: an AAAA record a client connects to over AF_INET6, staying
                # inside this world's block (::1 is the only other IPv6 address on loopback).
                v = "::ffff:" + ad[v]
            ipaddress.IPv6Address(v)
            o["AAAA"].append(v)
        if spec.get("cname"):
            if o["A"] or o["AAAA"] or spec.get("srv") and False:
                raise ScenarioError(f"{name}: cname cannot be combined with a/aaaa")
            o["CNAME"] = spec["cname"].lower().rstrip(".")
        set_faults(o, spec.get("dns_fault"), name)
        for svc, recs in (spec.get("srv") or {}).items():
            so = owner(f"{svc.lower()}.{name}")
            if isinstance(recs, dict):
                set_faults(so, recs.get("dns_fault"), so and f"{svc}.{name}")
                if "ttl" in recs:
                    so["srv_ttl"] = int(recs["ttl"])
                recs = recs.get("records", [])
            for r in recs:
                tgt = str(r.get("target", ".")).lower()
                tgt = "." if tgt in (".", "") else tgt.rstrip(".")
                so["SRV"].append({"priority": int(r.get("priority", 0 if tgt == "." else 10)), "weight": int(r.get("weight", 0)),
                                  "port": int(r.get("port", 0 if tgt == "." else 8448)), "target": tgt})
    for o in owners.values():
        if o["srv_ttl"] is None:
            o["srv_ttl"] = o["ttl"]
    return owners, wellknown, default_ttl


def _norm_wellknown(host, wk, ad):
    if not isinstance(wk, dict):
        raise ScenarioError(f"{host}: wellknown must be an object")
    allowed = {"status", "json", "body", "size", "content_type", "headers", "redirect", "redirect_status",
               "delay_ms", "cert", "stall_mid_body", "no_response", "alt_json"}
    unknown = set(wk) - allowed
    if unknown:
        raise ScenarioError(f"{host}: unknown wellknown keys {sorted(unknown)}")
    out = {"redirect": wk.get("redirect") and wk["redirect"].replace("{https}", ad["https"]),
           "alt": json.dumps(wk["alt_json"]).encode() if "alt_json" in wk else None,
           "headers": dict(wk.get("headers") or {}),
           "delay_ms": int(wk.get("delay_ms", 0)), "cert": wk.get("cert", "valid"),
           "stall_mid_body": bool(wk.get("stall_mid_body")), "no_response": bool(wk.get("no_response"))}
    if out["cert"] not in ("valid", "wrong-name", "self-signed"):
        raise ScenarioError(f"{host}: cert must be valid|wrong-name|self-signed")
    if out["redirect"]:
        out["status"] = int(wk.get("redirect_status", wk.get("status", 302)))
        out["body"] = b""
        out["content_type"] = "text/plain"
        return out
    out["status"] = int(wk.get("status", 200))
    if "json" in wk:
        body = json.dumps(wk["json"])
        ct = "application/json"
    elif "body" in wk:
        body = str(wk["body"])
        ct = "text/plain"
    elif "size" not in wk:
        body, ct = "", "application/json"
    else:
        body, ct = None, "application/json"
    if "size" in wk:
        size = int(wk["size"])
        base = dict(wk["json"]) if isinstance(wk.get("json"), dict) else {}
        base["_pad"] = ""
        overhead = len(json.dumps(base))
        if size < overhead:
            raise ScenarioError(f"{host}: size {size} smaller than the JSON ({overhead})")
        base["_pad"] = "x" * (size - overhead)
        body = json.dumps(base)
    ct = wk.get("content_type") or next((v for k, v in out["headers"].items() if k.lower() == "content-type"), ct)
    out["headers"] = {k: v for k, v in out["headers"].items() if k.lower() != "content-type"}
    out["content_type"] = ct
    out["body"] = body.encode()
    return out


def fault_routed(owners, default_ttl):
    """Owners dnsmasq cannot serve itself -> forwarded to the fault DNS server."""
    routed = {n for n, o in owners.items() if o["faults"] or (o["SRV"] and o["srv_ttl"] != default_ttl)}
    changed = True
    while changed:  # a CNAME whose target lives on the fault server goes there too (so it is chased)
        changed = False
        for n, o in owners.items():
            if n not in routed and o["CNAME"] in routed:
                routed.add(n)
                changed = True
    return routed


def dnsmasq_conf(d, ad, port, owners, routed, default_ttl):
    lines = [
        "# generated by scripts/testworld",
        f"listen-address={ad['dns']}", "bind-interfaces", f"port={port}",
        "no-resolv", "no-hosts", "no-poll", "local=/test/", "cache-size=0",
        f"local-ttl={default_ttl}", "user=root", f"pid-file={d}/dnsmasq.pid",
        "log-queries", f"log-facility={d}/dnsmasq.log",
    ]
    for n in sorted(owners):
        o = owners[n]
        if n in routed:
            lines.append(f"server=/{n}/{ad['faultdns']}#{port}")
            continue
        v4, v6 = list(o["A"]), list(o["AAAA"])
        while v4 or v6:
            parts = [n] + ([v4.pop(0)] if v4 else []) + ([v6.pop(0)] if v6 else [])
            lines.append("host-record=" + ",".join(parts + [str(o["ttl"])]))
        if o["CNAME"]:
            lines.append(f"cname={n},{o['CNAME']},{o['ttl']}")
        for r in o["SRV"]:
            if r["target"] == ".":
                lines.append(f"srv-host={n},.,0,{r['priority']},{r['weight']}")
            else:
                lines.append(f"srv-host={n},{r['target']},{r['port']},{r['priority']},{r['weight']}")
    return "\n".join(lines) + "\n"


def wildcard_names(hosts):
    """SANs covering `hosts` with one `*.PARENT` per parent domain. A host right under a top-level
    label (`wk.test`) is listed as itself: verifiers refuse a wildcard that covers a whole TLD."""
    out = set()
    for h in hosts:
        parent = h.split(".", 1)[1] if "." in h else ""
        out.add(f"*.{parent}" if parent.count(".") >= 1 else h)
    return sorted(out)


def _is_ip(s):
    try:
        ipaddress.ip_address(s)
        return True
    except ValueError:
        return False


def make_certs(d, ad, valid_hosts, wrong_hosts, selfsigned_hosts, wildcard=False):
    """CA + four leaves (P-256): all valid hosts (one SAN each, or `*.PARENT` SANs with
    `wildcard`: the scenario's "wildcard_cert"); 'wrong-name'; self-signed; 'expired' (the valid
    leaf's names, signed by the CA, its validity ended 30 days ago)."""
    c = os.path.join(d, "certs")
    os.makedirs(c, exist_ok=True)
    common = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30"]

    def run(args):
        p = subprocess.run(["openssl", "req", "-x509", "-batch"] + common + args, capture_output=True, text=True)
        if p.returncode:
            raise ScenarioError("openssl failed: " + p.stderr)

    def san(hosts, ips=()):
        return "subjectAltName=" + ",".join([f"DNS:{h}" for h in hosts] + [f"IP:{i}" for i in ips])

    run(["-keyout", f"{c}/ca.key", "-out", f"{c}/ca.pem", "-subj", "/CN=testworld CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    leaf = ["-CA", f"{c}/ca.pem", "-CAkey", f"{c}/ca.key",
            "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"]
    # An IP-literal host (a "{https}" well-known) goes in as an iPAddress SAN: as a dNSName,
    # service_identity (Synapse's TLS check) refuses the whole certificate, for every name in it.
    names = [h for h in valid_hosts if not _is_ip(h)]
    ips = [ad["https"], ad["faulthttps"]]
    ips += [h for h in valid_hosts if _is_ip(h) and h not in ips]
    run(["-keyout", f"{c}/valid.key", "-out", f"{c}/valid.pem", "-subj", "/CN=testworld",
         "-addext", san((wildcard_names if wildcard else sorted)(names) or ["testworld.test"], ips)] + leaf)
    _expired_leaf(c, san((wildcard_names if wildcard else sorted)(names) or ["testworld.test"], ips))
    run(["-keyout", f"{c}/wrong-name.key", "-out", f"{c}/wrong-name.pem", "-subj", "/CN=other.test",
         "-addext", san(["other.test"])] + leaf)
    run(["-keyout", f"{c}/self-signed.key", "-out", f"{c}/self-signed.pem", "-subj", "/CN=selfsigned",
         "-addext", san(sorted(selfsigned_hosts) or ["selfsigned.test"])])
    return f"{c}/ca.pem"


def _expired_leaf(c, san):
    """expired.pem: `openssl req -x509` sets notBefore to now, so the leaf is signed by `openssl ca`,
    which takes explicit dates."""
    def stamp(days_ago):
        return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() - days_ago * 86400))

    with open(f"{c}/expired-ca.cnf", "w") as f:
        f.write("[ca]\ndefault_ca = d\n[d]\ndatabase = expired-index.txt\nnew_certs_dir = .\nrand_serial = yes\n"
                "default_md = sha256\npolicy = p\ncopy_extensions = copy\nunique_subject = no\n[p]\ncommonName = supplied\n")
    open(f"{c}/expired-index.txt", "w").close()
    steps = [["openssl", "req", "-new", "-batch", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", "expired.key", "-out", "expired.csr", "-subj", "/CN=testworld expired", "-addext", san,
              "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"],
             ["openssl", "ca", "-batch", "-config", "expired-ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-notext",
              "-startdate", stamp(60), "-enddate", stamp(30), "-in", "expired.csr", "-out", "expired.pem"]]
    for args in steps:
        p = subprocess.run(args, cwd=c, capture_output=True, text=True)
        if p.returncode:
            raise ScenarioError("openssl failed: " + p.stderr)


def _plain(wk):
    """A well-known nginx can serve as a static file, identical apart from its body."""
    return (wk["cert"] == "valid" and wk["status"] == 200 and not wk["delay_ms"] and not wk["redirect"]
            and not wk["stall_mid_body"] and not wk["no_response"])


def _shared_blocks(ad, c, www, wellknown):
    """One server block per (content type, headers) for all plain hosts, the body picked by $host:
    nginx then starts in about a second with 10,000 hosts (one block and one certificate load per
    host takes several seconds)."""
    groups = {}
    for host, wk in sorted(wellknown.items()):
        if _plain(wk):
            key = (wk["content_type"], tuple(sorted(wk["headers"].items())))
            groups.setdefault(key, []).append(host)
    L = []
    for (ctype, headers), hosts in sorted(groups.items()):
        for host in hosts:
            with open(os.path.join(www, host), "wb") as f:
                f.write(wellknown[host]["body"])
        L += ["  server {", f"    listen {ad['https']}:443 ssl http2;", f"    listen {ad['https']}:80;",
              "    server_name " + " ".join(hosts) + ";",
              f"    ssl_certificate {c}/valid.pem;", f"    ssl_certificate_key {c}/valid.key;",
              f"    location = {WK_PATH} {{"]
        L += [f"      add_header {k} {_conf_str(str(v), hosts[0])} always;" for k, v in headers]
        L += [f"      default_type {_conf_str(ctype, hosts[0])};", f"      alias {www}/$host;", "    }",
              "    location / { return 404; }", "  }"]
    return L


def nginx_conf(d, ad, wellknown, shared_blocks=False):
    """`shared_blocks` (the scenario's "wildcard_cert"): plain hosts share server blocks."""
    www = os.path.join(d, "www")
    os.makedirs(www, exist_ok=True)
    os.makedirs(os.path.join(d, "nginx", "tmp"), exist_ok=True)
    c = os.path.join(d, "certs")
    L = [
        "# generated by scripts/testworld",
        "load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;",
        "user root;", "worker_processes 1;", "daemon off;", "master_process on;",
        f"pid {d}/nginx/nginx.pid;", f"error_log {d}/nginx/error.log warn;",
        "events { worker_connections 1024; }",
        "http {",
        "  types {}", "  default_type application/octet-stream;",
        "  log_format tw escape=json '{\"t\":\"$msec\",\"scheme\":\"$scheme\",\"sni\":\"$ssl_server_name\","
        "\"host\":\"$host\",\"uri\":\"$request_uri\",\"status\":$status,\"bytes\":$body_bytes_sent,"
        "\"proto\":\"$server_protocol\",\"cipher\":\"$ssl_cipher\",\"client\":\"$remote_addr\"}';",
        f"  access_log {d}/nginx/access.log tw;",
        f"  client_body_temp_path {d}/nginx/tmp/body;", f"  proxy_temp_path {d}/nginx/tmp/proxy;",
        f"  fastcgi_temp_path {d}/nginx/tmp/fcgi;", f"  uwsgi_temp_path {d}/nginx/tmp/uwsgi;",
        f"  scgi_temp_path {d}/nginx/tmp/scgi;",
        "  server_tokens off;", "  keepalive_timeout 30s;", "  ssl_protocols TLSv1.2 TLSv1.3;",
        "  server_names_hash_max_size 65536;", "  server_names_hash_bucket_size 128;",
        "  server {",
        f"    listen {ad['https']}:443 ssl http2 default_server;", f"    listen {ad['https']}:80 default_server;",
        f"    ssl_certificate {c}/valid.pem;", f"    ssl_certificate_key {c}/valid.key;",
        "    location / { return 404 '{\"errcode\":\"M_UNRECOGNIZED\",\"testworld\":\"unknown host\"}'; }",
        "  }",
    ]
    if shared_blocks:
        L += _shared_blocks(ad, c, www, wellknown)
    for host, wk in sorted(wellknown.items()):
        if wk["stall_mid_body"] or wk["no_response"]:
            continue  # served by the python fault HTTPS server
        if shared_blocks and _plain(wk):
            continue
        cert = wk["cert"]
        hdrs = [f"      add_header {k} {_conf_str(str(v), host)} always;" for k, v in wk["headers"].items()]
        L += ["  server {", f"    listen {ad['https']}:443 ssl http2;", f"    listen {ad['https']}:80;",
              f"    server_name {host};", "    absolute_redirect off;",
              f"    ssl_certificate {c}/{cert}.pem;", f"    ssl_certificate_key {c}/{cert}.key;",
              f"    location = {WK_PATH} {{"] + hdrs
        if wk["redirect"]:
            if wk["delay_ms"]:
                L.append(f"      echo_sleep {wk['delay_ms'] / 1000:.3f};")
                L.append(f"      echo_status {wk['status']};")
                L.append(f"      add_header Location {_conf_str(wk['redirect'], host)} always;")
                L.append("      echo '';")
            else:
                L.append(f"      return {wk['status']} {_conf_str(wk['redirect'], host)};")
        else:
            with open(os.path.join(www, host), "wb") as f:
                f.write(wk["body"])
            L.append(f"      default_type {_conf_str(wk['content_type'], host)};")
            if wk["status"] == 200 and not wk["delay_ms"]:
                L.append(f"      alias {www}/{host};")
            else:
                if wk["delay_ms"]:
                    L.append(f"      echo_sleep {wk['delay_ms'] / 1000:.3f};")
                L.append(f"      echo_status {wk['status']};")
                L.append(f"      echo_location /_twbody/{host};")
        L += ["    }",
              f"    location /_twbody/ {{ internal; alias {www}/; default_type {_conf_str(wk['content_type'], host)}; }}"]
        if wk.get("alt"):
            with open(os.path.join(www, host + ".alt"), "wb") as f:
                f.write(wk["alt"])
            L.append(f"    location ^~ /alt/ {{ root {www}; default_type application/json; try_files /{host}.alt =404; }}")
        L += ["    location / { return 404; }", "  }"]
    L.append("}")
    return "\n".join(L) + "\n"
