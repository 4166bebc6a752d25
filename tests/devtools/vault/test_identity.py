"""The token endpoint, ManagedIdentityCredential against it, and the vault's bearer challenge."""

from __future__ import annotations

import time

import requests
from azure.identity import ManagedIdentityCredential

from .conftest import Running

CHALLENGE = (
    'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", '
    'resource="https://vault.azure.net"'
)


def test_token_endpoint_answers_app_service_and_imds_styles(localvault: Running) -> None:
    for headers in ({"X-IDENTITY-HEADER": "anything"}, {"Metadata": "true"}):
        response = requests.get(
            localvault.token_url,
            params={"resource": "https://vault.azure.net", "api-version": "2019-08-01"},
            headers=headers,
            timeout=5,
        )
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["resource"] == "https://vault.azure.net"
        assert body["expires_in"] == "3600"
        assert abs(int(body["expires_on"]) - (time.time() + 3600)) < 60
        assert len(body["access_token"]) >= 32


def test_token_endpoint_requires_resource(localvault: Running) -> None:
    assert requests.get(localvault.token_url, headers={"Metadata": "true"}, timeout=5).status_code == 400


def test_managed_identity_credential_token_opens_the_vault(
    localvault: Running, credential: ManagedIdentityCredential
) -> None:
    token = credential.get_token("https://vault.azure.net/.default")
    assert token.expires_on > time.time() + 3000
    response = requests.get(
        f"{localvault.vault_url}/keys", headers={"Authorization": f"Bearer {token.token}"}, verify=localvault.ca,
        timeout=5,
    )
    assert response.status_code == 200


def test_vault_challenges_requests_without_a_valid_token(localvault: Running) -> None:
    for headers in ({}, {"Authorization": "Bearer not-issued-here"}, {"Authorization": "Basic abc"}):
        for path in ("/keys", "/keys/some-key", "/deletedkeys"):
            response = requests.get(f"{localvault.vault_url}{path}", headers=headers, verify=localvault.ca, timeout=5)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == CHALLENGE
            assert response.json()["error"]["code"] == "Unauthorized"


def test_ping_needs_no_token(localvault: Running) -> None:
    response = requests.get(f"{localvault.vault_url}/ping", verify=localvault.ca, timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
