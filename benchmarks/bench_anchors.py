"""Benchmark anchors: smtpscript's load mode side by side with other SMTP clients.

    python benchmarks/bench_anchors.py [--repeat K] [--sessions N] [--swaks-sessions M]
        [--json FILE] [--timeout S] [--only smtpscript,bare,smtp-source,smtplib,swaks]

Starts Postfix's C ``smtp-sink`` on a free loopback port and sends it the same full
session (banner, EHLO, MAIL, RCPT, DATA with a 1 KB body, QUIT) from:

- smtpscript's load mode (``smtpscript run SCENARIO -t 127.0.0.1:PORT --repeat N -j C``)
  at c=1 and c=50, on asyncio and on uvloop, and with ``--workers 2`` at c=50; and the
  same on the general runner (``--engine general``, what load mode ran before the
  compiled plan) for comparison;
- Postfix's C ``smtp-source`` at the same concurrency (note: it greets with HELO);
- Python's smtplib, one session after another;
- swaks, one session after another (a small N: a Perl process per session);
- a bare asyncio client (bench_run.bare_session) on asyncio and on uvloop, c=1 and c=50.

Every client runs in a child process with a timeout, one at a time. Sessions/s: for
smtpscript from the ``load`` section of its JSON (the run itself, not the process's
start); for smtp-source and swaks the child's wall time; for smtplib and the bare client
the measured loop inside the child. CPU per session: for smtpscript the child's CPU
(user + system, RUSAGE_CHILDREN deltas; workers included) minus a start-up run's
(``--repeat 1``, same options), divided by the sessions; for smtp-source and swaks the
child's whole CPU; for smtplib and the bare client the CPU of the measured loop
(RUSAGE_SELF in the child, after a warm-up). Each measurement runs K times (rounds
interleaved) and the median is reported. The sink's own CPU is shown as % of a core,
to tell a client-bound figure from a sink-bound one.

Stops everything it started, also on Ctrl-C or SIGTERM. Traffic goes to 127.0.0.1 only.
Not a test (never run by the test suite): it prints figures and the issue-13 ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # bench_run sits next to this file (benchmarks/ is no package)
    sys.path.insert(0, str(HERE))

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
HOST = "127.0.0.1"
HELO = "bench.client.test"
SENDER = "bench@client.test"
RECIPIENT = "alice@sandbox.test"
BODY_BYTES = 1024
# 16 lines of 62 characters + CRLF = 1,024 bytes of body on the wire
BODY = "".join(f"{i:02d} " + "x" * 59 + "\n" for i in range(BODY_BYTES // 64))
HEADERS = f"From: <{SENDER}>\nTo: <{RECIPIENT}>\nSubject: bench\n"
# the other clients send a fixed Date and Message-ID, which smtpscript adds itself
FIXED_HEADERS = "Date: Thu, 01 Jan 2026 00:00:00 +0000\nMessage-ID: <bench-anchors@client.test>\n"
SCENARIO = f"""\
smtpscript: 1
title: bench anchors delivery (1 KB body)
vars:
  sender: {SENDER}
  recipient: {RECIPIENT}
steps:
  - connect: {{}}
    expect: 220
  - ehlo: {HELO}
  - send: "MAIL FROM:<{{{{ sender }}}}>"
    expect: 250
  - send: "RCPT TO:<{{{{ recipient }}}}>"
    expect: 250
  - data: |
{"".join("      " + line + chr(10) for line in (HEADERS + chr(10) + BODY).splitlines())}\
    expect: 250
  - send: QUIT
    expect: 221
