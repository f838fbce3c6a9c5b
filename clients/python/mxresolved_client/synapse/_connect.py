"""Connecting to an mxresolved answer: its targets in order, each target's addresses as given
(through Twisted's HostnameEndpoint, so Synapse's Happy Eyeballs timing applies), TLS from
Synapse's own federation policy for the answer's TLS name (which sets SNI, or none for IP
literals, and checks the certificate as Synapse always does)."""
from __future__ import annotations

import logging
from typing import Any, Callable, List, Sequence

from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, ConnectingCancelledError
from twisted.internet.interfaces import (IHostnameResolver, IHostResolution, IProtocol, IProtocolFactory,
                                         IReactorPluggableNameResolver, IResolutionReceiver,
                                         IStreamClientEndpoint)
from twisted.web.client import URI
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from synapse.logging.context import make_deferred_yieldable, run_in_background

from ..types import Target

logger = logging.getLogger("mxresolved_client.synapse")


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


@implementer(IHostnameResolver)
class _GivenAddresses:
    """A name resolver that answers with the daemon's addresses, in the daemon's order."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self._addresses = addresses

    def resolveHostName(self, resolutionReceiver: IResolutionReceiver, hostName: str, portNumber: int = 0,
                        addressTypes: Any = None, transportSemantics: str = "TCP") -> IResolutionReceiver:
        resolutionReceiver.resolutionBegan(_Resolution(hostName))
        for a in self._addresses:
            resolutionReceiver.addressResolved(
                IPv6Address("TCP", a, portNumber) if ":" in a else IPv4Address("TCP", a, portNumber))
        resolutionReceiver.resolutionComplete()
        return resolutionReceiver


@implementer(IReactorPluggableNameResolver)
class _ReactorWithAddresses:
    """The reactor, except that name resolution returns the given addresses."""

    def __init__(self, reactor: Any, addresses: Sequence[str]) -> None:
        self._reactor = reactor
        self.nameResolver = _GivenAddresses(addresses)

    def installNameResolver(self, resolver: IHostnameResolver) -> IHostnameResolver:
        raise NotImplementedError("the addresses are fixed")

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._reactor, attr)


def is_unreachable(failure: BaseException) -> bool:
    """A connect-time failure of the target itself (refused, timed out, unreachable; or the
    request's own deadline passed while still connecting), not of our side."""
    return isinstance(failure, (ConnectError, ConnectingCancelledError, TimeoutError, ConnectionRefusedError))


@implementer(IStreamClientEndpoint)
class AnswerEndpoint:
    def __init__(self, reactor: Any, tls_options: Any, targets: List[Target], server_name: str,
                 on_unreachable: Callable[[str], None]) -> None:
        self._reactor = reactor
        self._tls_options = tls_options
        self._targets = targets
        self._server_name = server_name
        self._on_unreachable = on_unreachable

    def connect(self, protocol_factory: IProtocolFactory) -> "defer.Deferred[IProtocol]":
        return run_in_background(self._connect, protocol_factory)

    async def _connect(self, protocol_factory: IProtocolFactory) -> IProtocol:
        failures: List[BaseException] = []
        for t in self._targets:
            endpoint: Any = HostnameEndpoint(_ReactorWithAddresses(self._reactor, t.addresses), t.host, t.port)
            endpoint = wrapClientTLS(self._tls_options, endpoint)
            try:
                return await make_deferred_yieldable(endpoint.connect(protocol_factory))
            except Exception as e:  # noqa: BLE001 -- try the next target, as Synapse does
                logger.info("Failed to connect to %s:%i (%s) for %s: %s", t.host, t.port, ",".join(t.addresses),
                            self._server_name, e)
                failures.append(e)
        if failures and all(is_unreachable(f) for f in failures):
            self._on_unreachable(self._server_name)
        # The first failure, as Synapse reports it: probably the most interesting.
        raise failures[0]


@implementer(IAgentEndpointFactory)
class AnswerEndpointFactory:
    """Hands the Agent the endpoint of one answer (an Agent is made per request; the pool it
    uses is Synapse's, shared)."""

    def __init__(self, endpoint: AnswerEndpoint) -> None:
        self._endpoint = endpoint

    def endpointForURI(self, uri: URI) -> AnswerEndpoint:
        return self._endpoint
