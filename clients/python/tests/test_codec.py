"""Pure unit tests: proto/vectors.json codec and response-parse vectors."""
import pytest

from mxresolved_client import errors
from mxresolved_client._codec import (encode_request, error_from_reply, escape, parse_line, resolution_from_reply,
                                      unescape)
from mxresolved_client.errors import ProtocolError


def test_codec_vectors(vectors):
    assert vectors["codec"]
    for v in vectors["codec"]:
        assert unescape(v["encoded"]) == v["decoded"], v
        if not v.get("decode_only"):
            assert escape(v["decoded"]) == v["encoded"], v


def test_invalid_encoded(vectors):
    for s in vectors["invalid_encoded"]:
        with pytest.raises(ValueError):
            unescape(s)


def _res_dict(r):
    return {"server_name": r.server_name, "step": r.step, "source": r.source, "expires_in": r.expires_in,
            "host_header": r.host_header, "tls_server_name": r.tls_server_name, "sni": r.sni,
            "targets": [{"host": t.host, "port": t.port, "addresses": list(t.addresses)} for t in r.targets],
            "trace": list(r.trace)}


def test_parse_vectors(vectors):
    assert vectors["parse"]
    for v in vectors["parse"]:
        r = parse_line(v["line"])
        assert r.status == v["status"], v["line"]
        assert r.id == v["id"], v["line"]
        if "fields" in v:
            assert [list(f) for f in r.fields] == v["fields"], v["line"]
        if "resolution" in v:
            assert _res_dict(resolution_from_reply(r)) == v["resolution"], v["line"]
        if "error" in v:
            e = error_from_reply(r, resolution_verb=True)
            assert isinstance(e, errors.ResolveError)
            assert e.code == v["error"]["code"]
            assert e.message == v["error"]["message"]
            assert e.server_name == v["error"]["server_name"]
            assert e.family == v["error"]["family"]


def test_parse_crlf_and_bytes():
    assert parse_line(b"ok pong=1\r").fields == [("pong", "1")]


def test_invalid_lines(vectors):
    for line in vectors["invalid_lines"]:
        with pytest.raises(ProtocolError):
            parse_line(line)


def test_error_families(vectors):
    for code, fam in vectors["error_families"].items():
        e = errors.resolve_error(code, "m")
        assert e.family == fam and e.code == code
    for code in vectors["protocol_error_codes"]:
        e = error_from_reply(parse_line(f"err code={code} msg=x"), resolution_verb=False)
        assert isinstance(e, ProtocolError) and e.code == code
    # protocol codes stay protocol errors even on resolve
    e = error_from_reply(parse_line("err code=bad_request msg=x"), resolution_verb=True)
    assert isinstance(e, ProtocolError)
    assert isinstance(error_from_reply(parse_line("err code=forbidden msg=x")), errors.Forbidden)
    # unknown resolution code -> generic ResolveError
    e = error_from_reply(parse_line("err name=a code=cancelled msg=x source=network ttl=0"), True)
    assert type(e) is errors.ResolveError and e.code == "cancelled"


def test_encode_request():
    assert encode_request("resolve", ["bad name"], {"cache": "no"}, "x1") == b"resolve bad%20name cache=no id=x1\n"
    assert encode_request("resolve", ["a=b%"]) == b"resolve a%3Db%25\n"
    assert encode_request("resolve", ["ex\u00e4mple.com"]) == b"resolve ex%C3%A4mple.com\n"
    with pytest.raises(ValueError):
        encode_request("resolve", ["x" * 5000])
    with pytest.raises(ValueError):
        encode_request("ping", [], request_id="bad id")
    # exactly 4096 bytes is allowed
    assert len(encode_request("resolve", ["d" * 4088])) == 4097
