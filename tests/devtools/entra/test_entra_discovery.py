"""Discovery documents and key sets, as Entra and a Kubernetes issuer publish them."""

from __future__ import annotations

import base64

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from devtools.entra.client import LocalEntra

from .conftest import error_of


def get(entra: LocalEntra, path: str, **params: str) -> requests.Response:
    return requests.get(f"{entra.authority}{path}", params=params, verify=entra.ca_bundle, timeout=10)


def test_v2_openid_configuration(entra: LocalEntra) -> None:
    tenant_base = f"{entra.authority}/{entra.tenant_id}"
    config = get(entra, f"/{entra.tenant_id}/v2.0/.well-known/openid-configuration").json()

    assert config["issuer"] == entra.issuer(2) == f"{tenant_base}/v2.0"
    assert config["token_endpoint"] == f"{tenant_base}/oauth2/v2.0/token"
    assert config["jwks_uri"] == entra.jwks_uri == f"{tenant_base}/discovery/v2.0/keys"
    assert config["authorization_endpoint"] == f"{tenant_base}/oauth2/v2.0/authorize"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert config["cloud_instance_name"] == "microsoftonline.com"


def test_v1_openid_configuration_names_the_sts_issuer(entra: LocalEntra) -> None:
    config = get(entra, f"/{entra.tenant_id}/.well-known/openid-configuration").json()

    assert config["issuer"] == entra.issuer(1) == f"https://sts.windows.net/{entra.tenant_id}/"
    assert config["token_endpoint"] == f"{entra.authority}/{entra.tenant_id}/oauth2/token"
    assert config["jwks_uri"] == f"{entra.authority}/{entra.tenant_id}/discovery/keys"


def test_keys_are_published_with_their_certificates(entra: LocalEntra) -> None:
    for path, issuer in ((f"/{entra.tenant_id}/discovery/v2.0/keys", entra.issuer(2)), (f"/{entra.tenant_id}/discovery/keys", None)):
        keys = get(entra, path).json()["keys"]
        assert len(keys) >= 2  # Entra publishes more keys than the one it signs with
        assert keys[0]["kid"] != jwt.get_unverified_header(entra.sign({}))["kid"]  # the first is not it
        for key in keys:
            certificate = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
            thumbprint = base64.urlsafe_b64encode(certificate.fingerprint(hashes.SHA1())).rstrip(b"=").decode()
            assert key["kid"] == key["x5t"] == thumbprint
            assert (key["kty"], key["use"], key.get("issuer")) == ("RSA", "sig", issuer)
            assert jwt.PyJWK(key).key.public_numbers() == certificate.public_key().public_numbers()


def test_an_unknown_tenant_is_not_found(entra: LocalEntra) -> None:
    for path in (
        "/00000000-0000-0000-0000-000000000001/v2.0/.well-known/openid-configuration",
        "/contoso.onmicrosoft.com/discovery/v2.0/keys",
    ):
        assert error_of(get(entra, path)) == (400, "invalid_tenant", 90002)


def test_instance_discovery_knows_only_this_host(entra: LocalEntra) -> None:
    host = entra.authority.removeprefix("https://")
    here = get(
        entra,
        "/common/discovery/instance",
        **{"api-version": "1.1", "authorization_endpoint": f"{entra.authority}/{entra.tenant_id}/oauth2/v2.0/authorize"},
    )
    elsewhere = get(
        entra,
        "/common/discovery/instance",
        **{"api-version": "1.1", "authorization_endpoint": "https://login.example.com/common/oauth2/v2.0/authorize"},
    )

    assert here.json()["tenant_discovery_endpoint"] == f"{entra.authority}/{entra.tenant_id}/v2.0/.well-known/openid-configuration"
    assert here.json()["metadata"] == [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}]
    assert error_of(elsewhere) == (400, "invalid_instance", 50049)


def test_the_cluster_issuer_publishes_what_signs_its_tokens(entra: LocalEntra) -> None:
    issuer = entra.federated_issuer
    config = requests.get(f"{issuer}/.well-known/openid-configuration", verify=entra.ca_bundle, timeout=10).json()
    keys = jwt.PyJWKSet.from_dict(requests.get(config["jwks_uri"], verify=entra.ca_bundle, timeout=10).json())
    token = entra.federated_token("system:serviceaccount:spire:spire-server")

    claims = jwt.decode(
        token, keys[jwt.get_unverified_header(token)["kid"]], algorithms=["RS256"], audience="api://AzureADTokenExchange", issuer=issuer
    )
    assert config["issuer"] == issuer
    assert claims["aud"] == ["api://AzureADTokenExchange"]
    assert claims["sub"] == "system:serviceaccount:spire:spire-server"
    assert claims["kubernetes.io"]["namespace"] == "spire"
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "spire-server"
