"""Key Vault's errors, read once: what the Azure SDK raised, as the key manager's errors.

No error made here names a key: the key manager names the caller's key id instead, and Key Vault's
own messages (which do name keys) go to the log only, but for a policy denial, whose message tells
an operator what to change (the key's name taken out).
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import (
    FailedPrecondition,
    InvalidArgument,
    KeyManagerError,
    NameHeldByDeletedKey,
    NotFound,
    ResourceExhausted,
    Unavailable,
    shortened,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_SECONDS = 1
# Key Vault's 403s about the key itself (its inner error codes, and its messages for vaults that
# send none), as opposed to a refusal of the caller's identity (ForbiddenByPolicy, ForbiddenByRbac...).
_KEY_DISABLED = ("KeyDisabled", re.compile(r"not allowed on a disabled key", re.IGNORECASE))
_KEY_OPERATION_FORBIDDEN = ("KeyOperationForbidden", re.compile(r"is not permitted on this key", re.IGNORECASE))
_DELETED_BUT_RECOVERABLE = ("ObjectIsDeletedButRecoverable", re.compile(r"deleted but recoverable", re.IGNORECASE))
# A deletion or recovery still under way (Key Vault finishes them 1-5 s after answering): a 409 that
# passes once it lands.
_BEING_DELETED = ("ObjectIsBeingDeleted", re.compile(r"currently being deleted", re.IGNORECASE))
_BEING_RECOVERED = re.compile(r"currently being recovered", re.IGNORECASE)
# An Azure Policy assignment with the Deny effect (keys without an expiry date, keys not in an HSM...)
# refuses a key operation: a 403 whose message names the assignment. Its inner code may be
# ForbiddenByPolicy, which Key Vault also gives an identity its access policy refuses.
_AZURE_POLICY_DENIAL = re.compile(r"(disallowed|denied) by (azure )?policy|policy assignment", re.IGNORECASE)
POLICY_MESSAGE_LIMIT = 500


def translated_errors(name: str | None = None) -> AbstractContextManager[None]:
    """Turn Azure SDK errors into key manager errors, with no secret and no key name (``name``) in them."""
    return _ErrorTranslation(name)


class _ErrorTranslation:
    # A class rather than a generator: every Key Vault call passes through one, and this costs a third as much.
    def __init__(self, name: str | None) -> None:
        self._name = name

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        if isinstance(error, Exception) and not isinstance(error, KeyManagerError):
            translated = translate(error, self._name)
            if translated is not None:
                raise translated from error


def translate(exc: BaseException, name: str | None = None) -> KeyManagerError | None:
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        log.warning("Key Vault credential failed: %s", type(exc).__name__)
        return Unavailable("could not get a token for Key Vault: check the app's identity settings")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return Unavailable("Key Vault did not answer")
    if not isinstance(exc, HttpResponseError):
        return Unavailable("Key Vault's answer could not be read") if isinstance(exc, AzureError) else None
    status = exc.status_code or 0
    inner_code, message = _service_error(exc)
    if status == 404:
        return NotFound("not found in Key Vault")
    if status == 429:
        return ResourceExhausted("Key Vault is throttling requests", _retry_after(exc))
    log.warning("Key Vault answered HTTP %s (%s): %s", status, inner_code or "no inner error code", message)
    if status == 409 and _says(_DELETED_BUT_RECOVERABLE, inner_code, message):
        return NameHeldByDeletedKey("its name is held by a soft-deleted Key Vault key")
    if status == 409 and _says(_BEING_DELETED, inner_code, message):
        return Unavailable("Key Vault is still deleting a key of this name: retry in a few seconds")
    if status == 409 and _BEING_RECOVERED.search(message):
        return Unavailable("Key Vault is still recovering a key of this name: retry in a few seconds")
    if status == 409:
        return FailedPrecondition("Key Vault refused to change it (HTTP 409, conflict)")
    if status == 403 and _says(_KEY_DISABLED, inner_code, message):
        return FailedPrecondition("it is disabled in Key Vault")
    if status == 403 and _says(_KEY_OPERATION_FORBIDDEN, inner_code, message):
        return FailedPrecondition("its key operations in Key Vault do not allow this operation")
    if status == 403 and _AZURE_POLICY_DENIAL.search(message):
        # Key Vault's own words name the policy assignment, which tells an operator what to change.
        said = re.sub(re.escape(name), "<key>", message, flags=re.IGNORECASE) if name else message
        return FailedPrecondition(f"Key Vault's policy refused the operation: {shortened(said, POLICY_MESSAGE_LIMIT)}")
    if status in (401, 403):
        return Unavailable("Key Vault refused the app's identity: check its key permissions")
    if status == 400:
        return InvalidArgument("Key Vault refused the request as invalid")
    if status >= 500 or status == 408:
        return Unavailable(f"Key Vault failed to answer (HTTP {status})")
    return Unavailable(f"Key Vault answered with an unexpected HTTP status {status}")


def _says(kind: tuple[str, re.Pattern[str]], inner_code: str | None, message: str) -> bool:
    code, wording = kind
    return inner_code == code or bool(wording.search(message))


def is_name_in_transition(inner_code: str | None, message: str) -> bool:
    """Whether a 409 says a deletion or recovery of the key is still under way."""
    return _says(_BEING_DELETED, inner_code, message) or bool(_BEING_RECOVERED.search(message))


def _service_error(exc: HttpResponseError) -> tuple[str | None, str]:
    """The inner error code and message of Key Vault's error JSON (for the log: messages name keys)."""
    inner_code, message = key_vault_error(exc.response) if exc.response is not None else (None, "")
    return inner_code, message or exc.reason or "no details"


def key_vault_error(response: Any) -> tuple[str | None, str]:
    """The inner error code and message of a response's Key Vault error JSON; (None, "") for another body."""
    try:
        error = json.loads(response.text())["error"]
        inner = error.get("innererror") or error.get("innerError") or {}
        return (inner.get("code") if isinstance(inner, dict) else None), str(error.get("message", ""))
    except Exception:  # the body is not Key Vault's error JSON
        return None, ""


def _retry_after(exc: HttpResponseError) -> int:
    headers = exc.response.headers if exc.response is not None else {}  # type: ignore[attr-defined]  # every response has them
    try:
        return max(1, int(float(headers.get("Retry-After", ""))))
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS
