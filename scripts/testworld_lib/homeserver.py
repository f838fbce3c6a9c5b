"""A fake remote homeserver: HTTPS/1.1 on the world's `.12`, a certificate from the test CA for
the names it serves. It answers federation profile queries and the version endpoint, and logs
every request with the SNI, Host and port it came in on (homeserver.log), so tests can check
where a homeserver's federation traffic really went. One request per connection (it answers
with Connection: close), so every request a client sends needs its own resolution and connect.

It also publishes signed server keys (`/_matrix/key/v2/server`, ed25519 through the openssl
command, canonical JSON as the spec defines it) and, per SNI, well-knowns and client versions, for
`mxresolvectl check`.

Scenario: {"homeserver": {"ports": [8450], "names": ["hs-delegated.test"],
                          "servers": {SNI: {"server_name": NAME, "keys": "valid"|"expired"|"bad-signature"|"none",
                                            "cert": "valid"|"expired"|"self-signed", "stall": true,
                                            "wellknown": {"server": {...}, "client": {...}}}}}};
a name's "a": ["homeserver"] points at it. Without an entry, a request's server_name is its SNI.
"cert" picks the certificate presented for that SNI (each holds all the homeserver's names);
"stall" completes the TLS handshake, reads the request and never answers."""
import asyncio
import base64
import json
import os
import ssl
import subprocess
import tempfile
import time
import urllib.parse

from .servers import http1_server_context

LOG = "homeserver.log"


def plan(scn):
    """The scenario's homeserver, checked: {"ports": [...], "names": [...]}, or None."""
    hs = scn.get("homeserver")
    if hs is None:
        return None
    from .world import ScenarioError
    if not isinstance(hs, dict) or set(hs) - {"ports", "names", "servers", "comment"}:
        raise ScenarioError('homeserver must be {"ports": [PORT...], "names": [NAME...], "servers": {SNI: {...}}}')
    ports = [int(p) for p in hs.get("ports") or []]
    if not ports or not all(0 < p < 65536 for p in ports):
        raise ScenarioError("homeserver: ports must be a non-empty list of TCP ports")
    names = [str(n).lower() for n in hs.get("names") or []]
    if not names:
        raise ScenarioError("homeserver: names (what its certificate is valid for) must not be empty")
    servers = hs.get("servers") or {}
    for sni, spec in servers.items():
        if not isinstance(spec, dict) or set(spec) - {"server_name", "keys", "cert", "stall", "wellknown", "comment"}:
            raise ScenarioError(f"homeserver.servers[{sni!r}]: keys are server_name, keys, cert, stall, wellknown")
        if spec.get("keys", "valid") not in KEY_MODES:
            raise ScenarioError(f"homeserver.servers[{sni!r}].keys must be one of {KEY_MODES}")
        if spec.get("cert", "valid") not in CERTS:
            raise ScenarioError(f"homeserver.servers[{sni!r}].cert must be one of {CERTS}")
    return {"ports": ports, "names": names, "servers": {k.lower(): v for k, v in servers.items()}}


KEY_MODES = ("valid", "expired", "bad-signature", "none")
CERTS = ("valid", "expired", "self-signed")
KEY_ID = "ed25519:testworld"