"""
MESSAGE_TEXT = FIXED_HEADERS + HEADERS + "\n" + BODY  # no line starts with a dot
WIRE_MESSAGE = MESSAGE_TEXT.replace("\n", "\r\n").encode() + b".\r\n"  # after the 354


# -- children: one kind of measurement each, run as `bench_anchors.py --child KIND` --------


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_bare(port: int, loop: str, concurrency: int, sessions: int) -> dict[str, Any]:
    import asyncio

    from bench_run import bare_session, measure

    from smtpscript.loops import loop_factory

    one = bare_session(HOST, port, WIRE_MESSAGE, helo=HELO, sender=SENDER, recipient=RECIPIENT)
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(measure(one, min(concurrency, 5), 20, 30.0))  # warm-up
        cpu0 = _cpu_self()
        done, failures, elapsed = runner.run(measure(one, concurrency, sessions, 1e9))
        cpu = _cpu_self() - cpu0
    return {"sessions": done, "failures": failures, "elapsed_s": elapsed, "cpu_s": cpu}


def child_smtplib(port: int, sessions: int) -> dict[str, Any]:
    import smtplib

    def one() -> bool:
        client = smtplib.SMTP(HOST, port, local_hostname=HELO, timeout=10)
        try:
            client.ehlo(HELO)
            client.sendmail(SENDER, [RECIPIENT], MESSAGE_TEXT.replace("\n", "\r\n"))
            code, _ = client.quit()
            return code == 221
        except smtplib.SMTPException:
            return False
        finally:
            client.close()

    for _ in range(20):  # warm-up
        one()
    failures = 0
    cpu0 = _cpu_self()
    t0 = time.perf_counter()
    for _ in range(sessions):
        failures += not one()
    elapsed = time.perf_counter() - t0
    cpu = _cpu_self() - cpu0
    return {"sessions": sessions, "failures": failures, "elapsed_s": elapsed, "cpu_s": cpu}


def child_main(args: argparse.Namespace) -> None:
    if args.child == "bare":
        figures = child_bare(args.port, args.loop, args.concurrency, args.sessions)
    elif args.child == "smtplib":
        figures = child_smtplib(args.port, args.sessions)
    else:
        raise SystemExit(f"unknown child {args.child!r}")
    print(json.dumps(figures))


# -- the parent: starts the sink and the children, one at a time --------------------------


class BenchError(Exception):
    """A measurement that could not be taken (timeout, exit status, bad output)."""


_running: set[subprocess.Popen[bytes]] = set()  # children (each in its own session) to stop


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a child and its descendants (it leads its own process group), then reap it."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    _running.discard(proc)


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a running process, from /proc (0.0 if unreadable)."""
    try:
        fields_ = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    returncode: int
    wall_s: float
    cpu_s: float  # the child's and its reaped descendants' user + system CPU
    sink_cpu_s: float
    stdout: str
    stderr: str


def run_child(command: list[str], timeout: float, sink_pid: int, cwd: str | None = None) -> Child:
    """Run one child to its end (killed at ``timeout``): wall time, CPU, output."""
    cpu0, sink0 = _cpu_children(), _proc_cpu(sink_pid)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        start_new_session=True,  # Ctrl-C reaches this script only; it stops the child
    )
    _running.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise BenchError(f"timed out after {timeout:g} s: {' '.join(command)}") from None
    finally:
        _stop(proc)
    wall = time.perf_counter() - t0
    return Child(
        proc.returncode,
        wall,
        _cpu_children() - cpu0,
        _proc_cpu(sink_pid) - sink0,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
    )


@dataclass
class Spec:
    key: str
    tool: str  # smtpscript | smtp-source | smtplib | swaks | bare
    label: str
    concurrency: int
    sessions: int
    loop: str = ""
    workers: int = 1
    engine: str = "compiled"  # smtpscript's load-mode engine (run --engine)


@dataclass
class Run:
    sessions: int
    failures: int
    sessions_per_s: float
    cpu_us: float  # CPU per session (net of start-up for smtpscript)
    wall_s: float
    cpu_s: float
    sink_pct: float  # the sink's CPU as % of one core over the measured time
    startup_cpu_s: float | None = None


@dataclass
class Row:
    spec: Spec
    runs: list[Run] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def median(self, name: str) -> float | None:
        values = [getattr(run, name) for run in self.runs if getattr(run, name) is not None]
        return statistics.median(values) if values else None


