#!/usr/bin/env python3
"""Drives Synapse's own federation resolution over the bench's loopback test world.

Calls Synapse's code, does not re-implement it: a MatrixFederationAgent is built the way Synapse
builds it (its WellKnownResolver on a BlocklistingAgentWrapper(ProxyAgent) with
FederationPolicyForHTTPS from a real TlsConfig read with `federation_custom_ca_list: [CA]`, an
empty ip_blocklist), then per name:
  1. agent._well_known_resolver.get_well_known(name)          (Synapse, HTTPS via Twisted)
  2. SrvResolver().resolve_service(b"_matrix-fed._tcp." + host) (Synapse, unless host has a port)
  3. reactor.nameResolver.resolveHostName(first SRV target)    (what HostnameEndpoint does before
     connecting; Twisted's resolver)
DNS: twisted.names.client.createResolver(servers=[TEST DNS]) becomes both twisted.names.client's
module resolver (used by SrvResolver's default dns_client) and the reactor's resolver (used by the
Agent's HostnameEndpoint and step 3).  Twisted's reactor resolver asks with getHostByName, which
sends ANY queries (twisted ticket 9691).
usage: synapse_driver.py --dns IP:PORT --ca CA.pem --names FILE [--concurrency 128]
prints one JSON line.
"""
import argparse, json, resource, sys, time

from twisted.internet import epollreactor
epollreactor.install()
from twisted.internet import reactor, defer
from twisted.names import client as names_client
from twisted.internet.interfaces import IResolutionReceiver
from zope.interface import implementer

ap = argparse.ArgumentParser()
ap.add_argument("--dns", required=True)
ap.add_argument("--ca", required=True)
ap.add_argument("--names", required=True)
ap.add_argument("--concurrency", type=int, default=128)
args = ap.parse_args()
ip, port = args.dns.rsplit(":", 1)
resolver = names_client.createResolver(servers=[(ip, int(port))], resolvconf="/dev/null", hosts="/dev/null")
names_client.theResolver = resolver
reactor.installResolver(resolver)

from netaddr import IPSet
from synapse.config.homeserver import HomeServerConfig
from synapse.crypto.context_factory import FederationPolicyForHTTPS
from synapse.http.federation.matrix_federation_agent import MatrixFederationAgent
from synapse.http.federation.srv_resolver import SrvResolver
from synapse.util.clock import Clock
import logging
logging.basicConfig(level=logging.ERROR)

config = HomeServerConfig()
config.server.listeners = []  # no listeners: TlsConfig then needs no certificate of its own
config.tls.read_config({"federation_custom_ca_list": [args.ca], "federation_verify_certificates": True},
                       config_dir_path="/tmp", data_dir_path="/tmp")
policy = FederationPolicyForHTTPS(config)
agent = MatrixFederationAgent(server_name="bench.local", reactor=reactor, clock=Clock(reactor, "bench.local"),
                              tls_client_options_factory=policy, user_agent=b"mxresolved-bench",
                              ip_allowlist=None, ip_blocklist=IPSet())
wk = agent._well_known_resolver
srv = SrvResolver()
names = [l.strip() for l in open(args.names) if l.strip()]
stats = {"ok": 0, "err": 0, "delegated": 0, "srv": 0, "errors": {}}


@implementer(IResolutionReceiver)
class Receiver:
    def __init__(self):
        self.addrs, self.d = [], defer.Deferred()
    def resolutionBegan(self, r): pass
    def addressResolved(self, a): self.addrs.append(a.host)
    def resolutionComplete(self): self.d.callback(self.addrs)


async def resolve_one(name):
    try:
        res = await wk.get_well_known(name.encode())
        host = res.delegated_server or name.encode()
        if res.delegated_server:
            stats["delegated"] += 1
        h, _, p = host.decode().rpartition(":") if host.decode().count(":") == 1 else (host.decode(), "", "")
        if p:
            target = h
        else:
            servers = await srv.resolve_service(b"_matrix-fed._tcp." + host)
            if servers:
                stats["srv"] += 1
                target = servers[0].host.decode()
            else:
                target = host.decode()
        r = Receiver()
        reactor.nameResolver.resolveHostName(r, target, 8448)
        addrs = await r.d
        if not addrs:
            raise Exception("no address")
        stats["ok"] += 1
    except Exception as e:
        stats["err"] += 1
        k = type(e).__name__
        stats["errors"][k] = stats["errors"].get(k, 0) + 1


async def main():
    sem = defer.DeferredSemaphore(args.concurrency)
    cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    t0, c0 = time.monotonic(), cpu()
    await defer.gatherResults([sem.run(lambda n=n: defer.ensureDeferred(resolve_one(n))) for n in names])
    el = time.monotonic() - t0
    out = {"names": len(names), "seconds": round(el, 3), "names_per_s": round(len(names) / el, 1),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "cpu_s": round(cpu(), 2),  # the whole process, with Python start-up and Synapse's imports
           "cpu_s_resolving": round(cpu() - c0, 3),  # only while the names resolve (what the daemon's figure covers)
           "concurrency": args.concurrency, **stats}
    print(json.dumps(out), flush=True)


def run():
    d = defer.ensureDeferred(main())
    d.addErrback(lambda f: (print(f.getTraceback(), file=sys.stderr), sys.exit(1)))
    d.addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(run)
reactor.run()
