"""Starts a real Synapse for the module's tests, with Twisted's name resolution (the reactor's
hostname resolver, which Synapse replaces with getaddrinfo at start-up unless told otherwise, and
twisted.names' default resolver, which its SRV lookups use) pointed at the test world's DNS:
Synapse's own resolution, the module's fallback, never reaches the machine's resolver. Run with
the Synapse venv's python.

usage: synapse_launcher.py DNS_IP:PORT SIGNING_KEY_PATH HOMESERVER_YAML"""
import os
import socket
import sys

from twisted.internet import defer, reactor
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from twisted.names import client as names_client
from twisted.names import dns
from zope.interface import implementer


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name):
        self.name = name

    def cancel(self):
        pass


@implementer(IHostnameResolver)
class WorldHostnameResolver:
    """A and AAAA from the test world's DNS (Twisted's default asks getaddrinfo)."""

    def __init__(self, resolver):
        self._resolver = resolver

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"):
        receiver.resolutionBegan(_Resolution(hostName))
        want4 = addressTypes is None or IPv4Address in addressTypes
        want6 = addressTypes is None or IPv6Address in addressTypes
        if isIPAddress(hostName) or isIPv6Address(hostName):
            if (want6 if ":" in hostName else want4):
                receiver.addressResolved((IPv6Address if ":" in hostName else IPv4Address)("TCP", hostName, portNumber))
            receiver.resolutionComplete()
            return receiver
        lookups = ([self._resolver.lookupIPV6Address(hostName)] if want6 else []) + \
                  ([self._resolver.lookupAddress(hostName)] if want4 else [])

        def deliver(results):
            for ok, result in results:
                for rr in (result[0] if ok else []):
                    if rr.type == dns.AAAA:
                        receiver.addressResolved(IPv6Address("TCP", socket.inet_ntop(socket.AF_INET6, rr.payload.address),
                                                             portNumber))
                    elif rr.type == dns.A:
                        receiver.addressResolved(IPv4Address("TCP", rr.payload.dottedQuad(), portNumber))
            receiver.resolutionComplete()
        defer.DeferredList(lookups, consumeErrors=True).addCallback(deliver)
        return receiver


def main():
    dns_server, key_path, config = sys.argv[1:4]
    ip, port = dns_server.rsplit(":", 1)
    # resolv=None: no /etc/resolv.conf servers are added to the test world's.
    resolver = names_client.Resolver(servers=[(ip, int(port))], reactor=reactor)
    names_client.theResolver = resolver
    world = WorldHostnameResolver(resolver)
    reactor.installNameResolver(world)
    # Synapse installs a getaddrinfo resolver (the machine's) at start-up: it gets the world's.
    import synapse.app._base as synapse_base
    synapse_base.GAIResolver = lambda *args, **kwargs: world
    if not os.path.exists(key_path):
        from signedjson.key import generate_signing_key, write_signing_keys
        with open(key_path, "w") as f:
            write_signing_keys(f, [generate_signing_key("a_test")])
    from synapse.app.homeserver import main as synapse_main
    sys.argv = ["synapse", "-c", config]
    synapse_main()


if __name__ == "__main__":
    main()
