"""Key calls over the real Key Vault adapter on a scripted transport: the caller's deadline, its turn ticket, and
whether a failed generate_key says that no key was made."""

import base64
import json
from datetime import UTC, datetime, timedelta

import azure.functions as func
import pytest
from azure.core.exceptions import ServiceResponseError

from functions import keys
from shared import app_context
from shared.app_context import SpireServers
from shared.server_ids import FixedServerDirectory
from tests.unit.shared.test_key_vault import _Credential, _Scripted, _vault
from tests.unit.tokens import bearer

NOT_FOUND = (404, {"error": {"code": "KeyNotFound", "message": "not found"}})


def _generate(monkeypatch, answers, deadline_in: float | None = None, deadline: str | None = None, credential=None):
    transport = _Scripted(answers)
    app_context.install_servers(
        SpireServers("example.org", FixedServerDirectory("0b1c3f0e-8a5e-4c1e-9a55-7bd0c1f7f0a1"), _vault(transport, credential))
    )
    headers = bearer()
    if deadline_in is not None:
        deadline = (datetime.now(UTC) + timedelta(seconds=deadline_in)).isoformat()
    if deadline is not None:
        headers[keys.DEADLINE_HEADER] = deadline
    body = json.dumps({"key_id": "x509-CA-A", "key_type": "ec-p256"}).encode()
    response = keys.generate_key(func.HttpRequest("POST", "http://localhost/api/keys", body=body, headers=headers))
    return response, transport


def test_a_deadline_too_close_to_ask_key_vault_is_a_503_that_made_nothing(monkeypatch):
    response, transport = _generate(monkeypatch, [], deadline_in=keys.DEADLINE_MARGIN_SECONDS - 0.1)
    assert response.status_code == 503 and response.headers[keys.KEY_CREATED_HEADER] == "false"
    assert "nothing was sent" in json.loads(response.get_body())["error"]["message"]
    assert transport.sent == 0


def test_a_create_throttled_past_the_deadline_is_a_429_that_made_nothing(monkeypatch):
    throttled = (429, {"error": {"code": "Throttled", "message": "x"}}, {"Retry-After": "4"})
    response, transport = _generate(monkeypatch, [NOT_FOUND, throttled], deadline_in=3)
    assert response.status_code == 429 and response.headers["Retry-After"] == "4"
    assert response.headers[keys.KEY_CREATED_HEADER] == "false"
    assert transport.sent == 2  # the wait of 4 s would end past the deadline: no retry


def test_no_create_goes_out_past_the_deadline_when_the_token_comes_late(monkeypatch):
    challenge = (
        401,
        {},
        {"WWW-Authenticate": 'Bearer authorization="https://login.microsoftonline.com/t", resource="https://vault.azure.net"'},
    )
    # Each token lasts a minute, so the challenge step asks for a new one before every request; after the first, each takes 5 s.
    slow_tokens = _Credential(lifetime_seconds=60, refresh_seconds=5)
    response, transport = _generate(monkeypatch, [challenge, NOT_FOUND], deadline_in=5, credential=slow_tokens)
    assert transport.sent == 2  # the challenge and the read; the create's token came past the deadline, so it never went out
    assert response.status_code == 503 and response.headers[keys.KEY_CREATED_HEADER] == "false"
    assert "nothing was sent" in json.loads(response.get_body())["error"]["message"]


def test_a_create_that_may_have_reached_key_vault_does_not_say_that_nothing_was_made(monkeypatch):
    response, transport = _generate(monkeypatch, [NOT_FOUND, ServiceResponseError("read timed out")], deadline_in=10)
    assert response.status_code == 503 and keys.KEY_CREATED_HEADER not in response.headers
    assert transport.sent == 2


@pytest.mark.parametrize("deadline", ["soon", "2030-01-02T03:04:05"])
def test_a_deadline_that_is_not_an_rfc_3339_time_is_refused(monkeypatch, deadline):
    response, transport = _generate(monkeypatch, [], deadline=deadline)
    assert response.status_code == 400 and keys.DEADLINE_HEADER in json.loads(response.get_body())["error"]["message"]
    assert transport.sent == 0


def test_a_create_held_off_after_key_vaults_429_is_a_429_that_made_nothing_and_sent_nothing(monkeypatch):
    throttled = (429, {"error": {"code": "Throttled", "message": "x"}}, {"Retry-After": "9"})
    first, transport = _generate(monkeypatch, [NOT_FOUND, throttled, NOT_FOUND], deadline_in=3)
    assert first.status_code == 429 and transport.sent == 2
    body = json.dumps({"key_id": "x509-CA-A", "key_type": "ec-p256"}).encode()
    response = keys.generate_key(func.HttpRequest("POST", "http://localhost/api/keys", body=body, headers=bearer()))
    assert response.status_code == 429 and 8 <= int(response.headers["Retry-After"]) <= 9
    assert response.headers[keys.KEY_CREATED_HEADER] == "false"
    assert "nothing was sent" in json.loads(response.get_body())["error"]["message"]
    assert [method for method, _ in transport.requests[2:]] == ["GET"]  # whose the name is; no create


@pytest.mark.parametrize(
    "ticket, status", [("q1w2e3r4t5y6u7i8", 200), ("q1w2e3r4t5y6u7i", 400), ("q1w2e3r4t5y6u7i8+", 400), ("é" * 16, 400)]
)
def test_a_turn_ticket_is_taken_as_it_came_or_refused_before_anything_is_sent(ticket, status):
    transport = _Scripted([(200, {"value": []})])
    app_context.install_servers(
        SpireServers("example.org", FixedServerDirectory("0b1c3f0e-8a5e-4c1e-9a55-7bd0c1f7f0a1"), _vault(transport))
    )
    headers = {**bearer(), "X-Retry-Turn": ticket}
    response = keys.get_public_keys(func.HttpRequest("GET", "http://localhost/api/keys", body=b"", headers=headers))
    assert response.status_code == status
    assert transport.sent == (1 if status == 200 else 0)


def test_a_sign_whose_deadline_is_too_close_to_ask_key_vault_sends_nothing():
    transport = _Scripted([])
    app_context.install_servers(
        SpireServers("example.org", FixedServerDirectory("0b1c3f0e-8a5e-4c1e-9a55-7bd0c1f7f0a1"), _vault(transport))
    )
    headers = {**bearer(), keys.DEADLINE_HEADER: (datetime.now(UTC) + timedelta(seconds=keys.DEADLINE_MARGIN_SECONDS - 0.1)).isoformat()}
    body = json.dumps({"data": base64.b64encode(bytes(32)).decode(), "hash_algorithm": "SHA256"}).encode()
    request = func.HttpRequest(
        "POST", "http://localhost/api/keys/x509-CA-A/sign", body=body, headers=headers, route_params={"key_id": "x509-CA-A"}
    )
    response = keys.sign_data(request)
    assert response.status_code == 503, response.get_body()
    assert transport.sent == 0
