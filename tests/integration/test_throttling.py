"""Over Key Vault's limit: an instance that Key Vault told to wait sends nothing more of that kind until then.

localvault holds Key Vault's limits at a small scale, and callers that do not wait for each other (many
SPIRE servers minting at once) offer twice the rate of signs it allows. Key Vault's requests are read
from its own throttling counters, 429s included.
"""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devtools.stack.services import app_settings, start_localvault
from functions import keys
from tests.integration.conftest import make_app
from tests.integration.verify import digest

SCALE = 0.05  # Key Vault's 4,000 software EC key operations per 10 s become 200
SIGNS_PER_SECOND_ALLOWED = 20
OFFERED_PER_SECOND = 2 * SIGNS_PER_SECOND_ALLOWED
LOAD_SECONDS = 10
MAX_REQUESTS_PER_SIGN = 1.2


@pytest.fixture(scope="module")
def throttled_vault(tmp_path_factory):
    service = start_localvault(0, 0, tmp_path_factory.mktemp("throttled-vault"), throttle_scale=SCALE)
    yield service
    service.stop()


@pytest.fixture
def app(app_env, azurite, throttled_vault, monkeypatch, callers):
    app = make_app({**app_env, **app_settings(azurite, throttled_vault)}, monkeypatch, callers)
    assert app.generate("k", "ec-p256")[0] == 200
    return app


def key_operations_sent(vault) -> int:
    """The operations on keys the vault has been asked for so far, served or throttled."""
    answer = requests.get(f"{vault.url}/management/throttling", verify=vault.details["ca_bundle"], timeout=5)
    counted = answer.json()["budgets"]["keys"]
    return counted["served"] + counted["throttled"]


def sign(app) -> tuple[int, str | None]:
    body = {"data": base64.b64encode(digest("SHA256")).decode(), "hash_algorithm": "SHA256"}
    response = app.respond(keys.sign_data, body, key_id="k")
    return response.status_code, response.headers.get("Retry-After")


def test_over_the_limit_callers_are_told_to_wait_and_key_vault_gets_about_one_request_per_sign(app, throttled_vault):
    before = key_operations_sent(throttled_vault)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=64) as pool:
        calls = []
        for n in range(OFFERED_PER_SECOND * LOAD_SECONDS):
            time.sleep(max(0.0, started + n / OFFERED_PER_SECOND - time.monotonic()))
            calls.append(pool.submit(sign, app))
        answers = [call.result() for call in calls]
    sent = key_operations_sent(throttled_vault) - before
    signed = sum(status == 200 for status, _ in answers)
    refusals = [answer for answer in answers if answer[0] != 200]
    print(
        f"\n{signed} of {len(answers)} signs in {time.monotonic() - started:.1f} s, {sent} Key Vault requests: {sent / signed:.2f} per sign"
    )

    assert refusals and all(status == 429 and retry_after and int(retry_after) >= 1 for status, retry_after in refusals)
    assert signed >= SIGNS_PER_SECOND_ALLOWED * LOAD_SECONDS * 0.8
    assert sent / signed <= MAX_REQUESTS_PER_SIGN

    time.sleep(max(int(retry_after) for _, retry_after in refusals))
    before = key_operations_sent(throttled_vault)
    assert sign(app)[0] == 200 and key_operations_sent(throttled_vault) - before == 1  # capacity is back once the wait is over
