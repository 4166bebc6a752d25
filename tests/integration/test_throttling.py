"""Over Key Vault's limit: an instance that Key Vault told to wait sends nothing more of that kind until then.

localvault holds Key Vault's limits at a small scale, and callers that do not wait for each other (many
SPIRE servers minting at once) offer twice the rate of signs it allows. Key Vault's requests are read
from its own throttling counters, 429s included.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devtools.stack.services import app_settings, start_localvault
from functions import keys
from functions.http import RETRY_AFTER_MS_HEADER, TURN_HEADER
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


def sign_as_the_plugin_does(app) -> str:
    """A sign as the plugin makes it: it waits for a turn it is given, and carries the ticket back;
    told to wait without a turn, it waits once. "signed", "in its turn", or why it failed."""
    body = {"data": base64.b64encode(digest("SHA256")).decode(), "hash_algorithm": "SHA256"}
    headers: dict[str, str] = {}
    waited_without_a_turn = False
    for _ in range(10):
        response = app.respond(keys.sign_data, body, key_id="k", headers=headers)
        if response.status_code == 200:
            return "in its turn" if headers else "signed"
        if response.status_code != 429 or (waited_without_a_turn and TURN_HEADER not in response.headers):
            return f"{response.status_code} {response.get_body().decode()}"
        waited_without_a_turn = waited_without_a_turn or TURN_HEADER not in response.headers
        headers = {TURN_HEADER: response.headers[TURN_HEADER]} if TURN_HEADER in response.headers else {}
        time.sleep(int(response.headers.get(RETRY_AFTER_MS_HEADER) or 1000 * int(response.headers["Retry-After"])) / 1000)
    return "still waiting after 10 answers"


def test_at_the_limit_every_sign_is_served_with_one_key_vault_request_each(app, throttled_vault):
    seconds = 25  # the window fills after 10 s; then Key Vault throttles and the app paces
    before = key_operations_sent(throttled_vault)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=64) as pool:
        calls = []
        for n in range(SIGNS_PER_SECOND_ALLOWED * seconds):
            time.sleep(max(0.0, started + n / SIGNS_PER_SECOND_ALLOWED - time.monotonic()))
            calls.append(pool.submit(sign_as_the_plugin_does, app))
        outcomes = Counter(call.result() for call in calls)
    sent = key_operations_sent(throttled_vault) - before
    print(f"\n{dict(outcomes)}; {sent} Key Vault requests")
    assert outcomes["signed"] + outcomes["in its turn"] == SIGNS_PER_SECOND_ALLOWED * seconds, outcomes
    assert sent / (SIGNS_PER_SECOND_ALLOWED * seconds) <= 1.01
