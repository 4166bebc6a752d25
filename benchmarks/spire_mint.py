"""X.509-SVID mint latency through spire-server's API, three KeyManagers side by side, and where it goes.

Three real spire-servers run on the local stack: one with SPIRE's in-memory KeyManager (the floor),
one with SPIRE's built-in `azure_key_vault` KeyManager (the Go SDK, straight to localvault) and one
with our plugin (plugin -> app on devhost -> the same localvault). The plugin signs in to the local
Entra ID with a client secret, and sends its token with every call, which the app verifies. A Go
client (devtools/spire mintbench) mints through each server's API (svid v1 MintX509SVID over its
Unix socket) in interleaved rounds, so machine noise reaches all three alike.

The breakdown of one mint through our path measures each stage at its own boundary. In the same
rounds, the client also has the plugin's SignData sign without SPIRE (its HTTP round trip timed, and
devhost's Server-Timing giving the function's own time). After them, the app's sign_data handler runs
in this process against the same vault (the Key Vault call timed, and localvault's Server-Timing
giving the vault's own time). Stages are differences of medians.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from benchmarks.common import Figure, environ, median_interval
from devtools.spire.server import (
    CLIENT_SECRET,
    AzureKeyVaultKeyManager,
    LocalApp,
    MemoryKeyManager,
    PluginKeyManager,
    SpireServer,
    binaries,
    local_app,
    plugin_data,
)
from devtools.stack.services import ROOT
from functions import keys
from shared import app_context
from shared.algorithms import KeyType
from shared.settings import load_caller_settings, load_settings

TRUST_DOMAIN = "bench.example.org"
WARMUP = 10
# Rounds on the plain vault (the breakdown's), and on the slower vault whose ratio the budget judges:
# enough that the median of the paired ratios has a 95% interval a few hundredths wide.
ROUNDS, JUDGED_ROUNDS = 200, 1000
MINT_RATIO_BUDGET = 1.5
MEMORY, BUILT_IN, PLUGIN = "in-memory", "built-in azure_key_vault", "plugin + app"
# The plugin's identity; it acts as the server measured, and as the server of the stages' own sign.
IDENTITY, PLUGIN_SERVER, STAGES_SERVER = "bench-spire-server", "bench", "bench-stages"
# The Go SDK accepts a challenge whose resource host (port included) is a parent domain of the vault's.
CHALLENGE_RESOURCE = "https://0.0.1:{port}"
MINT_CLIENT_PACKAGE = "./mintbench"
# The vault of the first measurement, a Lowkey Vault, signed in about 3.6 ms (a real Key Vault takes
# milliseconds too); localvault signs in a fraction of one. The budget is judged with this added: on
# the plain vault, the fixed cost of any external plugin (a go-plugin hop and an HTTP hop, about 1 ms)
# is most of a mint, and its ratio there is printed as information.
REMOTE_SIGN_MS = 3.6


def run() -> list[Figure]:
    spire_server, plugin = binaries()
    with tempfile.TemporaryDirectory(prefix="mintbench-") as tmp:
        mint_client = build_mint_client(Path(tmp))
        samples, through_plugin, in_app = _measure(spire_server, plugin, mint_client, ROUNDS)
        remote, remote_through_plugin, remote_in_app = _measure(spire_server, plugin, mint_client, JUDGED_ROUNDS, REMOTE_SIGN_MS)
    remote_condition = f"vault signing in {REMOTE_SIGN_MS} ms"
    return (
        _comparison(samples)
        + _breakdown(samples, through_plugin, in_app)
        + _comparison(remote, remote_condition, budget=MINT_RATIO_BUDGET)
        + _breakdown(remote, remote_through_plugin, remote_in_app, remote_condition)
    )


def _measure(
    spire_server: Path, plugin: Path, mint_client: Path, rounds: int, vault_sign_latency_ms: float = 0.0
) -> tuple[dict[str, list[float]], dict, dict]:
    """Mint latencies per KeyManager, the plugin's stages and the in-app stages, on a fresh local stack."""
    # devhost sends its Server-Timing only when asked (the Functions host never does); it inherits this.
    with (
        environ({"DEVHOST_SERVER_TIMING": "1"}),
        tempfile.TemporaryDirectory(prefix="spire-bench-") as tmp,
        local_app(Path(tmp), TRUST_DOMAIN, {IDENTITY: (PLUGIN_SERVER, STAGES_SERVER)}, CHALLENGE_RESOURCE, vault_sign_latency_ms) as app,
    ):
        work = Path(tmp)
        servers = _servers(spire_server, plugin, app, work)
        try:
            for server in servers.values():
                server.start()
            for server in servers.values():
                server.wait_healthy()
            mints, through_plugin = _mint(mint_client, list(servers.values()), app, rounds)
            in_app = _sign_in_app(app)
        finally:
            for server in servers.values():
                server.stop()
    return dict(zip(servers, mints)), through_plugin, in_app


