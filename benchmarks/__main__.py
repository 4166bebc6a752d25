"""``python -m benchmarks`` (``make bench``): every figure, a table, bench-results.json; exit 1 if a budget fails."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback

from benchmarks import cold_start, concurrency, memory, overhead, requests_per_op, spire_mint
from benchmarks.common import ROOT, Figure

GROUPS = {
    "requests": requests_per_op.run,
    "overhead": overhead.run,
    "cold_start": cold_start.run,
    "concurrency": concurrency.run,
    "memory": memory.run,
    "spire_mint": spire_mint.run,
}
RESULTS = ROOT / "bench-results.json"


def _budget(figure: Figure) -> str:
    if figure.budget is None:
        return "-"
    return str(figure.budget) if isinstance(figure.budget, str) else f"<= {figure.budget}"


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "budget", "holds", "notes")]
    for figure in figures:
        holds = "-" if figure.holds is None else ("yes" if figure.holds else "NO")
        rows.append((figure.name, f"{figure.value} {figure.unit}".strip(), _budget(figure), holds, figure.notes))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4] for row in rows]
    lines.insert(1, "-" * (sum(widths) + 8 + len("notes")))
    return "\n".join(line.rstrip() for line in lines)


def main() -> int:
    started = time.perf_counter()
    figures: list[Figure] = []
    for group in sys.argv[1:] or GROUPS:  # e.g. `python -m benchmarks overhead memory`
        run = GROUPS[group]
        print(f"bench: {group}...", file=sys.stderr, flush=True)
        group_started = time.perf_counter()
        try:
            figures += run()
        except Exception as error:  # a figure that cannot be computed fails the run
            traceback.print_exc()
            figures.append(Figure(f"{group}: not computed", type(error).__name__, "", "computed", str(error)[:200]))
        print(f"bench: {group} took {time.perf_counter() - group_started:.1f} s", file=sys.stderr, flush=True)
    seconds = round(time.perf_counter() - started, 1)
    all_hold = all(figure.holds is not False for figure in figures)
    print(table(figures))
    print(f"\n{sum(f.holds is True for f in figures)} budgets hold, {sum(f.holds is False for f in figures)} fail; {seconds} s")
    RESULTS.write_text(
        json.dumps(
            {
                "all_budgets_hold": all_hold,
                "seconds": seconds,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "figures": [figure.as_dict() for figure in figures],
            },
            indent=2,
        )
        + "\n"
    )
    return 0 if all_hold else 1


if __name__ == "__main__":
    sys.exit(main())
