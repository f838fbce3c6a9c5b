"""The I/O-free pipeline the three transports share: ids, the in-flight limit and its queue,
framing across arbitrary chunk boundaries, reply dispatch, cancel and failure."""
import pytest

from mxresolved_client._codec import parse_line
from mxresolved_client._pipeline import MAX_RESPONSE_LINE, ConnectionLost, Pipeline
from mxresolved_client._reconnect import is_draining
from mxresolved_client.errors import ProtocolError, UnsupportedVersion


def test_ids_framing_and_out_of_order_dispatch():
    p = Pipeline("x")
    r1, out1 = p.submit("resolve", ["a.example"], {}, "w1")
    r2, out2 = p.submit("ping", [], {}, "w2")
    assert (r1, r2) == ("x1", "x2")
    assert out1 == b"resolve a.example id=x1\n" and out2 == b"ping id=x2\n"
    data = b"ok id=x2 pong=1\nok id=x1 name=a.example step=1"
    done, out = p.receive(data[:7])
    assert done == [] and out == b""
    done, _ = p.receive(data[7:])
    assert [(w, r.get("pong")) for w, r in done] == [("w2", "1")]
    done, _ = p.receive(b"\n")
    assert [w for w, _ in done] == ["w1"] and done[0][1].get("name") == "a.example"


def test_entries_collected_and_idless_reply_goes_to_oldest():
    p = Pipeline("x")
    p.submit("show-cache", [], {}, "sc")
    p.submit("ping", [], {}, "pg")
    done, _ = p.receive(b"entry id=x1 name=a status=ok\nentry id=x1 name=b status=ok\nok id=x1 count=2\n")
    assert done[0][0] == "sc" and [e.get("name") for e in done[0][1].entries] == ["a", "b"]
    done, _ = p.receive(b"err code=line_too_long msg=x\n")
    assert done[0][0] == "pg"


def test_inflight_limit_queues_and_releases_in_order():
    p = Pipeline("x", max_inflight=2)
    outs = [p.submit("ping", [], {}, f"w{i}")[1] for i in range(1, 5)]
    assert outs[2:] == [b"", b""]
    done, out = p.receive(b"ok id=x1 pong=1\n")
    assert out == b"ping id=x3\n"
    assert p.cancel("x4") == b""            # a queued request is dropped without being sent
    assert p.cancel("x2") == b""            # nothing left queued to release
    done, out = p.receive(b"ok id=x2 pong=1\nok id=x3 pong=1\n")
    assert [w for w, _ in done] == ["w3"]   # x2's late answer is dropped


def test_fail_returns_every_waiter_and_refuses_new_requests():
    p = Pipeline("x", max_inflight=1)
    p.submit("ping", [], {}, "sent")
    p.submit("ping", [], {}, "queued")
    assert sorted(p.fail()) == ["queued", "sent"]
    with pytest.raises(ConnectionLost):
        p.submit("ping", [], {}, "late")


def test_malformed_and_oversized_responses():
    with pytest.raises(ProtocolError):
        Pipeline("x").receive(b"what is this\n")
    with pytest.raises(ProtocolError):
        Pipeline("x").receive(b"o" * (MAX_RESPONSE_LINE + 1))


def test_hello_sets_the_limit_or_refuses():
    p = Pipeline("x")
    info = p.accept_hello(parse_line("ok proto=1 max_inflight=8"))
    assert p.max_inflight == 8 and info["proto"] == "1"
    with pytest.raises(UnsupportedVersion):
        p.accept_hello(parse_line("err code=unsupported_version msg=no"))
    with pytest.raises(ConnectionLost):
        p.accept_hello(parse_line("err code=shutting_down msg=bye"))
    assert is_draining(parse_line("err code=shutting_down msg=bye"))
    assert not is_draining(parse_line("err code=forbidden msg=no"))


def test_request_line_limits_are_checked_before_registering():
    p = Pipeline("x")
    with pytest.raises(ValueError):
        p.submit("resolve", ["a" * 5000], {}, "w")
    assert p.fail() == []
