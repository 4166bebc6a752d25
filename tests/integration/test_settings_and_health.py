"""Invalid settings and anonymous health, over HTTP on devhost processes against the local stack."""

from __future__ import annotations

import base64
import threading
import time

import pytest
import requests

from devtools.stack.faultproxy import FaultProxy, make_server_certificate
from functions.health import CHECK_INTERVAL_SECONDS
from tests.hermetic import start_app_host

TIMEOUT = 30

INVALID_SETTINGS = {
    "KEY_METADATA_STORAGE": {"KEY_METADATA_STORAGE": "AccountName=acct;AccountKey=not*base64"},
    "KEY_VAULT_CA_BUNDLE": {"KEY_VAULT_CA_BUNDLE": "/nonexistent/ca.pem"},
    "SWEEP_MAX_DELETIONS": {"SWEEP_MAX_DELETIONS": "٣"},
    "STALE_KEY_AGE": {"STALE_KEY_AGE": "99999999999d"},
    "KEY_IDENTIFIER_VALUE": {"KEY_IDENTIFIER_VALUE": "server-1"},  # with KEY_METADATA_BLOB
    "KEY_VAULT_URI": {"KEY_VAULT_SKIP_CHALLENGE_RESOURCE_VERIFICATION": "false"},  # localvault's challenge never fits
}


@pytest.fixture
def devhosts(app_env):
    """Start one devhost per environment, all at once; stop them all after the test."""
    started: list = []

    def start(envs: list[dict[str, str]]) -> list[str]:
        services: list = [None] * len(envs)

        def run(index: int) -> None:
            services[index] = start_app_host({**app_env, **envs[index]})

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(envs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        started.extend(service for service in services if service is not None)
        assert all(services), "a devhost instance did not start"
        return [service.url + "/api" for service in services]

    yield start
    for service in started:
        service.stop()


def test_every_invalid_setting_is_a_503_naming_it_on_every_request_and_on_health(devhosts, callers):
    bases = devhosts(list(INVALID_SETTINGS.values()))
    sign_body = {"data": base64.b64encode(bytes(32)).decode(), "hash_algorithm": "SHA256"}
    server = callers.headers()  # the caller is proven: what fails is the setting
    for setting, base in zip(INVALID_SETTINGS, bases):
        for _ in range(2):  # not cached as a success, not turned into a 500 the second time
            responses = [
                requests.get(f"{base}/keys", headers=server, timeout=TIMEOUT),
                requests.post(f"{base}/keys", json={"key_id": "k", "key_type": "ec-p256"}, headers=server, timeout=TIMEOUT),
                requests.post(f"{base}/keys/k/sign", json=sign_body, headers=server, timeout=TIMEOUT),
                requests.get(f"{base}/keys", headers={**server, "X-SPIRE-Server-Name": "spire-a"}, timeout=TIMEOUT),
                requests.get(f"{base}/health", timeout=TIMEOUT),
            ]
            for response in responses:
                assert response.status_code == 503, (setting, response.request.url, response.text)
                assert setting in response.json()["error"]["message"], (setting, response.text)
        assert "not*base64" not in responses[-1].text


def test_a_health_burst_costs_the_vault_one_check(app_env, vault, devhosts, tmp_path):
    cert, key, ca = make_server_certificate(tmp_path / "proxy-cert")
    with FaultProxy(vault.url, ca_bundle=vault.details["ca_bundle"], tls=(cert, key), rewrite_body_urls=True) as proxy:
        (base,) = devhosts([{"KEY_VAULT_URI": proxy.url, "KEY_VAULT_CA_BUNDLE": ca}])
        started = time.monotonic()
        answers = [requests.get(f"{base}/health", timeout=TIMEOUT) for _ in range(100)]
        elapsed = time.monotonic() - started
        assert [a.status_code for a in answers] == [200] * 100
        vault_requests = proxy.requests
    # One check: Key Vault's authentication challenge and the probe itself; one more per interval the burst spanned.
    checks = 1 + int(elapsed // CHECK_INTERVAL_SECONDS)
    print(f"\nhealth burst: 100 calls in {elapsed:.2f} s, {len(vault_requests)} Key Vault requests: {vault_requests}")
    assert len(vault_requests) <= 2 * checks, vault_requests
