#!/usr/bin/env python3
"""mxresolved benchmark driver (issue 7). Started by scripts/bench, which builds everything first.

usage: run.py --bin DIR --tools DIR --venv DIR --out REPORT.md [--smoke]

Everything runs on this machine over loopback: Unix sockets, and a test world (scripts/testworld)
on 127.0.70.0/24. Work files go to .build/bench/run/. Raw figures are kept in .build/bench/raw.json
and embedded in the report.
"""
import argparse, datetime, json, os, platform, re, shutil, signal, socket, statistics, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True)
ap.add_argument("--tools", required=True)
ap.add_argument("--venv", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--smoke", action="store_true")
ap.add_argument("--commit", default="")
ap.add_argument("--dirty", default="")
ap.add_argument("--only", default="1,2,callgrind,3,4,5,profile")
A = ap.parse_args()
SMOKE = A.smoke
ONLY = set(A.only.split(","))
WORK = os.path.join(ROOT, ".build/bench/run")
BLOCK = "127.0.70"
MXR = os.path.join(A.bin, "mxresolved")
LOADGEN = os.path.join(A.tools, "loadgen")
ECHO = os.path.join(A.tools, "echo")
PY = os.path.join(A.venv, "bin/python")
RAW = {"commit": A.commit, "dirty": A.dirty.strip(), "smoke": SMOKE, "cpus": os.cpu_count(), "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
FAIL = []
T_START = time.monotonic()


def log(*a):
    print(f"[bench {time.monotonic() - T_START:6.1f}s]", *a, file=sys.stderr, flush=True)


def check(cond, what):
    if not cond:
        FAIL.append(what)
        log("CHECK FAILED:", what)
    return cond


def sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def pin_prefix(cpus):
    return ["taskset", "-c", cpus] if cpus else []


def wait_socket(path, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return True
        except OSError:
            time.sleep(0.002)
        finally:
            s.close()
    return False


class Daemon:
    def __init__(self, name, extra=(), pin=None, fresh=True, wrap=(), env=None, start_timeout=10.0):
        self.dir = os.path.join(WORK, name)
        if fresh:
            shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "s.sock")
        self.args = pin_prefix(pin) + list(wrap) + [MXR, "--state-dir", self.dir, "--socket", self.sock, "--log-level", "info"] + list(extra)
        self.logf = open(os.path.join(self.dir, "daemon.log"), "a")
        self.p = subprocess.Popen(self.args, stdout=self.logf, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        if not wait_socket(self.sock, start_timeout):
            raise SystemExit(f"daemon did not start: {self.args}")

    def status(self):
        out = {}
        with open(f"/proc/{self.p.pid}/status") as f:
            for l in f:
                k, _, v = l.partition(":")
                if k in ("VmHWM", "VmRSS", "Threads", "RssAnon", "RssFile"):
                    out[k] = int(v.split()[0])
        return out

    def cpu(self):
        return cpu_seconds([self.p.pid])

    def request(self, line):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.sock)
        s.sendall(line.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            buf += s.recv(65536)
        s.close()
        return buf.decode()

    def stop(self, timeout=15):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                check(False, f"daemon did not exit within {timeout} s of SIGTERM")
        self.logf.close()
        return self.p.returncode


def cpu_seconds(pids):
    t = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fs = f.read().rsplit(")", 1)[1].split()
            t += int(fs[11]) + int(fs[12])
        except OSError:
            pass
    return t / os.sysconf("SC_CLK_TCK")


def loadgen(sock, *args, pin=None):
    p = sh(pin_prefix(pin) + [LOADGEN, sock] + [str(a) for a in args], timeout=600)
    if p.returncode:
        raise RuntimeError(f"loadgen {' '.join(map(str, args))} failed: {p.stderr.strip()}")
    return json.loads(p.stdout)


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


# ------------------------------------------------------------------ 1. cache hits over the socket
def bench_hits():
    secs, warm, reps = (0.5, 0.2, 1) if SMOKE else (1.0, 0.2, 3)
    grid = [(1, 1, None), (1, 1, "0"), (8, 1, None), (32, 1, None),
            (1, 16, None), (1, 16, "0"), (8, 16, None), (32, 16, None),
            (1, 64, None), (1, 64, "0"), (8, 64, None), (32, 64, None)]
    if SMOKE:
        grid = [(1, 1, None), (1, 1, "0"), (8, 64, None)]
    d = Daemon("hits")
    nhit = 1000
    fill = loadgen(d.sock, "--conns", 1, "--depth", 64, "--once", "--ip-literals", nhit)
    check(fill["ok"] == nhit, "hits: fill answered ok")
    sample = d.request("resolve 11.0.1.1 id=12345").rstrip("\n")
    check("source=cache" in sample, f"hits: second request is a cache hit ({sample})")
    resp_bytes = len(sample) + 1
    req_bytes = len("resolve 11.0.1.1 id=12345\n")
    esock = os.path.join(WORK, "echo.sock")
    rows = []
    echo = subprocess.Popen([ECHO, esock, str(resp_bytes)])
    wait_socket(esock)
    try:
        for conns, depth, pin in grid:
            for server, sockp, pid in (("echo", esock, echo.pid), ("mxresolved", d.sock, d.p.pid)):
                # pin (or unpin) every thread of the server; the client is started under taskset
                sh(["taskset", "-a", "-p", "-c", pin or "0,1", str(pid)])
                runs = [loadgen(sockp, "--conns", conns, "--depth", depth, "--secs", secs, "--warmup", warm,
                                "--ip-literals", nhit, pin=pin) for _ in range(reps)]
                sh(["taskset", "-a", "-p", "-c", "0,1", str(pid)])
                med = lambda k: statistics.median(r[k] for r in runs)
                row = {"server": server, "conns": conns, "depth": depth, "pinned": bool(pin),
                       "rps": med("rps"), "p50_us": med("p50_us"), "p99_us": med("p99_us"),
                       "rps_runs": [r["rps"] for r in runs], "errors": sum(r["err"] for r in runs),
                       "cache_fraction": round(sum(r["cache"] for r in runs) / max(1, sum(r["ok"] + r["err"] for r in runs)), 4) if server == "mxresolved" else None}
                check(row["errors"] == 0, f"hits: {server} {conns}x{depth} had errors")
                if server == "mxresolved":
                    check(row["cache_fraction"] == 1.0, f"hits: all answers source=cache ({row['cache_fraction']})")
                rows.append(row)
                log(f"hits {server:10s} conns={conns:2d} depth={depth:2d} pin={pin or '-'}: {row['rps']:.0f}/s p50 {row['p50_us']:.0f} µs p99 {row['p99_us']:.0f} µs")
    finally:
        echo.terminate()
        echo.wait()
    RAW["hits"] = {"rows": rows, "request_bytes": req_bytes, "response_bytes": resp_bytes, "sample": sample,
                   "secs_per_run": secs, "warmup": warm, "runs_per_row": reps, "distinct_names": nhit,
                   "daemon_threads": d.status().get("Threads")}
    d.stop()


# ------------------------------------------------------------------ test world
WORLD = {}


def world_up():
    wdir = os.path.join(WORK, "world")
    n = 200 if SMOKE else 10000
    wk = n  # every name has its own well-known host (one wildcard certificate for all of them)
    scen, names = os.path.join(WORK, "scenario.json"), os.path.join(WORK, "names.txt")
    sh([sys.executable, os.path.join(ROOT, "bench/gen_scenario.py"), "--wildcard-cert", str(n), "bench.test", BLOCK, scen, names, str(wk)],
       check=True)
    with open(names) as f:
        allnames = f.read().split()
    for k, cnt in (("n1k", 100 if SMOKE else 1000), ("n10k", n)):
        with open(os.path.join(WORK, k + ".txt"), "w") as f:
            f.write("\n".join(allnames[:cnt]) + "\n")
    t0 = time.monotonic()
    p = sh([os.path.join(ROOT, "scripts/testworld"), "up", "--dir", wdir, "--ip-block", BLOCK, "--watch-pid", str(os.getpid()), scen])
    if p.returncode:
        raise SystemExit("testworld up failed: " + p.stdout + p.stderr)
    WORLD.update(json.loads(p.stdout.strip().splitlines()[-1]))
    WORLD["up_seconds"] = round(time.monotonic() - t0, 2)
    WORLD["names"], WORLD["wellknown_hosts"] = n, wk
    with open(os.path.join(wdir, "nginx/nginx.pid")) as f:
        master = int(f.read())
    kids = [int(x) for x in sh(["pgrep", "-P", str(master)]).stdout.split()]
    with open(os.path.join(wdir, "dnsmasq.pid")) as f:
        dnsmasq = int(f.read())
    WORLD["pids"] = {"nginx": [master] + kids, "dnsmasq": [dnsmasq], "supervisor": [WORLD["supervisor_pid"]]}
    RAW["world"] = {k: WORLD[k] for k in ("up_seconds", "names", "wellknown_hosts", "dns_server", "https_ip")}
    log(f"test world up in {WORLD['up_seconds']} s: {n} names, {wk} well-known hosts")


def world_counts():
    return json.loads(sh([os.path.join(ROOT, "scripts/testworld"), "counts", "--dir", WORLD["dir"]], check=True).stdout)


def world_reset():
    sh([os.path.join(ROOT, "scripts/testworld"), "reset-counts", "--dir", WORLD["dir"]], check=True)


def world_cpu():
    return {k: cpu_seconds(v) for k, v in WORLD["pids"].items()}


def count_summary(c, names):
    wk = c.get("wellknown", {})
    per = [wk.get(n, 0) for n in names]
    dns = c.get("dns", {})
    return {"wellknown_total": sum(wk.values()), "wellknown_hosts": len(wk),
            "wellknown_per_name_min": min(per), "wellknown_per_name_max": max(per),
            "dns_total": sum(dns.values()), "dns_distinct": len(dns),
            "dns_by_type": {t: sum(v for k, v in dns.items() if k.endswith(" " + t)) for t in ("A", "AAAA", "SRV", "ANY")}}


def names_of(key):
    with open(os.path.join(WORK, key + ".txt")) as f:
        return f.read().split()


# ------------------------------------------------------------------ 2. cold resolution
class PeakSampler:
    """Largest RssAnon / RssFile of a process, read from /proc every 20 ms while a run lasts
    (VmHWM has the peak of their sum only)."""

    def __init__(self, daemon):
        self.d, self.peak, self.done = daemon, {"RssAnon": 0, "RssFile": 0}, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.done.wait(0.02):
            try:
                st = self.d.status()
            except OSError:
                return
            for k in self.peak:
                self.peak[k] = max(self.peak[k], st.get(k, 0))

    def stop(self):
        self.done.set()
        self.t.join()
        return {"peak_rss_anon_mib": round(self.peak["RssAnon"] / 1024, 1), "peak_rss_file_mib": round(self.peak["RssFile"] / 1024, 1)}


def world_share(cpu, wall):
    """The test world's servers' CPU as a share of the machine's CPU time over the run."""
    used = sum(v for k, v in cpu.items() if k in WORLD["pids"])
    return round(used / (wall * (os.cpu_count() or 1)), 3)


def cold_daemon(key):
    names = names_of(key)
    world_reset()
    d = Daemon("cold-" + key, WORLD["daemon_args"])
    c0, w0, t0 = d.cpu(), world_cpu(), time.monotonic()
    sampler = PeakSampler(d)
    r = loadgen(d.sock, "--conns", 4, "--depth", 250, "--once", "--names", os.path.join(WORK, key + ".txt"))
    wall = time.monotonic() - t0
    peaks = sampler.stop()
    st = d.status()
    cpu = {"daemon": round(d.cpu() - c0, 2), **{k: round(v - w0[k], 2) for k, v in world_cpu().items()}}
    out = {"names": len(names), "seconds": r["seconds"], "names_per_s": round(len(names) / r["seconds"], 1),
           "ok": r["ok"], "err": r["err"], "p50_ms": round(r["p50_us"] / 1000, 1), "p99_ms": round(r["p99_us"] / 1000, 1),
           "peak_rss_mib": round(st["VmHWM"] / 1024, 1), "rss_anon_mib": round(st.get("RssAnon", 0) / 1024, 1),
           "rss_file_mib": round(st.get("RssFile", 0) / 1024, 1), **peaks, "cpu_s": cpu,
           "cpu_ms_per_name": round(cpu["daemon"] * 1000 / len(names), 3), "world_cpu_share": world_share(cpu, wall),
           "wall_s": round(wall, 2), "stats": d.request("statistics").strip()}
    out["counts"] = count_summary(world_counts(), names)
    d.stop()
    check(r["err"] == 0, f"cold {key}: daemon answered every name ok ({r['err']} errors)")
    return out


def synapse_run(namefile, conc=128):
    p = sh([PY, os.path.join(ROOT, "bench/synapse_driver.py"), "--dns", WORLD["dns_server"], "--ca", WORLD["ca_file"],
            "--names", namefile, "--concurrency", str(conc)], timeout=900)
    if p.returncode:
        check(False, "synapse driver failed: " + p.stderr[-2000:])
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def cold_synapse(key):
    names = names_of(key)
    world_reset()
    w0, t0 = world_cpu(), time.monotonic()
    r = synapse_run(os.path.join(WORK, key + ".txt"))
    if r is None:
        return None
    r["synapse_cpu_s"] = r.pop("cpu_s", None)
    r["cpu_s"] = {k: round(v - w0[k], 2) for k, v in world_cpu().items()}
    r["wall_s"] = round(time.monotonic() - t0, 2)
    r["cpu_ms_per_name"] = round(r["cpu_s_resolving"] * 1000 / len(names), 3)
    # over the resolving phase only (the driver's start-up, about a second of Python imports, is not world load)
    r["world_cpu_share"] = world_share(r["cpu_s"], r["seconds"])
    r["counts"] = count_summary(world_counts(), names)
    check(r["err"] == 0, f"cold {key}: synapse resolved every name ({r['err']} errors {r['errors']})")
    return r


def bench_cold():
    res = {}
    RAW["cold"] = res
    for key in ("n1k", "n10k"):
        res[key] = {"mxresolved": cold_daemon(key)}
        log(f"cold {key} mxresolved: {res[key]['mxresolved']['names_per_s']} names/s, peak RSS {res[key]['mxresolved']['peak_rss_mib']} MiB, cpu {res[key]['mxresolved']['cpu_s']}")
        if have_synapse():
            res[key]["synapse"] = cold_synapse(key)
            if res[key]["synapse"]:
                log(f"cold {key} synapse: {res[key]['synapse']['names_per_s']} names/s, peak RSS {res[key]['synapse']['peak_rss_mib']} MiB, cpu {res[key]['synapse']['cpu_s']}")
    RAW["cold"] = res


def have_synapse():
    if not os.path.exists(PY):
        return False
    p = sh([PY, "-c", "import importlib.metadata as m; print(m.version('matrix-synapse'), m.version('twisted'))"])
    if p.returncode == 0:
        RAW["synapse_version"] = "%s (Twisted %s)" % tuple(p.stdout.split())
    return p.returncode == 0


# ------------------------------------------------------------------ instructions per cold name (callgrind)
# Inclusive instruction counts of the functions a cold name's CPU goes to (callgrind_annotate names).
CALLGRIND_PARTS = [
    ("curl_multi_perform", "libcurl: the whole well-known fetch"),
    ("SSL_connect", "the TLS handshake"),
    ("SSL_CTX_new", "a new SSL_CTX (libcurl 7.88 makes one per connection)"),
    ("d2i_X509", "decoding the server's certificate"),
    ("OSSL_DECODER_CTX_new_for_pkey", "of which OpenSSL 3.0's key-decoder set-up"),
    ("ECDSA_do_verify", "ECDSA verifications (certificate, handshake)"),
    ("X509_verify_cert", "chain verification against the trust store"),
    ("EVP_PKEY_generate", "key share generation"),
    ("EVP_PKEY_derive", "key agreement"),
    ("EVP_KDF_derive", "TLS 1.3 key schedule"),
    ("X509_STORE_load_file", "loading CA files"),
    ("ares_process_fd", "c-ares: DNS answers"),
    ("malloc", "malloc (all callers)"),
    ("free", "free (all callers)"),
]


def bench_callgrind():
    """Instructions per cold name under callgrind: repeatable where CPU seconds on a shared
    machine are not. The daemon runs under valgrind with bench/sigsuspend_copy.so preloaded;
    one warm-up name (OpenSSL's one-time set-up) stays out of the count."""
    n = 10 if SMOKE else 30
    allnames = names_of("n10k")
    warm, names = allnames[-1], allnames[-1 - n:-1]
    nf = os.path.join(WORK, "callgrind-names.txt")
    with open(nf, "w") as f:
        f.write("\n".join(names) + "\n")
    out = os.path.join(WORK, "callgrind.out")
    for old in [x for x in os.listdir(WORK) if x.startswith("callgrind.out")]:
        os.unlink(os.path.join(WORK, old))
    world_reset()
    d = Daemon("callgrind", WORLD["daemon_args"], wrap=["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"],
               env={"LD_PRELOAD": os.path.join(A.tools, "sigsuspend_copy.so")}, start_timeout=120)
    d.request(f"resolve {warm}")
    sh(["callgrind_control", "-z", str(d.p.pid)])
    r = loadgen(d.sock, "--conns", 1, "--depth", 8, "--once", "--names", nf)
    sh(["callgrind_control", "-d", str(d.p.pid)])
    d.stop(timeout=120)
    check(r["ok"] == n, f"callgrind: every name resolved ({r['ok']} of {n})")
    dump = f"{out}.{d.p.pid}.1"
    ann = sh(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump]).stdout
    total, found = None, {}
    for line in ann.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)\s*(\[.*\])?$", line)
        if not m:
            continue
        count = int(m.group(1).replace(",", ""))
        if m.group(2) == "PROGRAM TOTALS":
            total = count
            continue
        func = m.group(2).rsplit(":", 1)[-1]
        found[func] = max(found.get(func, 0), count)
    if not check(total, "callgrind: profile written"):
        return
    RAW["callgrind"] = {"names": n, "instructions_per_name": round(total / n),
                        "parts": [{"function": f, "what": what, "instructions_per_name": round(found.get(f, 0) / n)}
                                  for f, what in CALLGRIND_PARTS]}
    log(f"callgrind: {total / n / 1e6:.2f} M instructions per cold name ({n} names)")


# ------------------------------------------------------------------ 3. shared cache, W workers
def bench_shared():
    names = names_of("n1k")
    nf = os.path.join(WORK, "n1k.txt")
    res = {"names": len(names), "mxresolved": {}, "synapse": {}}
    for w in (1, 4, 16):
        world_reset()
        d = Daemon(f"shared-w{w}", WORLD["daemon_args"])
        t0 = time.monotonic()
        ps = [subprocess.Popen([LOADGEN, d.sock, "--conns", "1", "--depth", "250", "--once", "--names", nf],
                               stdout=subprocess.PIPE, text=True) for _ in range(w)]
        outs = [json.loads(p.communicate()[0]) for p in ps]
        el = time.monotonic() - t0
        c = count_summary(world_counts(), names)
        res["mxresolved"][w] = {"seconds": round(el, 2), "ok": sum(o["ok"] for o in outs),
                                "delegated": None, "err": sum(o["err"] for o in outs),
                                "cache_answers": sum(o["cache"] for o in outs), "counts": c,
                                "stats": d.request("statistics").strip()}
        d.stop()
        check(c["wellknown_per_name_max"] == 1 and c["wellknown_per_name_min"] == 1,
              f"shared W={w}: exactly one well-known request per name (min {c['wellknown_per_name_min']} max {c['wellknown_per_name_max']})")
        log(f"shared W={w} mxresolved: {c['wellknown_total']} well-known, {c['dns_total']} DNS queries, {el:.2f} s")
    if have_synapse():
        sn = 50 if SMOKE else 100
        sf = os.path.join(WORK, "n-syn.txt")
        with open(sf, "w") as f:
            f.write("\n".join(names[:sn]) + "\n")
        res["synapse_names"] = sn
        for w in ((1, 4) if SMOKE else (1, 4, 16)):
            world_reset()
            t0 = time.monotonic()
            ps = [subprocess.Popen([PY, os.path.join(ROOT, "bench/synapse_driver.py"), "--dns", WORLD["dns_server"],
                                    "--ca", WORLD["ca_file"], "--names", sf], stdout=subprocess.PIPE, text=True) for _ in range(w)]
            outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in ps]
            el = time.monotonic() - t0
            c = count_summary(world_counts(), names[:sn])
            res["synapse"][w] = {"seconds": round(el, 2), "ok": sum(o["ok"] for o in outs), "err": sum(o["err"] for o in outs), "counts": c}
            if c["wellknown_per_name_min"] != w:  # informational: a Synapse worker that failed a name fetched it fewer times
                log(f"shared synapse W={w}: per-name well-known min {c['wellknown_per_name_min']} max {c['wellknown_per_name_max']}, errors {[o['errors'] for o in outs]}")
            res["synapse"][w]["errors"] = [o["errors"] for o in outs]
            res["synapse"][w]["delegated"] = sum(o["delegated"] for o in outs)
            log(f"shared W={w} synapse ({sn} names): {c['wellknown_total']} well-known, {c['dns_total']} DNS queries, {el:.2f} s")
    RAW["shared"] = res


