"""The token endpoint, ManagedIdentityCredential against it, and the vault's bearer challenge."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
import requests
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient

from .conftest import Running, start_localvault, stop_localvault

CHALLENGE = (
    'Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net"'
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


def test_managed_identity_credential_token_opens_the_vault(localvault: Running, credential: ManagedIdentityCredential) -> None:
    token = credential.get_token("https://vault.azure.net/.default")
    assert token.expires_on > time.time() + 3000
    response = requests.get(
        f"{localvault.vault_url}/keys",
        headers={"Authorization": f"Bearer {token.token}"},
        verify=localvault.ca,
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


def test_answers_say_how_long_the_vault_took(localvault: Running, auth: dict[str, str]) -> None:
    for response in (
        requests.get(f"{localvault.vault_url}/ping", verify=localvault.ca, timeout=5),
        requests.get(f"{localvault.vault_url}/keys", headers=auth, verify=localvault.ca, timeout=5),
        requests.get(f"{localvault.vault_url}/keys", verify=localvault.ca, timeout=5),
    ):  # a 401 too
        name, _, duration = response.headers["Server-Timing"].partition(";dur=")
        assert name == "vault" and float(duration) >= 0


def test_challenge_resource_can_be_a_parent_domain_of_the_vaults_address(
    localvault: Running, credential: ManagedIdentityCredential, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its resource set so, the vault passes the SDKs' challenge check (the Go SDK's cannot be turned off)."""
    vault = start_localvault(localvault.cert_dir, tmp_path / "stderr.log", "--challenge-resource", "https://0.0.1:{port}")
    try:
        port = urlsplit(vault.vault_url).port
        response = requests.get(f"{vault.vault_url}/keys", verify=vault.ca, timeout=5)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == CHALLENGE.replace("https://vault.azure.net", f"https://0.0.1:{port}")
        monkeypatch.setenv("IDENTITY_ENDPOINT", vault.token_url)  # its own tokens
        checked = KeyClient(f"https://127.0.0.1:{port}", ManagedIdentityCredential(), connection_verify=vault.ca)
        with checked:
            assert checked.create_ec_key("checked-challenge").name == "checked-challenge"
    finally:
        stop_localvault(vault)


def test_default_challenge_fails_the_sdks_resource_check(localvault: Running, credential: ManagedIdentityCredential) -> None:
    port = urlsplit(localvault.vault_url).port
    with KeyClient(f"https://127.0.0.1:{port}", credential, connection_verify=localvault.ca) as checked:
        with pytest.raises(ValueError, match="challenge"):
            checked.create_ec_key("unchecked-challenge")
