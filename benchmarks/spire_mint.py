"""`spire-server x509 mint` latency: through the plugin and the app, against SPIRE's in-memory KeyManager.

Two real spire-servers run side by side on the local stack, one with the plugin (its signatures go
plugin -> devhost -> localvault) and one with the built-in `memory` KeyManager, the floor. Rounds
alternate between them, so both see the same machine load. Each figure is the whole CLI call
(process start, API call over the socket, one signature), as an operator or script sees it.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure
from devtools.spire.server import MemoryKeyManager, PluginKeyManager, SpireServer, binaries, local_app

TRUST_DOMAIN = "bench.example.org"
WARMUP = 3
ROUNDS = 40


def run() -> list[Figure]:
    spire_server, plugin = binaries()
    with tempfile.TemporaryDirectory(prefix="spire-bench-") as work, local_app(Path(work), TRUST_DOMAIN) as app:
        servers = {
            "plugin + app": SpireServer(spire_server, Path(work) / "plugin", TRUST_DOMAIN, PluginKeyManager(plugin, app.devhost.url, "bench")),
            "memory": SpireServer(spire_server, Path(work) / "memory", TRUST_DOMAIN, MemoryKeyManager()),
        }
        try:
            for server in servers.values():
                server.start()
                server.wait_healthy()
            samples = _measure(servers)
        finally:
            for server in servers.values():
                server.stop()
    figures = []
    for label, seconds in samples.items():
        median, p90 = _ms(statistics.median(seconds)), _ms(statistics.quantiles(seconds, n=10)[-1])
        figures.append(Figure(f"x509 mint, {label}: median", median, "ms", notes=f"{ROUNDS} rounds, alternating"))
        figures.append(Figure(f"x509 mint, {label}: p90", p90, "ms"))
    added = statistics.median(a - b for a, b in zip(samples["plugin + app"], samples["memory"]))
    figures.append(Figure("x509 mint, added by plugin + app: median", _ms(added), "ms", notes="per-round difference"))
    return figures


def _measure(servers: dict[str, SpireServer]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {label: [] for label in servers}
    for round_number in range(WARMUP + ROUNDS):
        for label, server in servers.items():
            started = time.perf_counter()
            server.cli("x509 mint", "-spiffeID", f"spiffe://{TRUST_DOMAIN}/bench/{round_number}")
            if round_number >= WARMUP:
                samples[label].append(time.perf_counter() - started)
    return samples


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
