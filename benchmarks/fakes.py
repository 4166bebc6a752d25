"""An in-process Key Vault (and token endpoint) at the transport: canned answers, no network.

It returns the same response types as azure-core's RequestsTransport (a ``requests.Response``
wrapped as the SDK expects), so everything above the transport runs as it does in production.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.pipeline._tools import is_rest
from azure.core.pipeline.transport import HttpTransport, RequestsTransportResponse
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.common import environ
from shared import app_context
from shared.naming import KeyNaming
from shared.settings import load_settings
from tests.unit import tokens

VAULT_URL = "https://bench.vault.azure.net/"
IDENTITY_ENDPOINT = "http://identity.bench.invalid/msi/token"
TRUST_DOMAIN = "bench.example.org"
SERVER_ID = "bench-server"
KEY_ID = "bench-key"
KEY_NAME = KeyNaming(TRUST_DOMAIN, SERVER_ID).key_name(KEY_ID)
KEY_VERSION = "0123456789abcdef0123456789abcdef"
CHALLENGE = 'Bearer authorization="https://login.microsoftonline.com/tenant", resource="https://vault.azure.net"'
FAR_FUTURE = 4_000_000_000  # 2096: no token refresh while the bench runs

# The app settings of an instance served by FakeKeyVaultTransport: its managed-identity path, a fixed server id.
SETTINGS = {
    "TRUST_DOMAIN": TRUST_DOMAIN,
    "KEY_VAULT_URI": VAULT_URL,
    "KEY_IDENTIFIER_VALUE": SERVER_ID,
    "USE_MSI": "true",
    "IDENTITY_ENDPOINT": IDENTITY_ENDPOINT,
    "IDENTITY_HEADER": "bench",
}


def sign_body(fingerprint: str) -> dict[str, str]:
    """The sign_data request a SPIRE server sends: a SHA-256 digest, ES256, the key's fingerprint."""
    digest = base64.b64encode(hashlib.sha256(b"bench").digest()).decode()
    return {"data": digest, "hash_algorithm": "SHA256", "key_fingerprint": fingerprint}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class FakeKeyVaultTransport(HttpTransport):
    """Answers Key Vault's keys API for one EC P-256 key, after ``delay`` seconds (0: at once)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests = 0
        numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
        self._jwk = {"kty": "EC", "crv": "P-256", "key_ops": ["sign", "verify"],
                     "x": _b64url(numbers.x.to_bytes(32, "big")), "y": _b64url(numbers.y.to_bytes(32, "big"))}
        # r||s, both non-zero: any 64 bytes the DER conversion accepts will do.
        self._signature = _b64url(bytes(range(1, 65)))
        self._bodies: dict[tuple[str, str], bytes] = {}

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __exit__(self, *args: Any) -> None:
        pass

    def send(self, request, **kwargs: Any):
        self.requests += 1
        if self.delay:
            time.sleep(self.delay)
        url = urlsplit(request.url)
        parts = url.path.strip("/").split("/")  # keys/<name>[/<version>[/sign]] or keys/<name>/create
        status, kind, headers = self._route(request.method, url.hostname, parts, request.headers)
        key = (kind, parts[1] if len(parts) > 1 else "")
        if key not in self._bodies:  # canned bodies, encoded once: the transport should cost next to nothing
            self._bodies[key] = json.dumps(self._body(*key)).encode()
        response = requests.Response()
        response.status_code, response.reason, response.url = status, "OK" if status < 400 else "Error", request.url
        response.headers.update({"Content-Type": "application/json; charset=utf-8", **headers})
        response._content, response._content_consumed = self._bodies[key], True
        if is_rest(request):
            wrapped = RestRequestsTransportResponse(request=request, internal_response=response)
            wrapped.read()
            return wrapped
        return RequestsTransportResponse(request, response)

    @staticmethod
    def _route(method: str, host: str | None, parts: list[str], headers) -> tuple[int, str, dict[str, str]]:
        if host == urlsplit(IDENTITY_ENDPOINT).hostname:
            return 200, "token", {}
        if "Authorization" not in headers:
            return 401, "error", {"WWW-Authenticate": CHALLENGE}
        if method == "POST" and parts[-1] == "sign":
            return 200, "signature", {}
        if parts[0] == "keys" and (method == "GET" and len(parts) in (2, 3) or method == "POST" and parts[-1] == "create"):
            return 200, "key", {}
        return 404, "error", {}

    def _body(self, kind: str, name: str) -> Any:
        kid = f"{VAULT_URL}keys/{name}/{KEY_VERSION}"
        return {
            "token": {"access_token": "bench-token", "expires_on": str(FAR_FUTURE), "token_type": "Bearer"},
            "signature": {"kid": kid, "value": self._signature},
            "key": {
                "key": {**self._jwk, "kid": kid},
                "attributes": {"enabled": True, "created": 1_700_000_000, "updated": 1_700_000_000},
                "tags": {"spire-server-td": TRUST_DOMAIN, "spire-server-id": SERVER_ID},
            },
            "error": {"error": {"code": "BenchError", "message": "not served by the fake vault"}},
        }[kind]


class StaticCredential:
    """A credential whose token never expires: the bare client's, so it pays no token requests."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("bench-token", FAR_FUTURE)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo("bench-token", FAR_FUTURE)


def install_fake_servers(transport: FakeKeyVaultTransport) -> None:
    """The app's own wiring (build_servers) on the fake transport, SETTINGS being the app settings, serving the app.

    Warmed by one get_public_key (challenge, token, key read) while SETTINGS are in os.environ, where
    azure-identity looks for the token endpoint; the token never expires, so it is not asked again.
    """
    with environ(SETTINGS):
        servers = app_context.build_servers(load_settings(os.environ), transport=transport)
        servers.default_manager.get_public_key(KEY_ID)
    app_context.install_servers(servers)


def install_caller_gate() -> dict[str, str]:
    """The app's caller gate over an in-process tenant; the headers of a caller acting as the default server.

    The gate remembers a verified token, as in the app, so warm calls pay a hash, not an RS256 verify.
    """
    app_context._callers = tokens.gate({tokens.SERVER_CALLER: [""]})
    return tokens.bearer()
