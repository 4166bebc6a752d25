"""The app's own cost: full handlers against bare azure-keyvault-keys calls, on one instant transport."""

from __future__ import annotations

import base64
import hashlib
import json
import statistics
import time
from typing import Callable

import azure.functions as func
from azure.core.rest import HttpRequest
from azure.keyvault.keys import KeyClient

from benchmarks import fakes
from benchmarks.common import Figure, median_ratio
from functions import keys
from shared import app_context

ROUNDS = 15
CALLS = 300
BUDGET = 1.3
# What proving a caller may add to a key call at the median, in microseconds.
CALLER_GATE_BUDGET_US = 100.0
NEW_TOKENS = 200


def handler_calls(transport: fakes.FakeKeyVaultTransport) -> tuple[Callable[[], None], Callable[[], None]]:
    """Warm sign_data and get_public_key handler calls (each one Key Vault request) on ``transport``."""
    fakes.install_fake_servers(transport)
    headers = fakes.install_caller_gate()
    get_request = func.HttpRequest("GET", "http://localhost/api/keys", body=b"", headers=headers, route_params={"key_id": fakes.KEY_ID})
    response = keys.get_public_key(get_request)
    assert response.status_code == 200, response.get_body()
    body = fakes.sign_body(json.loads(response.get_body())["public_key"]["fingerprint"])
    request = func.HttpRequest("POST", "http://localhost/api/keys/sign", body=json.dumps(body).encode(), headers=headers,
                               route_params={"key_id": fakes.KEY_ID})

    def sign() -> None:
        assert keys.sign_data(request).status_code == 200

    def get() -> None:
        assert keys.get_public_key(get_request).status_code == 200

    return sign, get


def bare_calls(transport: fakes.FakeKeyVaultTransport) -> tuple[Callable[[], None], Callable[[], None]]:
    """The same Key Vault requests made with a bare KeyClient."""
    client = KeyClient(fakes.VAULT_URL, fakes.StaticCredential(), transport=transport)
    digest = base64.urlsafe_b64encode(hashlib.sha256(b"bench").digest()).rstrip(b"=").decode()

    def sign() -> None:
        request = HttpRequest("POST", f"/keys/{fakes.KEY_NAME}//sign", json={"alg": "ES256", "value": digest})  # as the app signs
        response = client.send_request(request)
        assert response.status_code == 200 and response.json()["value"]

    def get() -> None:
        client.get_key(fakes.KEY_NAME)

    get()  # pays the challenge
    return sign, get


def _timed(call: Callable[[], None]) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        call()
    return time.perf_counter() - started


def interleaved(app: Callable[[], None], bare: Callable[[], None]) -> list[tuple[float, float]]:
    """(app, bare) seconds per round, alternating which goes first."""
    rounds = []
    for number in range(ROUNDS):
        times = {call: _timed(call) for call in ((app, bare) if number % 2 == 0 else (bare, app))}
        rounds.append((times[app], times[bare]))
    return rounds


def run() -> list[Figure]:
    transport = fakes.FakeKeyVaultTransport()
    app_sign, app_get = handler_calls(transport)
    bare_sign, bare_get = bare_calls(transport)
    for call in (app_sign, app_get, bare_sign, bare_get):
        _timed(call)  # warm every path before timing
    figures = []
    for label, app, bare in (("sign_data", app_sign, bare_sign), ("get_public_key", app_get, bare_get)):
        rounds = interleaved(app, bare)
        figures += [
            Figure(f"overhead: {label} handler / bare KeyClient", round(median_ratio(rounds), 3), "x", BUDGET,
                   f"median of {ROUNDS} interleaved rounds x {CALLS} calls, instant in-process transport"),
            Figure(f"overhead: {label} handler per call", round(statistics.median(a for a, _ in rounds) / CALLS * 1e6, 1), "us"),
            Figure(f"overhead: {label} bare KeyClient per call", round(statistics.median(b for _, b in rounds) / CALLS * 1e6, 1), "us"),
        ]
    figures += caller_gate_figures()
    app_context.install_servers(None)
    app_context._callers = None
    return figures


def caller_gate_figures() -> list[Figure]:
    """The gate every key call passes: a token seen before (a SPIRE server sends one for an hour), and a new one."""
    fakes.install_caller_gate()
    gate = app_context.callers()
    seen = fakes.tokens.bearer()["Authorization"]
    gate.server_caller(seen, None)
    per_call = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            gate.server_caller(seen, None)
        per_call.append((time.perf_counter() - started) / CALLS * 1e6)
    new_tokens = [fakes.tokens.bearer(jti=str(number))["Authorization"] for number in range(NEW_TOKENS)]
    verify_times = []
    for token in new_tokens:
        started = time.perf_counter()
        gate.server_caller(token, None)
        verify_times.append((time.perf_counter() - started) * 1e6)
    return [
        Figure("overhead: caller gate, a token seen before", round(statistics.median(per_call), 1), "us", CALLER_GATE_BUDGET_US,
               f"median of {ROUNDS} rounds x {CALLS} calls: the token's SHA-256 and the authorization list"),
        Figure("overhead: caller gate, a new token", round(statistics.median(verify_times), 1), "us",
               notes=f"median of {NEW_TOKENS} tokens: the RS256 verification and every claim check, once per token"),
    ]

