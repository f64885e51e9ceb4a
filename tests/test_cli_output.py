"""Output robustness of `smtpscript run` / `report`: report paths, stdout, signals, bugs, terminals.

Real processes, pipes, signals and loopback sockets; the only monkeypatching is
to provoke an internal error (a bug) at the CLI boundary.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hostile import Conn, Hostile
from scenario_helpers import cli, steps_file

from smtpscript.api import write_reports
from smtpscript.cli import run_cli
from smtpscript.console import ConsoleView
from smtpscript.results import RunResult, ScenarioResult, TargetInfo, from_dict

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
SANDBOX_PREFIX = "smtpscript-sandbox-"  # sandbox.py's tempfile.mkdtemp prefix (key and cert)

GREET = "- ehlo: client.test\n"
FAILING = GREET + '- send: "MAIL FROM:<a@client.test>"\n  expect: 550\n'


def scenario(folder: Path, steps: str, name: str = "s.yaml", title: str = "out test") -> Path:
    return steps_file(folder, steps, name=name, title=title)


def spawn(*args: object, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "smtpscript", *(str(a) for a in args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


async def polite(conn: Conn) -> None:
    await conn.send(b"220 polite.test ESMTP\r\n")
    await conn.serve({b"EHLO": b"250 polite.test\r\n"})


# --- report paths, checked before anything runs ---------------------------------------


@pytest.mark.parametrize(
    ("option", "where", "message"),
    [
        ("--html", "missing/r.html", "directory {tmp}/missing does not exist"),
        ("--json", ".", "is a directory"),
        ("--junit", "file.txt/r.xml", "{tmp}/file.txt is not a directory"),
    ],
)
def test_an_unwritable_report_path_fails_fast_before_any_connection(
    capsys, tmp_path, option, where, message
):
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    path = scenario(tmp_path, GREET)
    with Hostile(polite) as server:
        status, out, err = cli(
            capsys, "run", path, "-t", f"127.0.0.1:{server.port}", option, tmp_path / where
        )
        time.sleep(0.1)  # a connection, had one been made, would have been accepted by now
        assert server.connections == []
    assert status == 2
    assert out == ""
    expected = message.format(tmp=tmp_path)
    assert err == f"smtpscript: error: {option} {tmp_path / where}: {expected}\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_report_folder_fails_fast(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    path = scenario(tmp_path, GREET)
    status, _, err = cli(capsys, "run", path, "-t", "sandbox", "--html", locked / "r.html")
    assert status == 2
    assert "permission denied" in err and err.count("\n") == 1


def test_one_report_on_stdout_at_most_and_never_the_same_file_twice(capsys, tmp_path):
    path = scenario(tmp_path, GREET)
    status, _, err = cli(capsys, "run", path, "-t", "sandbox", "--json", "-", "--junit", "-")
    assert status == 2
    assert err == "smtpscript: error: --json and --junit: only one report can go to stdout ('-')\n"
    same = tmp_path / "r.out"
    status, _, err = cli(capsys, "run", path, "-t", "sandbox", "--json", same, "--html", same)
    assert status == 2
    assert err == f"smtpscript: error: --html {same}: the same file as --json\n"


def test_report_checks_its_output_paths_before_reading(capsys, tmp_path):
    status, _, err = cli(
        capsys, "report", tmp_path / "absent.json", "--html", tmp_path / "no" / "r.html"
    )
    assert status == 2
    assert err == (
        f"smtpscript: error: --html {tmp_path}/no/r.html: directory {tmp_path}/no does not exist\n"
    )


# --- one report that cannot be written costs only itself --------------------------------


needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")


@needs_dev_full
def test_a_full_disk_for_one_report_keeps_the_others_and_the_failed_exit(capsys, tmp_path):
    path = scenario(tmp_path, FAILING)
    status, out, err = cli(
        capsys, "run", path, "-t", "sandbox",
        "--html", "/dev/full", "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml",
    )  # fmt: skip
    assert status == 1  # the scenario failed: that stays the verdict
    assert err == (
        "smtpscript: error: cannot write the HTML report to /dev/full: No space left on device\n"
    )
    assert from_dict(json.loads((tmp_path / "r.json").read_text("utf-8"))).scenarios
    assert "<testsuites" in (tmp_path / "r.xml").read_text("utf-8")
    assert out.startswith("FAIL  sandbox  out test")


@needs_dev_full
def test_a_lost_report_after_a_clean_run_exits_2(capsys, tmp_path):
    path = scenario(tmp_path, GREET)
    status, out, err = cli(
        capsys, "run", path, "-t", "sandbox", "--junit", "/dev/full", "--json", tmp_path / "r.json"
    )
    assert status == 2
    assert "cannot write the JUnit XML to /dev/full" in err
    assert (tmp_path / "r.json").is_file()
    assert "1 passed" in out


def test_a_report_folder_removed_mid_run_costs_only_that_report(capsys, tmp_path):
    doomed = tmp_path / "doomed"
    doomed.mkdir()
    path = scenario(tmp_path, "- sleep: 1\n" + FAILING)
    remover = threading.Timer(0.3, lambda: doomed.rmdir())
    remover.start()
    try:
        status, _, err = cli(
            capsys, "run", path, "-t", "sandbox",
            "--html", doomed / "r.html", "--json", tmp_path / "r.json",
        )  # fmt: skip
    finally:
        remover.join()
    assert status == 1
    assert err == (
        f"smtpscript: error: cannot write the HTML report to {doomed}/r.html: "
        "No such file or directory\n"
    )
    assert (tmp_path / "r.json").is_file()


# --- stdout: a report on it, or a reader that goes away ----------------------------------


def test_json_on_stdout_is_pure_json_and_the_console_moves_to_stderr(capsys, tmp_path):
    path = scenario(tmp_path, FAILING)
    status, out, err = cli(capsys, "run", path, "-t", "sandbox", "--json", "-")
    assert status == 1
    run = from_dict(json.loads(out))
    assert [s.verdict for s in run.scenarios] == ["failed"]
    assert err.startswith("FAIL  sandbox  out test")
    assert "smtpscript: 1 scenario runs: 0 passed, 1 failed" in err


def test_junit_on_stdout(capsys, tmp_path):
    status, out, err = cli(
        capsys, "run", scenario(tmp_path, GREET), "-t", "sandbox", "--junit", "-"
    )
    assert status == 0
    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites')
    assert err.startswith("PASS  sandbox  out test")


def test_a_closed_stdout_loses_no_report_and_keeps_the_exit_status(tmp_path):
    fast = scenario(tmp_path, FAILING, name="a_fast.yaml")
    slow = scenario(tmp_path, GREET + "- sleep: 1.5\n", name="b_slow.yaml")
    reports = ["--json", tmp_path / "r.json", "--html", tmp_path / "r.html"]
    with spawn("run", fast, slow, "-t", "sandbox", *reports) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()  # `| head -1`
        proc.stdout.close()  # the slow run's line and the summary now meet a closed pipe
        err = proc.stderr.read()
        assert proc.wait(timeout=30) == 1  # a scenario failed, as it would with stdout open
    assert first.startswith("FAIL  sandbox  out test")
    assert err == ""  # no BrokenPipeError, no "Exception ignored"
    run = from_dict(json.loads((tmp_path / "r.json").read_text("utf-8")))
    assert sorted(s.verdict for s in run.scenarios) == ["failed", "passed"]
    assert (tmp_path / "r.html").read_text("utf-8").endswith("</html>")


# --- SIGINT and SIGTERM ------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_writes_every_report_and_cleans_up(tmp_path, signum, status):
    temp = tmp_path / "tmp"  # the sandbox's key directory goes here, where we can watch it
    temp.mkdir()
    fast = scenario(tmp_path, GREET, name="a_fast.yaml", title="fast")
    slow = scenario(tmp_path, GREET + "- sleep: 30\n", name="b_slow.yaml", title="slow")
    never = scenario(tmp_path, GREET, name="c_never.yaml", title="never")
    out = {kind: tmp_path / f"r.{kind}" for kind in ("json", "html", "xml")}
    with spawn(
        "run", fast, slow, never, "-t", "sandbox", "-j", "1",
        "--json", out["json"], "--html", out["html"], "--junit", out["xml"],
        env={"TMPDIR": str(temp)},
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("PASS  sandbox  fast")
        assert [p.name[: len(SANDBOX_PREFIX)] for p in temp.iterdir()] == [SANDBOX_PREFIX]
        time.sleep(0.5)  # the slow one connects and sleeps
        started = time.monotonic()
        proc.send_signal(signum)
        rest, err = proc.communicate(timeout=20)
    assert time.monotonic() - started < 10
    assert proc.returncode == status, rest + err
    assert err == "smtpscript: interrupted\n"
    name = signal.Signals(signum).name
    assert f"INCOMPLETE: interrupted by {name}: 1 of 3 scenario runs finished" in rest

    run = from_dict(json.loads(out["json"].read_text("utf-8")))
    assert run.incomplete == f"interrupted by {name}: 1 of 3 scenario runs finished"
    titles = {s.title: s for s in run.scenarios}
    assert titles["fast"].verdict == "passed"
    assert "never" not in titles  # not started when the signal came: never started
    if "slow" in titles:  # cut off midway: recorded as an error, or missing
        assert titles["slow"].verdict == "error"
    html = out["html"].read_text("utf-8")
    assert 'id="incomplete"' in html and f"interrupted by {name}" in html
    assert f'name="incomplete" value="interrupted by {name}' in out["xml"].read_text("utf-8")
    assert list(temp.iterdir()) == []  # the sandbox's key directory is gone


def test_sigterm_outside_a_run_unwinds_with_143(tmp_path):
    with spawn("serve", "--port", "0", env={"TMPDIR": str(tmp_path)}) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("smtpscript sandbox: SMTP on")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 143
    assert err == "smtpscript: interrupted\n"
    assert list(tmp_path.iterdir()) == []  # its key directory removed on the way out


# --- internal errors: bugs in smtpscript --------------------------------------------------


def test_an_unforeseen_exception_is_an_internal_error_exit_3(capsys, monkeypatch, tmp_path):
    import smtpscript.api

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(smtpscript.api, "run_request", broken)
    status, _, err = cli(capsys, "run", scenario(tmp_path, GREET), "-t", "sandbox")
    assert status == 3
    first, second = err.splitlines()
    assert first == "smtpscript: internal error: ZeroDivisionError: division by zero"
    assert "bug in smtpscript" in second and "--traceback" in second and "issue" in second
    with pytest.raises(ZeroDivisionError):
        run_cli(["--traceback", "run", str(tmp_path / "s.yaml"), "-t", "sandbox"])


def test_a_scenario_run_that_hit_a_bug_still_writes_reports_and_exits_3(
    capsys, monkeypatch, tmp_path
):
    from smtpscript import protocol

    def broken(reply: object) -> dict[str, str]:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(protocol, "parse_ehlo", broken)  # EHLO's capability parser
    failing = scenario(tmp_path, FAILING.replace("ehlo", "helo"), name="failing.yaml")
    status, _, err = cli(
        capsys, "run", scenario(tmp_path, GREET), failing, "-t", "sandbox",
        "--json", tmp_path / "r.json",
    )  # fmt: skip
    assert status == 3  # not 1, although a scenario also failed
    run = from_dict(json.loads((tmp_path / "r.json").read_text("utf-8")))
    bug = next(s for s in run.scenarios if s.internal_error)
    assert bug.verdict == "error" and "ZeroDivisionError" in (bug.reason or "")
    lines = err.splitlines()
    assert lines[0].startswith("smtpscript: internal error in 1 scenario run: ")
    assert "bug in smtpscript" in lines[1]


# --- terminal safety -----------------------------------------------------------------------


async def escape_artist(conn: Conn) -> None:
    await conn.send(b"220 \x1b]0;pwned\x07 \x1b[2J\x1b[31mred\x9b\r\n")
    await conn.serve({b"EHLO": b"250 ok \x1b[1A\x7f\r\n"})


def test_server_text_reaches_the_console_escaped(capsys, tmp_path):
    path = scenario(tmp_path, "- connect: {}\n  expect: 250\n")  # fails, quoting the banner
    with Hostile(escape_artist) as server:
        status, out, err = cli(capsys, "run", path, "-t", f"127.0.0.1:{server.port}", "-v")
    assert status == 1
    assert "\x1b" not in out + err and "\x07" not in out and "\x9b" not in out
    assert "\\x1b]0;pwned\\x07 \\x1b[2J\\x1b[31mred\\x9b" in out  # as sent, visibly


def test_titles_and_file_names_reach_the_console_escaped(capsys, tmp_path):
    evil = tmp_path / "evil\x1b[8m.yaml"
    evil.write_text(
        'smtpscript: 1\ntitle: "bell\\a \\e[31mred \\u202e"\nsteps:\n  - ehlo: a.test\n',
        encoding="utf-8",
    )
    status, out, _ = cli(capsys, "run", tmp_path, "-t", "sandbox")
    assert status == 0
    line = out.splitlines()[0]
    assert "bell\\x07 \\x1b[31mred \\u202e" in line and "evil\\x1b[8m.yaml:1" in line
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out


def test_one_line_errors_are_escaped(capsys, tmp_path):
    status, _, err = cli(capsys, "run", tmp_path / "gone\x1b[2J.yaml", "-t", "sandbox")
    assert status == 2
    assert "\x1b" not in err and "gone\\x1b[2J.yaml" in err


def test_an_undecodable_file_name_is_shown_and_written_as_udcxx(capsys, tmp_path):
    folder = os.fsencode(tmp_path)
    with open(os.path.join(folder, b"caf\xe9.yaml"), "wb") as f:
        f.write(b"smtpscript: 1\ntitle: bytes\nsteps:\n  - ehlo: a.test\n")
    reports = {k: tmp_path / f"r.{k}" for k in ("json", "html", "xml")}
    status, out, _ = cli(
        capsys, "run", tmp_path, "-t", "sandbox",
        "--json", reports["json"], "--html", reports["html"], "--junit", reports["xml"],
    )  # fmt: skip
    assert status == 0
    assert "caf\\udce9.yaml:1" in out
    for kind in ("html", "xml"):
        assert "caf\\udce9.yaml" in reports[kind].read_bytes().decode("utf-8")  # strict UTF-8
    run = from_dict(json.loads(reports["json"].read_bytes().decode("utf-8")))
    assert run.scenarios[0].file.endswith("caf\\udce9.yaml")  # text now, not a surrogate


def _surrogate_run() -> RunResult:
    target = TargetInfo("mx\udc80", "192.0.2.1", 25)
    result = ScenarioResult(
        scenario_id="s\udcff.yaml", file="s\udcff.yaml", line=1, title="t\ud800",
        description="", severity="high", tags=[], references=[], target=target,
        verdict="failed", reason="got \udc80",
    )  # fmt: skip
    return RunResult(targets=[target], scenarios=[result], incomplete="cut \udc81")


def test_every_writer_writes_lone_surrogates_as_text(tmp_path):
    paths = {k: tmp_path / f"r.{k}" for k in ("json", "html", "xml")}
    failures = write_reports(
        _surrogate_run(), json_path=paths["json"], html_path=paths["html"], junit_path=paths["xml"]
    )
    assert failures == []
    for kind in ("html", "xml"):
        text = paths[kind].read_bytes().decode("utf-8")  # strict: valid UTF-8
        assert "s\\udcff.yaml" in text and "mx\\udc80" in text and "t\\ud800" in text
    again = from_dict(json.loads(paths["json"].read_bytes().decode("utf-8")))
    assert again.scenarios[0].file == "s\\udcff.yaml" and again.targets[0].name == "mx\\udc80"
    assert again.scenarios[0].reason == "got \\udc80" and again.incomplete == "cut \\udc81"


def _fields(obj: object) -> dict[str, object]:
    """A results dataclass as a dict, one level deep (no __dict__ with slots)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def test_report_on_a_results_file_with_surrogate_escapes(capsys, tmp_path):
    results = tmp_path / "results.json"
    source = json.loads(json.dumps(_fields(_surrogate_run()), default=_fields))
    results.write_text(json.dumps(source), encoding="ascii")  # "\udc80" escapes, as JSON allows
    html = tmp_path / "r.html"
    status, _, err = cli(capsys, "report", results, "--html", html)
    if status == 0:  # rendered: the surrogates shown as text
        assert "t\\ud800" in html.read_bytes().decode("utf-8")
    else:  # or refused as not what smtpscript writes: one clear line naming the file
        assert status == 2 and err.count("\n") == 1 and str(results) in err
        assert "\udc80" not in err and not html.exists()


