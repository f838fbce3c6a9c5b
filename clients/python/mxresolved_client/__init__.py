"""Client library for mxresolved, the Matrix server-name resolver sidecar (protocol v1).

>>> from mxresolved_client import Client
>>> with Client() as c:                        # socket: see socket_path()
...     r = c.resolve("matrix.org")            # -> Resolution
"""
from ._api import DEFAULT_SOCKET, PACKAGED_SOCKET, default_socket_path, socket_path
from ._codec import MAX_LINE, Reply, encode_request, escape, parse_line, unescape
from .aio import AsyncClient
from .client import Client
from .errors import (AddressDenied, DaemonUnavailable, DNSFailure, Forbidden, InvalidServerName, MxResolvedError,
                     NoAddress, ProtocolError, RequestTimeout, ResolveError, ResolveTimeout, SRVFailure,
                     UnsupportedVersion)
from .types import CacheEntry, CachePage, Lifetimes, Reresolution, Resolution, Target

__version__ = "0.1.0"

__all__ = [
    "AddressDenied", "AsyncClient", "CacheEntry", "CachePage", "Client", "DaemonUnavailable", "DEFAULT_SOCKET", "DNSFailure",
    "Forbidden", "InvalidServerName", "Lifetimes", "MAX_LINE", "PACKAGED_SOCKET", "MxResolvedError", "NoAddress", "ProtocolError", "Reply",
    "RequestTimeout", "Reresolution", "Resolution", "ResolveError", "ResolveTimeout", "SRVFailure", "Target", "UnsupportedVersion",
    "default_socket_path", "encode_request", "socket_path", "escape", "parse_line", "unescape",
]
