"""X-SPIRE-Server-Name and X-SPIRE-Trust-Domain on the key functions, over the app's own SpireServers."""

import base64
import json
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest

from functions import keys, maintenance
from shared import app_context
from shared.app_context import SpireServers
from shared.errors import Unavailable
from shared.server_ids import FixedServerDirectory, derived_server_id
from tests.unit import tokens
from tests.unit.fakes import InMemoryVault
from tests.unit.tokens import bearer

TRUST_DOMAIN = "example.org"
VALUE = "app-server"


@pytest.fixture
def vault():
    fake = InMemoryVault()
    app_context.install_servers(SpireServers(TRUST_DOMAIN, FixedServerDirectory(VALUE), fake))
    return fake


def call(handler, body=None, method="POST", headers=None, **route_params):
    data = json.dumps(body).encode() if body is not None else b""
    request = func.HttpRequest(
        method, "http://localhost/api/keys", body=data, headers={**bearer(), **(headers or {})}, route_params=route_params
    )
    response = handler(request)
    return response.status_code, json.loads(response.get_body() or b"null")


def named(name: str) -> dict[str, str]:
    return {"X-SPIRE-Server-Name": name}


def generate(key_id: str, headers=None):
    return call(keys.generate_key, {"key_id": key_id, "key_type": "ec-p256"}, headers=headers)


def test_each_server_name_has_keys_of_its_own(vault):
    assert generate("x509-CA-A", named("a"))[0] == 200
    assert generate("x509-CA-A", named("b"))[0] == 200
    assert generate("x509-CA-A")[0] == 200
    owners = {version.tags["spire-server-id"] for versions in vault.keys.values() for version in versions}
    assert owners == {VALUE, derived_server_id(VALUE, "a"), derived_server_id(VALUE, "b")}
    listed = {name: call(keys.get_public_keys, method="GET", headers=named(name))[1]["public_keys"] for name in ("a", "b")}
    assert [k["id"] for k in listed["a"]] == [k["id"] for k in listed["b"]] == ["x509-CA-A"]
    assert listed["a"][0]["fingerprint"] != listed["b"][0]["fingerprint"]


def test_a_key_of_one_server_is_not_found_by_another(vault):
    generate("only-a", named("a"))
    assert call(keys.get_public_key, method="GET", headers=named("b"), key_id="only-a")[0] == 404
    body = {"data": base64.b64encode(b"\0" * 32).decode(), "hash_algorithm": "SHA256"}
    assert call(keys.sign_data, body, headers=named("b"), key_id="only-a")[0] == 404
    assert call(keys.sign_data, body, headers=named("a"), key_id="only-a")[0] == 200


def test_derived_ids_depend_on_both_the_value_and_the_name():
    assert derived_server_id("v", "a") == derived_server_id("v", "a")
    assert len({derived_server_id("v", "a"), derived_server_id("v", "b"), derived_server_id("w", "a")}) == 3


@pytest.mark.parametrize("name", ["", "A", "-a", "a-", "a b", "a/b", "a" * 64, "é"])
def test_an_invalid_server_name_is_400_and_nothing_is_done(vault, name):
    status, body = generate("k", named(name))
    assert status == 400 and body["error"]["code"] == "InvalidArgument"
    assert "X-SPIRE-Server-Name" in body["error"]["message"]
    assert vault.calls == []


@pytest.mark.parametrize(
    "handler, method, route",
    [
        (keys.generate_key, "POST", {}),
        (keys.get_public_keys, "GET", {}),
        (keys.get_public_key, "GET", {"key_id": "k"}),
        (keys.sign_data, "POST", {"key_id": "k"}),
    ],
)
def test_another_trust_domain_is_refused_before_anything_is_done(vault, handler, method, route):
    body = {"key_id": "k", "key_type": "ec-p256", "data": base64.b64encode(b"\0" * 32).decode(), "hash_algorithm": "SHA256"}
    status, error = call(handler, body, method=method, headers={"X-SPIRE-Trust-Domain": "other.org", **named("a")}, **route)
    assert status == 400 and error["error"]["code"] == "InvalidArgument"
    assert error["error"]["message"] == (
        'this app serves trust domain "example.org" only: the caller\'s trust domain (X-SPIRE-Trust-Domain) is "other.org", '
        "so nothing was done"
    )
    assert vault.calls == []


def test_an_over_long_trust_domain_is_echoed_shortened(vault):
    status, error = generate("k", {"X-SPIRE-Trust-Domain": "a" * 10_000 + ".org"})
    assert status == 400 and '"aaaa' in error["error"]["message"] and len(error["error"]["message"]) < 300


