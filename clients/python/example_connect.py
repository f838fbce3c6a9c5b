#!/usr/bin/env python3
"""How a homeserver worker uses an mxresolved answer to open a federation connection.

    python3 example_connect.py matrix.org [/_matrix/key/v2/server]

* connect to the targets' addresses in order (IPv6 first, as given), on the target's port;
* send SNI = resolution.sni, or NO SNI when it is None (IP literals);
* verify the certificate against resolution.tls_server_name (a name, or an IP address);
* send resolution.host_header as the HTTP Host header.
"""
from __future__ import annotations

import ipaddress
import socket
import ssl
import sys
from typing import Optional, Tuple

from mxresolved_client import Client, MxResolvedError, Resolution


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def open_federation_connection(res: Resolution, timeout: float = 10.0,
                               context: Optional[ssl.SSLContext] = None) -> Tuple[ssl.SSLSocket, str]:
    """Returns a verified TLS socket to the first reachable address, and the address used."""
    ctx = context or ssl.create_default_context()
    errors = []
    for target in res.targets:
        for addr in target.addresses:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            raw = socket.socket(family, socket.SOCK_STREAM)
            raw.settimeout(timeout)
            try:
                raw.connect((addr, target.port))
                # CPython verifies the certificate against server_hostname (an IP address is
                # checked against the certificate's IP SANs) and sends it as SNI -- except for
                # IP addresses, for which it sends no SNI. That is exactly the protocol's rule:
                # sni is empty (None) precisely when tls_server_name is an IP literal.
                if (res.sni is None) != _is_ip(res.tls_server_name):
                    raise ssl.SSLError(f"unexpected answer: sni={res.sni!r}, tls_name={res.tls_server_name!r}")
                if res.sni is not None and res.sni != res.tls_server_name:
                    raise ssl.SSLError("SNI differs from the certificate name; this example does not handle that")
                tls = ctx.wrap_socket(raw, server_hostname=res.tls_server_name)
                return tls, addr
            except OSError as e:
                raw.close()
                errors.append(f"{addr}:{target.port}: {e}")
    raise ConnectionError("no target reachable: " + "; ".join(errors))


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "matrix.org"
    path = sys.argv[2] if len(sys.argv) > 2 else "/_matrix/key/v2/server"
    try:
        with Client(timeout=10) as client:
            res = client.resolve(name)
    except MxResolvedError as e:
        print(f"cannot resolve {name}: {e}", file=sys.stderr)
        return 1
    print(f"{name}: step {res.step}, Host: {res.host_header}, TLS name: {res.tls_server_name}, "
          f"SNI: {res.sni or '(none)'}")
    tls, addr = open_federation_connection(res)
    with tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {res.host_header}\r\nConnection: close\r\n\r\n".encode())
        print(f"connected to {addr}; response starts: {tls.recv(200)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
