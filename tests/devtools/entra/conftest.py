"""Fixtures that run localentra as a real process, and the checks every token must pass.

Tokens are verified here with PyJWT against the published JWKS, never with localentra's own code,
as the app verifies Entra's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from devtools.entra.client import Api, LocalEntra, Principal
from devtools.stack.services import Service, start_entra

# Claims every app-only token carries, in each format.
V2_CLAIMS = {"aud", "iss", "iat", "nbf", "exp", "aio", "azp", "azpacr", "idp", "idtyp", "oid", "rh", "sub", "tid", "uti", "ver"}
V1_CLAIMS = V2_CLAIMS - {"azp", "azpacr"} | {"appid", "appidacr"}
SDK_ENVIRONMENT = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)


@pytest.fixture(scope="session")
def entra_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """localentra on free ports; a start that fails raises StackError, so the tests fail rather than skip."""
    service = start_entra(0, 0, tmp_path_factory.mktemp("localentra"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def entra(entra_service: Service) -> LocalEntra:
    return LocalEntra(entra_service)


@pytest.fixture(scope="session")
def api(entra: LocalEntra) -> Api:
    return entra.register_api()


@pytest.fixture(scope="session")
def api_v1(entra: LocalEntra) -> Api:
    return entra.register_api(token_version=1)


@pytest.fixture(scope="session")
def caller(entra: LocalEntra) -> Principal:
    return entra.register_principal("spire-server", federated_subject="system:serviceaccount:spire:spire-server")


@pytest.fixture
def sdk_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No Azure identity settings from the machine, and no proxy between the SDK and 127.0.0.1."""
    for name in SDK_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    return monkeypatch


def published_keys(entra: LocalEntra) -> jwt.PyJWKSet:
    response = requests.get(entra.jwks_uri, verify=entra.ca_bundle, timeout=10)
    response.raise_for_status()
    return jwt.PyJWKSet.from_dict(response.json())


def verify(entra: LocalEntra, token: str, audience: str, issuer: str) -> dict:
    """The token's claims, if its signature, issuer, audience and lifetime hold; raises otherwise."""
    key = published_keys(entra)[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(
        token, key, algorithms=["RS256"], audience=audience, issuer=issuer, options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]}
    )


def error_of(response: requests.Response) -> tuple[int, str, int]:
    """An Entra error's status, ``error`` and AADSTS code, after checking the body has Entra's shape."""
    body = response.json()
    code = body["error_codes"][0]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert (
        f"Trace ID: {body['trace_id']} Correlation ID: {body['correlation_id']} Timestamp: {body['timestamp']}" in body["error_description"]
    )
    assert set(body) >= {"error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id"}
    return response.status_code, body["error"], code


def token_request(
    entra: LocalEntra, form: dict[str, str], tenant: str | None = None, headers: dict[str, str] | None = None
) -> requests.Response:
    return requests.post(
        f"{entra.authority}/{tenant or entra.tenant_id}/oauth2/v2.0/token", data=form, headers=headers, verify=entra.ca_bundle, timeout=10
    )


def write_token_file(directory: Path, token: str) -> str:
    path = directory / "token"
    path.write_text(token)
    return str(path)