def canonical_json(value):
    """The Matrix spec's canonical JSON: sorted keys, no whitespace, UTF-8 unescaped."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


class SigningKey:
    """One ed25519 key, used through the openssl command (the test world's only crypto dependency)."""

    def __init__(self, certdir):
        self.path = os.path.join(certdir, "homeserver-ed25519.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", self.path], check=True, capture_output=True)
        der = subprocess.run(["openssl", "pkey", "-in", self.path, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.public = base64.b64encode(der[-32:]).decode().rstrip("=")

    def sign(self, message):
        with tempfile.NamedTemporaryFile() as f:
            f.write(message)
            f.flush()
            sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", self.path, "-rawin", "-in", f.name],
                                 check=True, capture_output=True).stdout
        return base64.b64encode(sig).decode().rstrip("=")


def server_keys(key, server_name, mode):
    """The key response for `server_name`; `mode` breaks it the way a check must notice."""
    now = int(time.time() * 1000)
    body = {"server_name": server_name, "old_verify_keys": {},
            "valid_until_ts": now - 3_600_000 if mode == "expired" else now + 86_400_000,
            "verify_keys": {KEY_ID: {"key": key.public}}}
    sig = key.sign(canonical_json(body))
    if mode == "bad-signature":
        sig = ("B" if sig[0] != "B" else "C") + sig[1:]
    body["signatures"] = {server_name: {KEY_ID: sig}}
    return body


def _answer(method, target, server=None, keys=None):
    url = urllib.parse.urlsplit(target)
    q = urllib.parse.parse_qs(url.query)
    server = server or {}
    if method == "GET" and url.path == "/_matrix/key/v2/server" and keys is not None:
        return 200, keys
    if method == "GET" and url.path.startswith("/.well-known/matrix/"):
        doc = (server.get("wellknown") or {}).get(url.path.rsplit("/", 1)[1])
        if doc is not None:
            return 200, doc
    if method == "GET" and url.path == "/_matrix/client/versions":
        return 200, {"versions": ["r0.6.1", "v1.1", "v1.11"]}
    if method == "GET" and url.path == "/_matrix/federation/v1/query/profile" and q.get("user_id"):
        user = q["user_id"][0]
        return 200, {"displayname": f"{user.split(':')[0].lstrip('@')} (testworld homeserver)",
                     "avatar_url": "mxc://testworld.test/avatar"}
    if method == "GET" and url.path == "/_matrix/federation/v1/version":
        return 200, {"server": {"name": "testworld-homeserver", "version": "1"}}
    return 404, {"errcode": "M_UNRECOGNIZED", "error": "testworld homeserver: unknown endpoint"}


class FakeHomeserver:
    def __init__(self, certdir, logpath, servers=None):
        self.log = open(logpath, "a", buffering=1)
        self.by_sni = servers or {}
        self.key = SigningKey(certdir)
        self.keys = {}
        self.sni = {}
        self.ctx = http1_server_context(certdir, self.sni)
        other = {c: http1_server_context(certdir, self.sni, c) for c in CERTS if c != "valid"}
        record = self.ctx.sni_callback

        def pick_certificate(obj, name, ctx):
            record(obj, name, ctx)
            cert = self.by_sni.get((name or "").lower(), {}).get("cert", "valid")
            if cert != "valid":
                obj.context = other[cert]

        self.ctx.sni_callback = pick_certificate
        self.connections = 0

    async def handle(self, reader, writer):
        self.connections += 1
        conn = self.connections
        sslobj = writer.get_extra_info("ssl_object")
        sni = self.sni.pop(id(sslobj), None) if sslobj else None
        port = writer.get_extra_info("sockname")[1]
        peer = writer.get_extra_info("peername")
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 120)
            lines = head.decode("latin-1").split("\r\n")
            method, target = (lines[0].split(" ") + ["", ""])[:2]
            hdrs = {}
            for ln in lines[1:]:
                k, sep, v = ln.partition(":")
                if sep:
                    hdrs[k.strip().lower()] = v.strip()
            length = int(hdrs.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(length)
            name = (sni or hdrs.get("host", "").rsplit(":", 1)[0]).lower()
            server = self.by_sni.get(name, {})
            if server.get("stall"):
                self.log.write(json.dumps({"t": round(time.time(), 4), "sni": sni or "", "host": hdrs.get("host", ""),
                                           "port": port, "method": method, "uri": target, "status": "stalled",
                                           "connection": conn}) + "\n")
                await reader.read()  # until the client gives up and closes
                return
            status, body = _answer(method, target, server, self.server_keys(name, server))
            self.log.write(json.dumps({
                "t": round(time.time(), 4), "sni": sni or "", "host": hdrs.get("host", ""), "port": port,
                "method": method, "uri": target, "status": status, "connection": conn,
                "peer": f"{peer[0]}:{peer[1]}", "user_agent": hdrs.get("user-agent", ""),
                "authorization": hdrs.get("authorization", "")[:12]}) + "\n")
            data = json.dumps(body).encode()
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()

    def server_keys(self, name, server):
        """Signed once per name and mode, then served as they are (valid for a day)."""
        mode = server.get("keys", "valid")
        if mode == "none":
            return None
        server_name = server.get("server_name", name)
        if (server_name, mode) not in self.keys:
            self.keys[(server_name, mode)] = server_keys(self.key, server_name, mode)
        return self.keys[(server_name, mode)]

    async def start(self, host, ports):
        self.servers = [await asyncio.start_server(self.handle, host, p, ssl=self.ctx, reuse_address=True)
                        for p in ports]
