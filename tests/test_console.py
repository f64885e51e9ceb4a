"""The console view: planned order, a progress line only on a terminal, the recap, colour
rules, -q and -v, and hostile text escaped. Results are built by hand; one real run."""

from __future__ import annotations

import io
import os
import select
from collections.abc import Callable
from typing import Any, TextIO

import pytest
from scenario_helpers import run_file, steps_file

from smtpscript.console import ConsoleView, colour_wanted, scenario_table, target_table
from smtpscript.loading import load_paths
from smtpscript.results import (
    ReplyRecord,
    RunResult,
    ScenarioResult,
    StepResult,
    TargetInfo,
    TranscriptEntry,
)

MX = TargetInfo("mx1", "192.0.2.10", 25)


def result(title: str, verdict: str = "passed", **kw: Any) -> ScenarioResult:
    base: dict[str, Any] = {
        "file": f"scenarios/{title}.yaml",
        "line": 3,
        "description": "",
        "severity": "medium",
        "tags": [],
        "references": [],
        "duration_ms": 10.0,
        "reason": None if verdict == "passed" else f"why {title} {verdict}",
    }
    base.update(kw)
    return ScenarioResult(
        scenario_id=f"{title}.yaml", title=title, target=MX, verdict=verdict, **base
    )


def view(**kw: Any) -> tuple[ConsoleView, io.StringIO]:
    out = io.StringIO()
    kw.setdefault("colour", False)
    return ConsoleView(out, **kw), out


def verdict_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("PASS", "FAIL", "ERROR"))]


# --- order ----------------------------------------------------------------------------


def test_results_come_out_in_planned_order_whatever_order_runs_finish_in():
    console, out = view()
    console.start(4)
    console.result(2, result("c"))
    console.result(0, result("a"))
    assert [line.split()[2] for line in verdict_lines(out.getvalue())] == ["a"]
    console.result(1, result("b"))
    console.result(3, result("d"))
    assert [line.split()[2] for line in verdict_lines(out.getvalue())] == ["a", "b", "c", "d"]


def test_summary_prints_what_waited_behind_a_run_that_never_finished():
    console, out = view()
    console.start(4)
    late, later = result("b", "failed"), result("d")
    console.result(3, later)
    console.result(1, late)
    assert out.getvalue() == ""  # run 0 is still going
    console.summary(RunResult(scenarios=[late, later], incomplete="interrupted by SIGINT"))
    lines = out.getvalue().splitlines()
    assert [line.split()[2] for line in lines[:3:2]] == ["b", "d"]  # b has a reason line
    assert lines[-1].startswith("smtpscript: 2 scenario runs: 1 passed, 1 failed in ")
    assert lines[-1].endswith("INCOMPLETE: interrupted by SIGINT")


def test_scenario_prints_at_once_for_callers_that_deliver_in_order():
    console, out = view()
    for name in ("a", "b"):
        console.scenario(result(name))
        assert verdict_lines(out.getvalue())[-1].split()[2] == name


# --- progress -------------------------------------------------------------------------


def on_a_terminal(write: Callable[[TextIO], None]) -> str:
    """What ``write`` printed to the follower side of a pseudo-terminal."""
    leader, follower = os.openpty()
    try:
        with open(follower, "w", encoding="utf-8", closefd=True) as tty:
            write(tty)
        chunks = []
        while select.select([leader], [], [], 0.5)[0]:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the follower side is closed and everything was read
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode("utf-8")
    finally:
        os.close(leader)


def three_runs(out: TextIO, **kw: Any) -> None:
    runs = [result("a", "failed"), result("b"), result("c", "error")]
    console = ConsoleView(out, colour=False, **kw)
    console.start(3)
    for index in (1, 0, 2):
        console.result(index, runs[index])
    console.summary(RunResult(scenarios=runs))