def built_in_sign_in(app: LocalApp) -> dict[str, str]:
    """The environment in which SPIRE's built-in plugin signs in through Azure's default credential chain:
    localvault's App Service style token endpoint serves it, and its CA is trusted through SSL_CERT_FILE."""
    return {
        "IDENTITY_ENDPOINT": app.vault.details["token_url"],
        "IDENTITY_HEADER": "local-development",
        "SSL_CERT_FILE": app.vault.details["ca_bundle"],
    }


def _servers(spire_server: Path, plugin: Path, app: LocalApp, work: Path) -> dict[str, SpireServer]:
    vault_port = urlsplit(app.vault.url).port
    built_in_env = built_in_sign_in(app)
    sign_in = app.sign_in(IDENTITY, CLIENT_SECRET)
    return {
        MEMORY: SpireServer(spire_server, work / "memory", TRUST_DOMAIN, MemoryKeyManager()),
        BUILT_IN: SpireServer(
            spire_server,
            work / "built-in",
            TRUST_DOMAIN,
            AzureKeyVaultKeyManager(f"https://127.0.0.1:{vault_port}", "bench-built-in", built_in_env),
        ),
        PLUGIN: SpireServer(
            spire_server,
            work / "plugin",
            TRUST_DOMAIN,
            PluginKeyManager(plugin, app.devhost.url, PLUGIN_SERVER, sign_in),
        ),
    }


def build_mint_client(work: Path) -> Path:
    binary = work / "mintbench"
    subprocess.run(["go", "build", "-o", str(binary), MINT_CLIENT_PACKAGE], cwd=ROOT / "devtools" / "spire", check=True)
    return binary


def _mint(mint_client: Path, servers: list[SpireServer], app: LocalApp, rounds: int) -> tuple[list[list[float]], dict[str, list[float]]]:
    """Each server's mint latencies, and the plugin's signing stages, in seconds, from interleaved rounds
    (the n-th of each list from the same round).

    The client signs in in its own process as the plugin in spire-server does, from its environment.
    """
    sign_in = app.sign_in(IDENTITY, CLIENT_SECRET)
    argv = [
        str(mint_client),
        "-trust-domain",
        TRUST_DOMAIN,
        "-warmup",
        str(WARMUP),
        "-rounds",
        str(rounds),
        "-plugin-data",
        plugin_data(app.devhost.url, sign_in, STAGES_SERVER),
        *(str(server.socket_path) for server in servers),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, env={**os.environ, **sign_in.env})
    if result.returncode != 0:
        raise RuntimeError(f"mintbench failed: {result.stderr.strip()[-500:]}")
    output = json.loads(result.stdout)
    mints = [[ns / 1e9 for ns in column] for column in output["nanoseconds"]]
    return mints, {stage: [ns / 1e9 for ns in values] for stage, values in output["plugin"].items()}


def _sign_in_app(app: LocalApp) -> dict[str, list[float]]:
    """The sign_data handler in this process against the same vault: its time, its Key Vault call, the vault's own.

    Each call carries the plugin identity's token, which the handler verifies as the app does.
    """
    vault_times: list[float] = []

    def record_vault_time(response) -> None:
        timing = response.http_response.headers.get("Server-Timing", "")
        if timing.startswith("vault;dur="):
            vault_times.append(float(timing.removeprefix("vault;dur=")) / 1000)

    with environ(app.env):  # where azure-identity looks for the token endpoint
        servers = app_context.build_servers(load_settings(os.environ), raw_response_hook=record_vault_time)
        manager = servers.serve(STAGES_SERVER)
        key = manager.generate_key("bench-in-app", KeyType.EC_P256)
    call_times: list[float] = []
    manager._vault.sign = _timed(manager._vault.sign, call_times)  # noqa: SLF001 (instrumenting the one call)
    body = json.dumps({"data": "q" * 43 + "=", "hash_algorithm": "SHA256", "key_fingerprint": key.fingerprint}).encode()
    token = app.entra.token(app.identities[IDENTITY], app.api)
    headers = {"Authorization": f"Bearer {token}", "X-SPIRE-Server-Name": STAGES_SERVER}
    request = func.HttpRequest(
        "POST", "http://localhost/api/keys/bench-in-app/sign", body=body, headers=headers, route_params={"key_id": "bench-in-app"}
    )
    app_context.install_servers(servers)
    app_context._callers = app_context.build_caller_gate(load_caller_settings(app.env))
    handler_times: list[float] = []
    try:
        for _ in range(WARMUP + ROUNDS):
            started = time.perf_counter()
            response = keys.sign_data(request)
            handler_times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.get_body()
    finally:
        app_context.install_servers(None)
        app_context._callers = None
    return {"handler": handler_times[WARMUP:], "vault_call": call_times[WARMUP:], "vault": vault_times[-ROUNDS:]}