class Bench:
    def __init__(self, args: argparse.Namespace, port: int, sink_pid: int, tmp: Path) -> None:
        self.args = args
        self.port = port
        self.sink_pid = sink_pid
        self.tmp = tmp
        self.scenario = tmp / "bench-anchors.yaml"
        self.scenario.write_text(SCENARIO, encoding="utf-8")
        self.message_file = tmp / "message.txt"
        self.message_file.write_text(MESSAGE_TEXT, encoding="utf-8")

    def timeout(self, sessions: int) -> float:
        return self.args.timeout + sessions / 50  # at worst 50 sessions/s, plus a margin

    # smtpscript --------------------------------------------------------------------------

    def smtpscript_command(
        self, loop: str, concurrency: int, sessions: int, workers: int, out: Path, engine: str
    ) -> list[str]:
        command = [sys.executable, "-m", "smtpscript", "run", str(self.scenario)]
        command += ["-t", f"{HOST}:{self.port}", "--repeat", str(sessions)]
        command += ["-j", str(concurrency), "--loop", loop, "--json", str(out)]
        command += ["-q", "--color", "never"]
        if workers > 1:
            command += ["--workers", str(workers)]
        if engine != "compiled":
            command += ["--engine", engine]
        return command

    def smtpscript_load(
        self, loop: str, concurrency: int, sessions: int, workers: int, engine: str = "compiled"
    ) -> tuple:
        out = self.tmp / "load.json"
        out.unlink(missing_ok=True)
        command = self.smtpscript_command(loop, concurrency, sessions, workers, out, engine)
        child = run_child(command, self.timeout(sessions), self.sink_pid, cwd=str(self.tmp))
        if child.returncode not in (0, 1) or not out.exists():
            raise BenchError(f"smtpscript exited {child.returncode}: {child.stderr.strip()[-500:]}")
        load = json.loads(out.read_text(encoding="utf-8"))["load"]
        return child, load

    def startup_cpu(self, loop: str, workers: int, engine: str) -> float:
        """A run of one session per worker: the CPU a run costs besides its sessions."""
        child, _ = self.smtpscript_load(loop, workers, workers, workers, engine)
        return child.cpu_s

    def run_smtpscript(self, spec: Spec) -> Run:
        startup = self.startup_cpu(spec.loop, spec.workers, spec.engine)
        child, load = self.smtpscript_load(
            spec.loop, spec.concurrency, spec.sessions, spec.workers, spec.engine
        )
        sessions = load["sessions"]
        passed = load["verdicts"].get("passed", 0)
        elapsed = load["elapsed_ms"] / 1000
        net = max(child.cpu_s - startup, 0.0)
        sessions_net = max(sessions - spec.workers, 1)
        return Run(
            sessions=sessions,
            failures=sessions - passed + (spec.sessions - sessions),
            sessions_per_s=load["sessions_per_s"],
            cpu_us=net / sessions_net * 1e6,
            wall_s=child.wall_s,
            cpu_s=child.cpu_s,
            sink_pct=100 * child.sink_cpu_s / elapsed if elapsed else 0.0,
            startup_cpu_s=startup,
        )

    # the others --------------------------------------------------------------------------

    def run_smtp_source(self, spec: Spec) -> Run:
        command = [SMTP_SOURCE, "-s", str(spec.concurrency), "-m", str(spec.sessions)]
        command += ["-l", str(BODY_BYTES), "-M", HELO, "-f", SENDER, "-t", RECIPIENT]
        command += ["-S", "bench", f"{HOST}:{self.port}"]
        child = run_child(command, self.timeout(spec.sessions), self.sink_pid)
        if child.returncode != 0:
            raise BenchError(f"smtp-source exited {child.returncode}: {child.stderr.strip()}")
        return self._whole_child(spec, child, spec.sessions)

    def run_swaks(self, spec: Spec) -> Run:
        command = ["swaks", "--server", f"{HOST}:{self.port}", "--helo", HELO]
        command += ["--from", SENDER, "--to", RECIPIENT, "--data", f"@{self.message_file}"]
        command += ["--timeout", "10", "--silent", "2"]
        wall = cpu = sink = 0.0
        failures = 0
        for _ in range(spec.sessions):
            child = run_child(command, 30, self.sink_pid)
            failures += child.returncode != 0
            wall, cpu, sink = wall + child.wall_s, cpu + child.cpu_s, sink + child.sink_cpu_s
        whole = Child(0, wall, cpu, sink, "", "")
        return self._whole_child(spec, whole, spec.sessions, failures)

    def _whole_child(self, spec: Spec, child: Child, sessions: int, failures: int = 0) -> Run:
        return Run(
            sessions=sessions,
            failures=failures,
            sessions_per_s=sessions / child.wall_s,
            cpu_us=child.cpu_s / sessions * 1e6,
            wall_s=child.wall_s,
            cpu_s=child.cpu_s,
            sink_pct=100 * child.sink_cpu_s / child.wall_s,
        )

    def run_in_child(self, spec: Spec) -> Run:
        command = [sys.executable, str(Path(__file__).resolve()), "--child", spec.tool]
        command += ["--port", str(self.port), "--sessions", str(spec.sessions)]
        command += ["--loop", spec.loop or "asyncio", "--concurrency", str(spec.concurrency)]
        child = run_child(command, self.timeout(spec.sessions), self.sink_pid)
        if child.returncode != 0:
            raise BenchError(f"{spec.tool} child exited {child.returncode}: {child.stderr[-500:]}")
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        elapsed = figures["elapsed_s"]
        return Run(
            sessions=figures["sessions"],
            failures=figures["failures"],
            sessions_per_s=figures["sessions"] / elapsed,
            cpu_us=figures["cpu_s"] / figures["sessions"] * 1e6,
            wall_s=elapsed,
            cpu_s=figures["cpu_s"],
            sink_pct=100 * child.sink_cpu_s / elapsed,  # the warm-up's share is small
        )

    def measure(self, spec: Spec) -> Run:
        if spec.tool == "smtpscript":
            return self.run_smtpscript(spec)
        if spec.tool == "smtp-source":
            return self.run_smtp_source(spec)
        if spec.tool == "swaks":
            return self.run_swaks(spec)
        return self.run_in_child(spec)


