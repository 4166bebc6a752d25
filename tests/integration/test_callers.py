"""Callers proven by Entra ID, with tokens from the local Entra ID stand-in: every bad token is refused,
and a refused call sends no request to Key Vault or Blob storage.

Tokens are real: signed by the stand-in's keys, or crafted with its administration API exactly as a
forger could (another key, another audience, a header pointing elsewhere).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import azure.functions as func
import pytest
import requests
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import RSAAlgorithm

from devtools.entra.client import LocalEntra
from devtools.stack.callers import caller_settings
from devtools.stack.services import start_entra
from functions import keys, maintenance
from shared import app_context
from shared.caller_tokens import (
    JWKS_DEADLINE_SECONDS,
    LEEWAY_SECONDS,
    MAX_AUTHORIZATION_BYTES,
    SigningKeys,
    TokenPolicy,
    TokenVerifier,
    jwks_fetcher,
)
from shared.callers import CallerGate
from shared.settings import load_caller_settings
from tests.integration.conftest import App
from tests.unit.tokens import SecondsFromNow, resolved


def key_call(app: App, authorization: str | None, server: str | None = None, trust_domain: str | None = None) -> func.HttpResponse:
    """GET /api/keys with exactly these headers, on the app as the host hands it a request."""
    app_context.install_servers(app.servers)
    headers = {name: value for name, value in (("Authorization", authorization), ("X-SPIRE-Server-Name", server),
                                                 ("X-SPIRE-Trust-Domain", trust_domain)) if value is not None}
    return keys.get_public_keys(func.HttpRequest("GET", "http://localhost/api/keys", body=b"", headers=headers))


def refused(app: App, authorization: str | None, status: int = 401, **headers) -> dict:
    """The call is refused with ``status``, its challenge and error, and nothing reached Key Vault or Blob storage."""
    response = key_call(app, authorization, **headers)
    body = json.loads(response.get_body())
    assert response.status_code == status, body
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert app.traffic.sent == [], "a refused call sent requests to Key Vault or Blob storage"
    return body["error"]


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def claims(callers) -> dict:
    """The claims of a valid token of the tests' SPIRE server identity, as the stand-in issues them now."""
    return callers.entra.claims_for(callers.server, callers.api)


def test_a_valid_token_is_served(app, callers):
    response = key_call(app, callers.headers()["Authorization"])
    assert response.status_code == 200


def test_no_header_is_401_with_a_bare_challenge(app):
    error = refused(app, None)
    assert error["code"] == "Unauthenticated"
    assert key_call(app, None).headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("authorization", ["Bearer not-a-jwt", "Bearer a.b.c", "Basic dXNlcjpwYXNz", "Bearer "])
def test_what_is_not_a_bearer_jwt_is_401(app, authorization):
    assert refused(app, authorization)["code"] == "Unauthenticated"


def test_alg_none_is_401(app, claims):
    assert "RS256" in refused(app, f"Bearer {b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}.")["message"]


def test_hs256_keyed_with_the_published_public_key_is_401(app, callers, claims):
    jwks = requests.get(callers.entra.jwks_uri, verify=callers.entra.ca_bundle, timeout=10).json()
    public_pem = RSAAlgorithm.from_jwk(jwks["keys"][0]).public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": jwks["keys"][0]["kid"]}
    signing_input = f"{b64url(header)}.{b64url(claims)}".encode()
    signature = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest()).rstrip(b"=").decode()
    assert "RS256" in refused(app, f"Bearer {signing_input.decode()}.{signature}")["message"]


def test_a_token_signed_by_an_unpublished_key_is_401(app, callers, claims):
    kid = callers.entra.add_signing_key(current=False, published=False)
    assert "does not publish" in refused(app, f"Bearer {callers.entra.sign(claims, kid=kid)}")["message"]


def test_a_jku_pointing_elsewhere_is_not_followed(app, callers, claims):
    kid = callers.entra.add_signing_key(current=False, published=False)
    token = callers.entra.sign(claims, header={"jku": "https://attacker.example/keys", "x5u": "https://attacker.example/cert"}, kid=kid)
    assert "does not publish" in refused(app, f"Bearer {token}")["message"]


@pytest.mark.parametrize("change, message", [
    ({"aud": "00000000-0000-4000-8000-000000000000"}, "another audience"),
    ({"iss": "https://login.microsoftonline.com/00000000-0000-4000-8000-000000000000/v2.0"}, "another issuer"),
    ({"tid": "00000000-0000-4000-8000-000000000000"}, "another tenant"),
    ({"exp": SecondsFromNow(-LEEWAY_SECONDS - 30)}, "expired"),
    ({"nbf": SecondsFromNow(LEEWAY_SECONDS + 300)}, "not valid yet"),
    ({"scp": "user_impersonation"}, "user's (delegated) token"),
    ({"oid": None}, "no oid claim"),
])
def test_a_token_with_a_wrong_claim_is_401(app, callers, claims, change, message):
    token = callers.entra.sign(resolved({**claims, **change}, int(time.time())))
    error = refused(app, f"Bearer {token}")
    assert message in error["message"] and token not in error["message"]


def test_a_v1_token_where_v2_is_configured_is_401(app, callers):
    v1_api = callers.entra.register_api(token_version=1)
    v1_claims = callers.entra.claims_for(callers.server, v1_api, version=1)
    token = callers.entra.sign({**v1_claims, "aud": callers.api.client_id})  # even with the v2 audience
    assert "another issuer" in refused(app, f"Bearer {token}")["message"]


def test_a_real_token_for_another_api_is_401(app, callers):
    other_api = callers.entra.register_api()
    assert "another audience" in refused(app, f"Bearer {callers.entra.token(callers.server, other_api)}")["message"]


