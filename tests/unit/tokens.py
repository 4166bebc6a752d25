"""A tenant in-process for unit tests: its signing key, its JWKS, and tokens as Entra ID writes them.

Integration tests get their tokens from the local Entra ID stand-in; these are for pure unit tests
of the verification rules and of the handlers' gate.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from shared.caller_tokens import SigningKeys, TokenPolicy, TokenVerifier
from shared.callers import CallerGate, CallerPermissions

AUTHORITY = "https://login.microsoftonline.com"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
API_CLIENT_ID = "6e5b1c1a-2f4d-4a8e-9b1e-3c7d9f0a1b2c"
# The caller most unit tests act as, and the names it holds.
SERVER_CALLER = "0f6a4c3e-9d2b-4e1a-8c7f-5b3a2d1e0c9f"
MAINTAINER = "5c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"


def new_signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNING_KEY = new_signing_key()
KID = "unit-test-key-1"


def jwks(keys: Mapping[str, rsa.RSAPrivateKey] | None = None) -> dict[str, Any]:
    """The JWKS document publishing ``keys`` (kid -> key), by default the tenant's one key."""
    published = keys if keys is not None else {KID: SIGNING_KEY}
    return {"keys": [{**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "use": "sig"} for kid, key in published.items()]}


def policy(version: int = 2) -> TokenPolicy:
    return TokenPolicy.for_entra(AUTHORITY, TENANT_ID, API_CLIENT_ID, version)


@dataclass(frozen=True)
class SecondsFromNow:
    """A time claim relative to when the token is made, not to when the test was collected."""

    seconds: int

    def at(self, now: int) -> int:
        return now + self.seconds


def resolved(claims: Mapping[str, Any], now: int) -> dict[str, Any]:
    """``claims`` with every SecondsFromNow made a time, and None values left out."""
    return {name: value.at(now) if isinstance(value, SecondsFromNow) else value for name, value in claims.items() if value is not None}


def claims(object_id: str = SERVER_CALLER, version: int = 2, **overrides: Any) -> dict[str, Any]:
    """The claims of a valid app-only access token for the API, now; ``overrides`` change or (None) remove claims."""
    now = int(time.time())
    issued = {
        "aud": API_CLIENT_ID if version == 2 else f"api://{API_CLIENT_ID}",
        "iss": policy(version).issuer,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "azp": str(uuid.uuid5(uuid.NAMESPACE_URL, object_id)),
        "idtyp": "app",
        "oid": object_id,
        "sub": object_id,
        "tid": TENANT_ID,
        "ver": f"{version}.0",
    }
    issued.update(overrides)
    return resolved(issued, now)


def token(object_id: str = SERVER_CALLER, key: rsa.RSAPrivateKey = SIGNING_KEY, kid: str = KID, **overrides: Any) -> str:
    return jwt.encode(claims(object_id, **overrides), key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})


def bearer(object_id: str = SERVER_CALLER, **overrides: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(object_id, **overrides)}"}


def gate(identities: Mapping[str, Iterable[str]], maintainers: Iterable[str] = (MAINTAINER,)) -> CallerGate:
    """The app's gate over this tenant's keys (fetched from memory), with the given permissions."""
    permissions = CallerPermissions({oid: frozenset(names) for oid, names in identities.items()}, frozenset(maintainers))
    return CallerGate(TokenVerifier(policy(), SigningKeys(jwks)).verify, permissions)
