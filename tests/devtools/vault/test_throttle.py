"""Key Vault's service limits: the documented table, weighted and summed, over a sliding 10 s window.

The limiter and the API run in-process on an injected clock, so no test waits out a window; one test
starts localvault with the flag and reads a 429 over HTTPS.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from devtools.vault import crypto
from devtools.vault.__main__ import parse_args
from devtools.vault.api import Request, VaultApi
from devtools.vault.store import KeyStore
from devtools.vault.throttle import VAULT_OPERATION, Charge, Throttle, key_creation, key_operation

from .conftest import Running, start_localvault, stop_localvault

THROTTLED_MESSAGE = "Request was not processed because too many requests were received."
DIGEST = crypto.b64url_encode(b"\x01" * 32)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rsa_keys() -> dict[int, rsa.RSAPrivateKey]:
    return {size: rsa.generate_private_key(public_exponent=65537, key_size=size) for size in (2048, 4096)}


def admitted(limits: Throttle, charge: Charge, attempts: int) -> int:
    """How many of ``attempts`` operations, all at the same moment, the limiter lets through."""
    return sum(limits.admit(charge) is None for _ in range(attempts))


@pytest.mark.parametrize(
    ("kind", "hsm", "limit"),
    [
        ("rsa2048", False, 4000),
        ("rsa2048", True, 2000),
        ("rsa4096", False, 500),
        ("rsa4096", True, 250),
        ("ec", False, 4000),
        ("ec", True, 2000),
    ],
)
def test_each_key_type_alone_gets_its_documented_operations_per_window(rsa_keys, kind, hsm, limit) -> None:
    key = {"rsa2048": rsa_keys[2048], "rsa4096": rsa_keys[4096], "ec": ec.generate_private_key(ec.SECP256R1())}[kind]
    assert admitted(Throttle(1.0, Clock()), key_operation(key, hsm), limit + 5) == limit


def test_key_types_share_one_budget_by_weight_as_the_documented_example(rsa_keys) -> None:
    limits = Throttle(1.0, Clock())
    rsa4096_hsm, rsa2048_hsm = key_operation(rsa_keys[4096], hsm=True), key_operation(rsa_keys[2048], hsm=True)
    # "248 RSA 4,096-bit HSM-key GET transactions and 16 RSA 2,048-bit HSM-key GET transactions" fill a window.
    assert admitted(limits, rsa4096_hsm, 248) == 248
    assert admitted(limits, rsa2048_hsm, 17) == 16
    assert limits.admit(rsa4096_hsm) is not None


def test_an_rsa_4096_operation_uses_eight_times_the_budget_of_an_rsa_2048_one(rsa_keys) -> None:
    limits = Throttle(0.05, Clock())  # 200 RSA-2048 software operations
    assert admitted(limits, key_operation(rsa_keys[4096], hsm=False), 10) == 10
    assert admitted(limits, key_operation(rsa_keys[2048], hsm=False), 200) == 200 - 8 * 10


def test_the_next_operation_waits_for_the_oldest_to_leave_and_refusals_do_not_count(rsa_keys) -> None:
    clock = Clock()
    limits = Throttle(0.05, clock)  # 200 RSA-2048 software operations
    sign = key_operation(rsa_keys[2048], hsm=False)
    for _ in range(200):
        assert limits.admit(sign) is None
        clock.now += 0.01
    assert limits.admit(sign) == pytest.approx(8.0)  # the first, at 0 s, leaves at 10 s
    assert admitted(limits, sign, 50) == 0

    clock.now = 10.0
    assert limits.admit(sign) is None  # only the first left; the 51 refusals took nothing
    assert limits.admit(sign) == pytest.approx(0.01)
    clock.now = 22.0
    assert admitted(limits, sign, 201) == 200


def test_creations_have_their_own_budget_and_hsm_ones_cost_two(rsa_keys) -> None:
    limits = Throttle(1.0, Clock())
    assert admitted(limits, key_creation(hsm=True), 6) == 6
    assert admitted(limits, key_creation(hsm=False), 10) == 8
    assert limits.admit(key_creation(hsm=True)) is not None
    assert limits.admit(key_operation(rsa_keys[2048], hsm=True)) is None

    keys_full = Throttle(0.05, Clock())
    assert admitted(keys_full, key_operation(rsa_keys[2048], hsm=False), 201) == 200
    assert keys_full.admit(key_creation(hsm=False)) is None


def test_operations_on_no_key_count_against_the_vault_budget(rsa_keys) -> None:
    limits = Throttle(0.05, Clock())
    assert admitted(limits, VAULT_OPERATION, 201) == 200
    assert limits.admit(key_operation(rsa_keys[2048], hsm=False)) is None


def test_a_small_scale_still_lets_one_of_each_operation_through() -> None:
    limits = Throttle(0.01, Clock())  # 0.1 HSM creations would be none at all
    assert admitted(limits, key_creation(hsm=True), 2) == 1


# --- the API, in-process ---------------------------------------------------------------------------------------------


def call(api: VaultApi, method: str, path: str, body: dict | None = None) -> tuple[int, dict | None, dict[str, str]]:
    return api.handle(
        Request(
            method=method,
            path=path,
            query={},
            body=json.dumps(body or {}).encode(),
            base_url="https://localhost",
            authorization="Bearer token",
        )
    )


def test_a_sign_over_the_limit_is_key_vaults_429_with_retry_after() -> None:
    clock = Clock()
    api = VaultApi(KeyStore(), lambda token: True, throttle=Throttle(0.05, clock))
    assert call(api, "POST", "/keys/ca/create", {"kty": "RSA-HSM", "key_size": 4096})[0] == 200
    statuses = []
    for _ in range(13):  # RSA-4096 HSM: 250 x 0.05 = 12.5, so 12 per window
        statuses.append(call(api, "POST", "/keys/ca//sign", {"alg": "RS256", "value": DIGEST})[0])
        clock.now += 0.5
    status, body, headers = call(api, "POST", "/keys/ca//sign", {"alg": "RS256", "value": DIGEST})

    assert statuses == [200] * 12 + [429]
    assert status == 429 and headers["Retry-After"] == "4"  # 6.5 s in; the first sign, at 0 s, leaves at 10 s
    assert body["error"]["code"] == "Throttled" and body["error"]["message"].startswith(THROTTLED_MESSAGE)
    assert call(api, "GET", "/keys")[0] == 200  # a listing is a vault transaction, not a key one
    counters = call(api, "GET", "/management/throttling")[1]
    assert counters["enabled"] is True
    assert counters["budgets"]["keys"] | {"inWindow": None} == {"size": 200, "inWindow": None, "served": 12, "throttled": 2}
    assert counters["budgets"]["creates"]["served"] == counters["budgets"]["vault"]["served"] == 1


def test_without_a_throttle_the_vault_never_answers_429() -> None:
    api = VaultApi(KeyStore(), lambda token: True)
    statuses = {call(api, "POST", f"/keys/k{n}/create", {"kty": "EC-HSM"})[0] for n in range(25)}
    assert statuses == {200}
    assert call(api, "GET", "/management/throttling")[1] == {"enabled": False}


# --- over HTTPS --------------------------------------------------------------------------------------------------------


def test_the_flag_turns_the_limits_on_over_https(localvault: Running, tmp_path: Path) -> None:
    throttled = start_localvault(localvault.cert_dir, tmp_path / "stderr.log", "--throttle-scale", "0.01")
    try:
        headers = throttled.bearer()

        def post(path: str, body: dict) -> requests.Response:
            return throttled.request("POST", path, headers, body)

        created, second = (post(f"/keys/{name}/create", {"kty": "EC"}) for name in ("one", "two"))
        signs = [post("/keys/one//sign", {"alg": "ES256", "value": DIGEST}).status_code for _ in range(40)]
        over = post("/keys/one//sign", {"alg": "ES256", "value": DIGEST})
    finally:
        stop_localvault(throttled)

    assert created.status_code == 200 and signs == [200] * 40  # 4,000 x 0.01 signs, 20 x 0.01 -> 1 creation
    for refused in (second, over):
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 10
        assert refused.json()["error"]["code"] == "Throttled"


def test_localvault_does_not_throttle_unless_asked(localvault: Running) -> None:
    response = requests.get(f"{localvault.vault_url}/management/throttling", verify=localvault.ca, timeout=5)
    assert response.json() == {"enabled": False}


def test_throttle_means_the_documented_limits_and_a_scale_must_be_sane() -> None:
    assert parse_args([]).throttle_scale is None
    assert parse_args(["--throttle"]).throttle_scale == 1.0
    assert parse_args(["--throttle-scale", "0.05"]).throttle_scale == 0.05
    for value in ("0", "-1", "nan", "101", "fast"):
        with pytest.raises(SystemExit):
            parse_args(["--throttle-scale", value])
