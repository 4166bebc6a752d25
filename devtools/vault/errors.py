"""Errors carrying Key Vault's HTTP status and error code, so any layer can raise them."""

from __future__ import annotations

import math


class VaultError(Exception):
    """An error answered as ``{"error": {"code": ..., "message": ...}}``."""

    def __init__(self, status: int, code: str, message: str, inner_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner_code = inner_code  # Key Vault's "innererror" code, which tells apart errors of one status

    def body(self) -> dict:
        error: dict = {"code": self.code, "message": self.message}
        if self.inner_code is not None:
            error["innererror"] = {"code": self.inner_code}
        return {"error": error}

    def headers(self) -> dict[str, str]:
        return {}


class Throttled(VaultError):
    """A 429 as Key Vault answers it, with ``Retry-After`` in whole seconds (rounded up, so it is enough)."""

    def __init__(self, retry_after: float, reason: str) -> None:
        super().__init__(429, "Throttled",
                         f"Request was not processed because too many requests were received. Reason: {reason}")
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


def bad_parameter(message: str) -> VaultError:
    return VaultError(400, "BadParameter", message)


def forbidden(message: str, inner_code: str) -> VaultError:
    return VaultError(403, "Forbidden", message, inner_code)


def key_not_found(name: str) -> VaultError:
    return VaultError(404, "KeyNotFound", f"A key with (name/id) {name} was not found in this key vault.")


def method_not_allowed() -> VaultError:
    return VaultError(405, "MethodNotAllowed", "The requested method is not allowed for this resource.")


def conflict(message: str, inner_code: str) -> VaultError:
    return VaultError(409, "Conflict", message, inner_code)
