"""The one place that reaches into Synapse internals: Synapse has no public hook for its
federation client. Everything here is checked when the module loads, so a Synapse whose shape
changed fails at start-up with IncompatibleSynapse, not at its first federation request.

What is used (Synapse 1.163): ``ModuleApi._hs``; ``hs.get_federation_http_client()`` and its
``agent`` attribute, a ``BlocklistingAgentWrapper`` whose ``_agent`` is a ``MatrixFederationAgent``
(processes that talk to federation directly) or a ``ProxyAgent`` (processes that tunnel to those);
the ``MatrixFederationAgent``'s ``_pool`` and ``user_agent``; ``FederationPolicyForHTTPS(config)``
as ``hs.get_federation_http_client()`` builds it; the ``federation_ip_range_*`` and
``proxy_config`` settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import IAgent


class IncompatibleSynapse(RuntimeError):
    """This Synapse is not shaped as the module expects; it refuses to start."""


@dataclass(frozen=True)
class FederationParts:
    """What the module needs of a process that talks to federation directly."""
    reactor: Any
    synapse_agent: IAgent          # Synapse's own MatrixFederationAgent: the fallback path
    pool: HTTPConnectionPool       # its connection pool, shared by the daemon path
    tls_policy: Any                # FederationPolicyForHTTPS built from this homeserver's config
    user_agent: bytes
    ip_blocklist: Any              # netaddr.IPSet
    ip_allowlist: Optional[Any]    # netaddr.IPSet or None
    proxy_config: Any              # synapse.config.server.ProxyConfig or None
    _client: Any

    def install(self, agent: IAgent) -> None:
        """Makes ``agent`` the federation client's agent, behind the same IP-literal blocklist
        wrapper Synapse puts around its own."""
        from synapse.http.client import BlocklistingAgentWrapper
        self._client.agent = BlocklistingAgentWrapper(agent, ip_blocklist=self.ip_blocklist)


def _need(obj: Any, attr: str, where: str) -> Any:
    if not hasattr(obj, attr):
        raise IncompatibleSynapse(f"{where} has no attribute {attr!r}")
    return getattr(obj, attr)


def federation_parts(module_api: Any) -> Optional[FederationParts]:
    """The federation parts of this process, or None when it tunnels federation to other
    workers (``outbound_federation_restricted_to``) and so resolves no server names."""
    try:
        from synapse.crypto.context_factory import FederationPolicyForHTTPS
        from synapse.http.client import BlocklistingAgentWrapper
        from synapse.http.federation.matrix_federation_agent import MatrixFederationAgent
        from synapse.http.proxyagent import ProxyAgent
    except ImportError as e:
        raise IncompatibleSynapse(f"a Synapse module the resolver relies on is gone: {e}") from e
    hs = _need(module_api, "_hs", "ModuleApi")
    client = _need(hs, "get_federation_http_client", "HomeServer")()
    wrapper = _need(client, "agent", "MatrixFederationHttpClient")
    if not isinstance(wrapper, BlocklistingAgentWrapper):
        raise IncompatibleSynapse(f"the federation client's agent is a {type(wrapper).__name__}, "
                                  "not a BlocklistingAgentWrapper")
    inner = _need(wrapper, "_agent", "BlocklistingAgentWrapper")
    if isinstance(inner, ProxyAgent):
        return None
    if not isinstance(inner, MatrixFederationAgent):
        raise IncompatibleSynapse(f"the federation agent is a {type(inner).__name__}, "
                                  "neither a MatrixFederationAgent nor a ProxyAgent")
    pool = _need(inner, "_pool", "MatrixFederationAgent")
    if not isinstance(pool, HTTPConnectionPool):
        raise IncompatibleSynapse("MatrixFederationAgent._pool is not an HTTPConnectionPool")
    server = _need(hs.config, "server", "HomeServerConfig")
    return FederationParts(
        reactor=hs.get_reactor(), synapse_agent=inner, pool=pool,
        tls_policy=FederationPolicyForHTTPS(hs.config),
        user_agent=_need(inner, "user_agent", "MatrixFederationAgent"),
        ip_blocklist=_need(server, "federation_ip_range_blocklist", "server config"),
        ip_allowlist=_need(server, "federation_ip_range_allowlist", "server config"),
        proxy_config=_need(server, "proxy_config", "server config"),
        _client=client)
