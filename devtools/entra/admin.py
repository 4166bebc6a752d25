"""The local administration API under ``/_local/``: what a tenant's admin and a cluster would do, for tests.

No real service has it and the app never calls it. Bodies are JSON; answers are JSON, refusals
``{"error": message}``:

- ``POST /_local/applications`` ``{"token_version": 1|2}``: register an API; its identifier URI is api://<client id>.
- ``POST /_local/principals`` ``{"name", "secret": bool, "federated_credential": {"subject", "issuer"?,
  "audiences"?} | null, "managed_identity": "" | "user_assigned" | "system_assigned"}``: register a caller.
- ``POST /_local/signing-keys`` ``{"current": bool, "published": bool}``: add a token-signing key.
- ``POST /_local/sign`` ``{"claims", "header"?, "kid"?}``: sign anything with a signing key or the cluster's key.
- ``POST /_local/claims`` ``{"client_id", "resource", "version"?, "credential"?}``: the claims a token would have now.
- ``POST /_local/federated-tokens`` ``{"subject", "audience"?, "lifetime"?, "issuer"?}``: a service-account token
  from the cluster issuer (``issuer`` puts another ``iss`` claim in it, still signed by the cluster's key).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from . import cluster
from .directory import TOKEN_EXCHANGE_AUDIENCE, Directory, FederatedCredential
from .errors import AdminError
from .keys import public_key_id
from .tokens import CLIENT_AUTHENTICATION, SECRET, TokenIssuer


class AdminApi:
    def __init__(self, directory: Directory, issuer: TokenIssuer, cluster_issuer: str) -> None:
        self.directory = directory
        self.issuer = issuer
        self.cluster_issuer = cluster_issuer
        self.routes: dict[str, Callable[[dict], tuple[int, dict]]] = {
            "applications": self.register_application,
            "principals": self.register_principal,
            "signing-keys": self.add_signing_key,
            "sign": self.sign,
            "claims": self.claims,
            "federated-tokens": self.federated_token,
        }

    def handle(self, method: str, name: str, body: bytes) -> tuple[int, dict | None]:
        route = self.routes.get(name)
        if route is None:
            return 404, None
        if method != "POST":
            raise AdminError(405, f"/_local/{name} takes POST")
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise AdminError(400, "the body is not JSON") from None
        if not isinstance(request, dict):
            raise AdminError(400, "the body is a JSON object")
        try:
            return route(request)
        except ValueError as error:
            raise AdminError(400, str(error)) from None

    def register_application(self, request: dict) -> tuple[int, dict]:
        application = self.directory.register_application(_field(request, "token_version", int, 2))
        return 201, {
            "client_id": application.client_id,
            "object_id": application.object_id,
            "identifier_uri": application.identifier_uri,
            "token_version": application.token_version,
        }

    def register_principal(self, request: dict) -> tuple[int, dict]:
        federated = _field(request, "federated_credential", dict, None)
        credential = (
            None
            if federated is None
            else FederatedCredential(
                _field(federated, "issuer", str, self.cluster_issuer),
                _required(federated, "subject", str),
                tuple(str(audience) for audience in _field(federated, "audiences", list, [TOKEN_EXCHANGE_AUDIENCE])),
            )
        )
        principal, secret = self.directory.register_principal(
            _required(request, "name", str), _field(request, "secret", bool, True), credential, _field(request, "managed_identity", str, "")
        )
        return 201, {
            "name": principal.name,
            "client_id": principal.client_id,
            "object_id": principal.object_id,
            "secret": secret,
            "managed_identity": principal.managed_identity,
            "federated_credential": None
            if credential is None
            else {"issuer": credential.issuer, "subject": credential.subject, "audiences": list(credential.audiences)},
        }

    def add_signing_key(self, request: dict) -> tuple[int, dict]:
        current, published = _field(request, "current", bool, True), _field(request, "published", bool, True)
        return 201, {"kid": self.directory.add_signing_key(current, published).kid, "current": current, "published": published}

    def sign(self, request: dict) -> tuple[int, dict]:
        try:
            token = self.issuer.sign(
                _required(request, "claims", dict), _field(request, "header", dict, None), _field(request, "kid", str, None)
            )
        except KeyError:
            raise AdminError(404, f"no signing key {request.get('kid')!r}") from None
        return 200, {"token": token}

    def claims(self, request: dict) -> tuple[int, dict]:
        client_id, resource = _required(request, "client_id", str), _required(request, "resource", str)
        caller, api = self.directory.principal(client_id), self.directory.application(resource)
        if caller is None or api is None:
            raise AdminError(404, f"no principal {client_id!r}" if caller is None else f"no API {resource!r}")
        credential = _field(request, "credential", str, SECRET)
        if credential not in CLIENT_AUTHENTICATION:
            raise AdminError(400, f"credential is one of {sorted(CLIENT_AUTHENTICATION)}")
        version = _field(request, "version", int, api.token_version)
        if version not in (1, 2):
            raise AdminError(400, "version is 1 or 2")
        return 200, {"claims": self.issuer.claims(caller, api, credential, version)}

    def federated_token(self, request: dict) -> tuple[int, dict]:
        token = cluster.service_account_token(
            self.directory.cluster_key,
            _field(request, "issuer", str, self.cluster_issuer),
            _required(request, "subject", str),
            _field(request, "audience", str, TOKEN_EXCHANGE_AUDIENCE),
            _field(request, "lifetime", int, 3600),
        )
        return 200, {"token": token, "kid": public_key_id(self.directory.cluster_key)}


def _field(request: dict, name: str, kind: type, default: Any) -> Any:
    """``request[name]`` if present and not null, else ``default``; ValueError if it is not a ``kind``."""
    value = request.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{name} must be a {kind.__name__}")
    return value


def _required(request: dict, name: str, kind: type) -> Any:
    value = _field(request, name, kind, None)
    if value is None:
        raise ValueError(f"{name} is required")
    return value
