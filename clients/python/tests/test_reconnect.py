"""The reconnect rule the three transports share, stepped with scripted connections and a
fake clock: connect retries and their window, hello on a draining daemon, resend once."""
import asyncio
from typing import Dict, List, Sequence

import pytest

from mxresolved_client._codec import Reply, parse_line
from mxresolved_client._pipeline import ConnectionLost, Pipeline
from mxresolved_client._reconnect import DRAIN_PAUSE, CannotConnect, Reconnecting, run_blocking
from mxresolved_client.errors import DaemonUnavailable


class _Conn:
    def __init__(self, answers: List[str]) -> None:
        self.pipe: Pipeline[None] = Pipeline("s")
        self.answers = answers   # one line per request; "lost" for a connection that dies first
        self.closed = False

    def close(self) -> None:
        self.closed = True


class _Scripted(Reconnecting[_Conn]):
    """Connect attempts take their outcome from ``connects`` (a _Conn, or "absent"/"denied")."""

    def __init__(self, connects: List[object], connect_retry: float = 1.0, hello: bool = True) -> None:
        self._configure("/scripted.sock", 5.0, connect_retry, hello)
        self._conn = None
        self.connects = connects
        self.clock = 0.0
        self.log: List[str] = []

    def _now(self) -> float:
        return self.clock

    async def _sleep(self, seconds: float) -> None:
        self.log.append(f"sleep {seconds:g}")
        self.clock += seconds

    async def _connect_once(self, deadline: float) -> _Conn:
        outcome = self.connects.pop(0)
        self.log.append(f"connect {outcome if isinstance(outcome, str) else 'ok'}")
        if isinstance(outcome, str):
            raise CannotConnect(OSError(outcome), retry=outcome == "absent")
        assert isinstance(outcome, _Conn)
        return outcome

    async def _send(self, conn: _Conn, verb: str, args: Sequence[str], options: Dict[str, str],
                    deadline: float) -> Reply:
        self.log.append(f"send {verb}")
        line = conn.answers.pop(0)
        if line == "lost":
            conn.closed = True
            raise ConnectionLost("connection closed by the daemon")
        return parse_line(line)

    async def _connection(self, deadline: float) -> _Conn:
        if self._conn is None or self._conn.closed:
            self._conn = await self._open(deadline)
        return self._conn

    def ping(self) -> Reply:  # type: ignore[override]
        return run_blocking(self._send_with_retry("ping", [], {}, self.clock + 5.0))


HELLO = "ok proto=1 max_inflight=4"
DRAINING = "err code=shutting_down msg=bye"


def test_connect_retries_while_absent_with_growing_pauses():
    c = _Scripted(["absent", "absent", "absent", _Conn([HELLO, "ok pong=1"])])
    assert c.ping().get("pong") == "1"
    assert c.log == ["connect absent", "sleep 0.02", "connect absent", "sleep 0.04", "connect absent",
                     "sleep 0.08", "connect ok", "send hello", "send ping"]
    assert c.server_info["max_inflight"] == "4"


def test_connect_gives_up_at_the_end_of_the_window_and_at_once_when_denied():
    c = _Scripted(["absent"] * 10, connect_retry=0.1)
    with pytest.raises(DaemonUnavailable, match="cannot connect to mxresolved at /scripted.sock: absent"):
        c.ping()
    assert c.log == ["connect absent", "sleep 0.02", "connect absent", "sleep 0.04", "connect absent"]
    c = _Scripted(["denied"])
    with pytest.raises(DaemonUnavailable, match="denied"):
        c.ping()
    assert c.log == ["connect denied"]


def test_a_draining_hello_closes_the_connection_and_reconnects_after_a_pause():
    first, second = _Conn([DRAINING]), _Conn([HELLO, "ok pong=1"])
    c = _Scripted([first, second])
    assert c.ping().ok
    assert first.closed and not second.closed
    assert c.log == ["connect ok", "send hello", f"sleep {DRAIN_PAUSE:g}", "connect ok", "send hello", "send ping"]


def test_a_lost_or_draining_request_is_sent_once_more_on_a_new_connection():
    first, second = _Conn([HELLO, "lost"]), _Conn([HELLO, "ok pong=1"])
    assert _Scripted([first, second], hello=True).ping().get("pong") == "1"
    first, second = _Conn([DRAINING]), _Conn([DRAINING])
    c = _Scripted([first, second], hello=False)
    assert c.ping().get("code") == "shutting_down"   # the second answer is the caller's
    assert first.closed and c.log == ["connect ok", "send ping", "connect ok", "send ping"]


def test_a_request_lost_twice_makes_the_daemon_unavailable():
    c = _Scripted([_Conn(["lost"]), _Conn(["lost"])], hello=False)
    with pytest.raises(DaemonUnavailable, match="unavailable: connection closed by the daemon"):
        c.ping()


def test_run_blocking_refuses_a_step_that_suspends():
    with pytest.raises(RuntimeError, match="suspended"):
        run_blocking(asyncio.sleep(0))
