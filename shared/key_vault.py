"""Adapter over Azure Key Vault keys: the only module that speaks to Key Vault.

It turns Key Vault's JSON web keys into DER public keys and Azure SDK errors into the key manager's
errors. Signing goes through the KeyClient's own pipeline (``send_request``), so one client, one
token cache and one retry policy serve every call. No error it raises names a key: the key manager
names the caller's key id instead, and Key Vault's own messages (which do name keys) go to the log
only.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest
from azure.keyvault.keys import JsonWebKey, KeyClient, KeyVaultKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.algorithms import KeyType
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
from shared.vault_port import LATEST, KeySummary, KeyVersion, SignedDigest

log = logging.getLogger(__name__)

KEY_OPERATIONS = ["sign", "verify"]
_CREATE_PARAMETERS: dict[KeyType, dict[str, Any]] = {
    KeyType.RSA_2048: {"key_type": "RSA", "size": 2048},
    KeyType.RSA_4096: {"key_type": "RSA", "size": 4096},
    KeyType.EC_P256: {"key_type": "EC", "curve": "P-256"},
    KeyType.EC_P384: {"key_type": "EC", "curve": "P-384"},
}
# A Premium vault's HSM-protected keys: Key Vault's key types "RSA-HSM" and "EC-HSM".
_HSM_CREATE_PARAMETERS = {
    key_type: {**parameters, "key_type": parameters["key_type"] + "-HSM"} for key_type, parameters in _CREATE_PARAMETERS.items()
}
_CURVES = {"P-256": (ec.SECP256R1(), KeyType.EC_P256), "P-384": (ec.SECP384R1(), KeyType.EC_P384)}
_RSA_SIZES = {2048: KeyType.RSA_2048, 4096: KeyType.RSA_4096}
_DEFAULT_RETRY_AFTER_SECONDS = 1
# How long generate_key waits for Key Vault to recover a deleted key (it takes about a second), and
# how often it looks (the SDK looks every 2 s).
RECOVERY_WAIT_SECONDS = 30
RECOVERY_POLL_SECONDS = 0.25
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


@dataclass
class KeyVaultCalls:
    """One invocation's Key Vault requests: none is sent after ``send_by`` (``time.monotonic()``),
    and whether a create it sent may have made a new key version current, now or later."""

    send_by: float | None
    create_may_have_landed: bool = False


_calls: ContextVar[KeyVaultCalls | None] = ContextVar("key_vault_calls", default=None)


@contextmanager
def key_vault_calls(send_by: float | None) -> Iterator[KeyVaultCalls]:
    """Run an invocation's Key Vault requests under ``send_by``, and learn what its creates did."""
    calls = KeyVaultCalls(send_by)
    token = _calls.set(calls)
    try:
        yield calls
    finally:
        _calls.reset(token)


class DeadlinePassed(Unavailable):
    """The caller stops waiting before a Key Vault request could be sent; none was sent."""


