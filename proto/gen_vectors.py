#!/usr/bin/env python3
"""Generates proto/vectors.json (run: python3 proto/gen_vectors.py > proto/vectors.json).

Kept as a script so the long strings (64-character labels, 256-character names, 4096-byte
lines) are exact; the JSON file is the artefact that tests read.
"""
import json

label64 = "a" * 64
name256 = ".".join(["b" * 63] * 4)  # 63*4 + 3 = 255
name256 = name256 + "c"             # 256 bytes
assert len(name256) == 256
name255 = ".".join(["b" * 63] * 4)
assert len(name255) == 255
# "resolve " is 8 bytes: a 4096-byte line and a 4097-byte line.
line4096 = "resolve " + "d" * (4096 - 8)
line4097 = "resolve " + "d" * (4097 - 8)

NUM = r"^[0-9]+$"
SOURCE_ERR = r"^(network|cache)$"
SOURCE_OK = r"^(network|cache|stale)$"


def ok(fields=None, present=None, patterns=None, **extra):
    e = {"status": "ok", "fields": fields or {}, "present": present or [], "field_patterns": patterns or {}}
    e.update(extra)
    return e


def err(code, fields=None, present=None, patterns=None, **extra):
    f = {"code": code}
    f.update(fields or {})
    e = {"status": "err", "fields": f, "present": sorted(set(["msg"] + (present or []))),
         "field_patterns": patterns or {}}
    e.update(extra)
    return e


def invalid(name, vname, request=None, encoding=None):
    v = {"name": vname, "request": request or ("resolve " + name),
         "expect": err("invalid_server_name", {"name": name}, ["source", "ttl"],
                       {"ttl": NUM, "source": SOURCE_ERR})}
    if encoding:
        v["encoding"] = encoding
    return v


