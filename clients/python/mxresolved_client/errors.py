"""Exceptions raised by the mxresolved clients."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Type


class MxResolvedError(Exception):
    """Base class of every error raised by this package."""


class DaemonUnavailable(MxResolvedError):
    """The daemon could not be reached (socket missing, refused, or the connection
    failed again after one transparent reconnect)."""


class RequestTimeout(MxResolvedError, TimeoutError):
    """The call's timeout expired before the daemon answered."""


class ProtocolError(MxResolvedError):
    """The daemon rejected the request at protocol level (``code`` is one of
    bad_request, unknown_verb, line_too_long, too_many_in_flight, unsupported_version,
    forbidden, shutting_down, internal, or a future code), or its answer could not be
    parsed (``code`` is None)."""

    def __init__(self, code: Optional[str], message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message


class Forbidden(ProtocolError):
    """A state-changing verb was refused by the daemon's SO_PEERCRED check."""


class UnsupportedVersion(ProtocolError):
    """The daemon speaks none of the protocol versions offered in ``hello``."""


class ResolveError(MxResolvedError):
    """Resolution failed. ``code`` is the daemon's stable code; subclasses group codes
    into families. Unknown codes raise the base class."""

    family = "other"

    def __init__(self, code: str, message: str, server_name: Optional[str] = None,
                 source: Optional[str] = None, expires_in: Optional[int] = None,
                 trace: Optional[list] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.server_name = server_name
        self.source = source
        self.expires_in = expires_in
        self.trace: list = trace or []

    def __init_subclass__(cls, family: str = "", codes: Sequence[str] = (), **kw: Any) -> None:
        """A family class names its family and the daemon codes it stands for (a family of one
        code is named after it); ``resolve_error`` raises it for those codes."""
        super().__init_subclass__(**kw)
        if family:
            cls.family = family
            for code in codes or (family,):
                RESOLVE_ERROR_CLASSES[code] = cls


RESOLVE_ERROR_CLASSES: Dict[str, Type[ResolveError]] = {}
"""The family class of each daemon code, filled in as the classes below are defined."""


class InvalidServerName(ResolveError, family="invalid_server_name"):
    """The name is not a valid server name (never cached: asking again gives the same answer)."""


class DNSFailure(ResolveError, family="dns", codes=("dns_timeout", "dns_servfail", "dns_refused", "dns_error")):
    """Temporary DNS trouble: a query timed out, a server answered SERVFAIL or REFUSED, or
    another DNS failure (FORMERR, a malformed answer)."""


class SRVFailure(ResolveError, family="srv", codes=("srv_target_is_cname", "srv_service_unavailable")):
    """The SRV answer is unusable: a target is a CNAME, or the single "." target says the
    service is decidedly not available."""


class NoAddress(ResolveError, family="no_address"):
    """The host has no AAAA/A records (NXDOMAIN/NODATA)."""


class AddressDenied(ResolveError, family="address_denied"):
    """An address found (or the IP literal) is in a denied range: a name with any denied
    address is refused as a whole."""


class ResolveTimeout(ResolveError, family="timeout"):
    """The whole resolution exceeded the daemon's deadline."""


PROTOCOL_ERROR_CODES = frozenset({
    "bad_request", "unknown_verb", "line_too_long", "too_many_in_flight",
    "unsupported_version", "forbidden", "shutting_down", "internal",
})

PROTOCOL_ERROR_CLASSES: Dict[str, Type[ProtocolError]] = {
    "forbidden": Forbidden,
    "unsupported_version": UnsupportedVersion,
}


def resolve_error(code: str, message: str, **kw: object) -> ResolveError:
    cls = RESOLVE_ERROR_CLASSES.get(code, ResolveError)
    return cls(code, message, **kw)  # type: ignore[arg-type]


def protocol_error(code: Optional[str], message: str) -> ProtocolError:
    cls = PROTOCOL_ERROR_CLASSES.get(code or "", ProtocolError)
    return cls(code, message)
