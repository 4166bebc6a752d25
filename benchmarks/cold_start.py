"""Cold start: importing the app against importing the SDKs it is built on, in fresh processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks.common import ROOT, Figure, median_ratio

ROUNDS = 20
BUDGET = 1.15
NETWORK_MARKER = "BENCH-NETWORK-ATTEMPT"
# Every way out to the network fails loudly, and is reported on stderr even if a library swallows it.
GUARD = f"""
import socket, sys
def _refuse(*args, **kwargs):
    sys.stderr.write("{NETWORK_MARKER} %r\\n" % ([a for a in args if not isinstance(a, socket.socket)],))
    raise OSError("the benchmark forbids network access during import")
socket.socket.connect = socket.socket.connect_ex = _refuse
socket.create_connection = socket.getaddrinfo = _refuse
"""
APP = GUARD + "import function_app"
# The libraries the app is built on, OpenTelemetry's API among them (the exporters load only when configured).
SDK_MODULES = (
    "azure.functions",
    "azure.keyvault.keys",
    "azure.identity",
    "azure.storage.blob",
    "cryptography",
    "opentelemetry.trace",
    "opentelemetry.metrics",
)
SDKS = GUARD + f"import {', '.join(SDK_MODULES)}"


def _run(code: str) -> tuple[float, str]:
    """Seconds for a fresh interpreter to run ``code`` in the repository root, and its stderr."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"python -c failed: {done.stderr[-2000:]}")
    return elapsed, done.stderr


def run() -> list[Figure]:
    # The SDKs were byte-compiled when pip installed them; compile the app's modules too, as they
    # are on every import but the first (unless PYTHONDONTWRITEBYTECODE is set, as it may be here).
    subprocess.run([sys.executable, "-m", "compileall", "-q", "function_app.py", "functions", "shared"], cwd=ROOT, check=True)
    _run(APP), _run(SDKS)  # warm the page cache
    rounds, attempts = [], []
    for number in range(ROUNDS):
        order = (APP, SDKS) if number % 2 == 0 else (SDKS, APP)
        results = {code: _run(code) for code in order}
        rounds.append((results[APP][0], results[SDKS][0]))
        attempts += [line for _, err in results.values() for line in err.splitlines() if NETWORK_MARKER in line]
    app_times, sdk_times = sorted(a for a, _ in rounds), sorted(b for _, b in rounds)
    return [
        Figure(
            "cold start: import function_app / import SDKs",
            round(median_ratio(rounds), 3),
            "x",
            BUDGET,
            f"median of {ROUNDS} interleaved rounds of fresh processes, app byte-compiled like the SDKs",
        ),
        Figure("cold start: import function_app", round(app_times[ROUNDS // 2] * 1000), "ms"),
        Figure("cold start: import SDKs only", round(sdk_times[ROUNDS // 2] * 1000), "ms"),
        Figure(
            "cold start: network at import",
            "none" if not attempts else f"{len(attempts)} attempts",
            "",
            "none",
            "; ".join(attempts[:3]) or "socket connect/getaddrinfo guarded in every run",
        ),
    ]
