"""The key manager's error vocabulary.

Codes are the gRPC codes SPIRE's KeyManager uses, so a caller that knows SPIRE reads them the same
way. The HTTP mapping lives in one table in ``functions/http.py``.
"""

from __future__ import annotations

import json


class KeyManagerError(Exception):
    """Base of every error the key manager reports to a caller."""

    code = "Internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(KeyManagerError):
    code = "InvalidArgument"


class Unauthenticated(KeyManagerError):
    """The caller did not prove who it is: no token, or one that does not verify.

    ``has_token`` is False when the request carried no credentials at all (RFC 6750 then names no
    error code in its challenge).
    """

    code = "Unauthenticated"

    def __init__(self, message: str, has_token: bool = True) -> None:
        super().__init__(message)
        self.has_token = has_token


class PermissionDenied(KeyManagerError):
    """The caller is proven, but may not do what it asked (act as that server, run maintenance)."""

    code = "PermissionDenied"


class NotFound(KeyManagerError):
    code = "NotFound"


class FailedPrecondition(KeyManagerError):
    code = "FailedPrecondition"


class NameHeldByDeletedKey(FailedPrecondition):
    """A soft-deleted key holds the name until it is recovered or purged."""


class ResourceExhausted(KeyManagerError):
    """Key Vault throttled us; ``retry_after`` is the seconds it asked callers to wait, and ``turn``
    the ticket of a turn reserved for this caller when it comes back (None: none is held)."""

    code = "ResourceExhausted"

    def __init__(self, message: str, retry_after: float, turn: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.turn = turn


class Unavailable(KeyManagerError):
    """A dependency (settings, Key Vault, Blob storage, Entra ID's signing keys) cannot serve now."""

    code = "Unavailable"


class ServerStopped(Unavailable):
    """The server's id record holds another id than the one this instance uses: it serves nothing until that is mended."""


class ConfigurationError(Unavailable):
    """An app setting is missing or invalid; the message names the setting."""


class PayloadTooLarge(InvalidArgument):
    """The request body is larger than any valid request."""


ECHO_LIMIT = 64


def shortened(text: str, limit: int = ECHO_LIMIT) -> str:
    """Caller input as an error message may echo it: at most ``limit`` characters."""
    return text if len(text) <= limit else text[:limit] + "..."


def quoted(text: str, limit: int = ECHO_LIMIT) -> str:
    """Caller input in double quotes as an error message may echo it: printable ASCII, shortened."""
    # json's ASCII escapes turn control characters, quotes, backslashes and non-ASCII into \u escapes.
    return f'"{shortened(json.dumps(text)[1:-1], limit)}"'
