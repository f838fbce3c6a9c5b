"""Client logic against the fake server: pipelining, ids, out-of-order answers, timeouts,
reconnect once, errors."""
import asyncio
import os
import threading
import time

import pytest

from fakeserver import FakeServer
from mxresolved_client import (AddressDenied, AsyncClient, Client, DaemonUnavailable, DNSFailure, Forbidden,
                               InvalidServerName, Lifetimes, RequestTimeout, Reresolution, Resolution, Target)


def test_resolve_and_verbs(fake):
    with Client(fake.path, timeout=3) as c:
        r = c.resolve("m.example", trace=True)
        assert isinstance(r, Resolution)
        assert r.targets == [Target("fed.m.example", 8443, ["2a01:4f8::10", "203.0.114.7"]),
                             Target("fed2.m.example", 443, ["203.0.114.8"])]
        assert r.sni == "m.example" and r.step == "3.3" and r.expires_in == 300
        assert r.trace == ["srv lookup", "a lookup"]
        assert r.lifetimes == Lifetimes(well_known_max_age=None, srv_ttl=300, address_ttl=600)
        ip = c.resolve("1.2.3.4")
        assert ip.sni is None and ip.tls_server_name == "1.2.3.4" and ip.targets[0].port == 8448
        c.ping()
        assert c.version()["proto"] == "1"
        assert c.server_info["max_inflight"] == "8"
        entries = c.show_cache(failures=True)
        assert [e.server_name for e in entries] == ["a.example", "b.example"]
        assert entries[0].resolution is not None and entries[0].resolution.targets[0].addresses == ["203.0.114.9"]
        assert entries[1].status == "err" and entries[1].code == "no_address"
        assert entries.next is None
        first = c.show_cache(failures=True, limit=1)
        assert [e.server_name for e in first] == ["a.example"] and first.next == "a.example"
        rest = c.show_cache(failures=True, after=first.next, limit=1)
        assert [e.server_name for e in rest] == ["b.example"] and rest.next is None
        assert c.flush_caches("a", "b") == 2
        assert c.revalidate("a") == 1
        assert c.reresolve("m.example") == Reresolution("m.example", started=True, retry_after=None)
        assert c.reresolve("m.example") == Reresolution("m.example", started=False, retry_after=59)
        with pytest.raises(InvalidServerName):
            c.reresolve("bad name")
        st = c.statistics()
        assert st["requests"] == 10 and st["new_thing"] == "x"
        with pytest.raises(Forbidden):
            c.reset_statistics()
        with pytest.raises(InvalidServerName) as ei:
            c.resolve("bad name")
        assert ei.value.server_name == "bad name" and ei.value.code == "invalid_server_name"
        with pytest.raises(AddressDenied):
            c.resolve("10.1.2.3")
        with pytest.raises(DNSFailure) as ei2:
            c.resolve("servfail.example")
        assert ei2.value.code == "dns_servfail" and ei2.value.expires_in == 30
        # the escaping of request arguments reached the server
        assert any(line.startswith("resolve bad%20name ") for line in fake.requests)
    assert fake.connections == 1


def test_pipelining_across_threads_out_of_order(fake):
    with Client(fake.path, timeout=5) as c:
        results = {}
        done_order = []

        def work(name):
            results[name] = c.resolve(name)
            done_order.append(name)
        slow = threading.Thread(target=work, args=("slow.example",))
        slow.start()
        time.sleep(0.1)
        fast = [threading.Thread(target=work, args=(f"n{i}.example",)) for i in range(40)]
        for t in fast:
            t.start()
        for t in fast + [slow]:
            t.join()
        assert done_order[-1] == "slow.example"  # fast answers overtook the slow one
        assert all(results[n].server_name == n for n in results)
        assert len(results) == 41
    assert fake.connections == 1  # all on one connection
    assert fake.max_seen_inflight <= 8  # client honoured max_inflight from hello


def test_timeout_then_connection_still_usable(fake):
    with Client(fake.path, timeout=0.3) as c:
        t0 = time.monotonic()
        with pytest.raises(RequestTimeout):
            c.resolve("hang.example")
        assert time.monotonic() - t0 < 2
        assert c.resolve("1.2.3.4").server_name == "1.2.3.4"
        with pytest.raises(TimeoutError):  # RequestTimeout is a TimeoutError
            c.resolve("hang.example", timeout=0.1)


def test_reconnect_after_daemon_restart(sockdir):
    path = os.path.join(sockdir, "r.sock")
    srv = FakeServer(path)
    try:
        with Client(path, timeout=3) as c:
            assert c.resolve("1.2.3.4").step == "1"
            srv.stop()
            srv = FakeServer(path)  # "restarted daemon"
            assert c.resolve("5.6.7.8").server_name == "5.6.7.8"
            assert srv.connections == 1
    finally:
        srv.stop()


