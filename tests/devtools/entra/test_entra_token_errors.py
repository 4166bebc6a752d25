"""The token endpoint refuses what Entra refuses, with Entra's statuses, errors and AADSTS codes."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from devtools.entra.client import Api, LocalEntra, Principal

from .conftest import error_of, token_request

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def with_secret(caller: Principal, api: Api, **changes: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": caller.client_id,
        "client_secret": caller.secret or "",
        "scope": f"{api.identifier_uri}/.default",
        **changes,
    }


def with_assertion(caller: Principal, api: Api, assertion: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": caller.client_id,
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
        "scope": f"{api.identifier_uri}/.default",
    }


def test_the_error_body_is_entras(entra: LocalEntra, api: Api, caller: Principal) -> None:
    correlation_id = str(uuid.uuid4())
    response = token_request(entra, with_secret(caller, api, client_secret="wrong"), headers={"client-request-id": correlation_id})
    body = response.json()

    assert error_of(response) == (401, "invalid_client", 7000215)
    assert body["correlation_id"] == response.headers["client-request-id"] == correlation_id
    assert body["trace_id"] == response.headers["x-ms-request-id"]
    assert time.strptime(body["timestamp"], "%Y-%m-%d %H:%M:%SZ")
    assert caller.client_id in body["error_description"]


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"client_secret": "not-the-secret"}, (401, "invalid_client", 7000215)),
        ({"client_id": str(uuid.uuid4())}, (400, "unauthorized_client", 700016)),
        ({"scope": "api://not-registered/.default"}, (400, "invalid_resource", 500011)),
        ({"scope": "api://not-registered/user_impersonation"}, (400, "invalid_scope", 1002012)),
        ({"scope": "openid offline_access profile"}, (400, "invalid_scope", 1002012)),
        ({"scope": ""}, (400, "invalid_request", 90014)),
        ({"grant_type": "password"}, (400, "unsupported_grant_type", 70003)),
        ({"grant_type": ""}, (400, "invalid_request", 900144)),
        ({"client_secret": ""}, (401, "invalid_client", 7000218)),
    ],
)
def test_client_credentials_refusals(entra: LocalEntra, api: Api, caller: Principal, changes: dict, expected: tuple) -> None:
    assert error_of(token_request(entra, with_secret(caller, api, **changes))) == expected


def test_the_token_endpoint_takes_only_post(entra: LocalEntra) -> None:
    response = requests.get(f"{entra.authority}/{entra.tenant_id}/oauth2/v2.0/token", verify=entra.ca_bundle, timeout=10)
    assert error_of(response) == (400, "invalid_request", 900561)


def test_oidc_scopes_beside_a_resource_are_ignored_as_entra_ignores_them(entra: LocalEntra, api: Api, caller: Principal) -> None:
    scope = f"{api.identifier_uri}/.default openid offline_access profile"  # what MSAL for Go sends
    assert token_request(entra, with_secret(caller, api, scope=scope)).status_code == 200


def test_an_unknown_tenant_is_not_found(entra: LocalEntra, api: Api, caller: Principal) -> None:
    response = token_request(entra, with_secret(caller, api), tenant=str(uuid.uuid4()))
    assert error_of(response) == (400, "invalid_request", 90002)


def test_a_federated_assertion_gets_a_token(entra: LocalEntra, api: Api, caller: Principal) -> None:
    response = token_request(entra, with_assertion(caller, api, entra.federated_token(caller.federated_subject or "")))
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"
    assert response.json()["expires_in"] == response.json()["ext_expires_in"] == 3599


def test_federated_assertion_refusals(entra: LocalEntra, api: Api, caller: Principal) -> None:
    subject = caller.federated_subject or ""
    unpublished = entra.add_signing_key(current=False, published=False)
    now = int(time.time())
    foreign_issuer_claims = {
        "iss": "https://oidc.example.com/",
        "sub": subject,
        "aud": ["api://AzureADTokenExchange"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    cases = {
        "another subject": (entra.federated_token("system:serviceaccount:spire:someone-else"), (401, "invalid_client", 700213)),
        "another audience": (entra.federated_token(subject, audience="api://not-the-exchange"), (401, "invalid_client", 700212)),
        "expired": (entra.federated_token(subject, lifetime=-600), (401, "invalid_client", 700024)),
        "unknown key": (
            entra.sign({**foreign_issuer_claims, "iss": entra.federated_issuer}, kid=unpublished),
            (401, "invalid_client", 7000272),
        ),
        "untrusted issuer": (entra.sign(foreign_issuer_claims), (401, "invalid_client", 700211)),
        "not a JWT": ("not.a-jwt", (400, "invalid_request", 50027)),
    }
    for name, (assertion, expected) in cases.items():
        assert error_of(token_request(entra, with_assertion(caller, api, assertion))) == expected, name


def test_a_tampered_assertion_fails_its_signature(entra: LocalEntra, api: Api, caller: Principal) -> None:
    header, _, signature = entra.federated_token(caller.federated_subject or "").split(".")
    other_claims = entra.federated_token(caller.federated_subject or "", lifetime=7200).split(".")[1]
    response = token_request(entra, with_assertion(caller, api, f"{header}.{other_claims}.{signature}"))
    assert error_of(response) == (401, "invalid_client", 700027)
