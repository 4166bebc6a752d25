"""The benchmark's own helpers (nothing is timed here): budgets, the fake Key Vault, the table."""

from __future__ import annotations

import json
import os
import time

import azure.functions as func
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys._shared import http_challenge_cache

from benchmarks import fakes, overhead, spire_mint
from benchmarks.__main__ import table
from benchmarks.common import Figure, environ, median_interval, median_ratio
from functions import keys
from shared import app_context
from tests.unit import tokens


def test_numeric_budgets_are_upper_bounds_and_text_budgets_must_match():
    assert Figure("a", 1.3, budget=1.3).holds is True
    assert Figure("a", 1.31, budget=1.3).holds is False
    assert Figure("a", "none", budget="none").holds is True
    assert Figure("a", "2 attempts", budget="none").holds is False
    assert Figure("a", 5.0).holds is None  # printed, not judged


def test_median_ratio_is_the_median_of_per_round_ratios():
    assert median_ratio([(2.0, 1.0), (3.0, 1.0), (10.0, 1.0)]) == 3.0


def test_environ_restores_the_environment(monkeypatch):
    monkeypatch.delenv("BENCH_PROBE", raising=False)
    with environ({"BENCH_PROBE": "1"}):
        assert os.environ["BENCH_PROBE"] == "1"
    assert "BENCH_PROBE" not in os.environ


def test_the_fake_vault_serves_the_apps_handlers_one_request_per_warm_sign(monkeypatch):
    # Restored after the test: handler_calls installs its caller gate (and servers, which every test's end removes).
    monkeypatch.setattr(app_context, "_callers", None)
    transport = fakes.FakeKeyVaultTransport()
    sign, get = overhead.handler_calls(transport)
    before = transport.requests
    sign()
    get()
    assert transport.requests - before == 2
    response = keys.get_public_key(
        func.HttpRequest("GET", "http://localhost/api", body=b"", headers=tokens.bearer(), route_params={"key_id": fakes.KEY_ID})
    )
    assert json.loads(response.get_body())["public_key"]["type"] == "ec-p256"
    assert os.environ.get("IDENTITY_ENDPOINT") != fakes.IDENTITY_ENDPOINT  # the fake's settings did not leak


def test_the_fake_vault_challenges_a_bare_client_first():
    http_challenge_cache.clear()  # the SDK caches challenges per process; a new process starts empty
    transport = fakes.FakeKeyVaultTransport()
    client = KeyClient(fakes.VAULT_URL, fakes.StaticCredential(), transport=transport)
    assert client.get_key(fakes.KEY_NAME).key_type == "EC"
    assert transport.requests == 2  # the unauthenticated challenge, then the request


def test_the_table_shows_every_figure_with_its_verdict():
    text = table([Figure("ok", 1, "requests", 1), Figure("bad", 2, "x", 1.5), Figure("info", 3, "ms")])
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[2].split()[-1] == "yes" and lines[3].split()[-1] == "NO" and lines[4].split()[-1] == "-"


def test_median_interval_brackets_the_median_by_order_statistics():
    low, median, high = median_interval([float(value) for value in range(1, 101)])
    assert median == 50.5
    assert (low, high) == (40.0, 61.0)  # ranks 40 and 61 of 100: the 95% interval of a median
    assert median_interval([3.0]) == (3.0, 3.0, 3.0)


def test_paired_calls_are_credited_to_their_side_whichever_went_first():
    pairs = overhead.paired(lambda: time.sleep(0.002), lambda: None, pairs=4)
    assert len(pairs) == 4
    assert all(app > 0.002 > bare for app, bare in pairs)


def test_each_mint_run_gets_its_own_breakdown_whose_stages_add_up_to_the_plugins_mint():
    def run(vault: float) -> list[Figure]:
        mints = {spire_mint.MEMORY: [1.0e-3], spire_mint.BUILT_IN: [(1.5 + vault) * 1e-3], spire_mint.PLUGIN: [(3.0 + vault) * 1e-3]}
        plugin = {"sign": [(1.6 + vault) * 1e-3], "round_trip": [(1.5 + vault) * 1e-3], "function": [(1.0 + vault) * 1e-3]}
        app = {"handler": [(0.8 + vault) * 1e-3], "vault_call": [(0.7 + vault) * 1e-3], "vault": [(0.2 + vault) * 1e-3]}
        condition = "vault signing in 3.6 ms" if vault else ""
        return spire_mint._breakdown(mints, plugin, app, condition)  # noqa: SLF001

    plain, slow = run(0.0), run(3.6)
    assert not {figure.name for figure in plain} & {figure.name for figure in slow}
    for figures, plugin_mint in ((plain, 3.0), (slow, 6.6)):
        stages = [figure.value for figure in figures if "stage: " in figure.name and "(whole)" not in figure.name]
        assert len(stages) == 8
        assert round(sum(stages), 2) == plugin_mint
    assert "mint (vault signing in 3.6 ms) stage: the vault's own time (localvault)" in {figure.name for figure in slow}
