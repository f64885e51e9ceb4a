"""Each transcript entry names the step it happened in (its StepResult.index), recorded by
the runner, not guessed: real runs against the sandbox, the JSON round trip, older files
without it, and transcript.build on hand-made events (replies that arrive together)."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from scenario_helpers import REPO, run_file, steps_file

from smtpscript import transcript
from smtpscript.results import RunResult, ScenarioResult, StepResult, from_dict, to_dict, to_json
from smtpscript.session import RawEvent
from smtpscript.templating import SecretTracker

SCHEMA = json.loads((REPO / "schemas" / "results.schema.json").read_text(encoding="utf-8"))


def lines_of(result: ScenarioResult, step: StepResult | None) -> list[str]:
    """``C: EHLO x`` / ``S: 250 ok`` / ``*: note``: the entries of one step, in order."""
    index = None if step is None else step.index
    return [f"{e.direction}: {e.text}" for e in result.transcript if e.step == index]


def step_named(result: ScenarioResult, name: str) -> StepResult:
    (step,) = [s for s in result.steps if s.name == name]
    return step


def test_every_entry_of_a_plain_run_is_in_its_step(sandbox_target, tmp_path):
    path = steps_file(
        tmp_path,
        """
        - ehlo: client.test
        - send: "MAIL FROM:<a@client.test>"
        - send: "RCPT TO:<alice@sandbox.test>"
        """,
    )
    ran = run_file(path, sandbox_target)
    assert ran.verdict == "passed", ran.reason
    connect, ehlo, mail, rcpt = ran.steps
    assert connect.name == "connect (implicit)"
    # the implicit connect: the note that it connected, then the banner it read
    assert [line[:20] for line in lines_of(ran, connect)] == [
        "*: connected to 127.",
        "S: 220 sandbox.test ",
    ]
    assert lines_of(ran, ehlo)[0] == "C: EHLO client.test"
    assert lines_of(ran, ehlo)[1:] == [f"S: 250{line}" for line in _reply_text(ehlo)]
    assert lines_of(ran, mail) == ["C: MAIL FROM:<a@client.test>", "S: 250 2.1.0 Sender OK"]
    assert lines_of(ran, rcpt) == ["C: RCPT TO:<alice@sandbox.test>", "S: 250 2.1.5 Recipient OK"]
    # the QUIT smtpscript sends after the last step belongs to no step
    assert lines_of(ran, None) == ["C: QUIT", "S: 221 2.0.0 Bye"]
    assert all(e.step is not None for e in ran.transcript[:-2])


def _reply_text(step: StepResult) -> list[str]:
    (reply,) = step.replies
    last = len(reply.lines) - 1
    return [f"{'-' if n < last else ' '}{text}" for n, text in enumerate(reply.lines)]


def test_a_pipeline_puts_each_command_and_reply_in_its_own_step(sandbox_target, tmp_path):
    path = steps_file(
        tmp_path,
        """
        - ehlo: client.test
        - pipeline:
            - send: "MAIL FROM:<a@client.test>"
            - send: "RCPT TO:<alice@sandbox.test>"
            - send: "RCPT TO:<bob@sandbox.test>"
        - send: RSET
        """,
    )
    ran = run_file(path, sandbox_target)
    assert ran.verdict == "passed", ran.reason
    mail, alice, bob = ran.steps[2:5]
    assert [s.path for s in (mail, alice, bob)] == [f"steps[1].pipeline[{n}]" for n in range(3)]
    assert lines_of(ran, mail) == ["C: MAIL FROM:<a@client.test>", "S: 250 2.1.0 Sender OK"]
    assert lines_of(ran, alice) == [
        "C: RCPT TO:<alice@sandbox.test>",
        "S: 250 2.1.5 Recipient OK",
    ]
    assert lines_of(ran, bob) == ["C: RCPT TO:<bob@sandbox.test>", "S: 250 2.1.5 Recipient OK"]
    # as it happened: the three commands in one write, then the three replies
    pipelined = [e.step for e in ran.transcript if e.step in (mail.index, alice.index, bob.index)]
    assert pipelined == [mail.index, alice.index, bob.index] * 2
    assert lines_of(ran, ran.steps[5]) == ["C: RSET", "S: 250 2.0.0 Ok"]


def test_replies_that_arrive_together_go_to_the_steps_that_read_them(sandbox_target, tmp_path):
    """Two commands in one raw write, a pause (both replies come in one read), two reads."""
    path = steps_file(
        tmp_path,
        r"""
        - ehlo: client.test
        - raw: "NOOP\r\nRSET\r\n"
        - sleep: 0.2
        - read:
          name: first
          expect: 250
        - read:
          name: second
          expect: 250
        """,
    )
    ran = run_file(path, sandbox_target)
    assert ran.verdict == "passed", ran.reason
    assert lines_of(ran, ran.steps[2]) == ["C: NOOP\\r\\nRSET\\r\\n"]
    assert lines_of(ran, ran.steps[3]) == []  # the sleep
    assert lines_of(ran, step_named(ran, "first")) == ["S: 250 2.0.0 Ok"]
    assert lines_of(ran, step_named(ran, "second")) == ["S: 250 2.0.0 Ok"]


def test_included_repeated_and_data_steps(sandbox_target, tmp_path):
    (tmp_path / "frag.yaml").write_text(
        'smtpscript: 1\nfragment: true\nsteps:\n  - send: "HELO frag.test"\n  - send: RSET\n',
        encoding="utf-8",
    )
    path = steps_file(
        tmp_path,
        r"""
        - include: frag.yaml
        - send: NOOP
          repeat: 2
        - send: "MAIL FROM:<a@client.test>"
        - send: "RCPT TO:<alice@sandbox.test>"
        - data: "Subject: steps\r\n\r\nfirst line\r\nsecond line\r\n"
        """,
    )
    ran = run_file(path, sandbox_target)
    assert ran.verdict == "passed", ran.reason
    connect, helo, rset, noop1, noop2, _, _, data = ran.steps
    # the include's first step connected implicitly: a step of its own before it
    assert connect.kind == "connect" and helo.path == "steps[0].include.steps[0]"
    assert lines_of(ran, helo) == ["C: HELO frag.test", "S: 250 sandbox.test"]
    assert lines_of(ran, rset) == ["C: RSET", "S: 250 2.0.0 Ok"]
    assert (noop1.repeat_index, noop2.repeat_index) == (1, 2)
    assert lines_of(ran, noop1) == lines_of(ran, noop2) == ["C: NOOP", "S: 250 2.0.0 Ok"]
    shown = lines_of(ran, data)
    assert shown[:2] == ["C: DATA", "S: 354 End data with <CR><LF>.<CR><LF>"]
    # the payload (smtpscript adds Date and Message-ID), its end, the verdict on it
    assert shown[-6:-1] == ["C: Subject: steps", "C: ", "C: first line", "C: second line", "C: ."]
    assert shown[-1].startswith("S: 250 2.0.0 Ok: queued")
    assert lines_of(ran, None) == ["C: QUIT", "S: 221 2.0.0 Bye"]


def test_starttls_notes_its_handshake_in_its_step(sandbox_target, tmp_path):
    path = steps_file(
        tmp_path,
        """
        - ehlo: client.test
        - starttls: {server_name: localhost}
        """,
    )
    ran = run_file(path, sandbox_target)
    assert ran.verdict == "passed", ran.reason
    shown = lines_of(ran, ran.steps[2])
    assert shown[:2] == ["C: STARTTLS", "S: 220 2.0.0 Ready to start TLS"]
    assert shown[2].startswith("*: TLS established: TLSv1.")


def test_json_keeps_the_step_and_writes_it_only_when_there_is_one(sandbox_target, tmp_path):
    path = steps_file(tmp_path, "- ehlo: client.test")
    ran = run_file(path, sandbox_target)
    run = RunResult(scenarios=[ran])
    written = to_dict(run)["scenarios"][0]["transcript"]
    assert [e.get("step") for e in written] == [e.step for e in ran.transcript]
    assert ["step" in e for e in written[-2:]] == [False, False]  # QUIT and its reply
    assert list(Draft202012Validator(SCHEMA).iter_errors(json.loads(to_json(run)))) == []
    again = from_dict(json.loads(to_json(run)))
    assert again.scenarios[0].transcript == ran.transcript


def test_an_older_results_file_without_steps_still_loads(sandbox_target, tmp_path):
    path = steps_file(tmp_path, "- ehlo: client.test")
    data = json.loads(to_json(RunResult(scenarios=[run_file(path, sandbox_target)])))
    for entry in data["scenarios"][0]["transcript"]:
        entry.pop("step", None)
    assert list(Draft202012Validator(SCHEMA).iter_errors(data)) == []
    loaded = from_dict(data).scenarios[0]
    assert loaded.transcript and all(e.step is None for e in loaded.transcript)


@pytest.mark.parametrize("step", [0, "3", 1.5])
def test_the_schema_wants_a_step_index(step):
    entry_schema = {**SCHEMA["$defs"]["transcriptEntry"], "$defs": SCHEMA["$defs"]}
    entry = {"t": 0.0, "direction": "C", "text": "NOOP"}
    assert list(Draft202012Validator(entry_schema).iter_errors({**entry, "step": 2})) == []
    assert list(Draft202012Validator(entry_schema).iter_errors({**entry, "step": step}))


# --- transcript.build on hand-made events ----------------------------------------------


def build(events: list[RawEvent], marks: list[transcript.Mark]) -> list[tuple[int | None, str]]:
    return [
        (e.step, f"{e.direction}: {e.text}")
        for e in transcript.build(events, SecretTracker(), marks)
    ]


def test_build_splits_one_read_between_the_steps_that_read_it():
    """A pipeline: two commands in one write, both replies in one read."""
    pipelined = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
    replies = b"250 ok\r\n250-fine\r\n250 really\r\n"
    events = [RawEvent(0.0, "C", pipelined, "MAIL FROM:<a@b>\nRCPT TO:<c@d>")]
    marks = [
        transcript.Mark(0, 7),  # both steps start before the write: the last given wins...
        transcript.Mark(0, 8),
        transcript.Mark(0, 7, 0),  # ...until each line is given to its step
        transcript.Mark(0, 8, 1),
        transcript.reply_mark(events, 0, 7),  # step 7 reads: nothing unread, the next event
    ]
    events.append(RawEvent(0.1, "S", replies))
    marks.append(transcript.reply_mark(events, 22, 8))  # step 8 reads what 7 left unread
    assert marks[-2:] == [transcript.Mark(1, 7), transcript.Mark(1, 8, 8)]
    marks.append(transcript.Mark(2, None))
    events.append(RawEvent(0.2, "C", b"QUIT\r\n"))
    assert build(events, marks) == [
        (7, "C: MAIL FROM:<a@b>"),
        (8, "C: RCPT TO:<c@d>"),
        (7, "S: 250 ok"),
        (8, "S: 250-fine"),
        (8, "S: 250 really"),
        (None, "C: QUIT"),
    ]


def test_build_a_line_split_across_reads_takes_the_step_of_its_first_byte():
    events = [
        RawEvent(0.0, "S", b"250 o"),
        RawEvent(0.1, "S", b"k\r\n25"),
        RawEvent(0.2, "S", b"0 next\r\n"),
    ]
    marks = [transcript.Mark(0, 1), transcript.Mark(1, 2, 3)]
    entries = transcript.build(events, SecretTracker(), marks)
    assert [(e.t, e.step, e.text) for e in entries] == [(0.0, 1, "250 ok"), (0.1, 2, "250 next")]


def test_build_reply_mark_reaches_back_over_several_reads_and_other_events():
    events = [
        RawEvent(0.0, "S", b"250 a\r\n2"),
        RawEvent(0.1, "*", "a note"),
        RawEvent(0.2, "S", b"50 b\r\n"),
    ]
    assert transcript.reply_mark(events, 7, 5) == transcript.Mark(0, 5, 7)
    assert transcript.reply_mark(events, 6, 5) == transcript.Mark(2, 5, 0)
    assert transcript.reply_mark(events, 0, 5) == transcript.Mark(3, 5, 0)


def test_build_without_marks_leaves_every_step_out():
    events = [RawEvent(0.0, "S", b"220 hi\r\n"), RawEvent(0.1, "C", b"QUIT\r\n")]
    assert build(events, []) == [(None, "S: 220 hi"), (None, "C: QUIT")]
