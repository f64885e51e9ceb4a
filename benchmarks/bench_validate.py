"""Benchmark: validate 1,000 realistic scenario files.

    PYTHONPATH=. python benchmarks/bench_validate.py [--files N] [--repeat R] [--keep DIR]

Writes N generated scenarios (20-40 lines each, varied: relay checks, the
telnet delivery session, AUTH after STARTTLS, pipelining, includes of shared
fragments, data with headers, captures, when/repeat) into a temporary folder,
then measures:

- in-process, warm: ``load_paths(DIR)`` after imports and the compiled schema
  validator are warm (a first pass on other files), timed on the first pass
  over the N new files and as the median of R repeated passes;
- cold: ``python -m smtpscript validate DIR`` as a subprocess (interpreter
  start, imports, everything), total wall time, median of R runs.

Aim: under 1 second for 1,000 files. Not a test: it prints figures only.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smtpscript.loading import load_paths  # noqa: E402

HEADER = """\
# yaml-language-server: $schema=../../schemas/scenario.schema.json
smtpscript: 1
title: {title}
description: >
  {description}
severity: {severity}
tags: [{tags}]
references: ["RFC 5321 section {section}"]
"""

FRAGMENT = """\
smtpscript: 1
fragment: true
description: Read the banner and greet with EHLO.
vars:
  helo: audit.example.org
steps:
  - connect: {}
    name: banner
    expect: 220
  - ehlo: "{{ helo }}"
    expect: 250
"""


def _relay(rng: random.Random, i: int) -> str:
    domain = rng.choice(["example.net", "example.com", "outside.test"])
    return (
        HEADER.format(
            title=f"Refuses to relay to {domain} ({i})",
            description="An outside sender must not reach an outside recipient through us.",
            severity=rng.choice(["high", "critical"]),
            tags="relay, security",
            section="3.6.2",
        )
        + f"""\
vars:
  helo: audit{i}.example.org
  outsider: probe{i}@example.org
  victim: victim{i}@{domain}
steps:
  - connect: {{}}
    expect: 220
  - ehlo: "{{{{ helo }}}}"
  - send: "MAIL FROM:<{{{{ outsider }}}}>"
    expect: 2xx
  - send: "RCPT TO:<{{{{ victim }}}}>"
    expect: [550, 554]
    status: 5.7.x
    match: "(?i)relay"
  - send: QUIT
    expect: 221
"""
    )


def _delivery(rng: random.Random, i: int) -> str:
    return (
        HEADER.format(
            title=f"Accepts and queues a message for mailbox {i}",
            description="The hand-typed telnet session: banner, EHLO, MAIL, RCPT, DATA, QUIT.",
            severity="high",
            tags="delivery, basics",
            section="3.3",
        )
        + f"""\
vars:
  helo: audit.example.org
  sender: sender{i}@example.org
  recipient: user{i}@sandbox.test
steps:
  - ehlo: "{{{{ helo }}}}"
  - send: "MAIL FROM:<{{{{ sender }}}}>"
    expect: 250
    status: 2.1.0
  - send: "RCPT TO:<{{{{ recipient }}}}>"
    expect: 250
    status: 2.1.5
  - data:
      headers:
        From: "<{{{{ sender }}}}>"
        To: "<{{{{ recipient }}}}>"
        Subject: "check {{{{ index | default(1) }}}} of {rng.randint(1, 99)}"
      body: |
        Where are you server?
    capture:
      queue_id: "(?i)queued as ([A-Za-z0-9]+)"
  - send: "NOOP {{{{ queue_id }}}}"
  - send: QUIT
    expect: 221
"""
    )


def _auth(rng: random.Random, i: int) -> str:
    mechanism = rng.choice(["PLAIN", "LOGIN", "CRAM-MD5"])
    return (
        HEADER.format(
            title=f"AUTH {mechanism} works only after STARTTLS ({i})",
            description="Credentials must never cross the wire in clear text.",
            severity="critical",
            tags="auth, tls, security",
            section="4.1.1",
        )
        + f"""\
when: "env.SMTP_PASSWORD is defined"
public_env: [SMTP_USER]
target:
  port: 587
  timeout: {rng.choice([5, 10, 30])}
vars:
  helo: submit.example.org