def test_a_header_over_16_kib_is_401(app):
    assert "longer than" in refused(app, "Bearer " + "a" * MAX_AUTHORIZATION_BYTES)["message"]


def test_a_valid_token_of_an_identity_not_on_the_list_is_403_naming_it(app, callers):
    stranger = callers.entra.register_principal("not-on-the-list")
    error = refused(app, f"Bearer {callers.entra.token(stranger, callers.api)}", status=403)
    assert error["code"] == "PermissionDenied" and stranger.object_id in error["message"]


def test_a_valid_token_naming_another_server_is_403(app, callers, app_env, monkeypatch):
    other = callers.entra.register_principal("spire-c-identity")
    identities = {callers.server.object_id: ["spire-a"], other.object_id: ["spire-c"]}
    monkeypatch.setenv("SPIRE_SERVER_IDENTITIES", json.dumps(identities))
    monkeypatch.setattr(app_context, "_callers", app_context.build_caller_gate(load_caller_settings(os.environ)))
    error = refused(app, callers.headers()["Authorization"], status=403, server="spire-c")
    assert callers.server.object_id in error["message"] and '"spire-c"' in error["message"]


def test_maintenance_by_a_spire_server_identity_is_403(app, callers):
    app_context.install_servers(app.servers)
    request = func.HttpRequest("POST", "http://localhost/api/maintenance/sweep?dry_run=false", body=b"", headers=callers.headers())
    response = maintenance.sweep_stale_keys_now(request)
    assert response.status_code == 403 and app.traffic.sent == []


# ---- the signing keys: fetched rarely, kept when Entra ID cannot be reached --------------------------------------


class CountingFetch:
    def __init__(self, fetch) -> None:
        self._fetch = fetch
        self.count = 0

    def __call__(self):
        self.count += 1
        return self._fetch()


def gate_over(entra: LocalEntra, api_client_id: str, permissions) -> tuple[CallerGate, CountingFetch]:
    policy = TokenPolicy.for_entra(entra.authority, entra.tenant_id, api_client_id, 2)
    fetch = CountingFetch(jwks_fetcher(policy.jwks_uri, entra.ca_bundle))
    return CallerGate(TokenVerifier(policy, SigningKeys(fetch)).verify, permissions), fetch


def test_a_burst_of_unknown_kids_fetches_the_keys_once_and_holds_no_valid_call(app, callers, claims, monkeypatch):
    gate, fetch = gate_over(callers.entra, callers.api.client_id, load_caller_settings(os.environ).permissions)
    monkeypatch.setattr(app_context, "_callers", gate)
    valid = callers.headers()["Authorization"]
    assert key_call(app, valid).status_code == 200 and fetch.count == 1
    unknown = [f"Bearer {callers.entra.sign(claims, kid=callers.entra.add_signing_key(current=False, published=False))}"
               for _ in range(3)]
    answers: list[int] = []
    threads = [threading.Thread(target=lambda token=token: answers.append(key_call(app, token).status_code)) for token in unknown * 10]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    valid_statuses = [key_call(app, valid).status_code for _ in range(20)]
    valid_seconds = time.monotonic() - started
    for thread in threads:
        thread.join()
    # Looked up once: refused when that lookup shows the key absent, else "retry"; never served.
    assert set(answers) <= {401, 503} and 401 in answers and valid_statuses == [200] * 20
    assert fetch.count == 2  # the first fetch, and one for all the unknown kids
    assert valid_seconds < 10


def test_entra_down_warm_calls_go_on_and_a_cold_instance_is_503(app, callers, tmp_path, monkeypatch):
    own_entra_service = start_entra(0, 0, tmp_path / "entra")
    try:
        entra = LocalEntra(own_entra_service)
        api = entra.register_api()
        server = entra.register_principal("spire-server")
        permissions = load_caller_settings(caller_settings(entra, api, {server.object_id: [""]})).permissions
        token = f"Bearer {entra.token(server, api)}"
        warm, _ = gate_over(entra, api.client_id, permissions)
        monkeypatch.setattr(app_context, "_callers", warm)
        assert key_call(app, token).status_code == 200
    finally:
        own_entra_service.stop()
    assert key_call(app, token).status_code == 200  # the warm instance verifies on its last keys
    cold, _ = gate_over(entra, api.client_id, permissions)
    monkeypatch.setattr(app_context, "_callers", cold)
    sent_before = len(app.traffic.sent)
    response = key_call(app, token)
    assert response.status_code == 503 and json.loads(response.get_body())["error"]["code"] == "Unavailable"
    assert len(app.traffic.sent) == sent_before  # nothing was read for a caller who could not be verified


class _JwksEndpoint(BaseHTTPRequestHandler):
    """A JWKS endpoint that misbehaves as the test asks: drips its answer, or redirects."""

    behaviour = "drip"

    def do_GET(self) -> None:
        if self.behaviour == "redirect":
            self.send_response(302)
            self.send_header("Location", "https://attacker.example/keys")
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b'{"keys":[]}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            for _ in range(60):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass  # the client gave up, as it should

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def misbehaving_jwks():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JwksEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/keys"
    server.shutdown()
    server.server_close()


def test_a_jwks_endpoint_that_drips_is_given_up_at_the_deadline(misbehaving_jwks):
    _JwksEndpoint.behaviour = "drip"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        jwks_fetcher(misbehaving_jwks)()
    assert time.monotonic() - started < JWKS_DEADLINE_SECONDS + 2


def test_a_jwks_redirect_is_not_followed_nor_its_body_read(misbehaving_jwks):
    _JwksEndpoint.behaviour = "redirect"
    with pytest.raises(ValueError, match="answered 302"):
        jwks_fetcher(misbehaving_jwks)()
