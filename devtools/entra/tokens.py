"""The access tokens Entra issues to applications, and the tokens localentra signs on request.

An app-only token has the claims of Entra's v1.0 or v2.0 format, whichever the API application
accepts (its accessTokenAcceptedVersion): v2.0 names the API by client id and the caller in
``azp``/``azpacr``, with the issuer on the authority's host; v1.0 names the API by identifier URI and
the caller in ``appid``/``appidacr``, with the sts.windows.net issuer. Entra dates ``iat`` and ``nbf``
five minutes back and answers ``expires_in`` 3599; tokens run on real time.
"""

from __future__ import annotations

import base64
import os
import time
import uuid

from .directory import Application, Directory, ServicePrincipal
from .keys import b64url, public_key_id, sign_jwt

TOKEN_LIFETIME = 3599
BACKDATE = 300
# How the caller proved itself, as azpacr/appidacr say it: "1" a secret, "2" an assertion or a managed identity.
SECRET, ASSERTION, MANAGED_IDENTITY = "secret", "assertion", "managed_identity"
CLIENT_AUTHENTICATION = {SECRET: "1", ASSERTION: "2", MANAGED_IDENTITY: "2"}


def v1_issuer(tenant_id: str) -> str:
    return f"https://sts.windows.net/{tenant_id}/"


def v2_issuer(authority: str, tenant_id: str) -> str:
    return f"{authority}/{tenant_id}/v2.0"


class TokenIssuer:
    """Claims and signatures for one tenant served at ``authority`` (https://host:port)."""

    def __init__(self, directory: Directory, authority: str) -> None:
        self.directory = directory
        self.authority = authority

    def claims(self, caller: ServicePrincipal, api: Application, credential: str, version: int | None = None) -> dict:
        """The claims of a token issued now; ``version`` overrides the API's own token version."""
        tenant_id = self.directory.tenant_id
        now = int(time.time())
        issued = now - BACKDATE
        v1 = (version or api.token_version) == 1
        authentication = CLIENT_AUTHENTICATION[credential]
        return {
            "aud": api.identifier_uri if v1 else api.client_id,
            "iss": v1_issuer(tenant_id) if v1 else v2_issuer(self.authority, tenant_id),
            "iat": issued,
            "nbf": issued,
            "exp": now + TOKEN_LIFETIME,
            "aio": base64.b64encode(os.urandom(33)).decode(),  # opaque to every reader, as Entra's is
            **({"appid": caller.client_id, "appidacr": authentication} if v1 else {"azp": caller.client_id, "azpacr": authentication}),
            "idp": v1_issuer(tenant_id),  # for an app, the tenant itself authenticated it
            "idtyp": "app",
            "oid": caller.object_id,
            "rh": _resource_hint(tenant_id, api.client_id),
            "sub": caller.object_id,
            "tid": tenant_id,
            "uti": b64url(os.urandom(16)),
            "ver": "1.0" if v1 else "2.0",
        }

    def issue(self, caller: ServicePrincipal, api: Application, credential: str) -> tuple[str, int]:
        """A signed access token and its expiry (epoch seconds)."""
        claims = self.claims(caller, api, credential)
        return self.sign(claims), claims["exp"]

    def sign(self, claims: dict, header: dict | None = None, kid: str | None = None) -> str:
        """Sign ``claims`` with the signing key ``kid`` (the current one by default) or the cluster's key.

        The header is the one the key's issuer would write (Entra's adds ``x5t`` to v1.0 tokens), with
        ``header`` merged in; a None value there leaves that field out. Raises KeyError for an unknown kid.
        """
        cluster_key = self.directory.cluster_key
        if kid == public_key_id(cluster_key):
            private_key, base = cluster_key, {"alg": "RS256", "kid": kid}
        else:
            key = self.directory.current_key() if kid is None else self.directory.signing_key(kid)
            if key is None:
                raise KeyError(kid)
            private_key = key.private_key
            base = {"typ": "JWT", "alg": "RS256", **({"x5t": key.kid} if claims.get("ver") == "1.0" else {}), "kid": key.kid}
        merged = {name: value for name, value in {**base, **(header or {})}.items() if value is not None}
        return sign_jwt(merged, claims, private_key)


def _resource_hint(tenant_id: str, resource_client_id: str) -> str:
    """``rh``: opaque, Entra's internal pointer to the tenant and resource, in its outward shape."""
    packed = b"\x01\x00\x00" + uuid.UUID(tenant_id).bytes_le + uuid.UUID(resource_client_id).bytes_le + b"\x00\x00\x00"
    return f"1.{b64url(packed)}."
