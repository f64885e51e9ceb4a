"""bdat (RFC 3030 CHUNKING): the exact bytes on the wire, chunk by chunk, against a scripted
server (the aiosmtpd sandbox has no BDAT); delivery byte-exact through the real Postfix."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hostile import Conn, Hostile
from postfix_env import queue_id_of

from smtpscript.loading import load_paths
from smtpscript.model import Endpoint, Target, TlsOptions
from smtpscript.results import ScenarioResult, StepResult
from smtpscript.runner import RunOptions, run
from smtpscript.targets import parse_target

REPO = Path(__file__).resolve().parent.parent
EHLO = b"250-chunky.test\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 ENHANCEDSTATUSCODES\r\n"
# Date and Message-ID given: nothing is added, so the bytes on the wire are known exactly
HEADERS = "Date: Thu, 1 Jan 2026 00:00:00 +0000\nMessage-ID: <1@client.test>\nSubject: dots\n"
BODY = "first\n.leading dot\n..two dots\n.\nlast\n"
MESSAGE = (HEADERS + "\n" + BODY).replace("\n", "\r\n").encode()


class Chunky:
    """A CHUNKING server: reads exactly n bytes after each BDAT n and answers it.

    ``replies`` maps a chunk number (from 1) to the reply for that chunk; ``close_at``:
    close instead of answering that chunk. Everything the client sent, lines and chunk
    bytes, is kept in order in ``conn.received``.
    """

    def __init__(self, replies: dict[int, bytes] | None = None, close_at: int | None = None):
        self.replies = replies or {}
        self.close_at = close_at

    async def __call__(self, conn: Conn) -> None:
        await conn.send(b"220 chunky.test ESMTP\r\n")
        chunks = 0
        while line := await conn.line():
            words = line.split()
            verb = words[0].upper() if words else b""
            if verb == b"EHLO":
                await conn.send(EHLO)
            elif verb == b"BDAT":
                chunks += 1
                conn.received.append(await conn.reader.readexactly(int(words[1])))
                if chunks == self.close_at:
                    conn.writer.close()
                    return
                last = len(words) > 2 and words[2].upper() == b"LAST"
                ok = b"250 2.0.0 queued as Q1\r\n" if last else b"250 2.0.0 chunk ok\r\n"
                await conn.send(self.replies.get(chunks, ok))
            elif verb == b"QUIT":
                await conn.send(b"221 2.0.0 bye\r\n")
                return
            else:
                await conn.send(b"250 2.0.0 ok\r\n")


def write(
    tmp_path: Path,
    bdat_step: str,
    *,
    mail_from: str = "<a@client.test>",
    rcpt_to: str = "<b@chunky.test>",
    variables: str = "",
) -> Path:
    """A scenario: EHLO, MAIL, RCPT, then ``bdat_step`` (YAML of one step), then QUIT.

    ``variables``: YAML lines of its vars mapping (``who: you``)."""
    steps = textwrap.dedent(
        f"""\
        - ehlo: client.test
        - send: "MAIL FROM:{mail_from}"
        - send: "RCPT TO:{rcpt_to}"
        """
    )
    steps += textwrap.dedent(bdat_step) + "- send: QUIT\n  expect: 221\n"
    head = "smtpscript: 1\ntitle: bdat\n"
    if variables:
        head += "vars:\n" + textwrap.indent(variables, "  ")
    path = tmp_path / "bdat.yaml"
    path.write_text(head + "steps:\n" + textwrap.indent(steps, "  "), encoding="utf-8")
    return path


def run_path(path: Path, target: Target, **overrides: str) -> ScenarioResult:
    loaded = load_paths([path], extra_names=overrides)
    assert not loaded.problems, [str(p) for p in loaded.problems]
    return run(loaded.scenarios, [target], RunOptions(overrides=dict(overrides))).scenarios[0]


def run_scripted(path: Path, server: Chunky) -> tuple[ScenarioResult, bytes]:
    """The result, and every byte the client sent after RCPT TO."""
    with Hostile(server) as hostile:
        result = run_path(path, parse_target(f"127.0.0.1:{hostile.port}"))
    assert hostile.errors == []
    wire = b"".join(hostile.received)
    rcpt = b"RCPT TO:<b@chunky.test>\r\n"
    return result, wire[wire.index(rcpt) + len(rcpt) :]


def bdat_step(result: ScenarioResult) -> StepResult:
    return next(step for step in result.steps if step.kind == "bdat")


def yaml_string(text: str) -> str:
    """A double-quoted YAML scalar (JSON is valid YAML)."""
    return json.dumps(text)


def message_step(chunk_size: int | None, text: str | None = None) -> str:
    """A bdat step sending MESSAGE (or ``text``) in the {text, chunk_size} form."""
    value = yaml_string(HEADERS + "\n" + BODY if text is None else text)
    size = "" if chunk_size is None else f", chunk_size: {chunk_size}"
    return f"- bdat: {{text: {value}{size}}}\n"


def expected_wire(chunks: list[bytes]) -> bytes:
    commands = [
        f"BDAT {len(chunk)}{' LAST' if n == len(chunks) else ''}\r\n".encode() + chunk
        for n, chunk in enumerate(chunks, start=1)
    ]
    return b"".join(commands) + b"QUIT\r\n"


# ---------------------------------------------------------------- bytes on the wire


@pytest.mark.parametrize(
    ("chunk_size", "cuts"),
    [
        (None, [len(MESSAGE)]),
        (len(MESSAGE) // 3, [len(MESSAGE) // 3] * 3),
        (10, [10] * (len(MESSAGE) // 10) + [len(MESSAGE) % 10]),
    ],
    ids=["one-chunk", "three-even-chunks", "uneven-10-byte-chunks"],
)
def test_chunks_carry_the_exact_bytes_without_dot_stuffing(tmp_path, chunk_size, cuts):
    assert len(MESSAGE) % 3 == 0 and len(MESSAGE) % 10  # the cases mean what they say
    result, wire = run_scripted(write(tmp_path, message_step(chunk_size)), Chunky())
    assert result.verdict == "passed", result.reason
    chunks, start = [], 0
    for size in cuts:
        chunks.append(MESSAGE[start : start + size])
        start += size
    assert wire == expected_wire(chunks)
    step = bdat_step(result)
    assert [reply.code for reply in step.replies] == [250] * len(chunks)
    assert step.expected == "250"


def test_headers_and_body_form_renders_templates_and_adds_date_and_message_id(tmp_path):
    step = """\
        - bdat:
            headers:
              Subject: "hi {{ who }}"
            body: "Gr\\u00fc\\u00dfe\\n.dot\\n"
            chunk_size: 5
        """
    result, wire = run_scripted(write(tmp_path, step, variables="who: you\n"), Chunky())
    assert result.verdict == "passed", result.reason
    sent = b"".join(chunk for chunk in _chunks_of(wire))
    head, _, body = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"Subject: hi you\r\nDate: ")
    assert b"\r\nMessage-ID: <" in head
    assert body == "Grüße\r\n.dot\r\n".encode()  # UTF-8, split by bytes, not characters
    assert all(len(chunk) == 5 for chunk in _chunks_of(wire)[:-1])


def _chunks_of(wire: bytes) -> list[bytes]:
    """Undo BDAT framing: the chunk bytes, in order (the wire ends with QUIT)."""
    chunks = []
    while wire.startswith(b"BDAT "):
        line, _, rest = wire.partition(b"\r\n")
        size = int(line.split()[1])
        chunks.append(rest[:size])
        wire = rest[size:]
    assert wire == b"QUIT\r\n"
    return chunks


def test_an_empty_message_is_bdat_0_last(tmp_path):
    result, wire = run_scripted(write(tmp_path, '- bdat: ""\n'), Chunky())
    assert result.verdict == "passed", result.reason
    assert wire == b"BDAT 0 LAST\r\nQUIT\r\n"
    assert bdat_step(result).name == "BDAT 0 LAST"


def test_transcript_shows_each_bdat_line_and_the_start_of_each_chunk(tmp_path):
    result, _ = run_scripted(write(tmp_path, message_step(100)), Chunky())
    step = bdat_step(result)
    assert step.name == f"BDAT {len(MESSAGE)} bytes in 2 chunks"
    assert step.sent[0] == "BDAT 100"
    assert f"BDAT {len(MESSAGE) - 100} LAST" in step.sent
    # each chunk shown from its first byte, cut where the chunk is cut; nothing stuffed
    assert step.sent[1:6] == [
        "Date: Thu, 1 Jan 2026 00:00:00 +0000", "Message-ID: <1@client.test>", "Subject: dots",
        "", "first",
    ]  # fmt: skip
    assert step.sent[6:] == [".leading ", "BDAT 26 LAST", "dot", "..two dots", ".", "last"]
    sent = [entry.text for entry in result.transcript if entry.direction == "C"]
    assert sent.index("BDAT 100") < sent.index(f"BDAT {len(MESSAGE) - 100} LAST")


# ---------------------------------------------------------------- replies judged


def test_a_refused_intermediate_chunk_fails_the_step_naming_the_chunk(tmp_path):
    server = Chunky(replies={2: b"554 5.6.0 message content rejected\r\n"})
    result, wire = run_scripted(write(tmp_path, message_step(40)), server)
    assert result.verdict == "failed"
    step = bdat_step(result)
    assert step.verdict == "failed"
    assert step.message == (
        "expected 2xx to BDAT chunk 2 of 4, got 554 5.6.0 message content rejected"
    )
    assert wire.count(b"BDAT ") == 2  # nothing sent after the refusal but QUIT
    assert wire.endswith(b"QUIT\r\n")


def test_an_expected_refusal_mid_way_passes(tmp_path):
    """expect: 552 checks a size limit, whichever chunk crosses it."""
    server = Chunky(replies={2: b"552 5.3.4 Chunk exceeds message size limit\r\n"})
    step = message_step(40) + "  expect: 552\n  status: 5.3.4\n"
    result, wire = run_scripted(write(tmp_path, step), server)
    assert result.verdict == "passed", result.reason
    assert [reply.code for reply in bdat_step(result).replies] == [250, 552]
    assert wire.count(b"BDAT ") == 2


def test_an_explicit_expect_that_the_refusal_does_not_meet_names_the_chunk(tmp_path):
    server = Chunky(replies={3: b"451 4.3.0 try later\r\n"})
    step = message_step(40) + "  expect: 552\n"
    result, _ = run_scripted(write(tmp_path, step), server)
    assert bdat_step(result).message == "BDAT chunk 3 of 4: expected 552, got 451 4.3.0 try later"


def test_the_server_closing_mid_way_fails_the_step_without_a_hang(tmp_path):
    result, wire = run_scripted(write(tmp_path, message_step(40)), Chunky(close_at=2))
    step = bdat_step(result)
    assert step.verdict == "failed"
    assert step.message is not None
    assert step.message.startswith("expected 2xx to BDAT chunk 2 of 4, got ")
    assert "closed" in step.message
    assert step.duration_ms < 5000
    assert wire.count(b"BDAT ") == 2


def test_the_last_chunk_is_judged_by_the_step_expect(tmp_path):
    refused = Chunky(replies={2: b"554 5.7.1 spam\r\n"})
    result, _ = run_scripted(write(tmp_path, message_step(100)), refused)
    assert bdat_step(result).message == "expected 250, got 554 5.7.1 spam"
    step = message_step(100) + "  expect: 554\n  match: spam\n"
    result, _ = run_scripted(write(tmp_path, step), Chunky(replies={2: b"554 5.7.1 spam\r\n"}))
    assert result.verdict == "passed", result.reason


def test_capture_reads_the_reply_to_the_last_chunk(tmp_path):
    step = message_step(7) + '  capture:\n    queue_id: "queued as (\\\\w+)"\n'
    result, _ = run_scripted(write(tmp_path, step), Chunky())
    assert result.verdict == "passed", result.reason
    assert bdat_step(result).captures == {"queue_id": "Q1"}


def test_too_many_chunks_is_an_error_before_anything_is_sent(tmp_path):
    step = message_step(1, text="x" * 10_001)
    result, wire = run_scripted(write(tmp_path, step), Chunky())
    step_result = bdat_step(result)
    assert step_result.verdict == "error"
    assert "10,001 BDAT chunks, more than 10,000 (the limit); raise chunk_size" in str(
        step_result.message
    )
    assert b"BDAT" not in wire


# ---------------------------------------------------------------- LMTP


async def lmtp(conn: Conn) -> None:
    """LMTP with CHUNKING: BDAT LAST answered once per accepted recipient (bob over quota)."""
    await conn.send(b"220 lmtp.test LMTP\r\n")
    recipients = 0
    while line := await conn.line():
        words = line.split()
        verb = words[0].upper() if words else b""
        if verb == b"LHLO":
            await conn.send(EHLO)
        elif verb == b"RCPT":
            recipients += 1
            await conn.send(b"250 2.1.5 ok\r\n")
        elif verb == b"BDAT":
            conn.received.append(await conn.reader.readexactly(int(words[1])))
            if len(words) < 3:
                await conn.send(b"250 2.0.0 chunk ok\r\n")
                continue
            await conn.send(b"250 2.0.0 alice saved\r\n" + b"452 4.2.2 bob over quota\r\n")
        elif verb == b"QUIT":
            await conn.send(b"221 bye\r\n")
            return
        else:
            await conn.send(b"250 ok\r\n")


def test_lmtp_bdat_last_is_judged_per_recipient(tmp_path):
    path = tmp_path / "lmtp.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            smtpscript: 1
            title: lmtp bdat
            steps:
              - lhlo: client.test
              - send: "MAIL FROM:<a@client.test>"
              - send: "RCPT TO:<alice@lmtp.test>"
              - send: "RCPT TO:<bob@lmtp.test>"
              - bdat: {text: "Subject: hi\\n\\nhello\\n", chunk_size: 10}
                expect_each: [250, 452]
              - send: QUIT
                expect: 221
            """
        ),
        encoding="utf-8",
    )
    with Hostile(lmtp) as server:
        result = run_path(path, parse_target(f"lmtp://127.0.0.1:{server.port}"))
    assert result.verdict == "passed", result.reason
    assert [reply.code for reply in bdat_step(result).replies][-2:] == [250, 452]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        ("{text: hi, chunk_size: 0}", "chunk_size"),
        ("{body: hi, chunk_size: 1.5}", "chunk_size"),
        ("{text: hi, body: hi}", "body"),
        ("{text: hi, chunksize: 3}", "chunksize"),
        ('{text: "{{ nope }}"}', "nope"),
        ('{body: "{{ nope }}", chunk_size: 3}', "nope"),
        ('"{{ nope }}"', "nope"),
    ],
)
def test_invalid_bdat_values_are_problems(tmp_path, value, wanted):
    path = tmp_path / "bad.yaml"
    path.write_text(f"smtpscript: 1\ntitle: bad\nsteps:\n  - bdat: {value}\n", encoding="utf-8")
    problems = [str(problem) for problem in load_paths([path]).problems]
    assert problems, value
    assert any(wanted in problem and "bdat" in problem for problem in problems), problems


