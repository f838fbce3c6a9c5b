"""Synapse module: the homeserver's outbound federation resolves server names through
mxresolved, and falls back to Synapse's own resolution whenever the daemon is unavailable.

    modules:
      - module: mxresolved_client.synapse.MxresolvedResolver
        config:
          socket: /run/mxresolved/socket      # optional

docs/synapse.md has the whole setup."""
from ._module import MxresolvedResolver

__all__ = ["MxresolvedResolver"]
