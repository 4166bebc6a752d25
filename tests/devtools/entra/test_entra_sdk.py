"""Unmodified azure-identity credentials get tokens from localentra, and the tokens verify as Entra's do."""

from __future__ import annotations

import time

import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential, WorkloadIdentityCredential

from devtools.entra.client import Api, LocalEntra, Principal
from devtools.stack.services import Service

from .conftest import V1_CLAIMS, V2_CLAIMS, verify, write_token_file


def secret_credential(entra: LocalEntra, principal: Principal, secret: str | None = None) -> ClientSecretCredential:
    return ClientSecretCredential(
        entra.tenant_id,
        principal.client_id,
        secret or principal.secret or "",
        authority=entra.authority,
        disable_instance_discovery=True,
        connection_verify=entra.ca_bundle,
    )


def test_client_secret_credential_gets_a_v2_token(
    entra: LocalEntra, api: Api, caller: Principal, sdk_environment: pytest.MonkeyPatch
) -> None:
    access = secret_credential(entra, caller).get_token(f"{api.identifier_uri}/.default")
    claims = verify(entra, access.token, audience=api.client_id, issuer=entra.issuer(2))

    assert set(claims) == V2_CLAIMS
    assert jwt.get_unverified_header(access.token).keys() == {"typ", "alg", "kid"}
    assert claims["azp"] == caller.client_id and claims["azpacr"] == "1"
    assert claims["oid"] == claims["sub"] == caller.object_id
    assert claims["tid"] == entra.tenant_id and claims["ver"] == "2.0" and claims["idtyp"] == "app"
    assert claims["idp"] == f"https://sts.windows.net/{entra.tenant_id}/"
    assert claims["iat"] == claims["nbf"] <= time.time() - 290  # backdated five minutes, as Entra does
    assert abs(claims["exp"] - (time.time() + 3599)) < 30
    assert abs(access.expires_on - claims["exp"]) < 30


def test_a_v1_api_gets_v1_tokens(entra: LocalEntra, api_v1: Api, caller: Principal, sdk_environment: pytest.MonkeyPatch) -> None:
    access = secret_credential(entra, caller).get_token(f"{api_v1.client_id}/.default")  # by client id this time
    claims = verify(entra, access.token, audience=api_v1.identifier_uri, issuer=entra.issuer(1))

    assert set(claims) == V1_CLAIMS
    header = jwt.get_unverified_header(access.token)
    assert header["x5t"] == header["kid"]
    assert claims["appid"] == caller.client_id and claims["appidacr"] == "1" and claims["ver"] == "1.0"
    assert claims["iss"] == f"https://sts.windows.net/{entra.tenant_id}/"


def test_managed_identity_credential_gets_a_token_by_client_id(
    entra_service: Service, entra: LocalEntra, api: Api, sdk_environment: pytest.MonkeyPatch
) -> None:
    identity = entra.register_principal("function-app", secret=False, managed_identity=True)
    sdk_environment.setenv("IDENTITY_ENDPOINT", entra_service.details["msi_endpoint"])  # as App Service injects them
    sdk_environment.setenv("IDENTITY_HEADER", entra_service.details["msi_header"])

    access = ManagedIdentityCredential(client_id=identity.client_id).get_token(f"{api.identifier_uri}/.default")
    claims = verify(entra, access.token, audience=api.client_id, issuer=entra.issuer(2))

    assert set(claims) == V2_CLAIMS
    assert claims["azp"] == identity.client_id and claims["azpacr"] == "2"
    assert claims["oid"] == identity.object_id


def test_workload_identity_credential_gets_a_token(
    entra: LocalEntra, api: Api, caller: Principal, tmp_path, sdk_environment: pytest.MonkeyPatch
) -> None:
    token_file = write_token_file(tmp_path, entra.federated_token(caller.federated_subject or ""))
    credential = WorkloadIdentityCredential(
        tenant_id=entra.tenant_id,
        client_id=caller.client_id,
        token_file_path=token_file,
        authority=entra.authority,
        disable_instance_discovery=True,
        connection_verify=entra.ca_bundle,
    )

    claims = verify(entra, credential.get_token(f"{api.identifier_uri}/.default").token, audience=api.client_id, issuer=entra.issuer(2))

    assert claims["azp"] == caller.client_id and claims["azpacr"] == "2"


def test_the_sdk_reports_entra_errors(entra: LocalEntra, api: Api, caller: Principal, sdk_environment: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        secret_credential(entra, caller, secret="not-the-secret").get_token(f"{api.identifier_uri}/.default")
    with pytest.raises(ClientAuthenticationError, match="AADSTS500011"):
        secret_credential(entra, caller).get_token("api://nothing-registered/.default")