class BudgetedRetryPolicy(RetryPolicy):  # type: ignore[type-arg]  # azure-core types it by request and response
    """The SDK's retry policy, which never waits out a Retry-After that ends past the call's budget.

    The stock policy sleeps for any Retry-After and only then notices that its total ``timeout`` is
    spent. Here such a response goes straight back to the caller, who gets a 429 (or 503) with the
    service's Retry-After instead of a request held open for nothing. Within ``key_vault_calls``, no
    request, first or retry, is sent past its ``send_by``: the first is refused (DeadlinePassed),
    and the last answer of a retried one goes back as it is.

    A 409 about a deletion or recovery still under way is retried too, with back-off, while the
    budget lasts: Key Vault finishes them a few seconds after answering.

    A repeated sign is another valid signature, so POST and PATCH are retried after a lost
    connection too, not only on a 5xx as the SDK's default allows. A create is retried only when it
    cannot have made a key version: after a 429, a 409 about a name in transition, or a connection
    never made. After a read timeout, a connection lost once sent or a 5xx, Key Vault may have
    created the version or may create it still, and a second create would make another one current.
    """

    RETRY_ON_METHODS = frozenset({"GET", "POST", "PATCH", "DELETE"})

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        request.context.setdefault("retry_deadline", time.monotonic() + self.timeout)
        request.context.options.setdefault("retry_on_methods", self.RETRY_ON_METHODS)
        if not _may_send_within(0):
            raise DeadlinePassed("the caller's deadline leaves no time to ask Key Vault: nothing was sent")
        return super().send(request)

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        if response.http_response.status_code == 409 and _is_name_in_transition(*_key_vault_error(response.http_response)):
            next_wait = self.get_backoff_time({**settings, "history": [*settings["history"], None]})
            return (
                bool(settings["total"])
                and time.monotonic() + next_wait < response.context["retry_deadline"]
                and _may_send_within(next_wait)
            )
        if not super().is_retry(settings, response):
            return False  # the common case, a success, stays cheap
        if _is_create(response.http_request) and response.http_response.status_code != 429:
            return False
        retry_after = self.get_retry_after(response)
        next_wait = retry_after or self.get_backoff_time({**settings, "history": [*settings["history"], None]})
        return not (retry_after and time.monotonic() + retry_after > response.context["retry_deadline"]) and _may_send_within(next_wait)

    def increment(
        self,
        settings: dict[str, Any],
        response: PipelineRequest[Any] | PipelineResponse[Any, Any] | None = None,
        error: Exception | None = None,
    ) -> bool:
        if not super().increment(settings, response=response, error=error):
            return False
        if error is None:
            return True
        # On an error the SDK passes the request here as ``response``; both carry the HTTP request.
        if response is not None and _is_create(response.http_request) and not isinstance(error, ServiceRequestError):
            return False
        return _may_send_within(self.get_backoff_time(settings))


class DeadlineTransport(HttpTransport):  # type: ignore[type-arg]
    """Sends nothing past the invocation's ``send_by``: the last check, made once the authentication
    step has its token, which it may have waited seconds for (a slow managed-identity endpoint)."""

    def __init__(self, transport: HttpTransport[Any, Any]) -> None:
        self._transport = transport

    def send(self, request: Any, **kwargs: Any) -> Any:
        if not _may_send_within(0):
            raise DeadlinePassed("the caller's deadline passed before the request to Key Vault could go out: nothing was sent")
        return self._transport.send(request, **kwargs)

    def sleep(self, duration: float) -> None:
        self._transport.sleep(duration)

    def open(self) -> None:
        self._transport.open()

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> DeadlineTransport:
        self._transport.__enter__()
        return self

    def __exit__(self, *args: Any) -> None:
        self._transport.__exit__(*args)


def key_client(
    vault_uri: str,
    credential: Any,
    transport: HttpTransport[Any, Any],
    retry_seconds: float,
    retry_total: int,
    **options: Any,
) -> KeyClient:
    """The Key Vault client as the app uses it: retries within ``retry_seconds`` (Retry-After waits
    included), and nothing sent past the caller's deadline."""
    return KeyClient(
        vault_uri,
        credential,
        transport=DeadlineTransport(transport),
        retry_policy=BudgetedRetryPolicy(timeout=retry_seconds, retry_total=retry_total),
        **options,
    )


def _is_create(request: Any) -> bool:
    return request.method.upper() == "POST" and str(request.url).split("?")[0].rstrip("/").endswith("/create")


def _may_send_within(wait: float) -> bool:
    """Whether a request sent after ``wait`` seconds would go before the invocation's ``send_by``."""
    calls = _calls.get()
    return calls is None or calls.send_by is None or time.monotonic() + wait < calls.send_by