# ------------------------------------------------------------------ 4 + 5. restart and footprint
def mdb_stat(d):
    p = sh(["mdb_stat", "-e", "-a", os.path.join(d, "cache")])
    out = {"raw": p.stdout}
    return out


def footprint_at(d, entries):
    data = os.path.join(d.dir, "cache", "data.mdb")
    st = d.status()
    stats = dict(kv.split("=", 1) for kv in d.request("statistics").split()[1:])
    ms = sh(["mdb_stat", "-e", "-a", os.path.join(d.dir, "cache")]).stdout
    used_pages = None
    for l in ms.splitlines():
        if l.strip().startswith("Number of pages used:"):
            used_pages = int(l.split(":")[1])
    fsize = os.path.getsize(data)
    return {"entries": entries, "cache_entries_stat": int(stats.get("cache_entries", -1)),
            "data_mdb_bytes": fsize, "bytes_per_entry_file": round(fsize / entries, 1),
            "used_pages": used_pages, "bytes_per_entry_used": round(used_pages * 4096 / entries, 1) if used_pages else None,
            "cache_bytes_stat": int(stats.get("cache_bytes", -1)),
            "rss_mib": round(st["VmRSS"] / 1024, 1), "hwm_mib": round(st["VmHWM"] / 1024, 1),
            "rss_anon_mib": round(st.get("RssAnon", 0) / 1024, 1), "rss_file_mib": round(st.get("RssFile", 0) / 1024, 1), "mdb_stat": ms}


