"""Anonymous health calls never hold up a sign, even while a health check hangs on Key Vault.

Health and sign_data share the worker's thread pool. A devhost instance with a small pool reaches
Key Vault through the fault proxy, which holds the health check's listing page back for seconds;
health calls made meanwhile must answer at once rather than take the threads a sign needs.
"""

from __future__ import annotations

import base64
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devtools.stack.faultproxy import FaultProxy
from tests.hermetic import start_app_host
from tests.integration.conftest import through
from tests.integration.verify import digest

WORKER_THREADS = 4  # fewer threads than waiting health calls: a pool they hold would stall the sign
HEALTH_CALLS = 8
SIGNS_AT_ONCE = 3  # fewer than WORKER_THREADS, so that they never wait for each other
STALL_SECONDS = 9
LISTING = r"^/keys(\?|$)"  # the health check's one Key Vault request: the first listing page


@pytest.fixture
def api_behind_proxy(app_env, vault_proxy):
    """A devhost instance whose Key Vault traffic crosses a fault proxy: (its API URL, the proxy)."""
    host = start_app_host({**app_env, **through(vault_proxy), "PYTHON_THREADPOOL_THREAD_COUNT": str(WORKER_THREADS)})
    try:
        yield host.url + "/api", vault_proxy
    finally:
        host.stop()


def _listing_requests(proxy: FaultProxy) -> int:
    return sum(1 for method, target in proxy.requests if method == "GET" and target.split("?")[0] == "/keys")


def test_health_calls_during_a_hanging_check_leave_signing_alone(api_behind_proxy, callers):
    api, proxy = api_behind_proxy
    headers = callers.headers()
    body = {"data": base64.b64encode(digest("SHA256")).decode(), "hash_algorithm": "SHA256"}
    assert requests.post(f"{api}/keys", json={"key_id": "k", "key_type": "ec-p256"}, headers=headers, timeout=30).status_code == 200

    def timed_sign() -> float:
        started = time.monotonic()
        response = requests.post(f"{api}/keys/k/sign", json=body, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        return time.monotonic() - started

    def sign_round() -> float:
        """The median time of SIGNS_AT_ONCE signs made together: one slow moment of a shared machine does not decide."""
        with ThreadPoolExecutor(SIGNS_AT_ONCE) as signers:
            return statistics.median(signers.map(lambda _: timed_sign(), range(SIGNS_AT_ONCE)))

    unloaded = max(sign_round() for _ in range(3))

    proxy.stall(STALL_SECONDS, path=LISTING)
    answers: list[requests.Response] = []

    def ask_health() -> None:
        answers.append(requests.get(f"{api}/health", timeout=30))

    checking = threading.Thread(target=ask_health)
    checking.start()
    deadline = time.monotonic() + 10
    while _listing_requests(proxy) == 0:  # the instance's first check now hangs on its listing page
        assert time.monotonic() < deadline, "the health check never reached Key Vault"
        time.sleep(0.05)
    others = [threading.Thread(target=ask_health) for _ in range(HEALTH_CALLS)]
    for thread in others:
        thread.start()
    time.sleep(0.5)  # every one of them has reached the worker by now

    loaded = sign_round()
    assert loaded <= 2 * unloaded, f"signs took {loaded:.3f} s during the hanging check, {unloaded:.3f} s without it"
    assert _listing_requests(proxy) == 1  # one check at a time, however many callers

    for thread in others:
        thread.join()
    checking.join()
    # The calls during the check answered at once: the instance has no result yet, so a 503 saying so.
    during = answers[:HEALTH_CALLS]
    assert all(r.status_code == 503 and r.json()["dependency"] == "not_checked_yet" for r in during), [r.text for r in during]
    assert answers[-1].status_code == 200 and answers[-1].json() == {"status": "ok"}  # the check itself, its page retried
