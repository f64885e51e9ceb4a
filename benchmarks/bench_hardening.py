"""What each hostile input costs now: outcome, wall time and peak RSS of the CLI process.

    python benchmarks/bench_hardening.py            # markdown table on stdout

Every case runs `python -m smtpscript ...` in a fresh process (so peak RSS is that
run's own), against the embedded sandbox or a scripted hostile server on 127.0.0.1.
Loops are bounded; nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from hostile import Conn, Hostile

GOOD = "smtpscript: 1\ntitle: {title}\nsteps:\n  - ehlo: client.test\n  - send: NOOP\n"


@dataclass
class Outcome:
    status: int
    seconds: float
    peak_kib: int
    said: str


def cli(args: list[str | bytes], *, stop_after: float | None = None, pipe: bool = False) -> Outcome:
    """Run the CLI; ``stop_after``: SIGTERM it then; ``pipe``: stdout closed after a line."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "smtpscript", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    if pipe:
        process.stdout.readline()
        process.stdout.close()
    if stop_after is not None:
        time.sleep(stop_after)
        process.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    out = b"" if pipe else process.stdout.read()
    err = process.stderr.read()
    lines = [line for line in (err + out).decode("utf-8", "replace").splitlines() if line.strip()]
    # the reason under a scenario's verdict line says most; else the first line said
    reasons = [line for line in lines if line.startswith("      ") and ": " in line]
    said = (reasons or lines or [""])[0]
    return Outcome(os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss, said.strip())