def restart_probe(d_dir, probe_name, extra):
    """Fork/exec the daemon and poll: time to socket accepting, then to the first cache hit."""
    sock = os.path.join(d_dir, "s.sock")
    args = [MXR, "--state-dir", d_dir, "--socket", sock, "--log-level", "warning"] + extra
    logf = open(os.path.join(d_dir, "daemon.log"), "a")
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT)
    s = None
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(sock)
            break
        except OSError:
            s.close()
            if time.monotonic() - t0 > 10:
                raise SystemExit("restart: socket never accepted")
            time.sleep(0.0002)
    t_acc = time.monotonic() - t0
    s.sendall(f"resolve {probe_name} id=1\n".encode())
    buf = b""
    while not buf.endswith(b"\n"):
        buf += s.recv(4096)
    t_hit = time.monotonic() - t0
    s.close()
    line = buf.decode().strip()
    check("source=cache" in line, f"restart: first answer is a cache hit ({line[:120]})")
    with open(f"/proc/{p.pid}/status") as f:
        rss = [int(l.split()[1]) for l in f if l.startswith("VmRSS")][0]
    p.send_signal(signal.SIGTERM)
    p.wait(15)
    logf.close()
    return {"accept_ms": round(t_acc * 1000, 2), "first_hit_ms": round(t_hit * 1000, 2), "rss_after_hit_mib": round(rss / 1024, 1)}


