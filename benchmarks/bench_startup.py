"""Benchmark: cold start of the CLI, against the goals of issue 13.

    PYTHONPATH=. python benchmarks/bench_startup.py [--runs N] [--imports CASE] [--top N]

Times ``smtpscript --version``, ``--help`` and ``validate`` of one scenario file
in fresh child processes (median and best of N runs), next to a bare
``python -c pass``, and prints each one's cost over that reference against its
goal: ``--version`` within 80 ms, ``validate`` of one file within 200 ms. Then
shows ``python -X importtime``'s biggest imports for one case (default validate).

The console script next to the interpreter is timed when it exists (what users
run), else ``python -m smtpscript``. PYTHONDONTWRITEBYTECODE is dropped from the
children's environment, and each case runs once untimed first, so the .pyc
caches exist: without them every import compiles and the figures mean nothing.
Not a test: it prints figures only.
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
ENV.pop("PYTHONDONTWRITEBYTECODE", None)
SCENARIO = "scenarios/relay/no-open-relay.yaml"
REFERENCE = "python -c pass"
GOALS = {"--version": 0.080, "validate": 0.200}  # seconds over the reference


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("smtpscript")
    return [str(script)] if script.exists() else [sys.executable, "-m", "smtpscript"]


def _cases() -> dict[str, list[str]]:
    cli = _cli()
    return {
        REFERENCE: [sys.executable, "-c", "pass"],
        "--version": [*cli, "--version"],
        "--help": [*cli, "--help"],
        "validate": [*cli, "validate", SCENARIO],
    }


def _run(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=ENV, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def _timings(argv: list[str], runs: int) -> tuple[float, float]:
    _run(argv)  # writes missing .pyc files, warms the OS file cache
    times = [_run(argv) for _ in range(runs)]
    return statistics.median(times), min(times)


def _verdict(label: str, over: float) -> str:
    goal = GOALS.get(label)
    if goal is None:
        return ""
    margin = (goal - over) * 1000
    verdict = "met" if margin >= 0 else "missed"
    return f"goal +{goal * 1000:.0f} ms: {verdict} by {abs(margin):.0f} ms"


def _importtime(argv: list[str], top: int) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, module) of the slowest imports, nested ones indented."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
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
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--imports", choices=[*GOALS, "--help"], default="validate")
    args = parser.parse_args()

    cases = _cases()
    print(f"cold start, median of {args.runs} runs ({' '.join(cases['--help'][:-1])})")
    reference = 0.0
    for label, argv in cases.items():
        median, best = _timings(argv, args.runs)
        reference = reference or median
        line = f"  {label:16s} median {median * 1000:6.1f} ms  best {best * 1000:6.1f} ms"
        if label != REFERENCE:
            over = median - reference
            line += f"  {over * 1000:+6.1f} ms  {_verdict(label, over)}"
        print(line.rstrip())

    argv = ["-m", "smtpscript", *cases[args.imports][len(_cli()) :]]
    print(f"\nbiggest imports of `{' '.join(argv)}` (python -X importtime), top {args.top}:")
    print(f"  {'cumulative':>10s} {'self':>8s}  module")
    for own, total, name in _importtime(argv, args.top):
        print(f"  {total / 1000:8.1f}ms {own / 1000:6.1f}ms  {name}")


if __name__ == "__main__":
    main()