class KeyVaultKeys:
    """The Key Vault operations the key manager needs (the ``Vault`` port), on one vault."""

    def __init__(self, client: KeyClient, hsm_keys: bool = False) -> None:
        """``hsm_keys``: create HSM-protected keys (RSA-HSM, EC-HSM), of the same sizes and curves."""
        self._client = client
        self._create_parameters = _HSM_CREATE_PARAMETERS if hsm_keys else _CREATE_PARAMETERS
        # False once a sign by the empty version was answered 404 for a key that exists (Lowkey Vault).
        self._signs_by_empty_version = True

    def create_key(self, name: str, key_type: KeyType, tags: dict[str, str]) -> KeyVersion:
        """Create the key, or add a new version to it (Key Vault's create on an existing name).

        Within ``key_vault_calls``, a create that fails in a way that may still make a version
        current (a read timeout, a connection lost once sent, a 5xx) says so there.
        """
        try:
            with _translated_errors(name):
                key = self._client.create_key(name, key_operations=KEY_OPERATIONS, tags=tags, **self._create_parameters[key_type])
        except KeyManagerError as error:
            calls = _calls.get()
            if calls is not None and not _created_nothing(error):
                calls.create_may_have_landed = True
            raise
        return _key_version(key)

    def get_key(self, name: str, version: str = LATEST) -> KeyVersion:
        """A version of the key, or its current version when ``version`` is ``LATEST``."""
        with _translated_errors():
            return _key_version(self._client.get_key(name, version or None))

    def list_keys(self) -> Iterator[KeySummary]:
        with _translated_errors():
            for item in self._client.list_properties_of_keys():
                yield KeySummary(item.name, dict(item.tags or {}), bool(item.enabled), item.updated_on)

    def sign(self, name: str, version: str, algorithm: str, digest: bytes) -> SignedDigest:
        """Sign a digest with a version of a key, or (``LATEST``) with its current version.

        The answer's ``kid`` names the version that signed; Key Vault encodes the signature as JWS does.
        On a vault that cannot sign by the empty version, the current version is read, then signs.
        """
        if version != LATEST:
            return self._sign(name, version, algorithm, digest)
        if not self._signs_by_empty_version:
            return self._sign(name, self.get_key(name).version, algorithm, digest)
        try:
            return self._sign(name, LATEST, algorithm, digest)
        except NotFound:
            current = self.get_key(name).version  # NotFound again: the key is gone
        signed = self._sign(name, current, algorithm, digest)
        if self._signs_by_empty_version:
            self._signs_by_empty_version = False
            log.warning("Key Vault answers 404 to signing by the empty version: this instance reads each key before signing")
        return signed

    def _sign(self, name: str, version: str, algorithm: str, digest: bytes) -> SignedDigest:
        body = {"alg": algorithm, "value": _b64url_encode(digest)}
        result = self._send(HttpRequest("POST", f"/keys/{name}/{version}/sign", json=body))
        try:
            signed_by = _version_in_kid(result["kid"], name)
            return SignedDigest(signed_by, _b64url_decode(result["value"]))
        except (KeyError, TypeError, ValueError):
            raise Unavailable("Key Vault's answer to a sign request could not be read") from None

    def update_key_operations(self, name: str, version: str, key_ops: tuple[str, ...]) -> None:
        """Write a version's key operations back unchanged: Key Vault then sets its Updated time to now."""
        with _translated_errors():
            self._client.update_key_properties(name, version, key_operations=list(key_ops))

    def delete_key(self, name: str) -> None:
        """Delete the whole key (Key Vault keeps it soft-deleted); one request, no polling."""
        self._send(HttpRequest("DELETE", f"/keys/{name}"))

    def recover_deleted_key(self, name: str) -> KeyVersion:
        """Undelete a soft-deleted key (the "recover" permission) and wait until it can be used again."""
        with _translated_errors(name):
            poller = self._client.begin_recover_deleted_key(name, _polling_interval=RECOVERY_POLL_SECONDS)
            poller.wait(RECOVERY_WAIT_SECONDS)
            if not poller.done():
                raise Unavailable("Key Vault is still recovering the key: retry shortly")
            return _key_version(poller.result())

    def _send(self, request: HttpRequest) -> dict[str, Any]:
        """Send a request through the client's pipeline (auth, retries) and return its JSON body."""
        with _translated_errors():
            response = self._client.send_request(request)
            if response.status_code == 404:
                raise ResourceNotFoundError(response=response)
            if response.status_code >= 400:
                raise HttpResponseError(response=response)
            try:
                answer: dict[str, Any] = response.json()
                return answer
            except ValueError:
                raise Unavailable("Key Vault's answer could not be read") from None

    def probe(self) -> None:
        """One cheap authenticated request: proves the vault answers and lets this identity list keys."""
        with _translated_errors():
            next(iter(self._client.list_properties_of_keys().by_page()), None)


