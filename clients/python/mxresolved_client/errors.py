"""Exceptions raised by the mxresolved clients."""
from __future__ import annotations

from typing import Dict, Optional, Type


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


class InvalidServerName(ResolveError):
    family = "invalid_server_name"


class DNSFailure(ResolveError):
    """dns_timeout, dns_servfail, dns_refused, dns_error: temporary DNS trouble."""
    family = "dns"


class SRVFailure(ResolveError):
    """srv_target_is_cname, srv_service_unavailable: the SRV answer is unusable."""
    family = "srv"


class NoAddress(ResolveError):
    family = "no_address"


class AddressDenied(ResolveError):
    family = "address_denied"


class ResolveTimeout(ResolveError):
    """The daemon's own resolution deadline passed (code ``timeout``)."""
    family = "timeout"


RESOLVE_ERROR_CLASSES: Dict[str, Type[ResolveError]] = {
    "invalid_server_name": InvalidServerName,
    "dns_timeout": DNSFailure,
    "dns_servfail": DNSFailure,
    "dns_refused": DNSFailure,
    "dns_error": DNSFailure,
    "srv_target_is_cname": SRVFailure,
    "srv_service_unavailable": SRVFailure,
    "no_address": NoAddress,
    "address_denied": AddressDenied,
    "timeout": ResolveTimeout,
}

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