def specs(args: argparse.Namespace, workers_available: bool) -> list[Spec]:
    n, low = args.sessions, args.concurrency_low
    high = args.concurrency_high
    rows = []
    for loop in ("asyncio", "uvloop"):
        rows.append(
            Spec(f"smtpscript-{loop}-c{low}", "smtpscript", f"smtpscript {loop}", low, n, loop)
        )
        rows.append(
            Spec(f"smtpscript-{loop}-c{high}", "smtpscript", f"smtpscript {loop}", high, n, loop)
        )
        if workers_available:
            rows.append(
                Spec(
                    f"smtpscript-{loop}-w2-c{high}",
                    "smtpscript",
                    f"smtpscript {loop} --workers 2",
                    high,
                    n,
                    loop,
                    2,
                )
            )
    for loop in ("asyncio", "uvloop"):  # before the compiled plan: for comparison
        for c in (low, high):
            label = f"smtpscript {loop} --engine general"
            rows.append(Spec(f"general-{loop}-c{c}", "smtpscript", label, c, n, loop, 1, "general"))
    for loop in ("asyncio", "uvloop"):
        rows.append(
            Spec(f"bare-{loop}-c{low}", "bare", f"bare asyncio client {loop}", low, n, loop)
        )
        rows.append(
            Spec(f"bare-{loop}-c{high}", "bare", f"bare asyncio client {loop}", high, n, loop)
        )
    rows.append(Spec(f"smtp-source-c{low}", "smtp-source", "smtp-source (C)", low, n))
    rows.append(Spec(f"smtp-source-c{high}", "smtp-source", "smtp-source (C)", high, n))
    rows.append(Spec(f"smtplib-c{low}", "smtplib", "Python smtplib", low, n))
    rows.append(Spec(f"swaks-c{low}", "swaks", "swaks", low, args.swaks_sessions))
    return rows