# --- colour ---------------------------------------------------------------------------------


def _verdict_line_on_a_terminal(colour_env: str | None, monkeypatch) -> str:
    if colour_env is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", colour_env)
    leader, follower = os.openpty()
    with open(follower, "w", encoding="utf-8", closefd=True) as tty:
        ConsoleView(tty).scenario(_surrogate_run().scenarios[0])
    try:
        return os.read(leader, 4096).decode("utf-8")
    finally:
        os.close(leader)


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    assert "\x1b[31mFAIL" in _verdict_line_on_a_terminal(None, monkeypatch)
    assert "\x1b[31mFAIL" in _verdict_line_on_a_terminal("", monkeypatch)  # empty: not set
    plain = _verdict_line_on_a_terminal("1", monkeypatch)
    assert plain.startswith("FAIL  mx\\udc80  t\\ud800") and "\x1b" not in plain


def test_no_colour_into_a_pipe(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("NO_COLOR", raising=False)
    status, out, _ = cli(capsys, "run", scenario(tmp_path, FAILING), "-t", "sandbox")
    assert status == 1 and out.startswith("FAIL ") and "\x1b" not in out


# --- warnings ---------------------------------------------------------------------------------


def test_load_warnings_are_one_stderr_line_each(capsys, tmp_path):
    scenario(tmp_path, GREET)
    os.mkfifo(tmp_path / "pipe.yaml")  # skipped while walking the folder, with a warning
    status, out, err = cli(capsys, "run", tmp_path, "-t", "sandbox")
    assert status == 0 and "1 passed" in out
    warnings = [line for line in err.splitlines() if line.startswith("smtpscript: warning: ")]
    assert len(warnings) == 1 and "pipe.yaml" in warnings[0]
    status, _, err = cli(capsys, "validate", tmp_path)
    assert status == 0 and err.startswith("smtpscript: warning: ") and "pipe.yaml" in err


@pytest.mark.chromium
def test_the_incomplete_banner_shows_in_chromium(tmp_path, browser):
    from smtpscript.report import write_html

    run = _surrogate_run()
    run.incomplete = "interrupted by SIGTERM: 1 of 4 scenario runs finished"
    write_html(run, tmp_path / "r.html")
    browser.open((tmp_path / "r.html").as_uri(), width=1280, height=900)
    browser.settle(0.3)
    banner = browser.evaluate(
        "(() => { const b = document.getElementById('incomplete');"
        " const r = b.getBoundingClientRect();"
        " return [b.innerText, r.height > 0 && r.top < innerHeight]; })()"
    )
    text = " ".join(banner[0].split())
    assert text.lower().startswith("incomplete run interrupted by sigterm: 1 of 4 scenario runs")
    assert banner[1] is True  # on the first screen, not somewhere below
    status = browser.evaluate("document.querySelector('.status').innerText")
    assert status.lower() == "incomplete run · 1 finding"  # not a green "No findings"
    assert browser.log.errors() == []


def test_report_accepts_properties_a_newer_release_added(tmp_path):
    """Readers ignore what they do not know: format 1 files from newer releases render."""
    from smtpscript.results import RunResult, TargetInfo, to_dict

    data = to_dict(RunResult(targets=[TargetInfo("mx", "mx.test", 25)]))
    data["written_by_a_newer_release"] = {"anything": [1, 2]}
    data["targets"][0]["also_new"] = True
    source = tmp_path / "newer.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "out.json"
    assert run_cli(["report", str(source), "--json", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert "written_by_a_newer_release" not in written
    assert written["targets"] == [{"name": "mx", "host": "mx.test", "port": 25}]
