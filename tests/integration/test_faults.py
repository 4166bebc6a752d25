"""Key Vault and Blob storage misbehaving for real, through a fault-injecting proxy.

The proxy sits between the app and the stand-ins (TLS terminated with a test certificate the app
trusts through KEY_VAULT_CA_BUNDLE). The SDK's retry policy must absorb transient faults within the
call's budget; past it the caller gets a JSON 429 or 503, never a 500 and never a hang.
"""

from __future__ import annotations

import time

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.stack.faultproxy import FaultProxy
from tests.integration.conftest import make_app, through
from tests.integration.verify import digest, verify

THROTTLED = b'{"error": {"code": "Throttled", "message": "Request was not processed because too many requests were received."}}'
SIGN = r"/sign(\?|$)"  # the request target carries ?api-version=


@pytest.fixture
def through_proxy(app_env, vault_proxy, monkeypatch, callers):
    """An app whose Key Vault traffic crosses the proxy; 3 s of retries per call keep tests quick."""

    def start(retry_seconds: int = 3, read_timeout: float = 2):
        env = {**app_env, **through(vault_proxy), "KEY_VAULT_RETRY_SECONDS": str(retry_seconds)}
        app = make_app(env, monkeypatch, callers, read_timeout=read_timeout)
        _, generated = app.generate("k", "ec-p256")  # warm: token and challenge paid
        app.public_key = generated["public_key"]
        return app

    return start


def _sign(app):
    return app.sign("k", digest("SHA256"), hash_algorithm="SHA256")


def _sign_attempts(proxy) -> int:
    return sum(1 for method, path in proxy.requests if method == "POST" and path.split("?")[0].endswith("/sign"))


@pytest.mark.empty_version_sign
def test_throttling_is_retried_honouring_retry_after(through_proxy, vault_proxy):
    app = through_proxy(retry_seconds=10)
    vault_proxy.respond(429, {"Retry-After": "1"}, THROTTLED, times=2, path=SIGN)
    started = time.monotonic()
    status, body = _sign(app)
    assert status == 200, body
    assert time.monotonic() - started >= 2
    assert _sign_attempts(vault_proxy) == 3


def test_persistent_throttling_becomes_429_with_retry_after(through_proxy, vault_proxy):
    app = through_proxy(retry_seconds=3)
    vault_proxy.respond(429, {"Retry-After": "1"}, THROTTLED, times=None, path=SIGN)
    started = time.monotonic()
    status, body = _sign(app)
    assert status == 429 and body["error"]["code"] == "ResourceExhausted"
    assert app.last_response.headers["Retry-After"] == "1"
    assert _sign_attempts(vault_proxy) <= 1 + 3  # a retry a second within the 3 s budget
    assert time.monotonic() - started < 3 + 10  # no hang; the margin absorbs a loaded runner


def test_a_retry_after_beyond_the_budget_goes_back_to_the_caller_at_once(through_proxy, vault_proxy):
    app = through_proxy(retry_seconds=30)
    vault_proxy.respond(429, {"Retry-After": "60"}, THROTTLED, times=None, path=SIGN)
    started = time.monotonic()
    status, _ = _sign(app)
    assert status == 429 and app.last_response.headers["Retry-After"] == "60"
    assert _sign_attempts(vault_proxy) == 1
    # At once: waiting out the 30 s budget, or the 60 s asked for, would take 30 s at least.
    assert time.monotonic() - started < 10


@pytest.mark.empty_version_sign
@pytest.mark.parametrize("fault", ["503", "reset", "stall"])
def test_transient_faults_are_retried(through_proxy, vault_proxy, fault):
    app = through_proxy(retry_seconds=10, read_timeout=1)
    inject = {
        "503": lambda: vault_proxy.respond(503, body=b'{"error": {"code": "ServiceUnavailable", "message": "busy"}}', path=SIGN),
        "reset": lambda: vault_proxy.reset(path=SIGN),
        "stall": lambda: vault_proxy.stall(3, path=SIGN),
    }
    inject[fault]()
    status, body = _sign(app)
    assert status == 200, body
    verify(app.public_key, body["signature"], digest("SHA256"), "SHA256")
    assert vault_proxy.faults_injected == 1 and _sign_attempts(vault_proxy) == 2


