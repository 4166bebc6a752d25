"""The Key Vault keys API as plain functions of a parsed request, free of sockets.

Routing, authentication, validation and the JSON shapes live here; ``server``
only moves bytes.  Handlers return ``(status, body)`` or raise ``VaultError``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from . import crypto
from .errors import Throttled, VaultError, bad_parameter, forbidden, key_not_found, method_not_allowed
from .store import RECOVERABLE_DAYS, Deletion, KeyStore, KeyVersion
from .throttle import VAULT_OPERATION, Charge, Throttle, key_creation, key_operation

DEFAULT_API_VERSION = "7.5"
MAX_PAGE_SIZE = 25
# What a real vault's challenge names; the Python SDK can be told not to check it, the Go SDK cannot.
DEFAULT_CHALLENGE_RESOURCE = "https://vault.azure.net"
_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")

Result = tuple[int, dict | None]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    base_url: str  # https://<Host header>, the authority that key ids are built on
    authorization: str | None = None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> dict:
        try:
            value = json.loads(self.body)
        except ValueError:
            raise bad_parameter("The request body is not valid JSON.") from None
        if not isinstance(value, dict):
            raise bad_parameter("The request body must be a JSON object.")
        return value


# --- request validation --------------------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise bad_parameter(f"Invalid key name {name!r}: use 1-127 letters, digits and dashes.")


def _int_or_none(value: object, field: str) -> int | None:
    if value is not None and type(value) is not int:
        raise bad_parameter(f"Attribute '{field}' must be an integer (epoch seconds).")
    return value


def _parse_attributes(value: object) -> dict[str, Any]:
    """Only the attributes present in the request, mapped to ``KeyVersion`` fields."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_parameter("'attributes' must be an object.")
    parsed: dict[str, Any] = {}
    if value.get("enabled") is not None:
        if not isinstance(value["enabled"], bool):
            raise bad_parameter("Attribute 'enabled' must be a boolean.")
        parsed["enabled"] = value["enabled"]
    for field in ("exp", "nbf"):
        if field in value:
            parsed[field] = _int_or_none(value[field], field)
    return parsed


