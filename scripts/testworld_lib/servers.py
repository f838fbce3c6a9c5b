"""In-process python servers run by the supervisor: fault DNS (UDP+TCP), fault HTTPS, blackholes."""
import asyncio
import json
import socket
import ssl
import struct
import time

from dnslib import AAAA, CNAME, QTYPE, RCODE, RR, SOA, SRV, A, DNSLabel, DNSRecord

WK_PATH = "/.well-known/matrix/server"


class FaultDNS:
    """Authoritative for the whole scenario zone; applies per-owner/per-type faults.

    dnsmasq forwards the owners it cannot serve itself (faults, odd TTLs) here, so
    through the one dnsmasq address a client sees: normal names from dnsmasq,
    faulted names from here. Every query is logged as one JSON line.
    """

    def __init__(self, owners, logpath, negative_ttl=60):
        self.owners = owners
        self.log = open(logpath, "a", buffering=1)
        self.neg_ttl = negative_ttl
        self.flaky = {}

    def _fault(self, name, qt):
        o = self.owners.get(name)
        if not o:
            return None
        return o["faults"].get(qt) or o["faults"].get("*")

    def _records(self, name, qt, rep, depth=0):
        o = self.owners.get(name)
        if o is None or depth > 8:
            return
        if o["CNAME"]:
            rep.add_answer(RR(name + ".", QTYPE.CNAME, ttl=o["ttl"], rdata=CNAME(o["CNAME"] + ".")))
            if qt != "CNAME":
                self._records(o["CNAME"], qt, rep, depth + 1)
            return
        if qt == "A":
            for v in o["A"]:
                rep.add_answer(RR(name + ".", QTYPE.A, ttl=o["ttl"], rdata=A(v)))
        elif qt == "AAAA":
            for v in o["AAAA"]:
                rep.add_answer(RR(name + ".", QTYPE.AAAA, ttl=o["ttl"], rdata=AAAA(v)))
        elif qt == "SRV":
            for r in o["SRV"]:
                tgt = "." if r["target"] == "." else r["target"] + "."
                rep.add_answer(RR(name + ".", QTYPE.SRV, ttl=o["srv_ttl"],
                                  rdata=SRV(r["priority"], r["weight"], r["port"], tgt)))

    def _exists(self, name):
        return name in self.owners or any(n.endswith("." + name) for n in self.owners)

    async def respond(self, data, proto, peer):
        try:
            q = DNSRecord.parse(data)
        except Exception:
            return None
        name = str(q.q.qname).rstrip(".").lower()
        qt = QTYPE.get(q.q.qtype)
        fault = self._fault(name, qt)
        action = fault or "answer"
        rep = q.reply()
        rep.header.ra = 0
        if fault and fault.startswith("flaky:"):
            k = (name, qt)
            self.flaky[k] = self.flaky.get(k, 0) + 1
            action = "servfail" if self.flaky[k] <= int(fault.split(":")[1]) else "answer"
        self.log.write(json.dumps({"t": round(time.time(), 4), "proto": proto, "peer": peer, "id": q.header.id,
                                   "name": name, "type": qt, "action": action}) + "\n")
        if action == "stall":
            return None
        if action.startswith("delay:"):
            await asyncio.sleep(int(action.split(":")[1]) / 1000)
            action = "answer"
        if action == "servfail":
            rep.header.rcode = RCODE.SERVFAIL
        elif action == "refused":
            rep.header.rcode = RCODE.REFUSED
        elif action == "nxdomain":
            rep.header.rcode = RCODE.NXDOMAIN
        elif action == "notimp":
            rep.header.rcode = RCODE.NOTIMP
        elif action == "trunc" and proto == "udp":
            rep.header.tc = 1
        else:
            self._records(name, qt, rep)
            if not rep.rr:
                if not self._exists(name):
                    rep.header.rcode = RCODE.NXDOMAIN
                rep.add_auth(RR("test.", QTYPE.SOA, ttl=self.neg_ttl,
                                rdata=SOA("ns.test.", "hostmaster.test.", (1, 3600, 600, 86400, self.neg_ttl))))
            if action == "wrongid":
                rep.header.id = (q.header.id + 1) & 0xFFFF
        return rep.pack()

    async def start(self, host, port):
        loop = asyncio.get_running_loop()
        srv = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.t = transport

            def datagram_received(self, data, addr):
                async def go():
                    out = await srv.respond(data, "udp", f"{addr[0]}:{addr[1]}")
                    if out is not None:
                        self.t.sendto(out, addr)
                asyncio.ensure_future(go())

        await loop.create_datagram_endpoint(Udp, local_addr=(host, port))

        async def tcp(reader, writer):
            peer = writer.get_extra_info("peername")
            try:
                while True:
                    ln = struct.unpack("!H", await reader.readexactly(2))[0]
                    data = await reader.readexactly(ln)
                    out = await srv.respond(data, "tcp", f"{peer[0]}:{peer[1]}")
                    if out is None:
                        await asyncio.sleep(3600)
                        break
                    writer.write(struct.pack("!H", len(out)) + out)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        await asyncio.start_server(tcp, host, port, reuse_address=True)


