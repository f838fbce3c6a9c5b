"""The federation agent: ``matrix-federation://NAME/...`` requests go where mxresolved says,
anything the daemon cannot answer goes to Synapse's own MatrixFederationAgent at once."""
from __future__ import annotations

import logging
import urllib.parse
from typing import Any, Generator, List, Optional
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

from netaddr import IPAddress
from twisted.internet import defer
from twisted.internet.error import DNSLookupError
from twisted.web.client import Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from synapse.logging.context import make_deferred_yieldable

from ..errors import DaemonUnavailable, MxResolvedError, ProtocolError, RequestTimeout, ResolveError
from ..types import Resolution, Target
from ._connect import AnswerEndpoint, AnswerEndpointFactory
from ._health import FALLBACKS, RESOLVED, DaemonHealth
from ._internals import FederationParts

logger = logging.getLogger("mxresolved_client.synapse")


def _fallback_reason(err: BaseException) -> str:
    if isinstance(err, RequestTimeout):
        return "timeout"
    if isinstance(err, DaemonUnavailable) or (isinstance(err, ProtocolError) and err.code == "shutting_down"):
        return "unavailable"
    return "error"


def allowed_targets(res: Resolution, blocklist: Any, allowlist: Optional[Any]) -> List[Target]:
    """The answer's targets with the addresses Synapse's federation IP ranges block removed
    (a target left without addresses is dropped), as Synapse filters its own DNS answers."""
    out = []
    for t in res.targets:
        kept = []
        for a in t.addresses:
            ip = IPAddress(a)
            if ip in blocklist and not (allowlist is not None and ip in allowlist):
                logger.info("Blocked %s from mxresolved's answer for %s (federation_ip_range_blocklist)",
                            a, res.server_name)
            else:
                kept.append(a)
        if kept:
            out.append(Target(t.host, t.port, kept))
    return out


@implementer(IAgent)
class MxresolvedAgent:
    def __init__(self, parts: FederationParts, client: Any, health: DaemonHealth, timeout: float,
                 on_unreachable: Any) -> None:
        self._parts = parts
        self._client = client
        self._health = health
        self._timeout = timeout
        self._on_unreachable = on_unreachable
        proxy = parts.proxy_config
        self._proxies = proxy.get_proxies_dictionary() if proxy is not None and proxy.https_proxy else None

    def request(self, method: bytes, uri: bytes, headers: Optional[Headers] = None,
                bodyProducer: Optional[IBodyProducer] = None) -> "defer.Deferred[IResponse]":
        parsed = urllib.parse.urlparse(uri)
        if parsed.scheme != b"matrix-federation":
            return self._parts.synapse_agent.request(method, uri, headers, bodyProducer)
        if not self._health.up:
            FALLBACKS.labels("down").inc()
            return self._parts.synapse_agent.request(method, uri, headers, bodyProducer)
        return self._via_daemon(method, uri, parsed.netloc.decode("ascii"), headers, bodyProducer)

    def _proxied(self, targets: List[Target]) -> bool:
        """Whether Synapse would send any of these targets through https_proxy (no_proxy decides)."""
        return self._proxies is not None and any(
            not proxy_bypass_environment(t.host, proxies=self._proxies) for t in targets)

    @defer.inlineCallbacks
    def _via_daemon(self, method: bytes, uri: bytes, server_name: str, headers: Optional[Headers],
                    bodyProducer: Optional[IBodyProducer]) -> Generator["defer.Deferred[Any]", Any, IResponse]:
        try:
            res = yield make_deferred_yieldable(self._client.resolve(server_name, timeout=self._timeout))
        except ResolveError as e:
            raise DNSLookupError(f"mxresolved could not resolve {server_name}: {e}") from e
        except (MxResolvedError, OSError) as e:
            reason = _fallback_reason(e)
            FALLBACKS.labels(reason).inc()
            if reason == "timeout":
                self._health.timed_out()
            else:
                self._health.unavailable(e)
            logger.debug("resolving %s through Synapse: %s", server_name, e)
            response = yield self._parts.synapse_agent.request(method, uri, headers, bodyProducer)
            return response
        if self._proxied(res.targets):
            FALLBACKS.labels("proxy").inc()
            response = yield self._parts.synapse_agent.request(method, uri, headers, bodyProducer)
            return response
        targets = allowed_targets(res, self._parts.ip_blocklist, self._parts.ip_allowlist)
        if not targets:
            raise DNSLookupError(f"every address mxresolved returned for {server_name} is in "
                                 "federation_ip_range_blocklist")
        if res.sni is not None and res.sni != res.tls_server_name:
            raise DNSLookupError(f"mxresolved's answer for {server_name} has SNI {res.sni!r} but TLS name "
                                 f"{res.tls_server_name!r}; Synapse's TLS policy sends the TLS name as SNI")
        RESOLVED.inc()
        request_headers = headers.copy() if headers is not None else Headers()
        if not request_headers.hasHeader(b"host"):
            request_headers.addRawHeader(b"host", res.host_header.encode("ascii"))
        if not request_headers.hasHeader(b"user-agent"):
            request_headers.addRawHeader(b"user-agent", self._parts.user_agent)
        endpoint = AnswerEndpoint(self._parts.reactor,
                                  self._parts.tls_policy.get_options(res.tls_server_name.encode("ascii")),
                                  targets, server_name, self._on_unreachable)
        agent = Agent.usingEndpointFactory(self._parts.reactor, AnswerEndpointFactory(endpoint), pool=self._parts.pool)
        response = yield make_deferred_yieldable(agent.request(method, uri, request_headers, bodyProducer))
        return response