def _parse_key_ops(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(op in crypto.KNOWN_KEY_OPS for op in value):
        raise bad_parameter(f"'key_ops' must be a list drawn from {sorted(crypto.KNOWN_KEY_OPS)}.")
    return tuple(value)


def _parse_tags(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise bad_parameter("'tags' must be an object of string values.")
    return dict(value)


# --- response shapes -----------------------------------------------------------------------------------------------


def _attributes(v: KeyVersion) -> dict:
    attributes = {
        "enabled": v.enabled,
        "created": v.created,
        "updated": v.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": RECOVERABLE_DAYS,
    }
    attributes.update({k: t for k, t in (("exp", v.exp), ("nbf", v.nbf)) if t is not None})
    return attributes


def _kid(base: str, v: KeyVersion) -> str:
    return f"{base}/keys/{v.name}/{v.version}"


def _key_bundle(base: str, v: KeyVersion) -> dict:
    key = {"kid": _kid(base, v), "kty": v.kty, "key_ops": list(v.key_ops), **crypto.public_jwk(v.private_key)}
    return {"key": key, "attributes": _attributes(v), "tags": dict(v.tags)}


def _deleted_fields(base: str, v: KeyVersion, d: Deletion) -> dict:
    return {
        "recoveryId": f"{base}/deletedkeys/{v.name}",
        "deletedDate": d.deleted_date,
        "scheduledPurgeDate": d.scheduled_purge_date,
    }


def _deleted_bundle(base: str, v: KeyVersion, d: Deletion) -> dict:
    return {**_key_bundle(base, v), **_deleted_fields(base, v, d)}


def _item(kid: str, v: KeyVersion) -> dict:
    return {"kid": kid, "attributes": _attributes(v), "tags": dict(v.tags)}


def _page(req: Request, items: list[dict]) -> dict:
    """One page of a list; ``$skiptoken`` is the offset of the next page."""
    size, skip = req.param("maxresults") or str(MAX_PAGE_SIZE), req.param("$skiptoken") or "0"
    if not size.isdecimal() or not 1 <= int(size) <= MAX_PAGE_SIZE:
        raise bad_parameter(f"'maxresults' must be an integer from 1 to {MAX_PAGE_SIZE}.")
    if not skip.isdecimal():
        raise bad_parameter("Invalid '$skiptoken'.")
    size_n, skip_n = int(size), int(skip)
    page: dict[str, Any] = {"value": items[skip_n : skip_n + size_n], "nextLink": None}
    if skip_n + size_n < len(items):
        query = {"api-version": req.param("api-version") or DEFAULT_API_VERSION, "maxresults": size_n, "$skiptoken": skip_n + size_n}
        page["nextLink"] = f"{req.base_url}{req.path}?{urlencode(query, safe='$')}"
    return page


# --- the API -------------------------------------------------------------------------------------------------------


def challenge(resource: str) -> str:
    """The WWW-Authenticate value of a 401: where to get a token, and for which resource."""
    return f'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="{resource}"'


class VaultApi:
    """Routes requests to handlers; ``is_valid_token`` decides which bearer tokens are accepted.

    ``challenge`` is a 401's WWW-Authenticate value; its owner sets it once the vault's port is
    known (see LocalVault). The Go SDK accepts a challenge only when its resource's host (port
    included) is a parent domain of the vault's, so a vault at https://127.0.0.1:8443 needs one such
    as https://0.0.1:8443 to serve Go clients.

    ``sign_latency`` (seconds) holds each signature back, so that a benchmark can stand it for a vault
    that signs as slowly as a remote one: localvault itself signs in well under a millisecond.

    ``expiry_policies`` stands for Azure Policy assignments of "Key Vault keys should have an
    expiration date" with the Deny effect: assignment name -> the key name prefix it covers ("" for
    all). Tests set them through ``PUT``/``DELETE /management/policy/assignments/{assignment}``.

    ``premium`` is the vault's SKU: a Premium vault creates HSM-protected keys (RSA-HSM, EC-HSM), a
    Standard one refuses them as Key Vault does.

    ``throttle``, when given, holds the vault to Key Vault's service limits (see ``throttle``): an
    authenticated call over them is a 429 with Retry-After. ``GET /management/throttling`` reports its
    counters.

    ``empty_version_sign`` False answers a sign by the empty version (``POST /keys/{name}//sign``)
    with 404 as Lowkey Vault does, where Key Vault signs with the current version.
    """

    def __init__(
        self,
        store: KeyStore,
        is_valid_token: Callable[[str], bool],
        sign_latency: float = 0.0,
        premium: bool = True,
        throttle: Throttle | None = None,
        empty_version_sign: bool = True,
    ) -> None:
        self.store = store
        self.is_valid_token = is_valid_token
        self.sign_latency = sign_latency
        self.premium = premium
        self.throttle = throttle
        self.empty_version_sign = empty_version_sign
        self.challenge = challenge(DEFAULT_CHALLENGE_RESOURCE)
        self.expiry_policies: dict[str, str] = {}
        # (method, path pattern, handler); "{x}" segments are passed to the handler. First match wins.
        self.routes: list[tuple[str, tuple[str, ...], Callable[..., Result]]] = [
            ("GET", ("ping",), self.ping),
            ("PUT", ("management", "vault", "time", "all"), self.shift_time),
            ("GET", ("management", "throttling"), self.throttling),
            ("PUT", ("management", "policy", "assignments", "{assignment}"), self.assign_expiry_policy),
            ("DELETE", ("management", "policy", "assignments", "{assignment}"), self.remove_expiry_policy),
            ("GET", ("keys",), self.list_keys),
            ("POST", ("keys", "{name}", "create"), self.create_key),
            ("GET", ("keys", "{name}", "versions"), self.list_versions),
            ("GET", ("keys", "{name}"), self.get_key),
            ("DELETE", ("keys", "{name}"), self.delete_key),
            ("GET", ("keys", "{name}", "{version}"), self.get_key),
            ("PATCH", ("keys", "{name}", "{version}"), self.update_key),
            ("POST", ("keys", "{name}", "{version}", "sign"), self.sign),
            ("POST", ("keys", "{name}", "{version}", "verify"), self.verify),
            ("GET", ("deletedkeys",), self.list_deleted),
            ("GET", ("deletedkeys", "{name}"), self.get_deleted),
            ("DELETE", ("deletedkeys", "{name}"), self.purge),
            ("POST", ("deletedkeys", "{name}", "recover"), self.recover),
        ]

    def handle(self, req: Request) -> tuple[int, dict | None, dict[str, str]]:
        """Answer a request: status, JSON body (None for no body) and extra headers."""
        try:
            if self._authenticate(req) and self.throttle is not None:
                self._admit(req, self.throttle)
            status, body = self._route(req)
            return status, body, {}
        except VaultError as error:
            headers = error.headers()
            if error.status == 401:
                headers["WWW-Authenticate"] = self.challenge
            return error.status, error.body(), headers

    def _authenticate(self, req: Request) -> bool:
        """Whether the request is a vault operation (not management); raises 401 for one without a valid token."""
        segments = req.path.split("/")
        if len(segments) < 2 or segments[1] not in ("keys", "deletedkeys"):
            return False
        scheme, _, token = (req.authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not self.is_valid_token(token.strip()):
            raise VaultError(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
        return True

    def _admit(self, req: Request, limits: Throttle) -> None:
        charge = self._charge(req)
        wait = limits.admit(charge)
        if wait is not None:
            reason = "VaultOperationLimitReached" if charge.budget == "vault" else "VaultRequestTypeLimitReached"
            raise Throttled(wait, reason)

    def _charge(self, req: Request) -> Charge:
        """Which of Key Vault's limits a request counts against, judged before it runs (a failed call counts too)."""
        segments = req.path.split("/")[1:]
        if req.method == "POST" and len(segments) == 3 and segments[0] == "keys" and segments[2] == "create":
            try:
                kty = req.json().get("kty")
            except VaultError:  # the create will answer 400 itself; it still counts, as a software one
                kty = None
            return key_creation(hsm=isinstance(kty, str) and kty.endswith("-HSM"))
        if len(segments) >= 2 and segments[1]:
            version = segments[2] if segments[0] == "keys" and len(segments) >= 3 else ""
            key = self.store.held(segments[1], version)
            if key is not None:
                return key_operation(key.private_key, key.hsm)
        return VAULT_OPERATION

    def _route(self, req: Request) -> Result:
        segments = req.path.split("/")[1:]
        if len(segments) == 2 and segments[0] in ("keys", "deletedkeys") and not segments[1]:
            segments = segments[:1]  # "/keys/" lists like "/keys"
        path_matched = False
        for method, pattern, handler in self.routes:
            params = _match(pattern, segments)
            if params is None:
                continue
            if method == req.method:
                if "name" in params:
                    _check_name(params["name"])
                return handler(req, **params)
            path_matched = True
        if path_matched:
            raise method_not_allowed()
        raise VaultError(404, "NotFound", f"No route for {req.method} {req.path}.")

    # --- management --------------------------------------------------------------------------------------------------

    def ping(self, req: Request) -> Result:
        return 200, {"status": "ok"}

    def shift_time(self, req: Request) -> Result:
        seconds = req.param("seconds") or ""
        if not seconds.isdecimal() or int(seconds) < 1:
            raise bad_parameter("'seconds' must be a positive integer.")
        self.store.shift_time(int(seconds))
        return 204, None

    def throttling(self, req: Request) -> Result:
        if self.throttle is None:
            return 200, {"enabled": False}
        return 200, {"enabled": True, **self.throttle.counters()}

    def assign_expiry_policy(self, req: Request, assignment: str) -> Result:
        """Deny creating keys without an expiration date, for names starting with the body's ``keyNamePrefix``."""
        _check_name(assignment)
        prefix = req.json().get("keyNamePrefix", "")
        if not isinstance(prefix, str):
            raise bad_parameter("'keyNamePrefix' must be a string.")
        self.expiry_policies[assignment] = prefix.lower()
        return 204, None

    def remove_expiry_policy(self, req: Request, assignment: str) -> Result:
        self.expiry_policies.pop(assignment, None)
        return 204, None

    def _refuse_by_policy(self, name: str) -> None:
        for assignment, prefix in list(self.expiry_policies.items()):
            if name.lower().startswith(prefix):
                raise forbidden(
                    f"Operation 'create' on a key was disallowed by policy. Policy assignment '{assignment}': "
                    "Key Vault keys should have an expiration date.",
                    "ForbiddenByPolicy",
                )

    # --- keys --------------------------------------------------------------------------------------------------------

    def create_key(self, req: Request, name: str) -> Result:
        body = req.json()
        if body.get("kty") in crypto.HSM_KEY_TYPES and not self.premium:
            raise bad_parameter("Hardware key operation not allowed on standard vault")
        kty, private_key = crypto.generate_key(body.get("kty"), body.get("key_size"), body.get("crv"))
        attributes = _parse_attributes(body.get("attributes"))
        if attributes.get("exp") is None:
            self._refuse_by_policy(name)
        ops = body.get("key_ops")
        tags = body.get("tags")
        version = self.store.create(
            name,
            kty=kty,
            private_key=private_key,
            key_ops=crypto.DEFAULT_KEY_OPS[kty] if ops is None else _parse_key_ops(ops),
            tags={} if tags is None else _parse_tags(tags),
            enabled=attributes.get("enabled", True),
            exp=attributes.get("exp"),
            nbf=attributes.get("nbf"),
        )
        return 200, _key_bundle(req.base_url, version)

    def get_key(self, req: Request, name: str, version: str = "") -> Result:
        return 200, _key_bundle(req.base_url, self.store.get(name, version))

    def list_keys(self, req: Request) -> Result:
        items = [_item(f"{req.base_url}/keys/{v.name}", v) for v in self.store.latest_versions()]
        return 200, _page(req, items)

    def list_versions(self, req: Request, name: str) -> Result:
        items = [_item(_kid(req.base_url, v), v) for v in self.store.versions(name)]
        return 200, _page(req, items)

    def update_key(self, req: Request, name: str, version: str) -> Result:
        if not version:
            raise method_not_allowed()
        body = req.json()
        changes = _parse_attributes(body.get("attributes"))
        if body.get("key_ops") is not None:
            changes["key_ops"] = _parse_key_ops(body["key_ops"])
        if body.get("tags") is not None:
            changes["tags"] = _parse_tags(body["tags"])
        return 200, _key_bundle(req.base_url, self.store.update(name, version, changes))

    def delete_key(self, req: Request, name: str) -> Result:
        return 200, _deleted_bundle(req.base_url, *self.store.delete(name))

    def _usable(self, name: str, version: str, operation: str) -> KeyVersion:
        """The version a crypto operation runs on (an empty version: the current one), if the key allows it."""
        key = self.store.get(name, version)
        if not key.enabled:
            raise forbidden(f"Operation {operation} is not allowed on a disabled key.", "KeyDisabled")
        if operation not in key.key_ops:
            raise forbidden(f"Operation {operation} is not permitted on this key.", "KeyOperationForbidden")
        return key

    def sign(self, req: Request, name: str, version: str) -> Result:
        if not version and not self.empty_version_sign:
            raise key_not_found(name)
        key = self._usable(name, version, "sign")
        body = req.json()
        signature = crypto.sign(key.private_key, body.get("alg"), crypto.b64url_decode(body.get("value"), "value"))
        if self.sign_latency:
            time.sleep(self.sign_latency)
        return 200, {"kid": _kid(req.base_url, key), "value": crypto.b64url_encode(signature)}

    def verify(self, req: Request, name: str, version: str) -> Result:
        key = self._usable(name, version, "verify")
        body = req.json()
        digest = crypto.b64url_decode(body.get("digest"), "digest")
        signature = crypto.b64url_decode(body.get("value"), "value")
        return 200, {"value": crypto.verify(key.private_key, body.get("alg"), digest, signature)}

    # --- deleted keys ------------------------------------------------------------------------------------------------

    def get_deleted(self, req: Request, name: str) -> Result:
        return 200, _deleted_bundle(req.base_url, *self.store.get_deleted(name))

    def list_deleted(self, req: Request) -> Result:
        items = [{**_item(f"{req.base_url}/keys/{v.name}", v), **_deleted_fields(req.base_url, v, d)} for v, d in self.store.deleted()]
        return 200, _page(req, items)

    def purge(self, req: Request, name: str) -> Result:
        self.store.purge(name)
        return 204, None

    def recover(self, req: Request, name: str) -> Result:
        return 200, _key_bundle(req.base_url, self.store.recover(name))


def _match(pattern: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for expected, actual in zip(pattern, segments):
        if expected.startswith("{"):
            params[expected.strip("{}")] = actual
        elif expected != actual:
            return None
    return params