steps:
  - ehlo: "{{{{ helo }}}}"
  - auth:
      mechanism: {mechanism}
      username: "{{{{ env.SMTP_USER }}}}"
      password: "{{{{ env.SMTP_PASSWORD }}}}"
    expect: [530, 538, 5xx]
  - starttls:
      verify: false
    tls:
      min_version: TLSv1.2
  - ehlo: "{{{{ helo }}}}"
    when: "'AUTH' in caps"
  - auth:
      mechanism: {mechanism}
      username: "{{{{ env.SMTP_USER }}}}"
      password: "{{{{ env.SMTP_PASSWORD }}}}"
  - send: QUIT
    expect: 221
"""
    )


def _pipeline(rng: random.Random, i: int) -> str:
    n = rng.randint(2, 5)
    return (
        HEADER.format(
            title=f"Answers {n} pipelined recipients in order ({i})",
            description="RFC 2920: one reply per pipelined command, in order.",
            severity="medium",
            tags="pipelining",
            section="4.5.3",
        )
        + f"""\
vars:
  helo: pipe.example.org
  domain: sandbox.test
steps:
  - include: ../fragments/greet.yaml
    with:
      helo: "{{{{ helo }}}}"
  - pipeline:
      - send: "MAIL FROM:<p{i}@example.org>"
      - send: "RCPT TO:<user{{{{ index }}}}@{{{{ domain }}}}>"
        expect: 250
      - send: "RCPT TO:<nobody{i}@{{{{ domain }}}}>"
        expect: "5xx"
    repeat: {n}
  - send: RSET
    expect: 250
  - sleep: 0.1
  - send: QUIT
    expect: 221
  - read: {{}}
    expect: closed
"""
    )


def _vrfy(rng: random.Random, i: int) -> str:
    user = rng.choice(["postmaster", "root", "admin", "alice"])
    return (
        HEADER.format(
            title=f"VRFY {user} does not confirm the mailbox ({i})",
            description="250 to VRFY lets anyone enumerate mailboxes.",
            severity="low",
            tags="enumeration, security",
            section="3.5.3",
        )
        + f"""\
vars:
  user: {user}
steps:
  - connect:
      tls: none
    expect: 220
  - helo: audit.example.org
  - send: "VRFY {{{{ user }}}}"
    expect: [252, 502, 550, "5xx"]
    continue_on_fail: true
  - send: "EXPN {{{{ user }}}}"
    expect: [252, 502, 550]
  - raw: "QUIT\\r\\n"
    expect: 221
"""
    )


KINDS = (_relay, _delivery, _auth, _pipeline, _vrfy)


def generate(folder: Path, count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    (folder / "fragments").mkdir(parents=True)
    (folder / "fragments" / "greet.yaml").write_text(FRAGMENT, encoding="utf-8")
    for i in range(count - 1):  # the fragment counts as one file
        sub = folder / f"group{i % 10}"
        sub.mkdir(exist_ok=True)
        kind = KINDS[i % len(KINDS)]
        (sub / f"{kind.__name__[1:]}-{i:04d}.yaml").write_text(kind(rng, i), encoding="utf-8")


def _time_in_process(folder: Path, expected: int) -> float:
    start = time.perf_counter()
    result = load_paths([folder])
    elapsed = time.perf_counter() - start
    if result.problems or result.files != expected:
        sys.exit(f"unexpected result: {result.files} files, problems: {result.problems[:3]}")
    return elapsed


def _time_cli(folder: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "smtpscript", "validate", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"validate exited {proc.returncode}: {proc.stderr[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="smtpscript-bench-"))
    try:
        warmup, folder = base / "warmup", args.keep or base / "scenarios"
        generate(warmup, 20, seed=99)
        generate(folder, args.files)
        lines = [len(p.read_text().splitlines()) for p in folder.rglob("*.yaml")]
        print(
            f"{args.files} files in {folder}: {min(lines)}-{max(lines)} lines each, "
            f"{sum(lines)} lines in all"
        )

        _time_in_process(warmup, 20)  # imports, compiled schema validator
        first = _time_in_process(folder, args.files)
        again = statistics.median(_time_in_process(folder, args.files) for _ in range(args.repeat))
        cold = statistics.median(_time_cli(folder) for _ in range(args.repeat))

        def rate(seconds: float) -> str:
            return f"{seconds:6.3f} s  {args.files / seconds:8.0f} files/s"

        print(f"load_paths, in-process, first pass   {rate(first)}")
        print(f"load_paths, in-process, median of {args.repeat}  {rate(again)}")
        print(f"smtpscript validate DIR, cold, median of {args.repeat}  {rate(cold)}")
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