def has_workers_option() -> bool:
    help_text = subprocess.run(
        [sys.executable, "-m", "smtpscript", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return "--workers" in help_text


# -- output -------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        width = spec.split(".")[0]
        return "-".rjust(int(width)) if width.isdigit() else "-"
    return format(value, spec)


def print_table(rows: list[Row], workers_available: bool) -> None:
    print()
    header = (
        f"{'client':<32} {'c':>3} {'sessions':>8} {'sessions/s':>11} {'CPU µs/sess':>11} "
        f"{'start-up CPU s':>14} {'sink %core':>10}  notes"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        spec = row.spec
        failures = sum(run.failures for run in row.runs)
        notes = []
        if failures:
            notes.append(f"{failures} sessions FAILED")
        if row.errors:
            notes.append(f"{len(row.errors)} runs not measured: {row.errors[0][:80]}")
        if len(row.runs) > 1:
            rates = [run.sessions_per_s for run in row.runs]
            notes.append(f"range {min(rates):.0f}-{max(rates):.0f}/s")
        rate, cpu = _fmt(row.median("sessions_per_s"), "11.0f"), _fmt(row.median("cpu_us"), "11.0f")
        startup, sink = (
            _fmt(row.median("startup_cpu_s"), "14.2f"),
            _fmt(row.median("sink_pct"), "10.0f"),
        )
        print(
            f"{spec.label:<32} {spec.concurrency:>3} {spec.sessions:>8} "
            f"{rate} {cpu} {startup} {sink}  " + "; ".join(notes)
        )
    if not workers_available:
        print(f"{'smtpscript --workers 2':<32}  not available yet (no --workers in run --help)")


def ratios(rows: list[Row], args: argparse.Namespace) -> list[dict[str, Any]]:
    by_key = {row.spec.key: row for row in rows}
    low, high = args.concurrency_low, args.concurrency_high

    def best(keys: list[str]) -> tuple[str, float | None]:
        found = [(by_key[k].median("sessions_per_s"), k) for k in keys if k in by_key]
        found = [(v, k) for v, k in found if v is not None]
        if not found:
            return "-", None
        value, key = max(found)
        return by_key[key].spec.label, value

    def rate(key: str) -> float | None:
        return by_key[key].median("sessions_per_s") if key in by_key else None

    def cpu(key: str) -> float | None:
        return by_key[key].median("cpu_us") if key in by_key else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    results: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str = "") -> None:
        """One ratio; ``goal`` is ">= X" or "<= X" (empty: shown for scale only)."""
        met = None
        if goal and value is not None:
            bound = float(goal.split()[1])
            met = value >= bound if goal.startswith(">=") else value <= bound
        results.append({"name": name, "value": value, "goal": goal, "met": met})

    high_keys = [k for k in by_key if k.startswith("smtpscript-") and k.endswith(f"-c{high}")]
    low_keys = [f"smtpscript-{loop}-c{low}" for loop in ("asyncio", "uvloop")]
    high_label, high_value = best(high_keys)
    add(
        f"sessions/s at c={high}: smtpscript (best: {high_label}) / smtp-source",
        ratio(high_value, rate(f"smtp-source-c{high}")),
        ">= 0.6",
    )
    label, value = best(low_keys)
    add(
        f"sessions/s at c={low}: smtpscript (best: {label}) / smtplib",
        ratio(value, rate(f"smtplib-c{low}")),
        ">= 0.6",
    )
    # swaks can only run one session after another; the goal compares what smtpscript
    # does (at its best) with that. The issue's own baseline reads it so: its "40x swaks"
    # is the old runner's c=50 rate (0.13x smtp-source), not its c=1 rate (17-31x). Both
    # ends sequential are shown for scale: even C smtp-source is only 150-200x there.
    top_value, top_label = max((high_value or 0.0, high_label), (value or 0.0, label))
    swaks = rate(f"swaks-c{low}")
    add(
        f"sessions/s: smtpscript (best: {top_label}) / swaks sequential",
        ratio(top_value or None, swaks),
        ">= 150",
    )
    add(f"sessions/s sequential: smtpscript (best: {label}) / swaks", ratio(value, swaks))
    add(
        "sessions/s sequential: smtp-source (C) / swaks (for scale)",
        ratio(rate(f"smtp-source-c{low}"), swaks),
    )
    for loop in ("asyncio", "uvloop"):
        for c in (high, low):
            add(
                f"CPU/session at c={c} on {loop}: smtpscript / bare asyncio client",
                ratio(cpu(f"smtpscript-{loop}-c{c}"), cpu(f"bare-{loop}-c{c}")),
                "<= 2",
            )
    for loop in ("asyncio", "uvloop"):
        for c in (low, high):
            add(
                f"CPU/session at c={c} on {loop}: general runner / compiled plan",
                ratio(cpu(f"general-{loop}-c{c}"), cpu(f"smtpscript-{loop}-c{c}")),
            )
    add(
        f"CPU/session at c={high}: smtpscript uvloop / smtp-source (for scale)",
        ratio(cpu(f"smtpscript-uvloop-c{high}"), cpu(f"smtp-source-c{high}")),
    )
    return results


def print_ratios(results: list[dict[str, Any]]) -> None:
    print()
    print("Ratios (medians):")
    for item in results:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[item["met"]]
        goal = f"goal {item['goal']}: {verdict}" if item["goal"] else ""
        print(f"  {item['name']:<76} {_fmt(item['value'], '8.2f')}  {goal}")


def environment(port: int, load_at_start: tuple[float, ...]) -> dict[str, Any]:
    try:
        import uvloop

        uvloop_version = uvloop.__version__
    except ImportError:
        uvloop_version = None
    from smtpscript import __version__

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "smtpscript": __version__,
        "uvloop": uvloop_version,
        "sink": f"{SMTP_SINK} on {HOST}:{port}",
        "body_bytes": BODY_BYTES,
        "load_average_start": load_at_start,
        "load_average_end": os.getloadavg(),
    }


# -- main ---------------------------------------------------------------------------------


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (3): median")
    parser.add_argument(
        "--sessions", type=int, default=5000, help="sessions per measurement (5000)"
    )
    parser.add_argument("--swaks-sessions", type=int, default=20, help="swaks sessions (20)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="per child, plus 20 ms a session (60)"
    )
    parser.add_argument("--concurrency-low", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency-high", type=int, default=50, help=argparse.SUPPRESS)
    parser.add_argument("--only", help="comma-separated tools to run (smtpscript,bare,...)")
    # a child measurement (internal)
    parser.add_argument("--child", choices=("bare", "smtplib"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args)
        return
    for program in (SMTP_SINK, SMTP_SOURCE):
        if not shutil.which(program):
            raise SystemExit(f"{program} not found (it ships with the postfix package)")
    if not shutil.which("swaks"):
        raise SystemExit("swaks not found (apt-get install swaks)")
    from bench_run import start_sink

    signal.signal(signal.SIGTERM, _sigterm)
    workers_available = has_workers_option()
    rows = [Row(spec) for spec in specs(args, workers_available)]
    if args.only:
        tools = set(args.only.split(","))
        rows = [row for row in rows if row.spec.tool in tools]
    sink = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-anchors-") as tmp:
            sink, port = start_sink()
            bench = Bench(args, port, sink.pid, Path(tmp))
            load_at_start = os.getloadavg()
            print(
                f"Python {sys.version.split()[0]} on {os.cpu_count()} CPUs; smtp-sink on "
                f"{HOST}:{port}; {args.sessions} sessions a measurement (swaks "
                f"{args.swaks_sessions}), {args.repeat} rounds, medians; load average "
                + " ".join(f"{x:.2f}" for x in load_at_start),
                flush=True,
            )
            if not workers_available:
                print("smtpscript --workers 2: not available yet", flush=True)
            for round_ in range(1, args.repeat + 1):
                for row in rows:
                    try:
                        run = bench.measure(row.spec)
                    except BenchError as error:
                        row.errors.append(str(error))
                        print(f"  round {round_} {row.spec.key}: {error}", file=sys.stderr)
                        continue
                    row.runs.append(run)
                    print(
                        f"  round {round_} {row.spec.key:<28} {run.sessions_per_s:8.0f} sessions/s"
                        f" {run.cpu_us:7.0f} µs CPU/session"
                        + (f"  ({run.failures} failed)" if run.failures else ""),
                        file=sys.stderr,
                        flush=True,
                    )
            print_table(rows, workers_available)
            print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
            results = ratios(rows, args)
            print_ratios(results)
            if args.json:
                document = {
                    "environment": environment(port, load_at_start),
                    "settings": {
                        "repeat": args.repeat,
                        "sessions": args.sessions,
                        "swaks_sessions": args.swaks_sessions,
                        "workers_available": workers_available,
                    },
                    "measurements": [
                        {
                            **asdict(row.spec),
                            "median": {
                                name: row.median(name)
                                for name in (
                                    "sessions_per_s",
                                    "cpu_us",
                                    "sink_pct",
                                    "startup_cpu_s",
                                )
                            },
                            "runs": [asdict(run) for run in row.runs],
                            "errors": row.errors,
                        }
                        for row in rows
                    ],
                    "ratios": results,
                }
                args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
                print(f"\nwrote {args.json}")
    except KeyboardInterrupt:
        print("\ninterrupted: stopping what was started", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        for proc in list(_running):
            _stop(proc)
        if sink is not None and sink.poll() is None:
            sink.terminate()
            try:
                sink.wait(5)
            except subprocess.TimeoutExpired:
                sink.kill()
                sink.wait(5)


if __name__ == "__main__":
    main()
