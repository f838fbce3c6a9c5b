"""Whether the daemon is usable, the fallback counters Synapse's /metrics shows, and the
background re-probe while the daemon is down. One warning when it goes, one line when it is back."""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from prometheus_client import Counter

from synapse.logging.context import make_deferred_yieldable

logger = logging.getLogger("mxresolved_client.synapse")

FALLBACKS = Counter(
    "mxresolved_synapse_fallbacks_total",
    "Federation requests sent along Synapse's own resolution instead of mxresolved's, by reason",
    ["reason"])
"""reason: unavailable (socket missing or refused, or the daemon is shutting down), timeout
(no answer within the per-call timeout), error (any other failure to get an answer), down (the
daemon was already known to be unavailable), proxy (a target must go through https_proxy)."""

RESOLVED = Counter(
    "mxresolved_synapse_resolved_total",
    "Federation requests whose destination mxresolved resolved")

RERESOLVES = Counter(
    "mxresolved_synapse_reresolves_total",
    "reresolve requests sent after every target of an answer failed to connect, by the daemon's reply",
    ["started"])


class DaemonHealth:
    """Up until a call fails to reach the daemon; then down, re-probed with ``ping`` every
    ``probe_interval`` seconds until it answers. A timed-out call triggers one immediate probe:
    a daemon that is merely slow on one name stays up, a hung one goes down."""

    def __init__(self, client: Any, path: str, probe_interval: float, probe_timeout: float,
                 schedule: Callable[[float, Callable[[], Any]], Any]) -> None:
        self._client = client
        self._path = path
        self._interval = probe_interval
        self._probe_timeout = probe_timeout
        self._schedule = schedule  # (seconds, async function) -> runs it as a background process
        self.up = True
        self._probing = False

    def unavailable(self, err: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        logger.warning("mxresolved at %s is unavailable (%s): federation requests use Synapse's own "
                       "server name resolution until it is back", self._path, err)
        if not self._probing:  # a probe already in flight (after a timeout) carries on the loop
            self._schedule_probe(self._interval)

    def timed_out(self) -> None:
        """A call got no answer in time: probe now whether the daemon answers at all."""
        if self.up and not self._probing:
            self._schedule_probe(0)

    def _schedule_probe(self, delay: float) -> None:
        self._probing = True
        self._schedule(delay, self._probe)

    async def _probe(self) -> None:
        err: Optional[BaseException] = None
        try:
            await make_deferred_yieldable(self._client.ping(timeout=self._probe_timeout))
        except Exception as e:  # noqa: BLE001 -- any failure means "not back yet"
            err = e
        self._probing = False
        if err is None:
            if not self.up:
                self.up = True
                logger.info("mxresolved at %s is back: federation requests resolve through it again", self._path)
        elif self.up:
            self.unavailable(err)
        else:
            self._schedule_probe(self._interval)
