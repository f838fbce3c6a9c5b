"""A fake remote homeserver: HTTPS/1.1 on the world's `.12`, a certificate from the test CA for
the names it serves. It answers federation profile queries and the version endpoint, and logs
every request with the SNI, Host and port it came in on (homeserver.log), so tests can check
where a homeserver's federation traffic really went. One request per connection (it answers
with Connection: close), so every request a client sends needs its own resolution and connect.

Scenario: {"homeserver": {"ports": [8450], "names": ["hs-delegated.test"]}}; a name's
"a": ["homeserver"] points at it."""
import asyncio
import json
import ssl
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
    if not isinstance(hs, dict) or set(hs) - {"ports", "names", "comment"}:
        raise ScenarioError('homeserver must be {"ports": [PORT...], "names": [NAME...]}')
    ports = [int(p) for p in hs.get("ports") or []]
    if not ports or not all(0 < p < 65536 for p in ports):
        raise ScenarioError("homeserver: ports must be a non-empty list of TCP ports")
    names = [str(n).lower() for n in hs.get("names") or []]
    if not names:
        raise ScenarioError("homeserver: names (what its certificate is valid for) must not be empty")
    return {"ports": ports, "names": names}


def _answer(method, target):
    url = urllib.parse.urlsplit(target)
    q = urllib.parse.parse_qs(url.query)
    if method == "GET" and url.path == "/_matrix/federation/v1/query/profile" and q.get("user_id"):
        user = q["user_id"][0]
        return 200, {"displayname": f"{user.split(':')[0].lstrip('@')} (testworld homeserver)",
                     "avatar_url": "mxc://testworld.test/avatar"}
    if method == "GET" and url.path == "/_matrix/federation/v1/version":
        return 200, {"server": {"name": "testworld-homeserver", "version": "1"}}
    return 404, {"errcode": "M_UNRECOGNIZED", "error": "testworld homeserver: unknown endpoint"}


class FakeHomeserver:
    def __init__(self, certdir, logpath):
        self.log = open(logpath, "a", buffering=1)
        self.sni = {}
        self.ctx = http1_server_context(certdir, self.sni)
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
            status, body = _answer(method, target)
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

    async def start(self, host, ports):
        self.servers = [await asyncio.start_server(self.handle, host, p, ssl=self.ctx, reuse_address=True)
                        for p in ports]
