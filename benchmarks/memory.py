"""Memory: RSS of a warm instance (its own process, fake instant Key Vault) over 10,000 signatures.

``python -m benchmarks.memory`` is the instance: it prints its RSS readings as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import ROOT, Figure, rss_mib

THOUSANDS = 10
GROWTH_BUDGET_MIB = 2.0


def measure() -> dict[str, float]:
    from benchmarks import fakes, overhead

    sign, _ = overhead.handler_calls(fakes.FakeKeyVaultTransport())
    readings = {"rss_warm_mib": rss_mib()}
    for thousand in range(1, THOUSANDS + 1):
        for _ in range(1000):
            sign()
        readings[f"rss_after_{thousand}k_mib"] = rss_mib()
    return readings


def run() -> list[Figure]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.memory"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"the memory benchmark failed: {done.stderr[-2000:]}")
    readings = json.loads(done.stdout.strip().splitlines()[-1])
    first, last = readings["rss_after_1k_mib"], readings[f"rss_after_{THOUSANDS}k_mib"]
    return [
        Figure(
            "memory: RSS after 1,000 signatures", round(first, 1), "MiB", notes=f"warm, before signing: {readings['rss_warm_mib']:.1f} MiB"
        ),
        Figure(f"memory: RSS after {THOUSANDS},000 signatures", round(last, 1), "MiB"),
        Figure(
            f"memory: growth from 1,000 to {THOUSANDS},000 signatures",
            round(last - first, 2),
            "MiB",
            GROWTH_BUDGET_MIB,
            "sign_data handler in a fresh process; gc.collect() before each reading",
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(measure()))