requests = [
    {"name": "hello-1", "request": "hello 1",
     "expect": ok({"proto": "1", "max_line": "4096", "max_inflight": "256"}, ["server"],
                  {"server": r"^mxresolved/[0-9]+\.[0-9]+\.[0-9]+"})},
    {"name": "hello-list-picks-1", "request": "hello 1,2",
     "expect": ok({"proto": "1"})},
    {"name": "hello-with-id", "request": "hello 1 id=h-1",
     "expect": ok({"id": "h-1", "proto": "1"}, first_field="id")},
    {"name": "hello-unsupported", "request": "hello 2,3", "expect": err("unsupported_version")},
    {"name": "hello-missing-version", "request": "hello", "expect": err("bad_request")},
    {"name": "hello-bad-version-list", "request": "hello one", "expect": err("bad_request")},
    {"name": "ping", "request": "ping", "expect": ok({"pong": "1"})},
    {"name": "ping-crlf", "request": "ping\r", "expect": ok({"pong": "1"}),
     "note": "the line is sent as 'ping' CR LF: the CR is ignored"},
    {"name": "ping-extra-spaces", "request": "  ping   id=s.1  ", "expect": ok({"id": "s.1", "pong": "1"})},
    {"name": "ping-with-id", "request": "ping id=abc.DEF_1-2", "expect": ok({"id": "abc.DEF_1-2", "pong": "1"}, first_field="id")},
    {"name": "ping-id-64", "request": "ping id=" + "i" * 64, "expect": ok({"id": "i" * 64, "pong": "1"})},
    {"name": "version", "request": "version",
     "expect": ok({"proto": "1"}, ["version"], {"version": r"^[0-9]+\.[0-9]+\.[0-9]+"})},
    {"name": "unknown-verb", "request": "flurb", "expect": err("unknown_verb")},
    {"name": "unknown-verb-uppercase", "request": "PING", "expect": err("unknown_verb")},
    {"name": "empty-line", "request": "", "expect": err("bad_request")},
    {"name": "only-spaces", "request": "   ", "expect": err("bad_request")},
    {"name": "garbage-bytes", "request": "\u00ff\u00fe\u0000\u0001garbage\u00c3\u0028", "encoding": "latin1",
     "expect": err("bad_request", absent=["id"]), "then": "ping"},
    {"name": "invalid-utf8-in-name", "request": "resolve ex\u00e4mple.com", "encoding": "latin1",
     "expect": err("bad_request"), "then": "ping",
     "note": "latin1 encoding: the 0xE4 byte alone is not UTF-8"},
    {"name": "bad-id-chars", "request": "ping id=bad!id", "expect": err("bad_request", absent=["id"])},
    {"name": "bad-id-empty", "request": "ping id=", "expect": err("bad_request", absent=["id"])},
    {"name": "bad-id-too-long", "request": "ping id=" + "i" * 65, "expect": err("bad_request", absent=["id"])},
    {"name": "bad-escape", "request": "resolve ab%zzcd", "expect": err("bad_request")},
    {"name": "unknown-option", "request": "ping frobnicate=yes", "expect": err("bad_request")},
    {"name": "bad-option-value", "request": "resolve 1.2.3.4 cache=maybe", "expect": err("bad_request")},
    {"name": "resolve-missing-name", "request": "resolve", "expect": err("bad_request"),
     "note": "the empty server name cannot be written on the wire: a missing NAME is a bad request"},
    {"name": "resolve-two-names", "request": "resolve a.example b.example", "expect": err("bad_request")},
    invalid("bad name", "resolve-name-with-space", request="resolve bad%20name"),
    invalid("exämple.com", "resolve-non-ascii-raw", request="resolve exämple.com"),
    invalid("exämple.com", "resolve-non-ascii-escaped", request="resolve ex%C3%A4mple.com"),
    invalid("example.com:0", "resolve-port-0"),
    invalid("example.com:70000", "resolve-port-70000"),
    invalid("::1", "resolve-unbracketed-ipv6"),
    invalid(label64 + ".example.com", "resolve-64-char-label"),
    invalid(name256, "resolve-256-char-name"),
    invalid("example..com", "resolve-empty-label"),
    invalid("under_score.example", "resolve-underscore"),
    invalid("d" * 4088, "line-exactly-4096-bytes", request=line4096),
    {"name": "resolve-ipv4-literal", "request": "resolve 1.2.3.4",
     "expect": ok({"name": "1.2.3.4", "step": "1", "target": "1.2.3.4,8448,1.2.3.4", "host": "1.2.3.4",
                   "tls_name": "1.2.3.4", "sni": ""}, ["ttl", "source"],
                  {"ttl": NUM, "source": SOURCE_OK}, targets=["1.2.3.4,8448,1.2.3.4"])},
    {"name": "resolve-ipv4-literal-port", "request": "resolve 1.2.3.4:8000 id=r2",
     "expect": ok({"id": "r2", "name": "1.2.3.4:8000", "step": "1", "target": "1.2.3.4,8000,1.2.3.4",
                   "host": "1.2.3.4:8000", "tls_name": "1.2.3.4", "sni": ""}, ["ttl", "source"],
                  {"ttl": NUM, "source": SOURCE_OK}, first_field="id")},
    {"name": "resolve-ipv6-literal", "request": "resolve [2a01:4f8::1]:8449",
     "expect": ok({"name": "[2a01:4f8::1]:8449", "step": "1", "target": "2a01:4f8::1,8449,2a01:4f8::1",
                   "host": "[2a01:4f8::1]:8449", "tls_name": "2a01:4f8::1", "sni": ""}, ["ttl", "source"],
                  {"ttl": NUM, "source": SOURCE_OK}, targets=["2a01:4f8::1,8449,2a01:4f8::1"])},
    {"name": "resolve-ipv6-literal-default-port", "request": "resolve [2a01:4f8::1]",
     "expect": ok({"name": "[2a01:4f8::1]", "step": "1", "target": "2a01:4f8::1,8448,2a01:4f8::1",
                   "host": "[2a01:4f8::1]", "tls_name": "2a01:4f8::1", "sni": ""}, ["ttl", "source"])},
    {"name": "resolve-ipv4-literal-json", "request": "resolve 1.2.3.4 id=j1 format=json",
     "expect": {"status": "ok", "format": "json",
                "json_subset": {"ok": True, "id": "j1", "server_name": "1.2.3.4",
                                "targets": [{"host": "1.2.3.4", "port": 8448, "addresses": ["1.2.3.4"]}],
                                "host_header": "1.2.3.4", "tls_server_name": "1.2.3.4", "sni": None, "step": "1"},
                "json_present": ["source", "expires_in"]}},
    {"name": "resolve-private-ipv4-denied", "request": "resolve 10.1.2.3",
     "expect": err("address_denied", {"name": "10.1.2.3"}, ["source", "ttl"], {"ttl": NUM, "source": SOURCE_ERR})},
    {"name": "resolve-documentation-ipv6-denied", "request": "resolve [2001:db8::1]:8449",
     "expect": err("address_denied", {"name": "[2001:db8::1]:8449"}, ["source", "ttl"])},
    {"name": "resolve-denied-json", "request": "resolve 10.1.2.3 format=json id=j2",
     "expect": {"status": "err", "format": "json",
                "json_subset": {"ok": False, "id": "j2", "server_name": "10.1.2.3",
                                "error": {"code": "address_denied"}},
                "json_present": ["source", "expires_in"]}},
    {"name": "statistics", "request": "statistics",
     "expect": ok({}, ["requests", "hits", "misses", "stale", "coalesced", "inflight"],
                  {"requests": NUM, "hits": NUM, "misses": NUM, "stale": NUM, "coalesced": NUM, "inflight": NUM})},
    {"name": "statistics-json", "request": "statistics format=json",
     "expect": {"status": "ok", "format": "json", "json_subset": {"ok": True}, "json_present": ["statistics"]}},
    {"name": "statistics-prometheus", "request": "statistics format=prometheus id=p1",
     "expect": ok({"id": "p1"}, ["count"], {"count": r"^[1-9][0-9]*$"}, first_field="id"),
     "note": "entry text=LINE lines (the Prometheus text format, one line each, every one with the id), then ok count=N"},
    {"name": "resolve-format-prometheus-refused", "request": "resolve 1.2.3.4 format=prometheus",
     "expect": err("bad_request"), "note": "format=prometheus is a value of statistics only"},
    {"name": "resolve-escaped-equals-is-a-name", "request": "resolve id%3Dx",
     "expect": err("invalid_server_name", {"name": "id=x"}, ["source", "ttl"], absent=["id"]),
     "note": "an argument's '=' is escaped as %3D; unescaped, 'id=x' would be the request id"},
    {"name": "reresolve", "request": "reresolve 1.2.3.4 id=rr1",
     "expect": ok({"id": "rr1", "name": "1.2.3.4"}, ["started"], {"started": r"^(yes|no)$"}, first_field="id"),
     "note": "started=yes the first time within a minute, else started=no with retry_after"},
    {"name": "reresolve-again-is-limited", "request": "reresolve 1.2.3.4",
     "expect": ok({"name": "1.2.3.4", "started": "no"}, ["retry_after"], {"retry_after": r"^[1-9][0-9]*$"}),
     "note": "follows the 'reresolve' vector: at most one start per name per 60 s"},
    {"name": "reresolve-invalid-name", "request": "reresolve bad%20name",
     "expect": err("invalid_server_name", {"name": "bad name"})},
    {"name": "reresolve-missing-name", "request": "reresolve", "expect": err("bad_request")},
    {"name": "reresolve-two-names", "request": "reresolve a.example b.example", "expect": err("bad_request")},
    {"name": "reresolve-no-options", "request": "reresolve 1.2.3.4 cache=no", "expect": err("bad_request")},
    {"name": "show-cache-after-the-last-name", "request": "show-cache after=~ limit=5 id=sc1",
     "expect": ok({"id": "sc1", "count": "0"}, absent=["next"], first_field="id"),
     "note": "no cached name sorts after '~' (UTF-8 byte order); no next= at the end of the listing"},
    {"name": "show-cache-after-the-last-name-json", "request": "show-cache after=~ format=json",
     "expect": {"status": "ok", "format": "json", "json_subset": {"ok": True, "entries": [], "count": 0}}},
    {"name": "show-cache-limit-zero", "request": "show-cache limit=0", "expect": err("bad_request")},
    {"name": "show-cache-limit-not-a-number", "request": "show-cache limit=ten", "expect": err("bad_request")},
    {"name": "line-too-long", "request": line4097, "expect": err("line_too_long", absent=["id"]),
     "closes": True},
]