def _created_nothing(error: KeyManagerError) -> bool:
    """Whether a failed create cannot have made a key version: never sent, or refused by Key Vault."""
    cause = error.__cause__
    if isinstance(error, DeadlinePassed) or isinstance(cause, ServiceRequestError):
        return True
    status = getattr(cause, "status_code", None) or 0
    return isinstance(cause, HttpResponseError) and 400 <= status < 500 and status != 408


def _version_in_kid(kid: object, name: str) -> str:
    """The version part of a key id URL ``https://<vault>/keys/<name>/<version>``."""
    if not isinstance(kid, str):
        raise ValueError("a key id is a URL")
    rest, _, version = kid.partition("?")[0].rpartition("/")
    collection, _, kid_name = rest.rpartition("/")
    if not collection.endswith("/keys") or kid_name.lower() != name.lower() or not version:
        raise ValueError("not a versioned key id of this key")
    return version


def public_key_from_jwk(jwk: JsonWebKey) -> tuple[KeyType | None, bytes]:
    """The SPIRE key type (None if it is none of them) and DER SubjectPublicKeyInfo of a JSON web key."""
    # JsonWebKey sets its fields from its keyword arguments, so its type declares none of them.
    fields: dict[str, Any] = vars(jwk)
    return _public_key(fields.get("kty"), fields.get("crv"), fields.get("n"), fields.get("e"), fields.get("x"), fields.get("y"))


@functools.lru_cache(maxsize=4096)
def _public_key(
    kty: str | None, crv: str | None, n: bytes | None, e: bytes | None, x: bytes | None, y: bytes | None
) -> tuple[KeyType | None, bytes]:
    # Cached: a key version's public key never changes, and decoding it is most of a read's own cost.
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    if kty in ("RSA", "RSA-HSM") and n is not None and e is not None:
        public = rsa.RSAPublicNumbers(_int(e), _int(n)).public_key()
        key_type = _RSA_SIZES.get(public.key_size)
    elif kty in ("EC", "EC-HSM") and crv in _CURVES and x is not None and y is not None:
        curve, key_type = _CURVES[crv]
        public = ec.EllipticCurvePublicNumbers(_int(x), _int(y), curve).public_key()
    else:
        return None, b""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key_type, der


def _key_version(key: KeyVaultKey) -> KeyVersion:
    key_type, der = public_key_from_jwk(key.key)
    props = key.properties
    return KeyVersion(
        key.name,
        props.version or "",
        key_type,
        der,
        bool(props.enabled),
        dict(props.tags or {}),
        tuple(key.key_operations or ()),
        props.updated_on,
    )


@contextmanager
def _translated_errors(name: str | None = None) -> Iterator[None]:
    """Turn Azure SDK errors into key manager errors, with no secret and no key name (``name``) in them."""
    try:
        yield
    except KeyManagerError:
        raise
    except Exception as exc:
        translated = _translate(exc, name)
        if translated is None:
            raise
        raise translated from exc


def _translate(exc: BaseException, name: str | None = None) -> KeyManagerError | None:
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


def _is_name_in_transition(inner_code: str | None, message: str) -> bool:
    """Whether a 409 says a deletion or recovery of the key is still under way."""
    return _says(_BEING_DELETED, inner_code, message) or bool(_BEING_RECOVERED.search(message))


def _service_error(exc: HttpResponseError) -> tuple[str | None, str]:
    """The inner error code and message of Key Vault's error JSON (for the log: messages name keys)."""
    inner_code, message = _key_vault_error(exc.response) if exc.response is not None else (None, "")
    return inner_code, message or exc.reason or "no details"


def _key_vault_error(response: Any) -> tuple[str | None, str]:
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
        return _DEFAULT_RETRY_AFTER_SECONDS


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
