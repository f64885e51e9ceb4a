"""Benchmark: scenario sessions per second through the runner, on loopback.

    PYTHONPATH=. python benchmarks/bench_run.py [--sessions N] [--seconds S]
        [--concurrency 1,10,50] [--profile] [--no-sandbox] [--no-sink]

A 6-step delivery scenario (connect + banner, EHLO, MAIL, RCPT, DATA with a
short message, QUIT) is run again and again, one at a time and with 10 and 50
sessions in flight, against (a) the embedded aiosmtpd sandbox in-process and
(b) Postfix's C ``smtp-sink`` (/usr/sbin/smtp-sink) started on a free loopback
port and killed at the end. Each measurement stops after N sessions or S
seconds, whichever comes first. A bare asyncio client doing the same six
exchanges against smtp-sink gives the ceiling the runner should be judged by
(the sandbox server, aiosmtpd, is the bottleneck in (a), not the client).

--profile runs the runner against smtp-sink at the highest concurrency under
cProfile and prints the top functions by own time.
Not a test: it prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from smtpscript import model as m
from smtpscript.loading import load_paths
from smtpscript.runner import RunOptions, run_scenario
from smtpscript.sandbox import Sandbox, SandboxConfig
from smtpscript.targets import parse_target, sandbox_target

SCENARIO = """\
smtpscript: 1
title: bench delivery
vars:
  sender: bench@client.test
  recipient: alice@sandbox.test
steps:
  - connect: {}
    expect: 220
  - ehlo: bench.client.test
  - send: "MAIL FROM:<{{ sender }}>"
    expect: 250
  - send: "RCPT TO:<{{ recipient }}>"
    expect: 250
  - data: |
      From: <{{ sender }}>
      To: <{{ recipient }}>
      Subject: bench

      Hello from the benchmark.
    expect: 250
  - send: QUIT
    expect: 221
"""
SMTP_SINK = "/usr/sbin/smtp-sink"
Session = Callable[[], Awaitable[bool]]


def load_scenario() -> m.Scenario:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(SCENARIO, encoding="utf-8")
        loaded = load_paths([path])
    if loaded.problems:
        raise SystemExit("\n".join(map(str, loaded.problems)))
    return loaded.scenarios[0]


async def measure(one: Session, concurrency: int, sessions: int, seconds: float) -> tuple:
    """(sessions done, failures, elapsed) running ``one`` with ``concurrency`` in flight."""
    started = 0
    failures = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async def worker() -> None:
        nonlocal started, failures
        while started < sessions and time.perf_counter() < deadline:
            started += 1
            if not await one():
                failures += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return started, failures, time.perf_counter() - t0


def runner_session(scenario: m.Scenario, target: m.Target) -> Session:
    options = RunOptions()

    async def one() -> bool:
        result = await run_scenario(scenario, target, options)
        if result.verdict != "passed" and not getattr(one, "reported", False):
            one.reported = True  # type: ignore[attr-defined]
            print(f"    first failure: {result.reason}", file=sys.stderr)
        return result.verdict == "passed"

    return one


BARE_MESSAGE = b"Subject: bench\r\n\r\nHello from the benchmark.\r\n.\r\n"


def bare_session(
    host: str,
    port: int,
    message: bytes = BARE_MESSAGE,
    *,
    helo: str = "bench.client.test",
    sender: str = "bench@client.test",
    recipient: str = "alice@sandbox.test",
) -> Session:
    """The same six exchanges with nothing but asyncio streams: the client ceiling.

    ``message`` is sent as is after the 354: CRLF line ends, dot-stuffed, ending with
    CRLF.CRLF (benchmarks/bench_anchors.py imports this with a 1 KB message).
    """
    commands = [
        f"EHLO {helo}\r\n".encode(),
        f"MAIL FROM:<{sender}>\r\n".encode(),
        f"RCPT TO:<{recipient}>\r\n".encode(),
        b"DATA\r\n",
        message,
        b"QUIT\r\n",
    ]

    async def reply(reader: asyncio.StreamReader) -> int:
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                return int(line[:3])

    async def one() -> bool:
        reader, writer = await asyncio.open_connection(host, port)
        codes = [await reply(reader)]
        for command in commands:
            writer.write(command)
            codes.append(await reply(reader))
        writer.close()
        await writer.wait_closed()
        return codes == [220, 250, 250, 250, 354, 250, 221]

    return one


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sink() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [SMTP_SINK, "-c", "-u", "nobody", f"127.0.0.1:{port}", "1000"]
    sink = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return sink, port
        except OSError:
            if sink.poll() is not None:
                raise SystemExit(f"smtp-sink exited with status {sink.returncode}") from None
            time.sleep(0.05)
    sink.kill()
    raise SystemExit("smtp-sink did not start listening within 10 s")


def report(label: str, concurrency: int, figures: tuple) -> None:
    done, failures, elapsed = figures
    rate = done / elapsed if elapsed else 0.0
    print(
        f"  {label:<22} c={concurrency:<3} {done:5d} sessions in {elapsed:6.2f} s "
        f"= {rate:7.0f} sessions/s" + (f"  ({failures} FAILED)" if failures else ""),
        flush=True,
    )


def bench(label: str, one: Session, args: argparse.Namespace) -> None:
    asyncio.run(measure(one, 5, 20, 5.0))  # warm up: imports, template compile, caches
    for concurrency in args.concurrency:
        report(
            label, concurrency, asyncio.run(measure(one, concurrency, args.sessions, args.seconds))
        )


def profile(one: Session, args: argparse.Namespace) -> None:
    concurrency = max(args.concurrency)
    profiler = cProfile.Profile()
    profiler.enable()
    figures = asyncio.run(measure(one, concurrency, args.sessions, args.seconds))
    profiler.disable()
    report("runner (profiled)", concurrency, figures)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=300, help="per measurement (300)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement (10)")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 10, 50],
        help="comma-separated (1,10,50)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the smtp-sink run")
    parser.add_argument("--no-sandbox", action="store_true")
    parser.add_argument("--no-sink", action="store_true")
    args = parser.parse_args()
    scenario = load_scenario()
    print(f"Python {sys.version.split()[0]}, {args.sessions} sessions or {args.seconds:g} s each")

    if not args.no_sandbox:
        with Sandbox(SandboxConfig(port=0)) as sandbox:
            target = sandbox_target(sandbox.host, sandbox.port, None, None)
            print(f"(a) embedded sandbox (aiosmtpd) on {sandbox.host}:{sandbox.port}")
            bench("runner -> sandbox", runner_session(scenario, target), args)

    if args.no_sink:
        return
    if not shutil.which(SMTP_SINK):
        raise SystemExit(f"{SMTP_SINK} not found (it ships with the postfix package)")
    sink, port = start_sink()
    try:
        print(f"(b) Postfix smtp-sink on 127.0.0.1:{port}")
        target = parse_target(f"127.0.0.1:{port}")
        bench("runner -> smtp-sink", runner_session(scenario, target), args)
        bench("bare asyncio -> sink", bare_session("127.0.0.1", port), args)
        if args.profile:
            profile(runner_session(scenario, target), args)
    finally:
        sink.kill()
        sink.wait(5)


if __name__ == "__main__":
    main()
