"""Signing keys as tests turn them (rotation, keys nobody publishes) and tokens crafted to be refused."""

from __future__ import annotations

import time

import jwt
import pytest
import requests

from devtools.entra.client import Api, LocalEntra, Principal

from .conftest import V1_CLAIMS, V2_CLAIMS, published_keys, verify


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def test_key_rotation(entra: LocalEntra, api: Api, caller: Principal) -> None:
    before = entra.token(caller, api)
    upcoming = entra.add_signing_key(current=False, published=True)
    hidden = entra.add_signing_key(current=False, published=False)
    published = {key.key_id for key in published_keys(entra).keys}
    assert upcoming in published and hidden not in published
    assert kid_of(entra.token(caller, api)) == kid_of(before)  # publishing a key does not start signing with it

    current = entra.add_signing_key()
    after = entra.token(caller, api)
    assert kid_of(after) == current
    assert published_keys(entra).keys[-1].key_id == current  # keys are listed oldest first
    verify(entra, before, audience=api.client_id, issuer=entra.issuer(2))  # older keys stay published


def test_claims_for_are_those_of_a_real_token(entra: LocalEntra, api: Api, api_v1: Api, caller: Principal) -> None:
    issued = verify(entra, entra.token(caller, api), audience=api.client_id, issuer=entra.issuer(2))
    crafted = entra.claims_for(caller, api)
    assert set(crafted) == set(issued) == V2_CLAIMS
    assert {k: v for k, v in crafted.items() if k not in ("aio", "uti", "iat", "nbf", "exp")} == {
        k: v for k, v in issued.items() if k not in ("aio", "uti", "iat", "nbf", "exp")
    }
    assert set(entra.claims_for(caller, api_v1, version=1)) == V1_CLAIMS


def test_signed_claims_verify_like_issued_tokens(entra: LocalEntra, api: Api, caller: Principal) -> None:
    claims = entra.claims_for(caller, api)
    token = entra.sign(claims)
    assert verify(entra, token, audience=api.client_id, issuer=entra.issuer(2)) == claims
    assert jwt.get_unverified_header(token) == {"typ": "JWT", "alg": "RS256", "kid": kid_of(entra.token(caller, api))}


def test_crafted_tokens_are_refused_for_what_they_are(entra: LocalEntra, api: Api, caller: Principal) -> None:
    claims = entra.claims_for(caller, api)
    now = int(time.time())
    unknown_key = entra.add_signing_key(current=False, published=False)
    refusals = {
        jwt.ExpiredSignatureError: entra.sign({**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        jwt.InvalidAudienceError: entra.sign({**claims, "aud": "00000000-0000-0000-0000-000000000001"}),
        jwt.InvalidIssuerError: entra.sign({**claims, "iss": "https://login.microsoftonline.com/other/v2.0"}),
        KeyError: entra.sign(claims, kid=unknown_key),  # not in the JWKS
    }
    for error, token in refusals.items():
        with pytest.raises(error):
            verify(entra, token, audience=api.client_id, issuer=entra.issuer(2))
    with_scope = entra.sign({**claims, "scp": "user_impersonation"})
    assert verify(entra, with_scope, audience=api.client_id, issuer=entra.issuer(2))["scp"] == "user_impersonation"


def test_sign_takes_header_fields_and_leaves_out_nulls(entra: LocalEntra, api: Api, caller: Principal) -> None:
    token = entra.sign(entra.claims_for(caller, api), header={"typ": None, "x-test": "1", "alg": "none"})
    assert jwt.get_unverified_header(token) == {"alg": "none", "kid": kid_of(entra.token(caller, api)), "x-test": "1"}


def test_the_administration_api_refuses_bad_requests(entra: LocalEntra) -> None:
    def post(name: str, body: object) -> int:
        return requests.post(f"{entra.authority}/_local/{name}", json=body, verify=entra.ca_bundle, timeout=10).status_code

    assert post("applications", {"token_version": 3}) == 400
    assert post("principals", {"secret": True}) == 400  # no name
    assert (
        post("principals", {"name": "x", "federated_credential": {"subject": "s", "issuer": "https://a.example"}}) == 400
    )  # only the stand-in's own cluster issuer can be trusted
    assert post("signing-keys", {"current": True, "published": False}) == 400
    assert post("sign", {"claims": {}, "kid": "no-such-key"}) == 404
    assert post("sign", ["not", "an", "object"]) == 400
    assert post("nothing-here", {}) == 404
