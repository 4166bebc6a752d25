"""Helpers shared by the figure groups: the Figure record, medians, RSS and app settings."""

from __future__ import annotations

import gc
import math
import os
import statistics
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    """One measured figure. ``budget`` None: printed, not judged. Numeric budgets are upper bounds."""

    name: str
    value: float | int | str
    unit: str = ""
    budget: float | int | str | None = None
    notes: str = ""

    @property
    def holds(self) -> bool | None:
        if self.budget is None:
            return None
        if isinstance(self.budget, str):
            return self.value == self.budget
        return self.value <= self.budget

    def as_dict(self) -> dict:
        return {**asdict(self), "holds": self.holds}


def median_ratio(pairs: list[tuple[float, float]]) -> float:
    """The median of per-round ratios a/b (rounds measured side by side)."""
    return statistics.median(a / b for a, b in pairs)


def median_interval(values: Sequence[float], z: float = 1.96) -> tuple[float, float, float]:
    """(low, median, high): the median and its distribution-free 95% confidence interval, from order statistics.

    With n values the interval runs from the value of rank floor(n/2 - z*sqrt(n)/2) to that of rank
    ceil(1 + n/2 + z*sqrt(n)/2) (ranks from 1); it assumes nothing of the values' distribution.
    """
    ordered = sorted(values)
    n = len(ordered)
    half_width = z * math.sqrt(n) / 2
    low_rank = max(1, math.floor(n / 2 - half_width))
    high_rank = min(n, math.ceil(1 + n / 2 + half_width))
    return ordered[low_rank - 1], statistics.median(ordered), ordered[high_rank - 1]


def rss_mib() -> float:
    """This process's resident set size after a full collection, in MiB (Linux /proc)."""
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@contextmanager
def environ(settings: Mapping[str, str]) -> Iterator[None]:
    """Make ``settings`` app settings (the app and azure-identity read os.environ), then restore it."""
    saved = dict(os.environ)
    os.environ.update(settings)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
