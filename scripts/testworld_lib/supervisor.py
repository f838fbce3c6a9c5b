"""The small supervisor: own process group; runs dnsmasq + nginx as children and
the fault servers in-process; tears everything down on SIGTERM/SIGINT, when a
child dies, or when --watch-pid exits. Writes world.json once all servers answer."""
import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time

from dnslib import RCODE, DNSRecord

from .homeserver import LOG as HOMESERVER_LOG, FakeHomeserver
from .servers import Blackhole, ConnectProxy, ErrorDNS, FaultDNS, FaultHTTPS, Silent


def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] supervisor: {msg}", flush=True)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def dns_ready(ip, port, timeout=5.0):
    q = DNSRecord.question("testworld-probe.test", "A").pack()
    end = time.time() + timeout
    while time.time() < end:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        try:
            s.sendto(q, (ip, port))
            s.recvfrom(4096)
            return True
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    return False


def tls_ready(ip, cafile, timeout=5.0):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection((ip, 443), timeout=0.5) as s:
                with ctx.wrap_socket(s, server_hostname="testworld-probe.test"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def run(d):
    with open(os.path.join(d, "plan.json")) as f:
        plan = json.load(f)
    ad = plan["addrs"]
    port = plan["dns_port"]
    with open(os.path.join(d, "supervisor.pid"), "w") as f:
        f.write(str(os.getpid()))
    children = []
    stopping = {"why": None}

    def teardown(why):
        if stopping["why"]:
            return
        stopping["why"] = why
        _log(f"tearing down: {why}")
        for p in children:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        end = time.time() + 3
        for p in children:
            try:
                p.wait(max(0.05, end - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for n in ("world.json", "supervisor.pid"):
            try:
                os.unlink(os.path.join(d, n))
            except FileNotFoundError:
                pass
        _log("down")

    async def main():
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, lambda s=sig: stop.set_result(f"signal {signal.Signals(s).name}")
                                    if not stop.done() else None)
        stop = loop.create_future()
        owners = plan["owners"]
        await FaultDNS(owners, os.path.join(d, "faultdns.log"), plan.get("negative_ttl", 60)).start(ad["faultdns"], port)
        fwk = {h: dict(w, body=w["body"].encode("latin-1")) for h, w in plan["wellknown_fault"].items()}
        await FaultHTTPS(fwk, os.path.join(d, "certs"),
                         os.path.join(d, "faulthttps.log")).start(ad["faulthttps"], 443)
        blackholes = [Blackhole(ad["blackhole"]), Blackhole(ad["blackhole2"])]  # noqa: F841 (held open)
        await ErrorDNS(RCODE.SERVFAIL, os.path.join(d, "servfaildns.log")).start(ad["servfaildns"], port)
        await ErrorDNS(RCODE.REFUSED, os.path.join(d, "refuseddns.log")).start(ad["refuseddns"], port)
        await ConnectProxy(os.path.join(d, "proxy.log")).start(ad["proxy"], 3128)
        await Silent().start(ad["silent"])
        _log(f"fault dns on {ad['faultdns']}:{port}, fault https on {ad['faulthttps']}:443, "
             f"blackholes on {ad['blackhole']}:443 and {ad['blackhole2']}:443, silent on {ad['silent']}:443,8448")
        if plan.get("homeserver"):
            await FakeHomeserver(os.path.join(d, "certs"), os.path.join(d, HOMESERVER_LOG),
                                 plan["homeserver"].get("servers")).start(
                ad["homeserver"], plan["homeserver"]["ports"])
            _log(f"fake homeserver on {ad['homeserver']}:{plan['homeserver']['ports']}")
        children.append(subprocess.Popen(["dnsmasq", "-k", "-C", os.path.join(d, "dnsmasq.conf")],
                                         stdout=open(os.path.join(d, "dnsmasq.out"), "a"), stderr=subprocess.STDOUT))
        children.append(subprocess.Popen(["nginx", "-p", os.path.join(d, "nginx"), "-c", os.path.join(d, "nginx.conf"),
                                          "-e", os.path.join(d, "nginx", "error.log")],
                                         stdout=open(os.path.join(d, "nginx.out"), "a"), stderr=subprocess.STDOUT))
        ok = await loop.run_in_executor(None, lambda: dns_ready(ad["dns"], port) and
                                        tls_ready(ad["https"], plan["ca_file"]) and
                                        tls_ready(ad["faulthttps"], plan["ca_file"]))
        dead = [p.args[0] for p in children if p.poll() is not None]
        if not ok or dead:
            return f"servers did not come up (dead: {dead})"
        world = plan["world"]
        world["supervisor_pid"] = os.getpid()
        tmp = os.path.join(d, "world.json.tmp")
        with open(tmp, "w") as f:
            json.dump(world, f, indent=2)
        os.rename(tmp, os.path.join(d, "world.json"))
        _log("ready")
        watch = plan.get("watch_pid")
        while not stop.done():
            for p in children:
                if p.poll() is not None:
                    return f"{p.args[0]} exited with {p.returncode}"
            if watch and not pid_alive(watch):
                return f"watched pid {watch} exited"
            await asyncio.wait([stop], timeout=0.2)
        return stop.result()

    try:
        why = asyncio.run(main())
    except Exception as e:  # noqa: BLE001
        why = f"error: {e!r}"
    teardown(why)
    return 0
