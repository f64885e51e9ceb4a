"""Benchmark: cold start of the CLI.

    PYTHONPATH=. python benchmarks/bench_startup.py [--runs N]

Times ``smtpscript --help`` and ``smtpscript --version`` in fresh child
processes (median and best of N runs), next to a bare ``python -c pass`` for
reference, then shows ``python -X importtime``'s biggest imports for
``--help``. Aim: under 0.25 s. Not a test: it prints figures only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = [str(ROOT), os.environ.get("PYTHONPATH", "")]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in PATHS if p)}


def _run(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=ENV, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def _timings(argv: list[str], runs: int) -> tuple[float, float]:
    _run(argv)  # warm the OS file cache; every timed run is still a new interpreter
    times = [_run(argv) for _ in range(runs)]
    return statistics.median(times), min(times)


def _importtime(argv: list[str], top: int) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, module) of the slowest imports, nested ones indented."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        env=ENV,
        check=False,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, total, name = line.removeprefix("import time:").split("|", 2)
        rows.append((int(own), int(total), name.rstrip()))
    return sorted(rows, key=lambda r: r[1], reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    cli = [sys.executable, "-m", "smtpscript"]
    cases = {
        "python -c pass (reference)": [sys.executable, "-c", "pass"],
        "smtpscript --version": [*cli, "--version"],
        "smtpscript --help": [*cli, "--help"],
        "smtpscript schema": [*cli, "schema"],
    }
    print(f"cold start, {args.runs} runs each ({sys.executable})")
    for label, argv in cases.items():
        median, best = _timings(argv, args.runs)
        print(f"  {label:28s} median {median:6.3f} s   best {best:6.3f} s")

    print(f"\nbiggest imports of `smtpscript --help` (python -X importtime), top {args.top}:")
    print(f"  {'cumulative':>10s} {'self':>8s}  module")
    for own, total, name in _importtime(["-m", "smtpscript", "--help"], args.top):
        print(f"  {total / 1000:8.1f}ms {own / 1000:6.1f}ms  {name}")


if __name__ == "__main__":
    main()
