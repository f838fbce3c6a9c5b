"""Request vectors against a live daemon. Runs only when MXRESOLVED_TEST_SOCKET is set;
then any misbehaviour is a FAILURE (never a skip)."""
import os

import pytest

from mxresolved_client import Client
from vector_runner import run_vectors

SOCK = os.environ.get("MXRESOLVED_TEST_SOCKET")
pytestmark = pytest.mark.skipif(not SOCK, reason="MXRESOLVED_TEST_SOCKET not set (no live daemon)")


def test_socket_exists():
    assert os.path.exists(SOCK), f"MXRESOLVED_TEST_SOCKET={SOCK} does not exist"


def test_request_vectors(vectors):
    failures = run_vectors(SOCK, vectors)
    assert not failures, "\n".join(failures)


def test_client_against_live_daemon():
    with Client(SOCK, timeout=10) as c:
        c.ping()
        r = c.resolve("1.2.3.4")
        assert r.step == "1" and r.sni is None and r.targets[0].addresses == ["1.2.3.4"]
        r6 = c.resolve("[2a01:4f8::1]:8449")
        assert r6.host_header == "[2a01:4f8::1]:8449" and r6.tls_server_name == "2a01:4f8::1"
        st = c.statistics()
        for k in ("requests", "hits", "misses", "stale", "coalesced", "inflight"):
            assert isinstance(st[k], int)
