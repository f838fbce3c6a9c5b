#!/usr/bin/env python3
"""Renders BENCHMARKS.md from the raw figures of bench/run.py.
usage (re-render without re-running): python3 bench/report.py .build/bench/raw.json BENCHMARKS.md
"""
import json, os, platform, subprocess, sys

# What limits each figure, from the analysis of the profiles (bench/README section of BENCHMARKS.md).
# Shown next to a "not met" verdict; keyed by row.
LIMITS = {
    "cold_cpu": "the full TLS handshake each distinct well-known host costs: in the callgrind profile below ~90 % of a cold "
                "name's instructions are inside libcurl, nearly all of it OpenSSL 3.0.x: a new SSL_CTX per connection "
                "(libcurl 7.88 makes one; OpenSSL 3.0 fetches every cipher and digest from its provider for it), decoding "
                "the server certificate (OpenSSL 3.0 sets a key decoder up per certificate), two ECDSA verifications and "
                "the key exchange; the daemon's own code, c-ares and the cache are the small rest. Synapse's resolver pays "
                "the same handshake, but from one SSL context kept for all connections and on the OpenSSL 4 bundled with "
                "`cryptography`, so its Python overhead is what the ratio measures",
    "cold_rate": "the machine, not the daemon: the figure is names per second through the same 2 vCPUs the test world "
                 "runs on, and the world's nginx and dnsmasq (five DNS answers and one TLS handshake per name) took about "
                 "as much of them as the daemon did (the shares above); Synapse's resolver, a single Python thread, leaves "
                 "the world more room. At the daemon's CPU per name, 6x Synapse's rate would need more CPU than the "
                 "machine has",
    "rss": "the burst itself: at the peak 1,000 resolutions and 128 TLS connections are in flight (an SSL_CTX, an "
           "SSL and libcurl's buffers each), and glibc keeps the memory they freed between the cache's long-lived "
           "blocks (after a 10k run 20 MB of 34 MB taken from the system are in use; malloc_trim returns 5-8 MiB but "
           "does not lower the peak); each cached name holds ~1.3 KB (its 576-byte decoded entry, its hit text, "
           "targets and strings). Runs of one binary differ by up to 4 MiB (bench/profile-notes.md)",
    "hits_32": "kernel wake-ups (the daemon makes the echo floor's three system calls per request: epoll_wait, read, "
               "send) and its per-hit work on 2 shared vCPUs (see the hit profiles)",
    "hits_64": "the daemon's per-request CPU (see the hit profiles)",
    "hits_p50": "the daemon's own work per hit (about 3,000 instructions) on top of the same-vCPU ping-pong",
    "lmdb": "the record size and LMDB's page overhead (see section 5)",
    "restart": "process start-up",
}


