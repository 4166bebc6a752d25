"""A Kubernetes cluster's service-account token issuer, the federated issuer that workload identity trusts.

It publishes what an API server's OIDC issuer publishes (a discovery document and a JWKS) and mints
projected service-account tokens as the kubelet asks for them: RS256, ``kid`` the SHA-256 of the
public key, ``aud`` a list, ``sub`` ``system:serviceaccount:<namespace>:<name>``, and the
``kubernetes.io`` claim that names them.
"""

from __future__ import annotations

import re
import time
import uuid

from cryptography.hazmat.primitives.asymmetric import rsa

from .keys import public_key_id, rsa_jwk, sign_jwt

ISSUER_PATH = "/kubernetes"
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"
_SERVICE_ACCOUNT = re.compile(r"system:serviceaccount:([^:]+):([^:]+)")


def issuer_url(authority: str) -> str:
    return f"{authority}{ISSUER_PATH}"


def discovery_document(issuer: str) -> dict:
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}{JWKS_PATH}",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


def jwks(key: rsa.RSAPrivateKey) -> dict:
    return {"keys": [{"use": "sig", "kty": "RSA", "kid": public_key_id(key), "alg": "RS256", **rsa_jwk(key)}]}


def service_account_token(key: rsa.RSAPrivateKey, issuer: str, subject: str, audience: str, lifetime: int) -> str:
    """A token valid for ``lifetime`` seconds from now; a negative lifetime makes one that expired that long ago."""
    now = int(time.time())
    issued = now if lifetime > 0 else now + lifetime - 3600
    claims: dict = {"aud": [audience], "exp": now + lifetime, "iat": issued, "iss": issuer, "jti": str(uuid.uuid4())}
    service_account = _SERVICE_ACCOUNT.fullmatch(subject)
    if service_account:
        namespace, name = service_account.groups()
        claims["kubernetes.io"] = {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, issuer + subject))},
        }
    claims.update({"nbf": issued, "sub": subject})
    return sign_jwt({"alg": "RS256", "kid": public_key_id(key)}, claims, key)