@pytest.mark.parametrize("fault", ["503", "reset", "stall"])
def test_persistent_faults_become_503_within_the_budget(through_proxy, vault_proxy, fault):
    app = through_proxy(retry_seconds=3, read_timeout=1)
    inject = {
        "503": lambda: vault_proxy.respond(503, times=None),
        "reset": lambda: vault_proxy.reset(times=None),
        "stall": lambda: vault_proxy.stall(60, times=None),
    }
    inject[fault]()
    for call in (_sign, lambda app: app.generate("k", "ec-p256"), lambda app: app.get("k"), lambda app: app.list()):
        started = time.monotonic()
        status, body = call(app)
        assert status == 503 and body["error"]["code"] == "Unavailable"
        # Retries stop once the 3 s budget is spent, a stalled attempt adding at most its 1 s read
        # timeout; the margin absorbs a loaded runner, far below the 60 s stall an unbounded read waits.
        assert time.monotonic() - started < 3 + 1 + 10


def test_an_outage_is_503_and_service_resumes_with_the_next_request(through_proxy, vault_proxy):
    app = through_proxy(retry_seconds=3)
    vault_proxy.stop()
    assert _sign(app)[0] == 503
    assert app.health()[1]["dependency"] == "key_vault"
    vault_proxy.start()
    status, body = _sign(app)
    assert status == 200
    verify(app.public_key, body["signature"], digest("SHA256"), "SHA256")


def test_a_failed_generate_leaves_nothing_the_next_request_trips_over(through_proxy, vault_proxy):
    app = through_proxy(retry_seconds=2)
    vault_proxy.respond(503, times=None, path=r"/create(\?|$)")
    assert app.generate("k", "rsa-2048")[0] == 503
    vault_proxy.clear()
    assert app.get("k")[1]["public_key"] == app.public_key  # the old key still stands
    status, generated = app.generate("k", "rsa-2048")
    assert status == 200 and app.get("k")[1] == generated
    status, body = _sign(app)
    assert status == 200 and body["key_fingerprint"] == generated["public_key"]["fingerprint"]


# Blob storage faults at cold start: the server id is never replaced, the next request recovers.


@pytest.fixture
def blob_proxy(azurite):
    with FaultProxy(azurite.url) as proxy:
        yield proxy


@pytest.mark.parametrize("fault", ["503", "403", "reset", "stall"])
def test_blob_faults_at_cold_start_are_503_and_keep_the_server_id(app_env, azurite, blob_proxy, monkeypatch, callers, fault):
    first = make_app(app_env, monkeypatch, callers)
    _, generated = first.generate("survivor", "ec-p256")
    server_id = first.manager.naming().server_id
    proxied = app_env["AzureWebJobsStorage"].replace(azurite.url, blob_proxy.url)
    env = {**app_env, "AzureWebJobsStorage": proxied}
    inject = {
        "503": lambda: blob_proxy.respond(503, times=None),
        "403": lambda: blob_proxy.respond(403, times=None, body=b"<Error><Code>AuthorizationFailure</Code></Error>"),
        "reset": lambda: blob_proxy.reset(times=None),
        "stall": lambda: blob_proxy.stall(30, times=None),
    }
    inject[fault]()
    cold = make_app(env, monkeypatch, callers, read_timeout=1)  # a stall waits out each attempt's read timeout
    status, body = cold.get("survivor")
    assert status == 503 and body["error"]["code"] == "Unavailable"
    assert cold.vault_requests() == []

    blob_proxy.clear()
    assert cold.get("survivor") == (200, generated)
    assert cold.manager.naming().server_id == server_id
    container, blob = app_env["KEY_METADATA_BLOB"].split("/", 1)
    stored = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"]).get_blob_client(container, blob)
    assert stored.download_blob().readall().decode() == server_id


def test_blob_outage_is_503_and_recovers(app_env, azurite, blob_proxy, monkeypatch, callers):
    proxied = app_env["AzureWebJobsStorage"].replace(azurite.url, blob_proxy.url)
    env = {**app_env, "AzureWebJobsStorage": proxied}
    make_app(env, monkeypatch, callers).generate("a", "ec-p256")
    blob_proxy.stop()
    cold = make_app(env, monkeypatch, callers)
    assert cold.get("a")[0] == 503
    blob_proxy.start()
    assert cold.get("a")[0] == 200
