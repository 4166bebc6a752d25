"""The key manager's error vocabulary.

Codes are the gRPC codes SPIRE's KeyManager uses, so a caller that knows SPIRE reads them the same
way. The HTTP mapping lives in one table in ``functions/http.py``.
"""

from __future__ import annotations


class KeyManagerError(Exception):
    """Base of every error the key manager reports to a caller."""

    code = "Internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(KeyManagerError):
    code = "InvalidArgument"


class NotFound(KeyManagerError):
    code = "NotFound"


class FailedPrecondition(KeyManagerError):
    code = "FailedPrecondition"


class NameHeldByDeletedKey(FailedPrecondition):
    """A soft-deleted key holds the name until it is recovered or purged."""


class ResourceExhausted(KeyManagerError):
    """Key Vault throttled us; ``retry_after`` is the seconds it asked callers to wait."""

    code = "ResourceExhausted"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(KeyManagerError):
    """A dependency (settings, Key Vault, Blob storage, the identity provider) cannot serve now."""

    code = "Unavailable"


class ConfigurationError(Unavailable):
    """An app setting is missing or invalid; the message names the setting."""


class PayloadTooLarge(InvalidArgument):
    """The request body is larger than any valid request."""


ECHO_LIMIT = 64


def shortened(text: str, limit: int = ECHO_LIMIT) -> str:
    """Caller input as an error message may echo it: at most ``limit`` characters."""
    return text if len(text) <= limit else text[:limit] + "..."