def bench_restart_footprint():
    n1, n2 = (5000, 20000) if SMOKE else (100000, 1000000)
    extra = ["--cache-map-size-mb", "2048"]
    d = Daemon("restart", extra)
    t0 = time.monotonic()
    f1 = loadgen(d.sock, "--conns", 4, "--depth", 250, "--once", "--ip-literals", n1)
    check(f1["ok"] == n1, "restart: fill ok")
    fill1 = {"entries": n1, "seconds": round(time.monotonic() - t0, 2), "rate": f1["rps"]}
    fp1 = footprint_at(d, n1)
    rc = d.stop()
    check(rc == 0, f"daemon exit status after SIGTERM is 0 ({rc})")
    probe = "11.0.200.1"  # filled above (index 200*256... within the first n1)
    runs = [restart_probe(d.dir, "11.0.3.1", extra) for _ in range(3 if not SMOKE else 1)]
    RAW["restart"] = {"entries": n1, "runs": runs, "accept_ms_median": statistics.median(r["accept_ms"] for r in runs),
                      "first_hit_ms_median": statistics.median(r["first_hit_ms"] for r in runs), "fill": fill1}
    log(f"restart with {n1} entries: accept {RAW['restart']['accept_ms_median']} ms, first hit {RAW['restart']['first_hit_ms_median']} ms")
    # footprint: grow to n2
    d = Daemon("restart", extra, fresh=False)
    t0 = time.monotonic()
    # the whole bench must stay under 10 minutes: stop filling at 9 min and report the count reached
    budget = max(30.0, 540 - (time.monotonic() - T_START))
    f2 = loadgen(d.sock, "--conns", 4, "--depth", 250, "--once", "--ip-literals", n2 - n1, "--ip-offset", n1, "--max-secs", budget)
    check(f2["err"] == 0, "footprint: fill ok")
    if f2["ok"] < n2 - n1:
        log(f"footprint: fill stopped by the time budget at {n1 + f2['ok']} entries")
        n2 = n1 + f2["ok"]
    fill2 = {"entries": n2 - n1, "seconds": round(time.monotonic() - t0, 2), "rate": f2["rps"]}
    fp2 = footprint_at(d, n2)
    d.stop()
    r2 = restart_probe(d.dir, "11.0.3.1", extra)
    RAW["footprint"] = {"at_n1": fp1, "at_n2": fp2, "fill1": fill1, "fill2": fill2, "restart_at_n2": r2}
    log(f"footprint: {fp1['bytes_per_entry_file']} B/entry at {n1}, {fp2['bytes_per_entry_file']} B/entry at {n2}, RSS {fp2['rss_mib']} MiB (HWM {fp2['hwm_mib']})")


