"""Benchmark: render the HTML report (and JUnit) for 1,000 scenario results.

    PYTHONPATH=. python benchmarks/bench_report.py [--scenarios N] [--repeat R] [--keep DIR]
    PYTHONPATH=. python benchmarks/bench_report.py --scenarios 5000 --json-write --report-cli \
        [--phases] [--rss] [--smtpscript DIR] [--no-html]

--json-write: in a fresh child process, builds the run and writes its JSON results
the way ``run --json`` does (api.write_reports): time, RSS before, peak RSS
(getrusage) and the tracemalloc peak of the write alone. --report-cli: writes
the results (indented, as older releases did, then compact) and times
``smtpscript report results.json --html out.html`` in a child: wall and CPU time and
its peak RSS (os.wait4; the parent stays small, as a child's peak starts at it).
--phases: the same report, phase by phase in a fresh child (what ``report`` does, in
its order): read + parse (api's reader), the compiled schema check, from_dict, then
each renderer cold (HTML, JUnit, Markdown). --rss: memory per kept result, built two
ways: one at a time, each from its own JSON (as a run keeps them: no big parse tree
alongside), and from one results file (as ``report`` reads it, the parsed JSON then
dropped). For each: tracemalloc's bytes held, and in a second child (no tracing) RSS,
steady (after a gc and malloc_trim) and peak.
--smtpscript DIR: the children import smtpscript from DIR (e.g. an unpacked
``git archive`` of an older commit) to compare before/after; they run in a
temporary folder, so that the current directory does not shadow DIR.

Builds a realistic RunResult: N scenario runs spread over 4 targets, ~8 steps
each (connect, EHLO with a capability list, STARTTLS with TLS facts, MAIL,
RCPT, DATA, QUIT) with the matching transcript; about 10 % failed, 3 % error,
5 % skipped. Measures the first (cold: Jinja import and template compile)
render and the median of R warm renders, the HTML size, and JUnit for
comparison. Aim: HTML under 2 s and under 10 MB for 1,000 results; ``report --html``
on 5,000 results under 5 s end to end (--report-cli).
Not a test: it prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from smtpscript.results import (
    ReplyRecord,
    RunResult,
    ScenarioResult,
    StepResult,
    TargetInfo,
    TlsFacts,
    TranscriptEntry,
)

TARGETS = [TargetInfo(f"mx{i}.example.org", f"mx{i}.example.org", 25) for i in range(1, 5)]
EHLO_CAPS = [
    "mx.example.org Hello audit.example.org [192.0.2.1]",
    "PIPELINING",
    "SIZE 52428800",
    "ETRN",
    "AUTH PLAIN LOGIN",
    "ENHANCEDSTATUSCODES",
    "8BITMIME",
    "DSN",
    "SMTPUTF8",
    "CHUNKING",
    "STARTTLS",
]
TLS = TlsFacts(
    version="TLSv1.3",
    cipher="TLS_AES_256_GCM_SHA384",
    bits=256,
    subject="CN=mx.example.org",
    issuer="CN=R11,O=Let's Encrypt,C=US",
    sans=["mx.example.org", "mail.example.org"],
    not_before="2026-01-01T00:00:00Z",
    not_after="2026-04-01T00:00:00Z",
    days_left=61,
    verified=True,
    server_name="mx.example.org",
    name_matches=True,
)

PLAN: list[tuple[str, str, list[str], int, list[str], str]] = [
    # kind, name, sent, code, reply lines, expected
    ("connect", "connect", [], 220, ["mx.example.org ESMTP Postfix (Debian/GNU)"], "220"),
    ("ehlo", "EHLO audit.example.org", ["EHLO audit.example.org"], 250, EHLO_CAPS, "250"),
    ("starttls", "STARTTLS", ["STARTTLS"], 220, ["2.0.0 Ready to start TLS"], "220"),
    ("ehlo", "EHLO audit.example.org", ["EHLO audit.example.org"], 250, EHLO_CAPS[:-1], "250"),
    (
        "send",
        "MAIL FROM:<probe@example.org>",
        ["MAIL FROM:<probe@example.org>"],
        250,
        ["2.1.0 Ok"],
        "2xx",
    ),
    (
        "send",
        "RCPT TO:<victim@example.net>",
        ["RCPT TO:<victim@example.net>"],
        554,
        ["5.7.1 <victim@example.net>: Relay access denied"],
        "550 or 554, status 5.7.x",
    ),
    (
        "data",
        "DATA",
        ["DATA", "Subject: probe", "", "hello", "."],
        250,
        ["2.0.0 Ok: queued as 4Xk2Lq0z3Jz9tX"],
        "250",
    ),
    ("send", "QUIT", ["QUIT"], 221, ["2.0.0 Bye"], "221"),
]


def build_run(n: int, seed: int = 7) -> RunResult:
    rng = random.Random(seed)
    scenarios = [_scenario(i, TARGETS[i % len(TARGETS)], rng) for i in range(n)]
    return RunResult(
        tool_version="0.1.0",
        started_at="2026-01-02T03:04:05+00:00",
        finished_at="2026-01-02T03:09:05+00:00",
        duration_ms=300_000.0,
        targets=TARGETS,
        scenarios=scenarios,
    )


def _scenario(i: int, target: TargetInfo, rng: random.Random) -> ScenarioResult:
    roll = rng.random()
    verdict = (
        "failed"
        if roll < 0.10
        else "error"
        if roll < 0.13
        else "skipped"
        if roll < 0.18
        else "passed"
    )
    steps, transcript = ([], []) if verdict == "skipped" else _steps(verdict, rng)
    failing = next((s for s in steps if s.verdict in ("failed", "error")), None)
    reason = (
        failing.message
        if failing
        else "env.SMTP_TOKEN is not defined"
        if verdict == "skipped"
        else None
    )
    sid = f"suite{i // 250}/check-{i // len(TARGETS):04d}.yaml"
    return ScenarioResult(
        scenario_id=sid,
        file=f"scenarios/{sid}",
        line=1,
        title=f"Check {i // len(TARGETS):04d}: refuses to relay for an unauthenticated outsider",
        description="An outside sender must not reach an outside recipient through us.",
        severity=rng.choice(["info", "low", "medium", "high", "critical"]),
        tags=["relay", "security"],
        references=["RFC 5321 section 3.6.2"],
        target=target,
        verdict=verdict,
        reason=reason,
        started_at="2026-01-02T03:04:06+00:00",
        duration_ms=sum(s.duration_ms for s in steps),
        steps=steps,
        transcript=transcript,
    )


def _steps(verdict: str, rng: random.Random) -> tuple[list[StepResult], list[TranscriptEntry]]:
    steps: list[StepResult] = []
    transcript: list[TranscriptEntry] = []
    clock = 0.0
    bad_at = rng.randrange(len(PLAN)) if verdict in ("failed", "error") else -1
    for n, (kind, name, sent, code, lines, expected) in enumerate(PLAN, start=1):
        ms = rng.uniform(0.3, 40.0)
        step_verdict = verdict if n - 1 == bad_at else "passed"
        message = f"expected {expected}; got {code} {lines[0]}" if n - 1 == bad_at else None
        steps.append(
            StepResult(
                index=n,
                path=f"steps[{n - 1}]",
                kind=kind,
                name=name,
                line=10 + 2 * n,
                verdict=step_verdict,
                expected=expected,
                message=message,
                sent=list(sent),
                replies=[ReplyRecord(code=code, status=None, lines=list(lines), elapsed_ms=ms)],
                duration_ms=ms,
                tls=TLS if kind == "starttls" else None,
            )
        )
        transcript += [TranscriptEntry(round(clock, 4), "C", s) for s in sent]
        clock += ms / 1000
        transcript += [TranscriptEntry(round(clock, 4), "S", f"{code} {t}") for t in lines]
        if kind == "starttls":
            transcript.append(TranscriptEntry(round(clock, 4), "*", "TLS established: TLSv1.3"))
        if n - 1 == bad_at:
            break
    return steps, transcript


def _time(fn, repeat: int) -> tuple[float, float, str]:
    start = time.perf_counter()
    out = fn()
    cold = time.perf_counter() - start
    warm = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - start)
    return cold, statistics.median(warm) if warm else cold, out


HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Runs in a child: argv = scenarios, out path. Prints one JSON line of figures.
_JSON_CHILD = """
import gc, json, resource, sys, time, tracemalloc
from pathlib import Path
sys.path.insert(0, {bench!r})
from bench_report import build_run
from smtpscript.api import write_reports