def test_example_scenario_is_skipped_cleanly_by_the_sandbox(sandbox_target):
    """aiosmtpd offers no CHUNKING: the scenario is skipped, saying so, before any BDAT."""
    path = REPO / "scenarios" / "extensions" / "bdat-chunking.yaml"
    result = run_path(path, sandbox_target)
    assert result.verdict == "skipped", result.reason
    assert result.reason == "CHUNKING is not offered: nothing to judge"
    assert [s.kind for s in result.steps] == ["connect", "ehlo", "skip"]


# ---------------------------------------------------------------- real Postfix

DOT_BODY = "first line\n.leading dot\n..two dots\n.\n. space\nlast line\n"


def postfix_target(postfix) -> Target:  # type: ignore[no-untyped-def]
    endpoint = Endpoint(
        host=postfix.host, port=postfix.port, tls_options=TlsOptions(ca_file=postfix.ca_file)
    )
    return Target(name="postfix", endpoint=endpoint)


def queue_id(step: StepResult) -> str:
    return queue_id_of(" ".join(step.replies[-1].lines))


def body_of(stored: bytes) -> bytes:
    """The body of a stored message (Postfix stores LF line endings)."""
    return stored.partition(b"\n\n")[2]


@pytest.mark.postfix
@pytest.mark.parametrize("chunk_size", [None, 7], ids=["one-chunk", "7-byte-chunks"])
def test_postfix_stores_dot_lines_byte_exact(tmp_path, postfix, chunk_size):
    size = "" if chunk_size is None else f"\n    chunk_size: {chunk_size}"
    step = (
        "- bdat:\n    headers:\n      Subject: bdat dots\n"
        f"    body: {yaml_string(DOT_BODY)}{size}\n"
    )
    scenario = write(tmp_path, step, rcpt_to="<{{ to }}>", variables="to: nobody@invalid\n")
    result = run_path(scenario, postfix_target(postfix), to=f"alice@{postfix.domain}")
    assert result.verdict == "passed", result.reason
    step_result = bdat_step(result)
    chunks = [line for line in step_result.sent if line.startswith("BDAT ")]
    assert len(chunks) > 10 if chunk_size else chunks == [chunks[0]]
    assert chunks[-1].endswith(" LAST")
    assert all(reply.code == 250 for reply in step_result.replies)
    stored = postfix.wait_for_message("alice", queue_id=queue_id(step_result))
    assert body_of(stored) == DOT_BODY.encode()  # no dot-stuffing to undo, none added


