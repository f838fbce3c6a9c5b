"""End-to-end: start our own real daemon (MXRESOLVED_BIN + MXRESOLVED_TEST_ARGS) on a temp socket,
resolve, check errors, concurrency, and restart it mid-use. Skipped only when MXRESOLVED_BIN is unset."""
import asyncio
import os
import tempfile
import threading
import time

import pytest

from daemon import Daemon
from mxresolved_client import AddressDenied, AsyncClient, Client, DaemonUnavailable, InvalidServerName
from vector_runner import run_vectors

BIN = os.environ.get("MXRESOLVED_BIN")
ARGS = os.environ.get("MXRESOLVED_TEST_ARGS", "")
pytestmark = pytest.mark.skipif(not BIN, reason="MXRESOLVED_BIN not set (no daemon binary)")


@pytest.fixture
def daemon():
    with tempfile.TemporaryDirectory(prefix="mxe-", dir="/tmp") as d:
        dm = Daemon(BIN, ARGS, d)
        dm.start()
        try:
            yield dm
        finally:
            dm.stop()


def test_vectors_against_own_daemon(daemon, vectors):
    failures = run_vectors(daemon.socket, vectors)
    assert not failures, "\n".join(failures)


def test_resolve_and_errors(daemon):
    with Client(daemon.socket, timeout=10) as c:
        c.ping()
        assert c.server_info.get("proto") == "1"
        r = c.resolve("1.2.3.4")
        assert (r.step, r.host_header, r.tls_server_name, r.sni) == ("1", "1.2.3.4", "1.2.3.4", None)
        assert [(t.host, t.port, t.addresses) for t in r.targets] == [("1.2.3.4", 8448, ["1.2.3.4"])]
        assert r.source in ("network", "cache", "stale") and r.expires_in >= 0
        r6 = c.resolve("[2a01:4f8::1]:8449")
        assert r6.targets[0].host == "2a01:4f8::1" and r6.targets[0].port == 8449
        with pytest.raises(InvalidServerName) as e:
            c.resolve("bad name")
        assert e.value.server_name == "bad name"
        for bad in ["exämple.com", "example.com:0", "example.com:70000", "::1", "a" * 64 + ".example"]:
            with pytest.raises(InvalidServerName):
                c.resolve(bad)
        with pytest.raises(AddressDenied):
            c.resolve("10.1.2.3")
        with pytest.raises(AddressDenied):
            c.resolve("[2001:db8::1]:8449")
        st = c.statistics()
        assert st["requests"] >= 1
        assert isinstance(c.show_cache(), list)
        name = os.environ.get("MXRESOLVED_TEST_RESOLVABLE")
        if name:
            rr = c.resolve(name, trace=True)
            assert rr.targets and rr.targets[0].addresses
            if name == "wk-noport.test":  # the test world's well-known + _matrix-fed SRV name
                assert rr.step == "3.3"
                assert rr.host_header == "delegated.test"
                assert rr.tls_server_name == "delegated.test" and rr.sni == "delegated.test"
                assert [(t.host, t.port) for t in rr.targets] == [("srvtarget.test", 8443), ("srvtarget2.test", 8444)]
                assert rr.lifetimes.srv_ttl is not None and rr.lifetimes.address_ttl is not None
            again = c.resolve(name)
            assert again.source in ("cache", "stale")


def test_raw_unknown_verb(daemon):
    with Client(daemon.socket, timeout=10) as c:
        r = c.request("flurb")
        assert not r.ok and r.get("code") == "unknown_verb"


def test_concurrent_calls(daemon):
    names = [f"1.2.{i // 200}.{i % 200 + 1}" for i in range(400)]
    with Client(daemon.socket, timeout=20) as c:
        out = {}
        errs = []

        def work(chunk):
            try:
                for n in chunk:
                    out[n] = c.resolve(n)
            except Exception as e:  # noqa: BLE001
                errs.append(e)
        ts = [threading.Thread(target=work, args=(names[i::16],)) for i in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errs, errs[:3]
        assert all(out[n].server_name == n and out[n].targets[0].addresses == [n] for n in names)

    async def amain():
        async with AsyncClient(daemon.socket, timeout=20) as ac:
            rs = await asyncio.gather(*(ac.resolve(n) for n in names))
            assert [r.server_name for r in rs] == names
    asyncio.run(amain())


def test_restart_mid_use(daemon):
    with Client(daemon.socket, timeout=30, connect_retry=20) as c:
        c.ping()
        stop = threading.Event()
        errs, count = [], [0]

        def hammer(i):
            while not stop.is_set():
                try:
                    r = c.resolve(f"1.2.3.{i + 1}")
                    assert r.server_name == f"1.2.3.{i + 1}"
                    count[0] += 1
                except Exception as e:  # noqa: BLE001
                    errs.append(repr(e))
        ts = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
        for t in ts:
            t.start()
        time.sleep(0.5)
        before = count[0]
        daemon.restart()
        time.sleep(0.5)
        stop.set()
        for t in ts:
            t.join(60)
        assert before > 0 and count[0] > before
        assert not errs, errs[:5]
        c.ping()

    async def amain():
        async with AsyncClient(daemon.socket, timeout=30, connect_retry=20) as ac:
            await ac.ping()
            daemon.restart()
            r = await ac.resolve("1.2.3.4")  # transparent reconnect
            assert r.step == "1"
    asyncio.run(amain())


def test_unavailable_after_stop(daemon):
    with Client(daemon.socket, timeout=5, connect_retry=0.5) as c:
        c.ping()
        daemon.stop()
        with pytest.raises(DaemonUnavailable):
            c.ping()


def test_twisted_against_own_daemon(daemon):
    pytest.importorskip("twisted")
    from test_twisted import run_script
    out = run_script(daemon.socket, "live")
    assert out["ip"] == ["1.2.3.4", "1", None, 8448, ["1.2.3.4"]]
    assert out["concurrent_ok"] is True and out["denied"] == "address_denied"