def test_reconnect_when_restart_is_slow(sockdir):
    path = os.path.join(sockdir, "r.sock")
    srv = FakeServer(path)
    holder = {}
    try:
        with Client(path, timeout=5, connect_retry=3) as c:
            c.ping()
            srv.stop()
            threading.Timer(0.5, lambda: holder.setdefault("s", FakeServer(path))).start()
            c.ping()  # socket missing for 0.5 s: the reconnect waits for it
    finally:
        time.sleep(0.6)
        if "s" in holder:
            holder["s"].stop()


def test_connection_closed_mid_request_retries_once(sockdir):
    path = os.path.join(sockdir, "c.sock")
    srv = FakeServer(path, close_after=1)  # every connection dies after one request
    try:
        with Client(path, timeout=3) as c:
            c.ping()              # 1st connection answers
            c.ping()              # 1st conn closes on this one -> reconnect, resend -> answered
            assert srv.connections == 2
    finally:
        srv.stop()
    srv = FakeServer(path, close_after=0)  # never answers anything
    try:
        with Client(path, timeout=3) as c:
            with pytest.raises(DaemonUnavailable):
                c.ping()
            assert srv.connections == 2  # exactly one reconnect
    finally:
        srv.stop()


def test_shutting_down_retries_once(sockdir):
    path = os.path.join(sockdir, "s.sock")
    srv = FakeServer(path, shutting_down=1)
    try:
        with Client(path, timeout=3) as c:
            c.ping()
            assert srv.connections == 2
    finally:
        srv.stop()


def test_draining_daemon_during_reconnect(sockdir):
    """A stopping daemon still accepts and answers shutting_down, also to hello: the
    reconnect keeps trying within the connect window instead of giving up."""
    path = os.path.join(sockdir, "d.sock")
    srv = FakeServer(path)
    try:
        with Client(path, timeout=5) as c:
            c.ping()
            srv.shutting_down, srv.hello_shutting_down = 1, 3
            c.ping()   # shutting_down -> reconnect: 3 draining hellos, the 4th connection works
            assert srv.connections == 5
    finally:
        srv.stop()
    srv = FakeServer(path, hello_shutting_down=3)

    async def main():
        async with AsyncClient(path, timeout=5) as ac:
            await ac.ping()
    try:
        asyncio.run(main())
        assert srv.connections == 4
    finally:
        srv.stop()


def test_daemon_unavailable(sockdir):
    with Client(os.path.join(sockdir, "nothing.sock"), timeout=1, connect_retry=0.2) as c:
        t0 = time.monotonic()
        with pytest.raises(DaemonUnavailable):
            c.ping()
        assert time.monotonic() - t0 < 1.5


def test_socket_path_order(monkeypatch, fake, sockdir):
    """explicit path, $MXRESOLVED_SOCKET, /run/mxresolved/socket when it exists, ./.mxresolved/."""
    import mxresolved_client._api as api
    packaged = os.path.join(sockdir, "packaged.sock")
    monkeypatch.setattr(api, "PACKAGED_SOCKET", packaged)
    monkeypatch.setenv("MXRESOLVED_SOCKET", fake.path)
    assert Client("/explicit.sock").path == "/explicit.sock"
    with Client() as c:
        assert c.path == fake.path
        c.ping()
    open(packaged, "w").close()
    assert Client().path == fake.path
    monkeypatch.delenv("MXRESOLVED_SOCKET")
    assert Client().path == packaged
    assert AsyncClient().path == packaged
    os.unlink(packaged)
    assert Client().path == "./.mxresolved/mxresolved.sock"


# --- asyncio --------------------------------------------------------------------------------------

def test_async_client(fake):
    async def main():
        async with AsyncClient(fake.path, timeout=3) as c:
            names = ["slow.example"] + [f"x{i}.example" for i in range(30)]
            order = []

            async def one(n):
                r = await c.resolve(n)
                order.append(n)
                return r
            rs = await asyncio.gather(*(one(n) for n in names))
            assert [r.server_name for r in rs] == names
            assert order[-1] == "slow.example"
            with pytest.raises(RequestTimeout):
                await c.resolve("hang.example", timeout=0.2)
            with pytest.raises(AddressDenied):
                await c.resolve("10.0.0.1")
            assert len(await c.show_cache()) == 2
            await c.ping()
    asyncio.run(main())
    assert fake.connections == 1
    assert fake.max_seen_inflight <= 8


def test_async_reconnect(sockdir):
    path = os.path.join(sockdir, "a.sock")
    state = {"srv": FakeServer(path)}

    async def main():
        async with AsyncClient(path, timeout=3, connect_retry=0.3) as c:
            await c.ping()
            state["srv"].stop()
            state["srv"] = FakeServer(path)
            r = await c.resolve("1.2.3.4")
            assert r.step == "1"
            state["srv"].stop()
            with pytest.raises(DaemonUnavailable):
                await c.ping(timeout=1)
    try:
        asyncio.run(main())
    finally:
        state["srv"].stop()