C = lambda decoded, encoded, **extra: {"decoded": decoded, "encoded": encoded, **extra}  # noqa: E731
codec = [
    C("a b%", "a%20b%25"),
    C("", ""),
    C("plain.example.org:8448", "plain.example.org:8448"),
    C("[2a01:4f8::1]:8449", "[2a01:4f8::1]:8449"),
    C("k=v,w", "k=v,w"),
    C("100%", "100%25"),
    C("tab\there", "tab%09here"),
    C("line\nbreak\r", "line%0Abreak%0D"),
    C("del\u007f", "del%7F"),
    C("nul\u0000", "nul%00"),
    C("exämple.com", "ex%C3%A4mple.com"),
    C("\u2603 snow", "%E2%98%83%20snow"),
    C("~!\"#$&'()*+-./;<>?@\\^_`{|}", "~!\"#$&'()*+-./;<>?@\\^_`{|}"),
    C("ä", "%c3%a4", decode_only=True),
    C("%", "%25", note="a lone percent"),
]

invalid_encoded = ["%", "%4", "%ZZ", "a%g0", "a b", "%%41"]

P = lambda k, v: [k, v]  # noqa: E731
parse = [
    {"line": "ok pong=1", "status": "ok", "id": None, "fields": [P("pong", "1")]},
    {"line": "ok", "status": "ok", "id": None, "fields": []},
    {"line": "ok id=x1 pong=1", "status": "ok", "id": "x1", "fields": [P("pong", "1")]},
    {"line": "err id=q code=bad_request msg=empty%20request", "status": "err", "id": "q",
     "fields": [P("code", "bad_request"), P("msg", "empty request")]},
    {"line": "ok sni= host=a=b", "status": "ok", "id": None, "fields": [P("sni", ""), P("host", "a=b")]},
    {"line": "ok count=2 next=b%20c.example", "status": "ok", "id": None,
     "fields": [P("count", "2"), P("next", "b c.example")]},
    {"line": "entry id=s name=1.2.3.4 status=ok ttl=5", "status": "entry", "id": "s",
     "fields": [P("name", "1.2.3.4"), P("status", "ok"), P("ttl", "5")]},
    {"line": "ok name=m.example step=3.3 source=network ttl=300 host=m.example tls_name=m.example sni=m.example "
             "target=fed1.m.example,8443,2a01:4f8::10,203.0.114.7 target=fed2.m.example,443,203.0.114.8 "
             "future_field=%F0%9F%9A%80 trace=srv%20_matrix-fed._tcp.m.example trace=a%20fed1.m.example",
     "status": "ok", "id": None,
     "fields": [P("name", "m.example"), P("step", "3.3"), P("source", "network"), P("ttl", "300"),
                P("host", "m.example"), P("tls_name", "m.example"), P("sni", "m.example"),
                P("target", "fed1.m.example,8443,2a01:4f8::10,203.0.114.7"),
                P("target", "fed2.m.example,443,203.0.114.8"), P("future_field", "\U0001F680"),
                P("trace", "srv _matrix-fed._tcp.m.example"), P("trace", "a fed1.m.example")],
     "resolution": {"server_name": "m.example", "step": "3.3", "source": "network", "expires_in": 300,
                    "host_header": "m.example", "tls_server_name": "m.example", "sni": "m.example",
                    "targets": [{"host": "fed1.m.example", "port": 8443, "addresses": ["2a01:4f8::10", "203.0.114.7"]},
                                {"host": "fed2.m.example", "port": 443, "addresses": ["203.0.114.8"]}],
                    "trace": ["srv _matrix-fed._tcp.m.example", "a fed1.m.example"]}},
    {"line": "ok id=r9 name=1.2.3.4 step=1 source=cache ttl=0 host=1.2.3.4 tls_name=1.2.3.4 sni= target=1.2.3.4,8448,1.2.3.4",
     "status": "ok", "id": "r9",
     "fields": [P("name", "1.2.3.4"), P("step", "1"), P("source", "cache"), P("ttl", "0"), P("host", "1.2.3.4"),
                P("tls_name", "1.2.3.4"), P("sni", ""), P("target", "1.2.3.4,8448,1.2.3.4")],
     "resolution": {"server_name": "1.2.3.4", "step": "1", "source": "cache", "expires_in": 0,
                    "host_header": "1.2.3.4", "tls_server_name": "1.2.3.4", "sni": None,
                    "targets": [{"host": "1.2.3.4", "port": 8448, "addresses": ["1.2.3.4"]}], "trace": []}},
    {"line": "err name=bad%20name code=invalid_server_name msg=nope source=network ttl=0 extra=1",
     "status": "err", "id": None,
     "fields": [P("name", "bad name"), P("code", "invalid_server_name"), P("msg", "nope"), P("source", "network"),
                P("ttl", "0"), P("extra", "1")],
     "error": {"code": "invalid_server_name", "message": "nope", "server_name": "bad name", "family": "invalid_server_name"}},
    {"line": "err code=dns_servfail msg=x name=a.example source=cache ttl=30", "status": "err", "id": None,
     "fields": [P("code", "dns_servfail"), P("msg", "x"), P("name", "a.example"), P("source", "cache"), P("ttl", "30")],
     "error": {"code": "dns_servfail", "message": "x", "server_name": "a.example", "family": "dns"}},
    {"line": "{\"ok\":true,\"id\":\"j1\",\"server_name\":\"1.2.3.4\",\"targets\":[{\"host\":\"1.2.3.4\",\"port\":8448,"
             "\"addresses\":[\"1.2.3.4\"]}],\"host_header\":\"1.2.3.4\",\"tls_server_name\":\"1.2.3.4\",\"sni\":null,"
             "\"step\":\"1\",\"source\":\"network\",\"expires_in\":86400,\"trace\":[],\"new_member\":{\"x\":1}}",
     "status": "json", "id": "j1",
     "resolution": {"server_name": "1.2.3.4", "step": "1", "source": "network", "expires_in": 86400,
                    "host_header": "1.2.3.4", "tls_server_name": "1.2.3.4", "sni": None,
                    "targets": [{"host": "1.2.3.4", "port": 8448, "addresses": ["1.2.3.4"]}], "trace": []}},
]

