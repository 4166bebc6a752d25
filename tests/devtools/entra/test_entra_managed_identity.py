"""The App Service managed-identity endpoint: its answers and its refusals, as App Service gives them."""

from __future__ import annotations

import time

import requests

from devtools.entra.client import Api, LocalEntra
from devtools.stack.services import Service

from .conftest import verify


def msi_get(service: Service, header: str | None = "", **params: str) -> requests.Response:
    """GET the endpoint with ``params`` after the usual ones; ``header`` "" sends the right secret, None none."""
    secret = service.details["msi_header"] if header == "" else header
    return requests.get(
        service.details["msi_endpoint"],
        params={"api-version": "2019-08-01", **params},
        headers={} if secret is None else {"X-IDENTITY-HEADER": secret},
        timeout=10,
    )


def app_service_error(response: requests.Response) -> int:
    body = response.json()
    assert set(body) == {"statusCode", "message", "correlationId"}
    assert body["statusCode"] == response.status_code
    return response.status_code


def test_a_user_assigned_identity_gets_a_token(entra_service: Service, entra: LocalEntra, api: Api) -> None:
    identity = entra.register_principal("user-assigned", secret=False, managed_identity=True)
    response = msi_get(entra_service, resource=api.identifier_uri, client_id=identity.client_id)
    body = response.json()

    assert response.status_code == 200
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert (body["resource"], body["token_type"], body["client_id"]) == (api.identifier_uri, "Bearer", identity.client_id)
    assert isinstance(body["expires_on"], str) and abs(int(body["expires_on"]) - (time.time() + 3599)) < 30
    claims = verify(entra, body["access_token"], audience=api.client_id, issuer=entra.issuer(2))
    assert claims["azp"] == identity.client_id and claims["oid"] == identity.object_id
    assert msi_get(entra_service, resource=api.identifier_uri, object_id=identity.object_id).status_code == 200


def test_without_a_client_id_the_system_assigned_identity_answers(entra_service: Service, entra: LocalEntra, api: Api) -> None:
    assert app_service_error(msi_get(entra_service, resource=api.identifier_uri)) == 400  # none registered yet
    response = requests.post(
        f"{entra.authority}/_local/principals",
        verify=entra.ca_bundle,
        timeout=10,
        json={"name": "function-app", "secret": False, "managed_identity": "system_assigned"},
    )
    system_assigned = response.json()

    body = msi_get(entra_service, resource=api.identifier_uri).json()
    assert body["client_id"] == system_assigned["client_id"]
    assert verify(entra, body["access_token"], audience=api.client_id, issuer=entra.issuer(2))["azpacr"] == "2"


def test_refusals(entra_service: Service, entra: LocalEntra, api: Api) -> None:
    identity = entra.register_principal("refused", secret=False, managed_identity=True)
    caller_only = entra.register_principal("not-a-managed-identity")
    good = {"resource": api.identifier_uri, "client_id": identity.client_id}

    assert app_service_error(msi_get(entra_service, header=None, **good)) == 401
    assert app_service_error(msi_get(entra_service, header="not-the-secret", **good)) == 401
    assert app_service_error(msi_get(entra_service, **{**good, "client_id": caller_only.client_id})) == 400
    assert app_service_error(msi_get(entra_service, **{**good, "resource": "api://not-registered"})) == 500
    assert app_service_error(msi_get(entra_service, **{**good, "resource": ""})) == 400
    assert app_service_error(msi_get(entra_service, **{**good, "api-version": "2017-09-01"})) == 400
    assert (
        requests.get(
            entra_service.details["msi_endpoint"].replace("/msi/token", "/other"),
            timeout=10,
            headers={"X-IDENTITY-HEADER": entra_service.details["msi_header"]},
        ).status_code
        == 404
    )
