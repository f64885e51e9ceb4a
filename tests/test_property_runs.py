"""Property: whatever the scenario and whatever the server answers, a run ends with one
verdict per scenario run, every report renders, and the secret shows in no output.

Scenarios are generated as YAML and go through validation like any file; the server is a
real loopback socket that answers each line with the next generated reply (valid,
malformed, binary, multi-line, echoing what it was sent, closing or resetting).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml
from hostile import Conn, Hostile
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from output_helpers import all_outputs

from smtpscript.loading import load_paths
from smtpscript.redaction import b64
from smtpscript.results import VERDICTS
from smtpscript.runner import RunOptions, run
from smtpscript.targets import parse_target

MARK = "S3cr"  # every secret starts with it, and nothing else in a run contains it
CLOSE, RESET, ECHO = b"<close>", b"<reset>", b"<echo>"

REPLIES = st.one_of(
    st.sampled_from(
        [
            b"250 2.0.0 ok\r\n",
            b"250-first\r\n250-SIZE 1000\r\n250 AUTH PLAIN LOGIN\r\n",
            b"550 5.7.1 relay denied\r\n",
            b"354 go ahead\r\n",
            b"334 \r\n",
            b"235 2.7.0 ok\r\n",
            b"221 bye\r\n",
            b"250 bare lf\n",
            b"\xff\xfe\x1b[31m\r\n",
            b"999 not a code\r\n",
            b"25",
            b"250-unfinished\r\n",
            b"220 again\r\n250 two at once\r\n",
            CLOSE,
            RESET,
            ECHO,
        ]
    ),
    st.binary(max_size=40).map(lambda b: b + b"\r\n"),
)

SECRETS = st.text(
    alphabet=st.sampled_from("abcXYZ019-_.\\\t\u00a0\u200b\u00e9!%{} "), min_size=2, max_size=12
).map(lambda tail: MARK + tail)

SEND_LINES = [
    "NOOP",
    "NOOP {{ env.SECRET }}",
    "MAIL FROM:<a@b.test>",
    "RCPT TO:<{{ env.SECRET }}@x.test>",
    "VRFY {{ 'x' * 90 }}{{ env.SECRET }}",
    "RSET",
]
EXPECTS = ["2xx", 250, "any", "closed", [550, 554], "5xx", "3xx"]


@st.composite
def steps(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["send", "send", "raw", "read", "data", "auth", "ehlo", "pipe"]))
    step: dict[str, Any]
    if kind == "send":
        step = {"send": draw(st.sampled_from(SEND_LINES))}
    elif kind == "raw":
        step = {"raw": draw(st.sampled_from(["NOOP\r\n", "X {{ env.SECRET }}\n.\r\n", "\r\n"]))}
    elif kind == "read":
        step = {"read": {}}
    elif kind == "data":
        step = {"data": "Subject: {{ env.SECRET }}\n\nbody {{ env.SECRET }}\n.\n"}
    elif kind == "auth":
        mechanism = draw(st.sampled_from(["PLAIN", "LOGIN", "CRAM-MD5"]))
        step = {"auth": {"mechanism": mechanism, "username": "u", "password": "{{ env.SECRET }}"}}
    elif kind == "ehlo":
        step = {"ehlo": "client.test"}
    else:
        lines = draw(st.lists(st.sampled_from(SEND_LINES), min_size=1, max_size=3))
        return {"pipeline": [{"send": line} for line in lines]}
    if draw(st.booleans()):
        step["expect"] = draw(st.sampled_from(EXPECTS))
    if kind == "send" and draw(st.integers(0, 4)) == 0:
        step["capture"] = {"got": "(\\d+)"}
    step["continue_on_fail"] = draw(st.booleans())
    if draw(st.integers(0, 5)) == 0:
        step["repeat"] = draw(st.integers(2, 3))
    return step


class Script:
    """Serves the replies of the current example, in order, to every line received."""

    def __init__(self) -> None:
        self.replies: list[bytes] = []

    async def __call__(self, conn: Conn) -> None:
        replies = iter(self.replies)
        last = b""
        await self._answer(conn, next(replies, b"220 ok\r\n"), last)
        while last := await conn.line():
            if not await self._answer(conn, next(replies, b"250 ok\r\n"), last):
                return

    @staticmethod
    async def _answer(conn: Conn, reply: bytes, last: bytes) -> bool:
        if reply == CLOSE:
            return False
        if reply == RESET:
            conn.reset()
            return False
        await conn.send(b"250 you said " + last if reply == ECHO else reply)
        return True


SCRIPT = Script()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    scenario_steps=st.lists(steps(), min_size=1, max_size=6),
    replies=st.lists(REPLIES, max_size=12),
    secret=SECRETS,
)
def test_any_scenario_against_any_server(tmp_path: Path, scenario_steps, replies, secret):
    document = {
        "smtpscript": 1,
        "title": "generated",
        "target": {"timeout": 0.5},
        "steps": scenario_steps,
    }
    path = tmp_path / "generated.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    loaded = load_paths([path])
    assume(not loaded.problems)  # a generated combination validation refuses is not a run
    SCRIPT.replies = replies
    with Hostile(SCRIPT) as server:
        result = run(
            loaded.scenarios,
            [parse_target(f"127.0.0.1:{server.port}")],
            RunOptions(environ={"SECRET": secret}),
        )
    assert len(result.scenarios) == 1
    assert result.scenarios[0].verdict in VERDICTS
    for where, text in all_outputs(result).items():
        assert MARK not in text, f"the secret's start leaked into {where}"
        assert b64(secret) not in text, f"the secret's base64 leaked into {where}"


def test_the_generator_makes_valid_scenarios(tmp_path):
    """Most generated scenarios must validate, or the property above tests little."""
    example = {
        "smtpscript": 1,
        "title": "t",
        "steps": [{"send": line} for line in SEND_LINES]
        + [{"data": "Subject: {{ env.SECRET }}\n\nbody\n"}],
    }
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(yaml.safe_dump(example)), encoding="utf-8")
    assert not load_paths([path]).problems