def test_the_apps_own_trust_domain_is_served(vault):
    assert generate("k", {"X-SPIRE-Trust-Domain": TRUST_DOMAIN})[0] == 200


def test_refresh_covers_the_default_server_and_the_named_servers_that_called(vault):
    generate("k")
    generate("k", named("a"))
    generate("k", named("b"))
    report = maintenance.run_refresh()
    assert len(report.refreshed) == 3 and report.failed == []


def test_maintenance_covers_the_named_servers_used_within_the_stale_key_age():
    fake = InMemoryVault()
    now = datetime.now(UTC)
    moments = iter([now - timedelta(days=15), now])
    servers = SpireServers(TRUST_DOMAIN, FixedServerDirectory(VALUE, lambda: next(moments)), fake)
    servers.serve("silent")  # last called 15 days ago
    servers.serve("busy")
    servers.check("checked-only")  # known, never called
    assert servers.maintained() == [None, "busy"]


def test_an_instance_serves_a_bounded_number_of_named_servers(vault, monkeypatch):
    monkeypatch.setattr(app_context, "MAX_NAMED_SERVERS", 2)
    for name in ("a", "b"):
        assert call(keys.get_public_keys, method="GET", headers=named(name))[0] == 200
    status, body = call(keys.get_public_keys, method="GET", headers=named("c"))
    assert status == 503 and "2 named SPIRE servers" in body["error"]["message"]
    assert call(keys.get_public_keys, method="GET", headers=named("a"))[0] == 200  # known ones go on
    assert call(keys.get_public_keys, method="GET")[0] == 200


def test_an_instance_serves_10_000_named_servers_and_refuses_the_next():
    servers = SpireServers(TRUST_DOMAIN, FixedServerDirectory(VALUE), InMemoryVault())
    for index in range(10_000):
        servers.check(f"server-{index}")
    with pytest.raises(Unavailable, match="already serves 10000 named SPIRE servers"):
        servers.check("one-more")


ALL_KEY_CALLS = [
    (keys.generate_key, "POST", {}),
    (keys.get_public_keys, "GET", {}),
    (keys.get_public_key, "GET", {"key_id": "k"}),
    (keys.sign_data, "POST", {"key_id": "k"}),
]
ANY_BODY = {"key_id": "k", "key_type": "ec-p256", "data": base64.b64encode(b"\0" * 32).decode(), "hash_algorithm": "SHA256"}


def unauthenticated_call(handler, method, headers, **route):
    request = func.HttpRequest(method, "http://localhost/api/keys", body=json.dumps(ANY_BODY).encode(), headers=headers, route_params=route)
    return handler(request)


@pytest.mark.parametrize("handler, method, route", ALL_KEY_CALLS)
@pytest.mark.parametrize(
    "headers, challenge",
    [
        ({}, "Bearer"),
        ({"Authorization": "Bearer not-a-token"}, 'Bearer error="invalid_token"'),
        ({"Authorization": "Bearer " + tokens.token(aud="another-api")}, 'Bearer error="invalid_token"'),
    ],
)
def test_a_call_without_a_valid_token_is_401_and_nothing_is_done(vault, handler, method, route, headers, challenge):
    response = unauthenticated_call(handler, method, {**headers, **named("a")}, **route)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == challenge
    assert json.loads(response.get_body())["error"]["code"] == "Unauthenticated"
    assert vault.calls == [] and app_context._servers._servers.keys() == {None}


@pytest.mark.parametrize("handler, method, route", ALL_KEY_CALLS)
def test_an_identity_not_on_the_list_is_403_naming_it_and_nothing_is_done(vault, handler, method, route):
    stranger = "9e8d7c6b-5a49-4838-a726-150f4e3d2c1b"
    response = unauthenticated_call(handler, method, {**tokens.bearer(stranger), **named("a")}, **route)
    body = json.loads(response.get_body())
    assert response.status_code == 403 and body["error"]["code"] == "PermissionDenied" and stranger in body["error"]["message"]
    assert response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'
    assert vault.calls == []


@pytest.mark.parametrize("handler, method, route", ALL_KEY_CALLS)
def test_a_name_the_caller_does_not_hold_is_403_and_no_server_is_made_for_it(vault, handler, method, route):
    status, body = call(handler, ANY_BODY, method=method, headers=named("invented"), **route)
    assert status == 403 and '"invented"' in body["error"]["message"]
    assert vault.calls == [] and "invented" not in app_context._servers._servers
