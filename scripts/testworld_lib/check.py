"""`testworld check`: bring up scenarios/standard.json, assert every feature with
dig and curl (pinned with --resolve, never the system resolver), tear down."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

FAILS = []


def ok(cond, what, detail=""):
    print(("  ok   " if cond else "  FAIL ") + what + ("" if cond else f"  [{detail}]"), flush=True)
    if not cond:
        FAILS.append(what)


def sh(args, timeout=15):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def dig(server, name, qtype, *extra):
    ip, port = server.rsplit(":", 1)
    rc, out, err = sh(["dig", f"@{ip}", "-p", port, "+tries=1", "+time=1", "+noall", "+comments", "+answer",
                       name, qtype, *extra])
    status = next((ln.split("status: ")[1].split(",")[0] for ln in out.splitlines() if "status: " in ln), None)
    if status is None and "timed out" in out + err:
        status = "TIMEOUT"
    ans = [ln.split() for ln in out.splitlines() if ln and not ln.startswith(";")]
    return status, ans, out


def curl(world, host, ip=None, maxtime=3, scheme="https"):
    ip = ip or world["https_ip"]
    port = 443 if scheme == "https" else 80
    rc, out, err = sh(["curl", "-sS", "--cacert", world["ca_file"], "-m", str(maxtime), "--resolve",
                       f"{host}:{port}:{ip}", "-D", "-", "-o", "/dev/stdout",
                       "-w", "\n%{http_code} %{size_download}", f"{scheme}://{host}/.well-known/matrix/server"])
    code, size = out.rsplit("\n", 1)[1].split() if "\n" in out else ("000", "0")
    return rc, int(code), int(size), out, err


def run(tool, block, keep):
    here = os.path.dirname(tool)
    scen = os.path.join(here, "scenarios", "standard.json")
    d = tempfile.mkdtemp(prefix="testworld-check-")
    t0 = time.time()
    rc, out, err = sh([tool, "up", "--dir", d, "--ip-block", block, scen], timeout=30)
    if rc:
        print(err, file=sys.stderr)
        return 1
    w = json.loads(out)
    print(f"up in {time.time() - t0:.2f}s: dns={w['dns_server']} https={w['https_ip']}")
    try:
        checks(tool, w, d)
    finally:
        if not keep:
            sh([tool, "down", "--dir", d])
    # teardown: supervisor and every child gone
    left = [ln for ln in sh(["ps", "-eo", "pid,args"])[1].splitlines() if d in ln]
    ok(not left, "down leaves no process", left)
    wd = watch_test(tool, block, scen)
    cd = wildcard_test(tool, block)
    if not FAILS and not keep:  # keep the logs of a failed run for inspection
        for x in (d, wd, cd):
            shutil.rmtree(x, ignore_errors=True)
    print(f"{'FAILED ' + str(len(FAILS)) if FAILS else 'all ok'} in {time.time() - t0:.1f}s")
    return 1 if FAILS else 0


def checks(tool, w, d):
    S = w["dns_server"]
    print("DNS (through the single address):")
    st, ans, _ = dig(S, "target.test", "A")
    ok(st == "NOERROR" and ans and ans[0][4] == "127.0.0.20" and ans[0][1] == "300", "A with TTL", ans)
    st, ans, _ = dig(S, "target.test", "AAAA")
    ok(st == "NOERROR" and ans and ans[0][4] == "::1", "AAAA", ans)
    st, ans, _ = dig(S, "cname.test", "A")
    ok(st == "NOERROR" and ans[0][3] == "CNAME" and ans[-1][4] == "127.0.0.20", "CNAME chased", ans)
    st, ans, _ = dig(S, "_matrix-fed._tcp.delegated.test", "SRV")
    ok(st == "NOERROR" and sorted(a[4] for a in ans) == ["10", "20"], "SRV two priorities", ans)
    st, ans, _ = dig(S, "_matrix-fed._tcp.srv-dot.test", "SRV")
    ok(st == "NOERROR" and ans and ans[0][-1] == ".", 'SRV target "."', ans)
    st, ans, _ = dig(S, "_matrix-fed._tcp.srv-ttl.test", "SRV")
    ok(st == "NOERROR" and ans and ans[0][1] == "30", "SRV with own TTL (fault server)", ans)
    st, ans, _ = dig(S, "nxdomain.test", "A")
    ok(st == "NXDOMAIN", "unknown name NXDOMAIN", st)
    st, ans, _ = dig(S, "aaaa-only.test", "A")
    ok(st == "NOERROR" and not ans, "NODATA", (st, ans))
    st, ans, _ = dig(S, "wk-port.test", "A")
    ok(ans and ans[0][4] == w["https_ip"], "wellknown host auto -> nginx", ans)
    st, ans, _ = dig(S, "wk-stall.test", "A")
    ok(ans and ans[0][4] == w["fault_https_ip"], "stall host auto -> fault https", ans)
    st, _, _ = dig(S, "_matrix-fed._tcp.srv-servfail.test", "SRV")
    ok(st == "SERVFAIL", "fault servfail", st)
    st, ans, _ = dig(S, "srv-servfail.test", "A")
    ok(st == "NOERROR" and ans, "  ...its A still works", st)
    st, _, _ = dig(S, "_matrix-fed._tcp.srv-refused.test", "SRV")
    ok(st == "REFUSED", "fault refused", st)
    st, _, _ = dig(S, "_matrix-fed._tcp.srv-timeout.test", "SRV")
    ok(st == "TIMEOUT", "fault stall -> timeout", st)
    st, ans, out = dig(S, "_matrix-fed._tcp.trunc.test", "SRV")
    ok(st == "NOERROR" and len(ans) == 2 and "Truncated" in out, "fault trunc: TC over UDP, full over TCP", out)
    st, ans, out = dig(S, "_matrix-fed._tcp.trunc.test", "SRV", "+ignore")
    ok("tc" in out.split("flags:")[1].split(";")[0] and not ans, "  ...UDP answer has TC and no records", out)
    st, _, _ = dig(S, "aaaa-servfail.test", "AAAA")
    st2, ans, _ = dig(S, "aaaa-servfail.test", "A")
    ok(st == "SERVFAIL" and st2 == "NOERROR" and ans, "per-type fault (AAAA only)", (st, st2))
    st, _, _ = dig(w["fault_dns_server"], "_matrix-fed._tcp.srv-servfail.test", "SRV")
    ok(st == "SERVFAIL", "fault server directly", st)
    print("HTTPS:")
    rc, code, size, out, _ = curl(w, "wk-port.test")
    ok(code == 200 and '"m.server": "target.test:8449"' in out and "application/json" in out, "200 json", out[-200:])
    rc, code, size, out, _ = curl(w, "wk-404.test")
    ok(code == 404 and "M_NOT_FOUND" in out, "404 with body", out[-200:])
    rc, code, size, out, _ = curl(w, "wk-500.test")
    ok(code == 500, "500", code)
    rc, code, size, out, _ = curl(w, "wk-html.test")
    ok(code == 200 and "text/html" in out, "html content type", out[:300])
    rc, code, size, out, _ = curl(w, "wk-big.test")
    ok(code == 200 and size == 70000, "70 kB body", size)
    rc, code, size, out, _ = curl(w, "wk-redirect.test")
    ok(code == 302 and "location: https://wk-redirect2.test/" in out.lower(), "302 redirect", out[:300])
    rc, code, size, out, _ = curl(w, "wk-tohttp.test")
    ok(code == 301 and "location: http://wk-tohttp.test/" in out.lower(), "redirect to http://", out[:300])
    rc, code, size, out, _ = curl(w, "wk-cache.test")
    ok("cache-control: max-age=600" in out.lower(), "Cache-Control header", out[:300])
    rc, code, size, out, _ = curl(w, "wk-expires.test")
    ok("expires: thu, 01 jan 2099" in out.lower(), "Expires header", out[:300])
    rc, code, size, out, err = curl(w, "wk-wrongcert.test")
    ok(rc == 60 and "subject name" in err, "wrong-name cert rejected (curl 60)", err)
    rc, code, size, out, err = curl(w, "wk-selfsigned.test")
    ok(rc == 60 and "self-signed" in err, "self-signed cert rejected (curl 60)", err)
    _, san, _ = sh(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", os.path.join(d, "certs", "valid.pem")])
    dns_sans = re.findall(r"DNS:([^,\s]+)", san)
    ok(dns_sans and not [n for n in dns_sans if re.fullmatch(r"[0-9.]+|.*:.*", n)],
       "valid certificate: no IP literal as a DNS name (service_identity, Synapse's check, refuses it whole)", dns_sans)
    rc, code, size, out, err = curl(w, w["https_ip"])
    ok(rc == 0 and code == 200 and "target.test:8453" in out, "{https}: well-known at nginx's IP literal (IP SAN)", (rc, err))
    rc, code, size, out, err = curl(w, "wk-wrongcert.test", scheme="http")
    ok(rc == 0 and code == 200, "plain http :80 answers (counted separately)", err)
    t = time.time()
    rc, code, size, out, err = curl(w, "wk-slow.test", maxtime=1)
    ok(rc == 28 and time.time() - t >= 0.9, "delay (10 s) -> curl timeout at 1 s", err)
    rc, code, size, out, err = curl(w, "wk-stall.test", ip=w["fault_https_ip"], maxtime=1)
    ok(rc == 28 and code == 200 and 0 < size, "stall mid-body (headers + half body)", (rc, code, size, err))
    rc, code, size, out, err = curl(w, "wk-noanswer.test", ip=w["fault_https_ip"], maxtime=1)
    ok(rc == 28 and size == 0, "accept, never answer", (rc, err))
    rc, code, size, out, err = curl(w, "wk-refused.test", ip=w["closed_ip"])
    ok(rc == 7, "connection refused on closed ip (curl 7)", (rc, err))
    for ip in w["blackhole_ips"]:
        t = time.time()
        rc, code, size, out, err = curl(w, "wk-port.test", ip=ip, maxtime=1)
        ok(rc == 28 and time.time() - t >= 0.9, f"blackhole {ip}: connect hangs (curl 28 at 1 s)", (rc, err))
    print("counts:")
    c = json.loads(sh([tool, "counts", "--dir", d])[1])
    ok(c["wellknown"].get("wk-port.test") == 1 and c["wellknown"].get("wk-stall.test") == 1
       and c["wellknown"].get("wk-noanswer.test") == 1 and c["wellknown_http"].get("wk-wrongcert.test") == 1,
       "wellknown counted per host (nginx + fault https)", c["wellknown"])
    ok(c["dns"].get("_matrix-fed._tcp.trunc.test SRV") == 3 and c["dns"].get("target.test A") == 1,
       "dns counted per name+type", c["dns"])
    ok("testworld-probe.test A" not in c["dns"], "readiness probes not counted", c["dns"])
    sh([tool, "reset-counts", "--dir", d])
    dig(S, "target.test", "A")
    c = json.loads(sh([tool, "counts", "--dir", d])[1])
    ok(c["dns"] == {"target.test A": 1} and c["wellknown"] == {}, "reset-counts", c)


def watch_test(tool, block, scen):
    d = tempfile.mkdtemp(prefix="testworld-check-watch-")
    # The watched process outlives the bring-up (which takes longer on a loaded machine) and is ended
    # only once the world is up, so the check is of the teardown, not of a race with start-up.
    sleeper = subprocess.Popen(["sleep", "60"])
    rc, out, err = sh([tool, "up", "--dir", d, "--ip-block", block, "--watch-pid", str(sleeper.pid), scen])
    ok(rc == 0, "up --watch-pid", err)
    sleeper.kill()
    sleeper.wait()
    end = time.time() + 10
    while time.time() < end:
        left = [ln for ln in sh(["ps", "-eo", "pid,args"])[1].splitlines() if d in ln]
        if not left:
            break
        time.sleep(0.1)
    ok(not left, "--watch-pid: world torn down after the watched process exits", left)
    return d


def wildcard_test(tool, block):
    """`wildcard_cert`: one `*.PARENT` SAN, plain hosts from shared server blocks, the rest as usual."""
    d = tempfile.mkdtemp(prefix="testworld-check-wildcard-")
    scen = os.path.join(d, "wildcard.json")
    with open(scen, "w") as f:
        json.dump({"wildcard_cert": True, "names": {
            "a.wc.test": {"wellknown": {"json": {"m.server": "a.example:443"}, "headers": {"Cache-Control": "max-age=60"}}},
            "b.wc.test": {"wellknown": {"json": {"m.server": "b.example:443"}, "headers": {"Cache-Control": "max-age=60"}}},
            "c.wc.test": {"wellknown": {"body": "plain", "headers": {"Cache-Control": "no-store"}}},
            "r.wc.test": {"wellknown": {"redirect": "https://a.wc.test/.well-known/matrix/server"}},
            "top.test": {"wellknown": {"json": {"m.server": "top.example:443"}}},
            "bad.wc.test": {"wellknown": {"cert": "wrong-name", "json": {}}}}}, f)
    print("wildcard_cert:")
    rc, out, err = sh([tool, "up", "--dir", d, "--ip-block", block, scen], timeout=30)
    ok(rc == 0, "up with wildcard_cert", err)
    if rc:
        return d
    try:
        w = json.loads(out)
        _, san, _ = sh(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", os.path.join(d, "certs", "valid.pem")])
        names = sorted(re.findall(r"DNS:([^,\s]+)", san))
        ok(names == ["*.wc.test", "top.test"], "one *.PARENT SAN per parent, a host under a TLD as itself", names)
        for host, body, cc in (("a.wc.test", '"a.example:443"', "max-age=60"), ("b.wc.test", '"b.example:443"', "max-age=60"),
                               ("c.wc.test", "plain", "no-store"), ("top.test", '"top.example:443"', None)):
            rc, code, _, out, err = curl(w, host)
            ok(rc == 0 and code == 200 and body in out and (cc is None or f"cache-control: {cc}" in out.lower()),
               f"{host}: its own body and headers through the wildcard certificate", (rc, code, out[-300:], err))
        rc, code, _, out, _ = curl(w, "r.wc.test")
        ok(rc == 0 and code == 302 and "location: https://a.wc.test/" in out.lower(), "redirect host keeps its own block", out[-300:])
        rc, _, _, _, err = curl(w, "bad.wc.test")
        ok(rc == 60, "wrong-name host keeps its own certificate (curl 60)", (rc, err))
    finally:
        sh([tool, "down", "--dir", d])
    return d