def test_a_progress_line_on_a_terminal_erased_before_each_line_and_at_the_end(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    text = on_a_terminal(three_runs)
    assert "\r\x1b[K[0/3]" in text
    assert "\r\x1b[K[1/3]\r\x1b[KFAIL " in text  # b waits for a; the line replaces progress
    assert "[2/3] 1 failed\r\x1b[K" in text  # zero counts left out
    assert "[3/3] 1 failed, 1 error\r\x1b[K" in text
    assert text.endswith("\r\n") and "smtpscript: 3 scenario runs" in text.splitlines()[-1]
    # nothing after the summary: the last progress line was erased before the recap
    assert text.rindex("[3/3]") < text.index("failures and errors")


@pytest.mark.parametrize(
    ("term", "progress", "quiet"),
    [("dumb", None, False), ("xterm", False, False), ("xterm", True, True)],
)
def test_no_progress_line_on_a_dumb_terminal_when_refused_or_quiet(
    monkeypatch, term, progress, quiet
):
    monkeypatch.setenv("TERM", term)
    text = on_a_terminal(lambda tty: three_runs(tty, progress=progress, quiet=quiet))
    assert "[1/3]" not in text and "\x1b[K" not in text and "smtpscript: 3 scenario" in text


def test_no_progress_line_into_a_file_or_pipe(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    out = io.StringIO()
    three_runs(out)
    assert "[1/3]" not in out.getvalue() and "\r" not in out.getvalue()


# --- recap ----------------------------------------------------------------------------


def test_the_recap_lists_every_failure_and_error_in_planned_order_with_the_fix():
    runs = [
        result("fine"),
        result("relay", "failed", severity="high", line=7),
        result("skip", "skipped"),
        result("down", "error"),
    ]
    runs[1].remediation = "set smtpd_relay_restrictions = reject_unauth_destination"  # type: ignore[attr-defined]
    console, out = view()
    console.start(4)
    for index in (3, 2, 1, 0):
        console.result(index, runs[index])
    console.summary(RunResult(scenarios=runs))
    recap = out.getvalue().split("failures and errors (2):\n")[1].splitlines()
    assert recap == [
        "FAIL  mx1  relay  [high] scenarios/relay.yaml:7",
        "      Why relay failed.",
        "      fix: set smtpd_relay_restrictions = reject_unauth_destination",
        "ERROR mx1  down  [medium] scenarios/down.yaml:3",
        "      Could not be judged: why down error.",
        recap[-1],
    ]
    assert recap[-1].startswith("smtpscript: 4 scenario runs: 1 passed, 1 failed, 1 error, ")


def test_no_recap_when_nothing_failed():
    console, out = view()
    console.scenario(result("fine"))
    console.summary(RunResult(scenarios=[result("fine")]))
    assert "failures and errors" not in out.getvalue()


def test_failures_below_fail_on_are_said_not_to_count():
    runs = [
        result("a", "failed", severity="low"),
        result("b", "failed", severity="medium"),
        result("c", "failed", severity="high"),
        result("d", "error", severity="info"),  # errors always count
    ]
    console, out = view()
    console.summary(RunResult(scenarios=runs), fail_on="high")
    assert out.getvalue().splitlines()[-1] == (
        "smtpscript: 2 failed runs are below --fail-on high and do not fail the run"
    )
    console, out = view(fail_on="medium")  # the caller's threshold, given once
    console.summary(RunResult(scenarios=runs))
    assert out.getvalue().splitlines()[-1] == (
        "smtpscript: 1 failed run is below --fail-on medium and does not fail the run"
    )
    console, out = view()
    console.summary(RunResult(scenarios=runs))
    assert "below --fail-on" not in out.getvalue()


def test_quiet_prints_the_recap_and_the_summary_only():
    runs = [result("fine"), result("bad", "failed")]
    console, out = view(quiet=True, verbose=True, progress=True)
    console.start(2)
    for index, run in enumerate(runs):
        console.result(index, run)
    console.summary(RunResult(scenarios=runs))
    assert out.getvalue().splitlines() == [
        "failures and errors (1):",
        "FAIL  mx1  bad  [medium] scenarios/bad.yaml:3",
        "      Why bad failed.",
        out.getvalue().splitlines()[-1],
    ]
    assert "PASS" not in out.getvalue() and "[1/2]" not in out.getvalue()


# --- colour ---------------------------------------------------------------------------


class FakeOut(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("env", "tty", "wanted"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": "1"}, True, False),
        ({"NO_COLOR": ""}, True, True),  # empty: as if not set
        ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, True, False),  # NO_COLOR wins
        ({"FORCE_COLOR": "1"}, False, True),
        ({"FORCE_COLOR": "0"}, False, False),
        ({"FORCE_COLOR": ""}, False, False),
        ({"TERM": "dumb"}, True, False),
        ({"TERM": "dumb", "FORCE_COLOR": "3"}, False, True),
    ],
)
def test_colour_auto(monkeypatch, env, tty, wanted):
    for name in ("NO_COLOR", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert colour_wanted("auto", FakeOut(tty)) is wanted
    assert ConsoleView(FakeOut(tty)).colour is wanted


def test_colour_always_and_never_ignore_the_environment(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert colour_wanted("always", io.StringIO()) is True
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR")
    assert colour_wanted("never", FakeOut(True)) is False
    with pytest.raises(ValueError, match="colour mode"):
        colour_wanted("sometimes", io.StringIO())


def test_no_colour_on_a_closed_or_ttyless_output(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    closed = io.StringIO()
    closed.close()
    assert colour_wanted("auto", closed) is False
    assert colour_wanted("auto", object()) is False  # type: ignore[arg-type]


def test_colour_paints_the_verdict_and_the_failing_reply():
    console, out = view(colour=True, verbose=True)
    console.scenario(conversation_result())
    assert "\x1b[31mFAIL \x1b[0m mx1" in out.getvalue()
    assert "\x1b[31m     >> " in out.getvalue()


# --- hostile text ---------------------------------------------------------------------

EVIL = "\x1b]0;pwned\x07\x1b[2J\x9b\u202e"
SHOWN = "\\x1b]0;pwned\\x07\\x1b[2J\\u009b\\u202e"


def test_hostile_text_is_escaped_everywhere(monkeypatch):
    bad = conversation_result(
        title=f"t{EVIL}", reason=f"r{EVIL}", file=f"f{EVIL}.yaml", severity=f"s{EVIL}"
    )
    bad.remediation = f"fix{EVIL}"  # type: ignore[attr-defined]
    bad.target = TargetInfo(f"mx{EVIL}", "192.0.2.10", 25)
    bad.steps[2].name = f"rcpt{EVIL}"
    bad.steps[2].message = f"m{EVIL}"
    bad.transcript[-2].text = f"221 {EVIL}"
    bad.warnings, bad.protocol_violations = [f"w{EVIL}"], [f"v{EVIL}"]
    console, out = view(verbose=True)
    console.start(1)
    console.result(0, bad)
    console.summary(RunResult(scenarios=[bad], incomplete=f"i{EVIL}"), fail_on="critical")
    text = out.getvalue()
    assert not {"\x1b", "\x07", "\x9b", "\u202e"} & set(text)
    for shown in ("t", "r", "f", "s", "fix", "mx", "rcpt", "m", "221 ", "w", "v", "i"):
        assert shown + SHOWN in text, shown


def test_tables_escape_and_align():
    assert target_table([]) == []
    evil = f"x{SHOWN}"
    assert target_table([("mx1", "192.0.2.10:25", "prod"), (f"x{EVIL}", "[::1]:2525", "")]) == [
        f"{'NAME':{len(evil)}}  ADDRESS        TAGS",
        f"{'mx1':{len(evil)}}  192.0.2.10:25  prod",
        f"{evil}  [::1]:2525",
    ]


def test_scenario_table_still_lists_scenarios(tmp_path):
    path = steps_file(tmp_path, "- ehlo: a.test", title="greets", extra="tags: [basic]\n")
    loaded = load_paths([path])
    lines = scenario_table(loaded.scenarios)
    assert lines[0].split() == ["SEVERITY", "TITLE", "TAGS", "FILE"]
    assert lines[1].split()[:3] == ["medium", "greets", "basic"]
    assert lines[1].index("greets") == lines[0].index("TITLE")


# --- a reader that goes away ----------------------------------------------------------


class GonePipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_stops_the_view_not_the_caller():
    console = ConsoleView(GonePipe(), progress=True)
    console.start(2)
    console.result(1, result("b", "failed"))
    console.result(0, result("a"))
    console.summary(RunResult(scenarios=[result("a"), result("b", "failed")]))
    assert console.closed


# --- -v: the conversation step by step ------------------------------------------------


def conversation_result(**kw: Any) -> ScenarioResult:
    """connect, ehlo, then a RCPT the server accepts although the scenario expects 550."""

    def step(index: int, name: str, sent: list[str], reply: ReplyRecord, **more: Any):
        return StepResult(
            index=index,
            path=f"steps[{index - 1}]",
            kind="send",
            name=name,
            line=10 + 2 * index,
            verdict=more.pop("verdict", "passed"),
            expected="2xx",
            sent=sent,
            replies=[reply],
            **more,
        )

    rcpt = "RCPT TO:<x@outside.example>"
    steps = [
        step(1, "connect", [], ReplyRecord(220, None, ["mx ESMTP"], 1.0)),
        step(2, "EHLO c.test", ["EHLO c.test"], ReplyRecord(250, None, ["mx", "PIPELINING"], 1)),
        step(
            3,
            "rcpt outsider",
            [rcpt],
            ReplyRecord(250, "2.1.5", ["2.1.5 Ok"], 1.0),
            verdict="failed",
            message="expected 550 or 554, got 250 2.1.5 Ok",
        ),
        StepResult(4, "steps[3]", "send", "RSET", 18, "skipped", "2xx", message="when: false"),
    ]
    lines = [  # (direction, text, step): what the runner records
        ("*", "connected to 192.0.2.10:25", 1),
        ("S", "220 mx ESMTP", 1),
        ("C", "EHLO c.test", 2),
        ("S", "250-mx", 2),
        ("S", "250 PIPELINING", 2),
        ("C", rcpt, 3),
        ("S", "250 2.1.5 Ok", 3),
        ("C", "QUIT", None),
        ("S", "221 bye", None),
        ("*", "closed", None),
    ]
    transcript = [
        TranscriptEntry(n / 1000, d, text, step) for n, (d, text, step) in enumerate(lines)
    ]
    kw.setdefault("reason", f"scenarios/r.yaml:16: steps[2] ({rcpt}): {steps[2].message}")
    title = kw.pop("title", "r")
    return result(title, "failed", **{"steps": steps, "transcript": transcript, **kw})


def test_verbose_labels_each_step_and_marks_the_failing_reply():
    console, out = view(verbose=True)
    console.scenario(conversation_result())
    assert out.getvalue().splitlines()[2:] == [
        "      step 1 (connect) line 12",
        "             0.0ms   * connected to 192.0.2.10:25",
        "             1.0ms S: 220 mx ESMTP",
        "      step 2 (EHLO c.test) line 14",
        "             2.0ms C: EHLO c.test",
        "             3.0ms S: 250-mx",
        "             4.0ms S: 250 PIPELINING",
        "      step 3 (rcpt outsider) line 16: failed",
        "             5.0ms C: RCPT TO:<x@outside.example>",
        "     >>      6.0ms S: 250 2.1.5 Ok",
        "                   expected 550 or 554, got 250 2.1.5 Ok",
        "      step 4 (RSET) line 18: skipped (when: false)",
        "      after the steps",
        "             7.0ms C: QUIT",
        "             8.0ms S: 221 bye",
        "             9.0ms   * closed",
    ]


def test_verbose_labels_a_pipelines_steps_again_where_they_interleave():
    """The commands go out in one write, the replies come back after them: each line under
    its own step, in the order it happened; the failing reply found by step, not by text."""
    mail, rcpt = "MAIL FROM:<a@c.test>", "RCPT TO:<victim@example.net>"
    steps = [
        StepResult(1, "steps[0].pipeline[0]", "send", mail, 6, "passed", "2xx", sent=[mail]),
        StepResult(
            2,
            "steps[0].pipeline[1]",
            "send",
            rcpt,
            7,
            "failed",
            "550",
            message="expected 550, got 250 2.1.5 Ok",
            sent=[rcpt],
            replies=[ReplyRecord(250, "2.1.5", ["2.1.5 Ok"], 1.0)],
        ),
        StepResult(3, "steps[1]", "send", "NOOP", 8, "skipped", "2xx", message="not judged"),
    ]
    lines = [
        ("C", mail, 1),
        ("C", rcpt, 2),
        ("S", "250 2.1.0 Ok", 1),
        ("S", "250 2.1.5 Ok", 2),
        ("C", "QUIT", None),
    ]
    transcript = [TranscriptEntry(n / 1000, d, t, s) for n, (d, t, s) in enumerate(lines)]
    console, out = view(verbose=True)
    console.scenario(conversation_result(steps=steps, transcript=transcript))
    assert out.getvalue().splitlines()[2:] == [
        "      step 1 (MAIL FROM:<a@c.test>) line 6",
        "             0.0ms C: MAIL FROM:<a@c.test>",
        "      step 2 (RCPT TO:<victim@example.net>) line 7: failed",
        "             1.0ms C: RCPT TO:<victim@example.net>",
        "      step 1 (MAIL FROM:<a@c.test>) line 6",
        "             2.0ms S: 250 2.1.0 Ok",
        "      step 2 (RCPT TO:<victim@example.net>) line 7: failed",
        "     >>      3.0ms S: 250 2.1.5 Ok",
        "                   expected 550, got 250 2.1.5 Ok",
        "      step 3 (NOOP) line 8: skipped (not judged)",
        "      after the steps",
        "             4.0ms C: QUIT",
    ]


def test_verbose_marks_only_the_last_reply_a_failed_step_read():
    """A step that read two replies (DATA: 354, then the verdict on the message) failed
    on the second; the lines nobody read after it (injected) are not marked."""
    data = StepResult(
        2,
        "steps[1]",
        "data",
        "DATA",
        9,
        "failed",
        "2xx",
        message="expected 2xx, got 554 no",
        sent=["DATA", "Subject: x", "."],
        replies=[
            ReplyRecord(354, None, ["go ahead"], 1.0),
            ReplyRecord(554, None, ["no", "really"], 1.0),
        ],
    )
    connect = StepResult(1, "steps[0]", "connect", "connect", 8, "passed", "220")
    lines = [
        ("S", "220 mx", 1),
        ("C", "DATA", 2),
        ("S", "354 go ahead", 2),
        ("C", "Subject: x", 2),
        ("C", ".", 2),
        ("S", "554-no", 2),
        ("S", "554 really", 2),
        ("S", "250 smuggled", 2),
    ]
    transcript = [TranscriptEntry(n / 1000, d, t, s) for n, (d, t, s) in enumerate(lines)]
    console, out = view(verbose=True)
    console.scenario(conversation_result(steps=[connect, data], transcript=transcript))
    shown = out.getvalue().splitlines()[2:]
    assert [line[:9] for line in shown if "S: " in line] == [" " * 9] * 2 + ["     >>  "] * 2 + [
        " " * 9
    ]
    assert shown[-2:] == [
        "                   expected 2xx, got 554 no",
        "             7.0ms S: 250 smuggled",
    ]


def test_verbose_errored_step_gets_its_message_after_its_last_line_unmarked():
    """An error was not judged on a reply (a timeout, a broken reply): nothing is marked."""
    odd = conversation_result()
    odd.steps[2].verdict = "error"
    odd.steps[2].message = "no complete reply within 5 s"
    console, out = view(verbose=True)
    console.scenario(odd)
    shown = out.getvalue().splitlines()[2:]
    assert not [line for line in shown if line.startswith("     >>")]
    at = shown.index("             6.0ms S: 250 2.1.5 Ok")
    assert shown[at + 1] == "                   no complete reply within 5 s"


def test_verbose_a_transcript_from_older_results_comes_after_the_steps():
    """Results written before entries had a step: the steps, then every line."""
    old = conversation_result()
    for entry in old.transcript:
        entry.step = None
    console, out = view(verbose=True)
    console.scenario(old)
    assert out.getvalue().splitlines()[2:8] == [
        "      step 1 (connect) line 12",
        "      step 2 (EHLO c.test) line 14",
        "      step 3 (rcpt outsider) line 16: failed",
        "                   expected 550 or 554, got 250 2.1.5 Ok",
        "      step 4 (RSET) line 18: skipped (when: false)",
        "      outside the steps",
    ]
    assert len(out.getvalue().splitlines()) == 2 + 6 + len(old.transcript)


def test_verbose_without_steps_shows_the_transcript():
    bare = conversation_result(steps=[])
    console, out = view(verbose=True)
    console.scenario(bare)
    lines = out.getvalue().splitlines()[2:]
    assert len(lines) == len(bare.transcript)
    assert not [line for line in lines if line.lstrip().startswith("step")]


def test_verbose_on_a_real_run_pipelined(sandbox_target, tmp_path):
    path = steps_file(
        tmp_path,
        """
        - ehlo: client.test
        - pipeline:
            - send: "MAIL FROM:<a@client.test>"
            - send: "RCPT TO:<alice@sandbox.test>"
              expect: 550
        - send: NOOP
        """,
    )
    ran = run_file(path, sandbox_target)
    console, out = view(verbose=True)
    console.scenario(ran)
    lines = out.getvalue().splitlines()
    assert "      step 1 (connect (implicit)) line 4" in lines
    rcpt = "      step 4 (RCPT TO:<alice@sandbox.test>) line 7: failed"
    # a pipeline: the commands go out together, the replies come back after them
    at = lines.index(rcpt)
    assert lines[at + 1].endswith("C: RCPT TO:<alice@sandbox.test>")
    assert lines[at + 2] == "      step 3 (MAIL FROM:<a@client.test>) line 6"
    assert lines[at + 3].endswith("S: 250 2.1.0 Sender OK")
    assert lines[at + 4] == rcpt
    assert lines[at + 5].startswith("     >> ") and "S: 250 2.1.5" in lines[at + 5]
    assert lines[at + 6].strip() == "expected 550, got 250 2.1.5 Recipient OK"
    assert (
        "* connected to 127.0.0.1:"
        in lines[lines.index("      step 1 (connect (implicit)) line 4") + 1]
    )


def test_the_recap_gives_a_long_fix_once_and_its_first_sentence_only():
    fix = "Set smtpd_forbid_bare_newline = normalize. Then reload Postfix and test again."
    results = [result(f"smuggling {n}", "failed", remediation=fix) for n in (1, 2)]
    out = io.StringIO()
    view = ConsoleView(out, colour=False)
    view.start(2)
    for index, one in enumerate(results):
        view.result(index, one)
    view.summary(RunResult(scenarios=results))
    fixes = [line.strip() for line in out.getvalue().splitlines() if "fix:" in line]
    assert fixes == [
        "fix: Set smtpd_forbid_bare_newline = normalize. (more in the report)",
        "fix: as for smuggling 1",
    ]