# ------------------------------------------------------------------ profiles
def perf_profile(name, pid, seconds, load):
    data = os.path.join(WORK, f"perf-{name}.data")
    rec = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-o", data, "-p", str(pid), "--", "sleep", str(seconds)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    load()
    rec.wait()
    rep = sh(["perf", "report", "-i", data, "--no-children", "--stdio", "--sort", "dso,symbol", "-g", "none",
              "--percent-limit", "1.5"]).stdout
    lines = [l for l in rep.splitlines() if l.strip() and not l.startswith("#")][:30]
    dem = sh(["swift-demangle", "--simplified"], input="\n".join(lines)).stdout
    return dem


def bench_profile():
    prof = {}
    d = Daemon("profile")
    loadgen(d.sock, "--conns", 1, "--depth", 64, "--once", "--ip-literals", 1000)
    prof["hits_32x1"] = perf_profile("hits", d.p.pid, 3, lambda: loadgen(d.sock, "--conns", 32, "--depth", 1, "--secs", 2, "--warmup", 0.1, "--ip-literals", 1000))
    prof["hits_8x64"] = perf_profile("hits64", d.p.pid, 3, lambda: loadgen(d.sock, "--conns", 8, "--depth", 64, "--secs", 2, "--warmup", 0.1, "--ip-literals", 1000))
    d.stop()
    if WORLD:
        world_reset()
        d = Daemon("profile-cold", WORLD["daemon_args"])
        prof["cold_1k"] = perf_profile("cold", d.p.pid, 4, lambda: loadgen(d.sock, "--conns", 4, "--depth", 250, "--once", "--names", os.path.join(WORK, "n1k.txt")))
        d.stop()
    RAW["profile"] = prof