def http1_server_context(certdir, sni_seen, cert="valid"):
    """TLS server context with one of the world's certificates (the valid one unless `cert` names
    another), HTTP/1.1 only; records each connection's SNI in sni_seen[id(ssl_object)]."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(f"{certdir}/{cert}.pem", f"{certdir}/{cert}.key")
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.sni_callback = lambda obj, name, _ctx: sni_seen.__setitem__(id(obj), name) and None
    return ctx


class FaultHTTPS:
    """HTTPS/1.1 server for well-known hosts that must stall mid-body or never answer."""

    def __init__(self, wellknown, certdir, logpath):
        self.wk = wellknown
        self.log = open(logpath, "a", buffering=1)
        self.sni = {}
        self.ctx = http1_server_context(certdir, self.sni)

    async def handle(self, reader, writer):
        sslobj = writer.get_extra_info("ssl_object")
        sni = self.sni.pop(id(sslobj), None) if sslobj else None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        uri = parts[1] if len(parts) > 1 else ""
        host = next((ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("host:")), "")
        host = host.rsplit(":", 1)[0] if host and not host.endswith("]") else host
        key = (host or sni or "").lower()
        wk = self.wk.get(key)
        action = "404"
        if wk and uri == WK_PATH:
            action = "no_response" if wk["no_response"] else "stall_mid_body"
        self.log.write(json.dumps({"t": round(time.time(), 4), "scheme": "https", "sni": sni or "", "host": key,
                                   "uri": uri, "action": action}) + "\n")
        try:
            if action == "404":
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
            elif action == "stall_mid_body":
                body = wk["body"] or b'{"m.server": "never.test"}'
                extra = "".join(f"{k}: {v}\r\n" for k, v in wk["headers"].items())
                writer.write((f"HTTP/1.1 {wk['status']} X\r\nContent-Type: {wk['content_type']}\r\n"
                              f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body[: len(body) // 2])
                await writer.drain()
                await asyncio.sleep(3600)
            else:
                await asyncio.sleep(3600)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def start(self, host, port):
        await asyncio.start_server(self.handle, host, port, ssl=self.ctx, reuse_address=True)


class Blackhole:
    """An address on which connecting hangs, as behind a firewall that drops packets: :443 listens
    with a backlog of 0 and one connection sits unaccepted in its queue, so the kernel drops every
    further SYN (no iptables needed; it stays on loopback)."""

    def __init__(self, host, port=443):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(0)
        self.fillers = []
        for _ in range(2):  # the first fills the queue; the second's SYN is already dropped
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect((host, port))
            except BlockingIOError:
                pass
            self.fillers.append(c)


class Silent:
    """Accepts TCP and never sends a byte: a client's TLS handshake stalls (a hung homeserver, a
    port forward to nothing that speaks TLS). Holds each connection until the client closes it."""

    async def handle(self, reader, writer):
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def start(self, host, ports=(443, 8448)):
        for p in ports:
            await asyncio.start_server(self.handle, host, p, reuse_address=True)


class ErrorDNS(FaultDNS):
    """A DNS server that answers every query with one rcode (SERVFAIL or REFUSED): the first of two
    configured servers, for fail-over tests. UDP and TCP, as FaultDNS."""

    def __init__(self, rcode, logpath):
        self.rcode = rcode
        self.log = open(logpath, "a", buffering=1)

    async def respond(self, data, proto, peer):
        try:
            q = DNSRecord.parse(data)
        except Exception:
            return None
        rep = q.reply()
        rep.header.rcode = self.rcode
        self.log.write(json.dumps({"t": round(time.time(), 4), "proto": proto, "name": str(q.q.qname).rstrip(".").lower(),
                                   "type": QTYPE.get(q.q.qtype), "rcode": RCODE.get(self.rcode)}) + "\n")
        return rep.pack()


class ConnectProxy:
    """A small HTTP CONNECT proxy (what https_proxy points at): tunnels to the requested host:port,
    which must be an address inside 127.0.0.0/8 (the world never sends traffic elsewhere), and
    logs each CONNECT target as one JSON line."""

    def __init__(self, logpath):
        self.log = open(logpath, "a", buffering=1)

    async def handle(self, reader, writer):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, target = head.decode("latin-1").split("\r\n")[0].split(" ")[:2]
            host, _, port = target.rpartition(":")
            host = host.strip("[]")
            allowed = method == "CONNECT" and (host.startswith("127.") or host.startswith("::ffff:127."))
            self.log.write(json.dumps({"t": round(time.time(), 4), "method": method, "target": target,
                                       "allowed": allowed}) + "\n")
            if not allowed:
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            try:
                up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
            except (OSError, asyncio.TimeoutError):
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()

            async def pipe(r, w):
                try:
                    while True:
                        data = await r.read(65536)
                        if not data:
                            break
                        w.write(data)
                        await w.drain()
                except (ConnectionError, asyncio.CancelledError):
                    pass
                finally:
                    w.close()

            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def start(self, host, port):
        await asyncio.start_server(self.handle, host, port, reuse_address=True)