def sh(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def machine():
    model = next((l.split(":", 1)[1].strip() for l in sh("lscpu").splitlines() if l.startswith("Model name")), "?")
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return f"{model}, {os.cpu_count()} vCPUs, {mem / 1048576:.1f} GiB RAM, Linux {platform.release()}"


def verdict(ok, limit_key=None, extra=""):
    if ok is None:
        return "not measured"
    if ok:
        return "**met**" + (f" ({extra})" if extra else "")
    return "**not met**" + (f": {extra}" if extra else "") + (f"; limited by {LIMITS[limit_key]}" if limit_key else "")


def f0(x):
    return "–" if x is None else f"{x:,.0f}"


def write(raw, out, root):
    L = []
    commit = raw.get("commit") or sh("git", "-C", root, "rev-parse", "--short", "HEAD")
    dirty = raw.get("dirty", sh("git", "-C", root, "status", "--porcelain", "--untracked-files=no", "Sources", "Package.swift"))
    swiftv = sh("swift", "--version").splitlines()[0] if sh("swift", "--version") else "?"
    title = "# mxresolved benchmarks" + (" (smoke run: tiny sizes, not figures)" if raw.get("smoke") else "")
    L += [title, "",
          f"Written by `scripts/bench` (see README, \"Benchmarks\"). Re-render from the raw figures with "
          f"`python3 bench/report.py .build/bench/raw.json BENCHMARKS.md`.", "",
          f"* date: {raw['started']} (run took {raw['total_seconds']} s)",
          f"* machine: {machine()}",
          f"* commit: {commit}{(' + uncommitted changes in the working tree at build time: ' + dirty.replace(chr(10), ', ')) if dirty else ''} (`swift build -c release --static-swift-stdlib`, as `scripts/package` builds it, {swiftv})",
          f"* load average at start / end: {' '.join(raw['loadavg_start'])} / {' '.join(raw['loadavg_end'])} "
          f"— the 2 vCPUs are shared with other engineers' builds and tests, so single figures are noisy; "
          f"each hit row is the median of {raw.get('hits', {}).get('runs_per_row', '?')} runs, and the comparisons "
          f"that matter (daemon vs echo floor, daemon vs Synapse) are measured in the same run, back to back.",
          ""]
    S = []  # summary rows: measure, figure, target, verdict (issue 14's table, then issue 7's rows it did not replace)
    h = raw.get("hits")
    c = raw.get("cold")
    fp = raw.get("footprint")
    rows = h["rows"] if h else []
    get = lambda srv, cn, d, p: next((r for r in rows if r["server"] == srv and r["conns"] == cn and r["depth"] == d and r["pinned"] == p), None)
    x10 = (c or {}).get("n10k") or {}
    m10, s10 = x10.get("mxresolved"), x10.get("synapse")
    label10 = f"{m10['names']:,} names, {raw['world']['wellknown_hosts']:,} distinct well-known hosts" if m10 else ""
    if m10 and s10 and s10.get("cpu_ms_per_name"):
        less = s10["cpu_ms_per_name"] / m10["cpu_ms_per_name"]
        S.append((f"cold: CPU per name, daemon vs Synapse's resolver ({label10})",
                  f"{m10['cpu_ms_per_name']:.2f} ms vs {s10['cpu_ms_per_name']:.2f} ms = {less:.1f} × less",
                  "≥ 10 × less", verdict(less >= 10, "cold_cpu")))
    elif m10:
        S.append(("cold: CPU per name, daemon vs Synapse's resolver", f"daemon {m10['cpu_ms_per_name']:.2f} ms (Synapse not measured)",
                  "≥ 10 × less", verdict(None)))
    if m10 and s10:
        ratio = m10["names_per_s"] / s10["names_per_s"]
        S.append(("cold: names/s vs Synapse, same run",
                  f"{m10['names_per_s']:,.0f} vs {s10['names_per_s']:,.0f} names/s = {ratio:.1f} ×; the test world's servers used "
                  f"{100 * m10['world_cpu_share']:.0f} % of the {raw.get('cpus', 2)} vCPUs during the daemon's run, "
                  f"{100 * s10['world_cpu_share']:.0f} % during Synapse's; the daemon itself used "
                  f"{100 * m10['cpu_s']['daemon'] / (m10['wall_s'] * raw.get('cpus', 2)):.0f} % of them",
                  "≥ 6 ×, world's CPU share reported", verdict(ratio >= 6, "cold_rate")))
    if m10:
        anon = m10.get("peak_rss_anon_mib", m10.get("rss_anon_mib"))
        S.append(("daemon peak RSS, 10k cold", f"{m10['peak_rss_mib']} MiB, anonymous {anon} MiB at its peak",
                  "≤ 48 MiB, anonymous ≤ 24 MiB", verdict(m10["peak_rss_mib"] <= 48 and anon <= 24, "rss")))
    d32, e32 = get("mxresolved", 32, 1, False), get("echo", 32, 1, False)
    if d32 and e32:
        ratio = d32["rps"] / e32["rps"]
        S.append(("hits, 32 clients, depth 1", f"{f0(d32['rps'])}/s = {ratio:.2f} × echo ({f0(e32['rps'])}/s)",
                  "≥ 0.85 × echo", verdict(ratio >= 0.85, "hits_32")))
    dp, ep = get("mxresolved", 1, 1, True), get("echo", 1, 1, True)
    if dp and ep:
        S.append(("hits, single pinned client (taskset -c 0), p50", f"{dp['p50_us']:.1f} µs = {dp['p50_us'] / ep['p50_us']:.2f} × echo ({ep['p50_us']:.1f} µs)",
                  "≤ 1.4 × echo", verdict(dp["p50_us"] <= 1.4 * ep["p50_us"], "hits_p50")))
    d64 = [r for r in rows if r["server"] == "mxresolved" and r["depth"] == 64 and not r["pinned"]]
    if d64:
        best = max(d64, key=lambda r: r["rps"])
        S.append(("hits pipelined, depth 64 (best of 1/8/32 clients)", f"{f0(best['rps'])}/s ({best['conns']} clients)",
                  "≥ 1,000,000/s", verdict(best["rps"] >= 1_000_000, "hits_64")))
    if fp:
        a_, b_ = fp["at_n1"], fp["at_n2"]
        S.append(("LMDB bytes per entry", f"{b_['bytes_per_entry_file']:,.0f} B at {b_['entries']:,} entries "
                  f"({a_['bytes_per_entry_file']:,.0f} B at {a_['entries']:,}; data.mdb size / entries)",
                  "≤ 300 B", verdict(b_["bytes_per_entry_file"] <= 300, "lmdb")))
        r2 = fp["restart_at_n2"]
        S.append((f"restart with {b_['entries']:,} entries → first hit", f"{r2['first_hit_ms']} ms (socket accepting after {r2['accept_ms']} ms)",
                  "≤ 100 ms", verdict(r2["first_hit_ms"] <= 100, "restart")))
    sh_ = raw.get("shared")
    if sh_:
        m = sh_["mxresolved"]
        per = {w: (v["counts"]["wellknown_per_name_min"], v["counts"]["wellknown_per_name_max"]) for w, v in m.items()}
        ok = all(a == b == 1 for a, b in per.values())
        fig = ", ".join(f"W={w}: {v['counts']['wellknown_total']} well-known / {v['counts']['dns_total']} DNS" for w, v in m.items())
        syn = sh_.get("synapse") or {}
        if syn:
            fig += "; W Synapse resolvers: " + ", ".join(f"W={w}: {v['counts']['wellknown_total'] / sh_['synapse_names']:.0f} per name" for w, v in syn.items())
        S.append((f"(issue 7) shared cache, W workers × {sh_['names']} cold names", fig, "exactly 1 well-known per name, any W",
                  verdict(ok, None, "" if ok else f"per-name min/max {per}")))
    rs = raw.get("restart")
    if rs:
        S.append((f"(issue 7) restart with {rs['entries']:,} entries: start → socket accepting / first hit",
                  f"{rs['accept_ms_median']} / {rs['first_hit_ms_median']} ms", "≤ 100 ms",
                  verdict(rs["first_hit_ms_median"] <= 100, "restart")))
    L += ["## Summary", "", "| measure | figure | target | verdict |", "|---|---|---|---|"]
    L += [f"| {a} | {b} | {t} | {v} |" for a, b, t, v in S]
    if raw.get("failures"):
        L += ["", "Checks that failed in this run: " + "; ".join(raw["failures"])]
    L += [""]
    if h:
        L += ["## 1. Cache hits over the socket", "",
              f"`bench/loadgen` (C, one thread per connection, blocking I/O) sends `resolve NAME id=N` "
              f"({h['request_bytes']} B) over {h['distinct_names']} pre-cached IP-literal names and matches each answer by id; "
              f"latency is per request, clock_gettime(CLOCK_MONOTONIC) from before write() to after read(). "
              f"A real hit answer is {h['response_bytes']} B (`{h['sample']}`). The floor is `bench/echo` (C, one thread, epoll) "
              f"answering every line with exactly {h['response_bytes']} B, driven by the same client in the same run. "
              f"Depth 1 = one request per round trip; depth 16/64 = that many requests in flight per connection. "
              f"Each row: {h['runs_per_row']} × {h['secs_per_run']} s after {h['warmup']} s warm-up; median shown, all runs in the raw figures. "
              f"The daemon ran {h.get('daemon_threads')} threads.", "",
              "Pinning: rows marked `taskset -c 0` pin the client (started under `taskset -c 0`) and every thread of the server "
              "(`taskset -a -p -c 0 PID`) on vCPU 0; all other rows leave client and server free on both vCPUs (`-c 0,1`).", "",
              "| clients | depth | pinning | echo /s | echo p50 µs | echo p99 µs | mxresolved /s | p50 µs | p99 µs | daemon / echo |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            if r["server"] != "echo":
                continue
            d = next(x for x in rows if x["server"] == "mxresolved" and x["conns"] == r["conns"] and x["depth"] == r["depth"] and x["pinned"] == r["pinned"])
            L.append(f"| {r['conns']} | {r['depth']} | {'taskset -c 0' if r['pinned'] else 'none'} | {f0(r['rps'])} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | "
                     f"{f0(d['rps'])} | {d['p50_us']:.1f} | {d['p99_us']:.1f} | {d['rps'] / r['rps']:.2f} |")
        L += [""]
    if c:
        w = raw["world"]
        L += ["## 2. Cold resolution", "",
              f"Test world on {w['https_ip'].rsplit('.', 1)[0]}.0/24 (`scripts/testworld`, up in {w['up_seconds']} s): {w['names']:,} server names "
              f"`nK.bench.test`. The first {w['wellknown_hosts']:,} have a well-known `{{\"m.server\": \"dK.bench.test\"}}` (nginx, HTTP/2, TLS with the "
              f"test CA), `_matrix-fed._tcp.dK` SRV → `tK:8448`, `tK` A + AAAA (spec step 3.3); "
              f"{'every name has its own well-known host' if w['wellknown_hosts'] == w['names'] else 'the others are SRV-only names'}. "
              f"The world runs with `wildcard_cert` (`bench/gen_scenario.py --wildcard-cert`): every well-known host presents the same "
              f"certificate for `*.bench.test` (one DNS SAN, as small as a real host's), and nginx serves the hosts from one server "
              f"block. The {c['n1k']['mxresolved']['names']:,}-name run uses the first {c['n1k']['mxresolved']['names']:,} names; "
              f"the {w['names']:,}-name run uses all.", "",
              "mxresolved: fresh state dir, the world's `daemon_args` (default limits: 64 DNS / 128 HTTPS in flight), all names sent at once "
              "(4 connections × 250 pipelined requests with ids). Synapse: `bench/synapse_driver.py` on Synapse "
              f"{raw.get('synapse_version', '')} calls Synapse's own `WellKnownResolver` (built by `MatrixFederationAgent`, i.e. "
              "BlocklistingAgentWrapper(ProxyAgent) with `FederationPolicyForHTTPS` from a `TlsConfig` read with `federation_custom_ca_list: [test CA]`, "
              "empty `ip_blocklist`), then `SrvResolver.resolve_service`, then the reactor's `nameResolver.resolveHostName` on the first SRV target "
              "(what `MatrixHostnameEndpoint` does before connecting), on an epoll reactor whose resolver and `twisted.names.client` resolver are "
              "`createResolver(servers=[test DNS])`; 128 names in flight (DeferredSemaphore). Twisted's reactor resolver asks `ANY` "
              "instead of A + AAAA (Twisted ticket 9691), hence fewer DNS queries on the Synapse side.", "",
              "CPU seconds are utime+stime over the run, per process (nginx = master + worker, one worker process). "
              "CPU ms per name = the resolver's CPU while the names resolve / names: the daemon's from /proc over the run (it was "
              "started fresh before it), Synapse's from getrusage around the resolving phase of `synapse_driver.py` (its Python "
              "start-up and imports left out). World share = the test world's servers' (nginx, dnsmasq, supervisor) CPU seconds / "
              "(wall seconds × vCPUs): what of the machine the load's other end took.", "",
              "| run | resolver | names/s | seconds | ok / err | p50 / p99 ms | peak RSS MiB | CPU ms per name | CPU s: resolver / nginx / dnsmasq | world share | well-known reqs | DNS queries (A/AAAA/SRV/ANY) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for key, x in c.items():
            for who in ("mxresolved", "synapse"):
                v = x.get(who)
                if not v:
                    continue
                cpu = v["cpu_s"]
                res_cpu = cpu.get("daemon") if who == "mxresolved" else v.get("cpu_s_resolving", v.get("synapse_cpu_s"))
                cc = v["counts"]
                bt = cc["dns_by_type"]
                lat = f"{v['p50_ms']} / {v['p99_ms']}" if "p50_ms" in v else "–"
                rss = f"{v['peak_rss_mib']}" + (f" (peaks: {v['peak_rss_anon_mib']} anon, {v['peak_rss_file_mib']} file)" if "peak_rss_anon_mib" in v else "")
                share = f"{100 * v['world_cpu_share']:.0f} %" if "world_cpu_share" in v else "–"
                per_name = f"{v['cpu_ms_per_name']:.2f}" if v.get("cpu_ms_per_name") is not None else "–"
                L.append(f"| {v['names']:,} names | {who} | {v['names_per_s']:,.0f} | {v['seconds']} | {v['ok']} / {v['err']} | {lat} | {rss} | {per_name} | "
                         f"{res_cpu} / {cpu.get('nginx')} / {cpu.get('dnsmasq')} | {share} | {cc['wellknown_total']} | {cc['dns_total']} ({bt['A']}/{bt['AAAA']}/{bt['SRV']}/{bt['ANY']}) |")
        L += [""]
    cg = raw.get("callgrind")
    if cg:
        tot = cg["instructions_per_name"]
        L += ["## Where a cold name's CPU goes (callgrind)", "",
              f"The daemon under `valgrind --tool=callgrind` (bench/sigsuspend_copy.so preloaded: valgrind 3.19 cannot run "
              f"libdispatch's signal thread otherwise), {cg['names']} cold names of the same world resolved 8 at a time after one "
              f"warm-up name; instruction counts are repeatable where CPU seconds on a shared 2-vCPU machine are not. "
              f"**{tot / 1e6:.2f} M instructions per name** in the whole process. Inclusive counts (a row contains the rows "
              f"indented under it in the call tree, e.g. the handshake is inside libcurl; malloc/free are summed over all callers):", "",
              "| function | what | M instructions per name | share |", "|---|---|---|---|"]
        for part in cg["parts"]:
            L.append(f"| `{part['function']}` | {part['what']} | {part['instructions_per_name'] / 1e6:.2f} | "
                     f"{100 * part['instructions_per_name'] / tot:.0f} % |")
        L += [""]
    notes = os.path.join(root, "bench", "profile-notes.md")
    if os.path.exists(notes):  # measured by hand, change by change: kept apart from this run's figures
        with open(notes) as f:
            L += [f.read().rstrip("\n"), ""]
    if sh_:
        L += ["## 3. Shared cache: W worker processes, the same cold names at once", "",
              f"W processes (`bench/loadgen`, one connection each, all {sh_['names']} names pipelined) start together against one fresh daemon; "
              f"counts come from the test world's logs (`scripts/testworld counts`). For comparison, W separate Synapse resolvers "
              f"(one `synapse_driver.py` process per worker, as Synapse deploys them: each worker has its own in-memory caches) on the first "
              f"{sh_.get('synapse_names', '–')} of those names (fewer names to keep the run under 10 minutes; the per-name count is what matters).", "",
              "| W | resolver | names | well-known requests | per name (min–max) | DNS queries | answers from cache | seconds |", "|---|---|---|---|---|---|---|---|"]
        for w, v in sh_["mxresolved"].items():
            cc = v["counts"]
            L.append(f"| {w} | mxresolved | {sh_['names']} | {cc['wellknown_total']} | {cc['wellknown_per_name_min']}–{cc['wellknown_per_name_max']} | {cc['dns_total']} | {v['cache_answers']} of {v['ok'] + v['err']} | {v['seconds']} |")
        for w, v in (sh_.get("synapse") or {}).items():
            cc = v["counts"]
            L.append(f"| {w} | Synapse × {w} | {sh_['synapse_names']} | {cc['wellknown_total']} | {cc['wellknown_per_name_min']}–{cc['wellknown_per_name_max']} | {cc['dns_total']} | – | {v['seconds']} |")
        L += ["", "Where the Synapse count per name is below W, some of the W Python workers (starting together on 2 vCPUs) "
              "did not complete their well-known request (nginx logs only completed requests); Synapse's `WellKnownResolver` "
              "then caches \"no well-known\" for the name and the worker falls back to SRV on the name itself — a wrong "
              "answer for a delegated name, not a saving. `delegated` in the raw figures (when present) counts the answers "
              "that did follow the delegation."]
        L += [""]
    if rs:
        L += ["## 4. Restart", "",
              f"{rs['entries']:,} entries filled over the socket (IP literals `11.x.y.1`, {rs['fill']['rate']:,.0f}/s), SIGTERM, then the bench "
              f"(Python) fork/execs `mxresolved` on the same state dir and polls connect() every 0.2 ms; once connected it sends one "
              f"`resolve` for a cached name and waits for its `source=cache` answer. Times from just before fork/exec. Median of "
              f"{len(rs['runs'])}: runs {', '.join('%s / %s ms' % (x['accept_ms'], x['first_hit_ms']) for x in rs['runs'])} (accepting / first hit).", ""]
    if fp:
        a, b = fp["at_n1"], fp["at_n2"]
        L += ["## 5. Footprint", "",
              "| entries | data.mdb bytes | bytes/entry (file) | LMDB pages in use × 4 KiB / entry | daemon RSS MiB (peak) | of which anon / file-backed (LMDB mmap) | fill rate /s |", "|---|---|---|---|---|---|---|",
              f"| {a['entries']:,} | {a['data_mdb_bytes']:,} | {a['bytes_per_entry_file']:,.0f} | {a['bytes_per_entry_used']} | {a['rss_mib']} ({a['hwm_mib']}) | {a.get('rss_anon_mib', '–')} / {a.get('rss_file_mib', '–')} | {fp['fill1']['rate']:,.0f} |",
              f"| {b['entries']:,} | {b['data_mdb_bytes']:,} | {b['bytes_per_entry_file']:,.0f} | {b['bytes_per_entry_used']} | {b['rss_mib']} ({b['hwm_mib']}) | {b.get('rss_anon_mib', '–')} / {b.get('rss_file_mib', '–')} | {fp['fill2']['rate']:,.0f} |",
              "", f"`--cache-map-size-mb 2048`. After a restart with {b['entries']:,} entries the daemon answered its first hit after "
              f"{fp['restart_at_n2']['first_hit_ms']} ms with RSS {fp['restart_at_n2']['rss_after_hit_mib']} MiB.", "",
              "<details><summary>mdb_stat -e -a at " + f"{b['entries']:,}" + " entries</summary>", "", "```", b["mdb_stat"].strip(), "```", "</details>", ""]
    prof = raw.get("profile")
    if prof:
        L += ["## Profiles", "", "`perf record -F 999 -g -p DAEMON` (software cpu-clock: this VM has no hardware counters) while the load runs; "
              "`perf report --no-children --sort dso,symbol`, Swift symbols demangled, entries ≥ 1.5 %.", ""]
        for k, v in prof.items():
            L += [f"### {k}", "", "```", v.strip(), "```", ""]
    notes = raw.get("notes")
    if notes:
        L += ["## Analysis", ""] + notes + [""]
    L += ["## Raw figures", "", "<details><summary>raw.json</summary>", "", "```json",
          json.dumps({k: v for k, v in raw.items() if k not in ("profile",)}, indent=1, default=str,
                     ).replace("\\n", "\n            "), "```", "</details>", ""]
    with open(out, "w") as f:
        f.write("\n".join(L))


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        raw = json.load(f)
    write(raw, sys.argv[2], os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