def scenario(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def isolated(folder: Path, middle: str) -> Path:
    """A folder with a good scenario, the given one, and another good one."""
    scenario(folder, "a.yaml", GOOD.format(title="first"))
    scenario(folder, "b.yaml", middle)
    scenario(folder, "c.yaml", GOOD.format(title="last"))
    return folder


def send_template(template: str) -> str:
    return f'smtpscript: 1\ntitle: middle\nsteps:\n  - send: "{template}"\n'


async def megabytes(conn: Conn) -> None:
    await conn.send(b"220 hostile.test ESMTP\r\n")
    reply = (b"250-" + b"x" * 60_000 + b"\r\n") * 16 + b"250 ok\r\n"
    while data := await conn.line():
        await conn.send(b"221 bye\r\n" if data.startswith(b"QUIT") else reply)


async def bait(conn: Conn) -> None:
    await conn.send(b"\x1b]0;pwned\x07220 \x1b[2J hostile.test\r\n")
    await conn.serve({b"NOOP": b"250 " + b"a" * 5000 + b"!\r\n"})


def cases(root: Path, ports: dict[str, int]) -> list[tuple[str, Callable[[], Outcome]]]:
    out = root / "reports"
    out.mkdir()

    def folder(name: str) -> Path:
        path = root / name
        path.mkdir()
        return path

    def between(name: str, middle: str, *extra: str | bytes) -> Callable[[], Outcome]:
        """Run a good scenario, ``middle``, another good one, against the sandbox."""
        return lambda: cli(["run", str(isolated(folder(name), middle)), "-t", "sandbox", *extra])

    def one(name: str, text: str, *args: str, command: str = "run") -> Callable[[], Outcome]:
        return lambda: cli([command, str(scenario(folder(name), "s.yaml", text)), *args])

    hostile = {k: f"127.0.0.1:{port}" for k, port in ports.items()}
    raw_var = 'smtpscript: 1\ntitle: middle\nsteps:\n  - raw: "NOOP {{ odd }}\\r\\n"\n'
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    doubling = (
        "{% set ns = namespace(x='ab') %}{% for i in range(60) %}"
        "{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x }}"
    )
    macro = "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    send_noop = "smtpscript: 1\ntitle: t\nsteps:\n  - send: NOOP\n"
    return [
        (
            "lone surrogate sent by raw: (from --var)",
            between("surrogate", raw_var, b"--var", b"odd=\x80"),
        ),
        ("undefined value in when:", between("when", send_noop + '    when: "caps.NOPE == 1"\n')),
        (
            "TLS CA file that does not exist",
            between(
                "tls",
                "smtpscript: 1\ntitle: t\nsteps:\n  - connect: {tls: implicit, "
                "ca_file: /nonexistent.pem}\n",
            ),
        ),
        ("template {{ 'a' * 10**10 }}", between("mul", send_template("{{ 'a' * 10**10 }}"))),
        (
            "template {{ 2 ** 10000000000 }}",
            between("pow", send_template("{{ 2 ** 10000000000 }}")),
        ),
        ("template: nested loops 100,000 x 100,000", between("loops", send_template(loops))),
        ("template: ~ doubling 60 times", between("concat", send_template(doubling))),
        ("template: macro recursion, 2^40 calls", between("macro", send_template(macro))),
        (
            "match (a|aa)+$ against a 5,000-character reply",
            one("regex", send_noop + '    match: "(a|aa)+$"\n', "-t", hostile["bait"]),
        ),
        (
            "validate: match a{1000000000}",
            one("count", send_noop + '    match: "a{1000000000}"\n', command="validate"),
        ),
        (
            "300 replies of 1 MB each",
            one("flood", send_noop + "    repeat: 300\n", "-t", hostile["flood"]),
        ),
        ("nested repeats 1,000 x 1,000", lambda: nested(folder("nested"))),
        ("folder with a FIFO and a link to /dev/zero", lambda: devices(folder("devices"))),
        (
            "ESC sequences in the banner (console -v)",
            one("esc", GOOD.format(title="esc"), "-t", hostile["bait"], "-v"),
        ),
        (
            "--json into a folder that does not exist",
            one(
                "nodir",
                GOOD.format(title="x"),
                "-t",
                "sandbox",
                "--json",
                str(root / "missing" / "r.json"),
            ),
        ),
        (
            "stdout closed after one line (| head -1)",
            lambda: cli(
                [
                    "run",
                    str(isolated(folder("pipe"), GOOD.format(title="middle"))),
                    "-t",
                    "sandbox",
                    "--json",
                    str(out / "pipe.json"),
                ],
                pipe=True,
            ),
        ),
        (
            "SIGTERM during a 30 s sleep step",
            lambda: cli(
                [
                    "run",
                    str(
                        isolated(
                            folder("term"), "smtpscript: 1\ntitle: middle\nsteps:\n  - sleep: 30\n"
                        )
                    ),
                    "-t",
                    "sandbox",
                    "-j",
                    "1",
                    "--json",
                    str(out / "term.json"),
                ],
                stop_after=3.0,
            ),
        ),
        ("-t 127.0.0.1:²", one("port", GOOD.format(title="x"), "-t", "127.0.0.1:²")),
        (
            "timeout: .nan in a scenario",
            one(
                "nan",
                "smtpscript: 1\ntitle: n\ntarget: {timeout: .nan}\nsteps:\n  - send: NOOP\n",
                command="validate",
            ),
        ),
        ("report on JSON nested 100,000 deep", lambda: report_file(root, "[" * 100_000)),
        ("report on a 100,000-digit integer", lambda: report_file(root, "1" * 100_000)),
    ]


def nested(folder: Path) -> Outcome:
    scenario(
        folder, "f.yaml", "smtpscript: 1\nfragment: true\nsteps:\n  - sleep: 0\n    repeat: 1000\n"
    )
    path = scenario(
        folder, "s.yaml", "smtpscript: 1\ntitle: n\nsteps:\n  - include: f.yaml\n    repeat: 1000\n"
    )
    return cli(["run", str(path), "-t", "sandbox"])


def devices(folder: Path) -> Outcome:
    os.mkfifo(folder / "pipe.yaml")
    (folder / "zero.yaml").symlink_to("/dev/zero")
    scenario(folder, "ok.yaml", GOOD.format(title="ok"))
    return cli(["validate", str(folder)])


def report_file(root: Path, text: str) -> Outcome:
    path = root / f"hostile-{len(list(root.glob('hostile-*')))}.json"
    path.write_text(text, encoding="utf-8")
    return cli(["report", str(path), "--json", str(root / "out.json")])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, Hostile(megabytes) as flood, Hostile(bait) as trap:
        root = Path(tmp)
        rows = []
        for name, case in cases(root, {"flood": flood.port, "bait": trap.port}):
            outcome = case()
            said = outcome.said.replace(str(root) + "/", "").replace("|", "\\|")
            rows.append(
                f"| {name} | exit {outcome.status}: {said[:150]} | {outcome.seconds:.2f} s "
                f"| {outcome.peak_kib / 1024:.0f} MiB |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
        term = root / "reports" / "term.json"
        if term.exists():
            print(
                f"(SIGTERM run wrote: incomplete = {json.loads(term.read_text())['incomplete']!r})",
                file=sys.stderr,
            )
    print("| class | what happens now | time | peak RSS |\n|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