def _timed(call: Callable, into: list[float]) -> Callable:
    def timed(*args):
        started = time.perf_counter()
        try:
            return call(*args)
        finally:
            into.append(time.perf_counter() - started)

    return timed


def _percentile(seconds: list[float], percent: int) -> float:
    return statistics.quantiles(seconds, n=100, method="inclusive")[percent - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _comparison(samples: dict[str, list[float]], condition: str = "", budget: float | None = None) -> list[Figure]:
    """Each KeyManager's mint latencies; and the plugin's against the built-in's, round by round (paired)."""
    figures = []
    mint = f"mint ({condition})" if condition else "mint"
    rounds = len(samples[PLUGIN])
    for label, seconds in samples.items():
        notes = f"{rounds} mints through the server API, interleaved with the other two"
        figures.append(Figure(f"{mint}, {label}: median", _ms(statistics.median(seconds)), "ms", notes=notes))
        figures.append(Figure(f"{mint}, {label}: p90", _ms(_percentile(seconds, 90)), "ms"))
        figures.append(Figure(f"{mint}, {label}: p99", _ms(_percentile(seconds, 99)), "ms"))
    pairs = list(zip(samples[PLUGIN], samples[BUILT_IN], strict=True))
    low, ratio, high = median_interval([plugin / built_in for plugin, built_in in pairs])
    figures.append(
        Figure(
            f"{mint}, {PLUGIN} / {BUILT_IN}: median of paired ratios",
            round(ratio, 2),
            "x",
            budget,
            f"{rounds} rounds, same vault; 95% interval {low:.2f}-{high:.2f}",
        )
    )
    low, added, high = median_interval([plugin - built_in for plugin, built_in in pairs])
    figures.append(
        Figure(
            f"{mint}, {PLUGIN} - {BUILT_IN}: median of paired differences",
            _ms(added),
            "ms",
            notes=f"the time the plugin and the app add; 95% interval {_ms(low)}-{_ms(high)} ms",
        )
    )
    for name, percent in (("p90", 90), ("p99", 99)):
        ratio = _percentile(samples[PLUGIN], percent) / _percentile(samples[BUILT_IN], percent)
        figures.append(Figure(f"{mint} {name}, {PLUGIN} / {BUILT_IN}", round(ratio, 2), "x", notes="same vault, same run"))
    return figures


def _breakdown(
    samples: dict[str, list[float]], through_plugin: dict[str, list[float]], in_app: dict[str, list[float]], condition: str = ""
) -> list[Figure]:
    mint = f"mint ({condition})" if condition else "mint"
    median = {
        name: statistics.median(values)
        for name, values in {
            **{f"mint {label}": seconds for label, seconds in samples.items()},
            **{f"plugin {name}": values for name, values in through_plugin.items()},
            **{f"app {name}": values for name, values in in_app.items()},
        }.items()
    }
    stages = [
        ("SPIRE itself (a mint with the in-memory KeyManager)", median[f"mint {MEMORY}"]),
        ("SPIRE -> plugin (go-plugin gRPC)", median[f"mint {PLUGIN}"] - median[f"mint {MEMORY}"] - median["plugin sign"]),
        ("the plugin's own work", median["plugin sign"] - median["plugin round_trip"]),
        ("the HTTP hop and devhost", median["plugin round_trip"] - median["plugin function"]),
        # The worker pool's hand-off and the wake-ups of a path through four processes: what the
        # function takes on devhost, under the interleaved load, beyond the same handler run alone.
        ("the function on devhost beyond its handler run alone", median["plugin function"] - median["app handler"]),
        ("the app's code around the Key Vault call", median["app handler"] - median["app vault_call"]),
        ("the Python SDK and TLS, client side", median["app vault_call"] - median["app vault"]),
        ("the vault's own time (localvault)", median["app vault"]),
    ]
    figures = [
        Figure(f"{mint} stage: {name}", _ms(seconds), "ms", notes="difference of medians; the stages add up to the mint")
        for name, seconds in stages
    ]
    figures.append(
        Figure(
            f"{mint} stage: the app's function on devhost (whole)", _ms(median["plugin function"]), "ms", notes="devhost's Server-Timing"
        )
    )
    go_sdk = median[f"mint {BUILT_IN}"] - median[f"mint {MEMORY}"] - median["app vault"]
    figures.append(
        Figure(
            f"{mint} stage, built-in: the Go SDK and TLS, client side",
            _ms(go_sdk),
            "ms",
            notes="built-in mint - in-memory mint - the vault's own time",
        )
    )
    without_devhost = median[f"mint {PLUGIN}"] - (median["plugin round_trip"] - median["plugin function"])
    figures.append(
        Figure(
            f"{mint} median, {PLUGIN} without the HTTP hop and devhost / {BUILT_IN}",
            round(without_devhost / median[f"mint {BUILT_IN}"], 2),
            "x",
        )
    )
    return figures