@pytest.mark.postfix
def test_postfix_binarymime_when_advertised(tmp_path, postfix):
    probe = tmp_path / "probe.yaml"
    probe.write_text("smtpscript: 1\ntitle: caps\nsteps:\n  - ehlo: client.test\n", "utf-8")
    caps = run_path(probe, postfix_target(postfix)).steps[-1].replies[0].lines[1:]
    if "BINARYMIME" not in caps:
        pytest.skip(
            "this Postfix does not advertise BINARYMIME (Postfix does not implement it and "
            "answers BODY=BINARYMIME with 555 5.5.4)"
        )
    step = (
        "- bdat: {text: "
        + yaml_string("Subject: binary\n\n\u00ff\u00fe raw bytes\n")
        + ", chunk_size: 5}\n"
    )
    scenario = write(
        tmp_path, step, mail_from="<a@b> BODY=BINARYMIME", rcpt_to=f"<alice@{postfix.domain}>"
    )
    result = run_path(scenario, postfix_target(postfix))
    assert result.verdict == "passed", result.reason


@pytest.mark.postfix
def test_example_scenario_delivers_through_postfix(postfix):
    path = REPO / "scenarios" / "extensions" / "bdat-chunking.yaml"
    result = run_path(path, postfix_target(postfix), recipient=f"alice@{postfix.domain}")
    assert result.verdict == "passed", result.reason
    step = bdat_step(result)
    assert step.verdict == "passed"
    assert sum(line.startswith("BDAT ") for line in step.sent) > 1
    stored = postfix.wait_for_message("alice", queue_id=queue_id(step))
    assert b"\n.a line that starts with a dot, sent as it is\n..and one with two\n" in stored