def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024

run = build_run(int(sys.argv[1]))
out = Path(sys.argv[2])
gc.collect()
before = rss_kb()
start = time.perf_counter()
assert write_reports(run, json_path=out) == []
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
assert write_reports(run, json_path=out) == []
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({{"seconds": elapsed, "rss_before_kb": before, "peak_rss_kb": peak,
                  "traced_peak_kb": traced // 1024, "bytes": out.stat().st_size}}))
"""


def _child_env(smtpscript: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(smtpscript)}


def _wait(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, Any, str]:
    """Run a child to its end: wall seconds, its own resource usage (ru_maxrss: peak RSS
    in kB; ru_utime + ru_stime: CPU seconds, steadier than wall on a busy machine), its
    stdout."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    out = child.stdout.read()
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"{argv[:4]}...: exit {child.returncode}: {err.decode()[-2000:]}")
    return seconds, usage, out.decode()


def bench_json_write(n: int, smtpscript: Path, folder: Path) -> dict[str, float]:
    code = _JSON_CHILD.format(bench=str(HERE))
    out = folder / "written.json"
    argv = [sys.executable, "-c", code, str(n), str(out)]
    _, _, text = _wait(argv, _child_env(smtpscript), folder)
    figures = json.loads(text)
    print(
        f"json write ({n} results): {figures['seconds']:.2f} s, "
        f"RSS {figures['rss_before_kb'] / 1024:.0f} MB before -> peak "
        f"{figures['peak_rss_kb'] / 1024:.0f} MB "
        f"(+{(figures['peak_rss_kb'] - figures['rss_before_kb']) / 1024:.0f} MB), "
        f"tracemalloc peak of the write {figures['traced_peak_kb'] / 1024:.1f} MB, "
        f"file {figures['bytes'] / 1e6:.1f} MB"
    )
    return figures


_RESULTS_CHILD = """
import json, sys
sys.path.insert(0, {bench!r})
from bench_report import build_run
from smtpscript.results import to_dict
data = to_dict(build_run(int(sys.argv[1])))
if sys.argv[3] == "lines":  # one scenario result per line
    text = "\\n".join(json.dumps(s, ensure_ascii=False) for s in data["scenarios"])
else:
    indent = int(sys.argv[3]) if sys.argv[3] != "none" else None
    text = json.dumps(data, indent=indent, ensure_ascii=False)
open(sys.argv[2], "w", encoding="utf-8").write(text + "\\n")
"""


def write_results(n: int, folder: Path, indent: str) -> Path:
    """N results as a JSON file (indent "none": compact), written by a child: a child's
    peak RSS (Linux) starts at its parent's RSS when spawned, so the parent stays small."""
    results = folder / f"results-{n}-{indent}.json"
    if not results.exists():
        code = _RESULTS_CHILD.format(bench=str(HERE))
        _wait([sys.executable, "-c", code, str(n), str(results), indent], _child_env(REPO), folder)
    return results


def bench_report_cli(n: int, smtpscript: Path, folder: Path) -> dict[str, float]:
    figures = {}
    for indent in ("2", "none"):  # as older releases wrote it, and compact as this one does
        results = write_results(n, folder, indent)
        argv = [sys.executable, "-m", "smtpscript", "report", str(results), "--html"]
        out = str(folder / "out.html")
        seconds, usage, _ = _wait([*argv, out], _child_env(smtpscript), folder)
        what = "indent=2" if indent == "2" else "compact"
        print(
            f"report --html ({n} results, {what} input, {results.stat().st_size / 1e6:.1f} MB): "
            f"{seconds:.2f} s wall ({usage.ru_utime + usage.ru_stime:.2f} s CPU), "
            f"peak RSS {usage.ru_maxrss / 1024:.0f} MB"
            + ("" if n != 5000 else f" (aim: under 5 s: {'met' if seconds < 5 else 'MISSED'})")
        )
        figures[what] = seconds
    return figures


# Runs in a child: argv = results path. Prints one JSON line: seconds per phase.
_PHASES_CHILD = """
import json, sys, time
from pathlib import Path
clock = time.perf_counter
start = clock()
from smtpscript import api
from smtpscript.results import from_dict
from smtpscript.schemafile import reader_fast_check
from smtpscript.report import render_html, render_junit, render_markdown
phases = {{"imports": clock() - start}}

def timed(name, fn):
    start = clock()
    out = fn()
    phases[name] = clock() - start
    return out

data = timed("read + parse", lambda: api._results_json(Path(sys.argv[1])))
fast = timed("schema check compile", lambda: reader_fast_check("results"))
assert timed("schema check", lambda: fast(data))
run = timed("from_dict", lambda: from_dict(data))
del data
html = timed("html render", lambda: render_html(run))
timed("html write", lambda: Path("out.html").write_text(html, encoding="utf-8"))
timed("junit render", lambda: render_junit(run))
timed("markdown render", lambda: render_markdown(run))
print(json.dumps(phases))
"""


def bench_phases(n: int, smtpscript: Path, folder: Path) -> dict[str, float]:
    results = write_results(n, folder, "none")
    argv = [sys.executable, "-c", _PHASES_CHILD.format(), str(results)]
    wall, usage, text = _wait(argv, _child_env(smtpscript), folder)
    phases = json.loads(text)
    print(f"report phases ({n} results, compact input), in a fresh child:")
    for name, seconds in phases.items():
        print(f"  {name:22} {seconds:6.2f} s")
    report = sum(v for k, v in phases.items() if k not in ("junit render", "markdown render"))
    print(
        f"  {'= report --html':22} {report:6.2f} s (child wall {wall:.2f} s with JUnit and "
        f"Markdown, interpreter start included; peak RSS {usage.ru_maxrss / 1024:.0f} MB)"
    )
    return phases


# Runs in a child: argv = results file, how ("whole": a results file as report reads it;
# "one": one result at a time, from a line each, as a run builds them), "traced" or "rss".
_RSS_CHILD = """
import gc, json, resource, sys, tracemalloc
from pathlib import Path
from smtpscript import api
from smtpscript.results import from_dict

def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024

def trim():
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back: steady RSS
    except OSError:
        pass

path, how, traced = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "traced"
trim()
before = rss_kb()
if traced:
    tracemalloc.start()
if how == "whole":
    data = api._results_json(path)
    kept = from_dict(data).scenarios
    del data
else:
    kept = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            kept += from_dict({{"scenarios": [json.loads(line)]}}).scenarios
trim()
figures = {{"results": len(kept), "rss_before_kb": before, "rss_steady_kb": rss_kb(),
           "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}
if traced:
    figures["held_bytes"], figures["traced_peak_bytes"] = tracemalloc.get_traced_memory()
print(json.dumps(figures))
"""


def bench_rss(n: int, smtpscript: Path, folder: Path) -> dict[str, dict[str, float]]:
    """Memory kept results take, per result: held (tracemalloc) and RSS, steady and peak."""
    out = {}
    print(f"memory per kept result ({n} results; held: tracemalloc; RSS steady: after a gc")
    print("and malloc_trim; peak: ru_maxrss; all less the child's RSS before):")
    for how, indent, what in (
        ("one", "lines", "as a run keeps them (one at a time, each from its JSON)"),
        ("whole", "none", "as report reads them (one results file, JSON dropped)"),
    ):
        results = write_results(n, folder, indent)
        code = _RSS_CHILD.format()
        figures = {}
        for mode in ("traced", "rss"):
            argv = [sys.executable, "-c", code, str(results), how, mode]
            figures[mode] = json.loads(_wait(argv, _child_env(smtpscript), folder)[2])
        traced, rss = figures["traced"], figures["rss"]
        count = traced["results"]
        per = {
            "held_kb": traced["held_bytes"] / 1024 / count,
            "rss_steady_kb": (rss["rss_steady_kb"] - rss["rss_before_kb"]) / count,
            "rss_peak_kb": (rss["peak_rss_kb"] - rss["rss_before_kb"]) / count,
        }
        total = " / ".join(f"{v * count / 1024:.0f}" for v in per.values())
        print(
            f"  {what}: held {per['held_kb']:.1f} kB, RSS steady {per['rss_steady_kb']:.1f} kB, "
            f"peak {per['rss_peak_kb']:.1f} kB (in all {total} MB)"
        )
        out[how] = per
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write report.html and junit.xml here")
    parser.add_argument("--json-write", action="store_true", help="time writing JSON results")
    parser.add_argument(
        "--report-cli", action="store_true", help="time `smtpscript report --html` on results"
    )
    parser.add_argument(
        "--phases", action="store_true", help="time `report` phase by phase in a child"
    )
    parser.add_argument("--rss", action="store_true", help="measure memory per kept result")
    parser.add_argument(
        "--smtpscript", type=Path, default=REPO, help="children import smtpscript from here"
    )
    parser.add_argument("--no-html", action="store_true", help="skip the in-process renders")
    args = parser.parse_args(argv)

    if args.json_write or args.report_cli or args.phases or args.rss:
        print(f"smtpscript from {args.smtpscript.resolve()}")
        with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
            if args.json_write:
                bench_json_write(args.scenarios, args.smtpscript, Path(tmp))
            if args.report_cli:
                bench_report_cli(args.scenarios, args.smtpscript, Path(tmp))
            if args.phases:
                bench_phases(args.scenarios, args.smtpscript, Path(tmp))
            if args.rss:
                bench_rss(args.scenarios, args.smtpscript, Path(tmp))
        if args.no_html:
            return 0

    run = build_run(args.scenarios)
    from smtpscript.report import render_html, render_junit

    cold, warm, html = _time(lambda: render_html(run), args.repeat)
    size = len(html.encode("utf-8"))
    jcold, jwarm, junit = _time(lambda: render_junit(run), args.repeat)
    steps = sum(len(s.steps) for s in run.scenarios)
    print(
        f"results: {len(run.scenarios)} scenario runs, {steps} steps, "
        f"{sum(len(s.transcript) for s in run.scenarios)} transcript lines"
    )
    print(
        f"html:  first render {cold:.3f} s, warm median {warm:.3f} s, "
        f"size {size / 1e6:.2f} MB ({size / len(run.scenarios) / 1e3:.1f} kB per result)"
    )
    print(
        f"junit: first render {jcold:.3f} s, warm median {jwarm:.3f} s, "
        f"size {len(junit.encode()) / 1e6:.2f} MB"
    )
    ok = cold < 2.0 and size < 10e6
    print("target (HTML < 2 s and < 10 MB):", "met" if ok else "MISSED")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        (args.keep / "report.html").write_text(html, encoding="utf-8")
        (args.keep / "junit.xml").write_text(junit, encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