invalid_lines = ["", "hello", "ok pong", "ok Key=v", "ok  pong=1", "ok pong=1 ", "ok a=%G1", "ok a=b c", "okpong=1",
                 "ok a=\u00e9"]

families = {
    "invalid_server_name": "invalid_server_name",
    "dns_timeout": "dns", "dns_servfail": "dns", "dns_refused": "dns", "dns_error": "dns",
    "srv_target_is_cname": "srv", "srv_service_unavailable": "srv",
    "no_address": "no_address", "address_denied": "address_denied", "timeout": "timeout",
}
protocol_codes = ["bad_request", "unknown_verb", "line_too_long", "too_many_in_flight", "unsupported_version",
                  "forbidden", "shutting_down", "internal"]

doc = {
    "about": (
        "Test vectors for the mxresolved socket protocol v1 (proto/PROTOCOL.md). Generated by proto/gen_vectors.py."),
    "conventions": {
        "request": "The request line WITHOUT its terminating LF; the runner appends LF. Unless 'encoding' says otherwise "
                   "the string is sent UTF-8-encoded.",
        "encoding": "'latin1': every character of 'request' is U+0000..U+00FF and stands for ONE raw byte of that value "
                    "(this is how non-UTF-8 bytes are written); absent or 'utf-8': UTF-8.",
        "expect.status": "'ok' or 'err': the first word of the (final) response line.",
        "expect.fields": "key -> exact DECODED value (after %XX unescaping). For a repeated key the FIRST occurrence is compared.",
        "expect.targets": "if given: the exact list of decoded target= values, in order.",
        "expect.present": "keys that must occur (any value).",
        "expect.absent": "keys that must not occur.",
        "expect.field_patterns": "key -> Python/Go-compatible regular expression the decoded value must match (search).",
        "expect.first_field": "this key must be the first field after the status word.",
        "expect.format": "'json': the response is one JSON object; json_subset must match recursively (objects: listed "
                         "members equal/recursively match; arrays and scalars: equal), json_present members must exist, "
                         "and 'status' is ok/err according to the JSON member \"ok\".",
        "then": "after this vector, send this request on the SAME connection and expect an 'ok' reply "
                "(the connection stayed open).",
        "closes": "the daemon closes the connection after this reply; use a fresh connection.",
        "world": "request vectors need no test world (no DNS, no network): only IP literals and invalid names, under the "
                 "default IP policy (10.0.0.0/8 and 2001:db8::/32 denied; 1.2.3.4 and 2a01:4f8::/32 allowed).",
        "codec": "decoded (Unicode text, encoded as UTF-8 bytes) <-> encoded (the %XX form). Vectors with decode_only are "
                 "only checked in the decode direction. invalid_encoded strings must be rejected by the decoder.",
        "parse": "response line -> status ('ok'|'err'|'entry'|'json'), id (null if none), fields in order as [key, decoded "
                 "value] pairs WITHOUT the id; 'resolution' / 'error' give the typed result a client must build "
                 "(error.family names the error class family). invalid_lines must be rejected by the line parser.",
    },
    "limits": {"max_line": 4096, "max_inflight": 256, "id_max_len": 64},
    "requests": requests,
    "codec": codec,
    "invalid_encoded": invalid_encoded,
    "parse": parse,
    "invalid_lines": invalid_lines,
    "error_families": families,
    "protocol_error_codes": protocol_codes,
}

print(json.dumps(doc, indent=1, ensure_ascii=True))
