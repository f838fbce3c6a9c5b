"""The module Synapse loads: reads its config, and in a process that talks to federation
directly puts MxresolvedAgent in front of Synapse's own federation agent."""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict

from synapse.logging.context import make_deferred_yieldable
from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError

from .._api import socket_path
from ..errors import MxResolvedError
from ..twisted import TwistedClient
from ._agent import MxresolvedAgent
from ._health import RERESOLVES, DaemonHealth
from ._internals import federation_parts

logger = logging.getLogger("mxresolved_client.synapse")

DEFAULT_TIMEOUT = 10.0
"""Seconds one daemon call may take before the request falls back: a sixth of Synapse's own
federation request timeout (60 s), and the daemon's well-known fetch timeout, so a daemon that
hangs costs a request at most this, and a slow well-known host is not waited for twice."""

DEFAULT_PROBE_INTERVAL = 5.0
"""Seconds between re-probes of a daemon that is down."""

PROBE_TIMEOUT = 1.0
"""Seconds a re-probe ping may take: a healthy daemon answers ping in well under a millisecond."""

RERESOLVE_TIMEOUT = 10.0
"""Seconds a reresolve may take: it runs in the background, off every request's path."""


def _seconds(config: Dict[str, Any], key: str, default: float) -> float:
    v = config.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 3600:
        raise ConfigError(f"mxresolved: {key} must be a number of seconds in (0, 3600], not {v!r}")
    return float(v)


class MxresolvedResolver:
    """``modules: [{module: mxresolved_client.synapse.MxresolvedResolver, config: {...}}]``.

    config keys (all optional): ``socket`` (default: ``$MXRESOLVED_SOCKET``, else
    ``/run/mxresolved/socket`` when it exists, else ``./.mxresolved/mxresolved.sock``),
    ``timeout`` (seconds per daemon call, default 10), ``probe_interval`` (seconds between
    re-probes of a daemon that is down, default 5)."""

    @staticmethod
    def parse_config(config: Any) -> Dict[str, Any]:
        config = config or {}
        if not isinstance(config, dict):
            raise ConfigError("mxresolved: the module's config must be a mapping")
        unknown = set(config) - {"socket", "timeout", "probe_interval"}
        if unknown:
            raise ConfigError(f"mxresolved: unknown config keys {sorted(unknown)}")
        sock = config.get("socket")
        if sock is not None and (not isinstance(sock, str) or not sock):
            raise ConfigError("mxresolved: socket must be a path")
        return {"socket": socket_path(sock), "timeout": _seconds(config, "timeout", DEFAULT_TIMEOUT),
                "probe_interval": _seconds(config, "probe_interval", DEFAULT_PROBE_INTERVAL)}

    def __init__(self, config: Dict[str, Any], api: ModuleApi) -> None:
        self._api = api
        parts = federation_parts(api)
        if parts is None:
            logger.info("mxresolved: this process tunnels federation through outbound_federation_restricted_to "
                        "workers; server names are resolved there, nothing changes here")
            return
        path = config["socket"]
        # connect_retry=0: a missing or refusing socket falls back at once, no retry loop.
        self._client = TwistedClient(parts.reactor, path, timeout=config["timeout"], connect_retry=0)
        self._health = DaemonHealth(self._client, path, config["probe_interval"], PROBE_TIMEOUT, self._later)
        parts.install(MxresolvedAgent(parts, self._client, self._health, config["timeout"], self._reresolve))
        if parts.proxy_config is not None and parts.proxy_config.https_proxy:
            logger.warning("mxresolved: https_proxy is set; federation requests to targets that no_proxy does not "
                           "exempt stay on Synapse's own path through the proxy (the daemon connects directly)")
        logger.info("mxresolved: outbound federation resolves server names through %s (timeout %.1f s)",
                    path, config["timeout"])

    def _later(self, seconds: float, fn: Callable[[], Any]) -> None:
        self._api.delayed_background_call(seconds * 1000, fn, desc="mxresolved_probe")

    def _reresolve(self, server_name: str) -> None:
        """Every target of the answer failed to connect: ask for a fresh resolution (the daemon
        starts at most one per name per minute)."""
        self._api.run_as_background_process("mxresolved_reresolve", self._send_reresolve, server_name)

    async def _send_reresolve(self, server_name: str) -> None:
        try:
            r = await make_deferred_yieldable(self._client.reresolve(server_name, timeout=RERESOLVE_TIMEOUT))
        except MxResolvedError as e:
            logger.info("mxresolved: reresolve %s failed: %s", server_name, e)
            return
        RERESOLVES.labels("yes" if r.started else "no").inc()
        logger.info("mxresolved: no target of %s accepted a connection; re-resolution %s", server_name,
                    "started" if r.started else f"already started recently (retry after {r.retry_after} s)")