def main():
    os.makedirs(WORK, exist_ok=True)
    RAW["loadavg_start"] = loadavg()
    def step(fn):
        try:
            fn()
        except Exception as e:  # keep going: the report says what is missing
            check(False, f"{fn.__name__}: {e}")
    if "1" in ONLY:
        step(bench_hits)
    if ONLY & {"2", "3", "callgrind", "profile"}:
        world_up()
    if "2" in ONLY:
        step(bench_cold)
    if "callgrind" in ONLY and sh(["valgrind", "--version"]).returncode == 0:
        step(bench_callgrind)
    if "3" in ONLY:
        step(bench_shared)
    if "profile" in ONLY and not SMOKE and sh(["perf", "--version"]).returncode == 0:
        step(bench_profile)
    if "4" in ONLY or "5" in ONLY:
        step(bench_restart_footprint)
    if WORLD:
        sh([os.path.join(ROOT, "scripts/testworld"), "down", "--dir", WORLD["dir"]])
    RAW["loadavg_end"] = loadavg()
    RAW["total_seconds"] = round(time.monotonic() - T_START, 1)
    RAW["failures"] = FAIL
    with open(os.path.join(ROOT, ".build/bench/raw.json" if not SMOKE else ".build/bench/raw-smoke.json"), "w") as f:
        json.dump(RAW, f, indent=1)
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import report
    report.write(RAW, A.out, ROOT)
    log(f"done in {RAW['total_seconds']} s; report: {A.out}; {len(FAIL)} check(s) failed")
    return 1 if FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
