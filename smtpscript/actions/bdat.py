"""bdat: the message in BDAT chunks (RFC 3030 CHUNKING): exact bytes, no dot-stuffing.

``BDAT <n>`` announces exactly n bytes, so nothing in the message is special: no
dot-stuffing, no CRLF.CRLF terminator. Each chunk but the last must get a 2xx
(RFC 3030 2: the server answers every chunk); the reply to ``BDAT <n> LAST`` ends
the message and is judged by the step's expect, like the end of DATA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smtpscript import protocol
from smtpscript.actions import message
from smtpscript.actions.base import ActionSpec, Checker, JsonPath, StepContext
from smtpscript.errors import LocalProtocolError
from smtpscript.expectations import StepFailed
from smtpscript.patterns import CodePattern
from smtpscript.schemaparts import obj

# Every chunk is a round trip with its own transcript lines and reply record: a 32 MB
# message in 1-byte chunks would take hours and gigabytes, so the count is bounded.
MAX_CHUNKS = 10_000

CHUNK_SIZE = {
    "type": "integer",
    "minimum": 1,
    "description": "Bytes per BDAT chunk (default: the whole message in one BDAT ... LAST).",
    "examples": [7, 65536],
}


@dataclass(frozen=True)
class Bdat:
    """A message sent with BDAT (RFC 3030), in one chunk or several."""

    message: message.Message
    chunk_size: int | None = None  # None: one chunk


def build(value: str | dict[str, Any]) -> Bdat:
    if isinstance(value, str):
        return Bdat(message.build(value))
    # YAML may say 7.0, which JSON Schema counts as an integer
    size = int(value["chunk_size"]) if "chunk_size" in value else None
    if "text" in value:
        return Bdat(message.Message(text=value["text"]), size)
    return Bdat(message.build(value), size)


def _schema() -> dict[str, Any]:
    """data's message forms, plus chunk_size in the mapping (a bare string has no room for
    it), where the whole message may also stand as text.

    One mapping rather than an anyOf of two: the validator explains a mistake in the
    single mapping alternative precisely (unknown key, chunk_size too small); text beside
    headers or body is refused by the semantic check, with its own sentence.
    """
    forms = message.schema("")["anyOf"]
    whole, parts = forms[0], forms[1]
    return {
        "description": "BDAT (RFC 3030 CHUNKING): send the message as exact bytes (CRLF line "
        "endings, no dot-stuffing, no CRLF.CRLF) in chunks of chunk_size bytes, the last one "
        "BDAT <n> LAST (an empty message: BDAT 0 LAST). Forms: a string (the whole message, "
        "one chunk), {text, chunk_size} or {headers, body, chunk_size} (text excludes "
        "headers and body). Each chunk but the last must get 2xx; default expect 250 for the "
        "reply to the last. The message is sent as UTF-8: for 8-bit or binary content send "
        "MAIL FROM:<...> BODY=8BITMIME or BODY=BINARYMIME yourself.",
        "anyOf": [
            whole,
            obj(
                {"text": whole, **parts["properties"], "chunk_size": CHUNK_SIZE},
                "The message as text, or as headers and body, and the chunk size.",
            ),
        ],
        "examples": [
            "Subject: hi\n\nhello\n",
            {"headers": {"Subject": "hi"}, "body": "hello\n", "chunk_size": 4096},
            {"text": "Subject: hi\n\nhello\n", "chunk_size": 7},
        ],
    }


def check(value: Any, path: JsonPath, checker: Checker) -> None:
    if not (isinstance(value, dict) and "text" in value):
        message.check(value, path, checker)
        return
    for key in ("headers", "body"):
        if key in value:
            checker.add(
                (*path, key),
                f"{key} cannot stand beside text: text is the whole message (headers, blank "
                "line, body); write either text or headers and body",
            )
    if isinstance(value["text"], str):
        checker.template(value["text"], (*path, "text"))


def encode(text: str) -> bytes:
    """The message's exact bytes: UTF-8 with CRLF line endings, nothing stuffed or added."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates cannot go on the wire
        raise LocalProtocolError(f"message is not valid Unicode: {exc.reason}") from None
    return protocol.normalize_crlf(data)


def split(payload: bytes, chunk_size: int | None) -> list[bytes]:
    """The chunks to send; an empty message is one empty chunk (BDAT 0 LAST)."""
    size = _chunk_len(payload, chunk_size)
    chunks = [payload[start : start + size] for start in range(0, len(payload), size)]
    return chunks or [b""]


def _chunk_count(payload: bytes, chunk_size: int | None) -> int:
    return max(1, -(-len(payload) // _chunk_len(payload, chunk_size)))


def _chunk_len(payload: bytes, chunk_size: int | None) -> int:
    return chunk_size or len(payload) or 1  # no chunk_size: the whole message at once


async def run(ctx: StepContext, action: Bdat) -> None:
    # render first: a template error must not leave a message half sent
    payload = encode(message.compose(action.message, ctx.render))
    count = _chunk_count(payload, action.chunk_size)
    if count == 1:
        ctx.label(f"BDAT {len(payload)} LAST")
    else:
        ctx.label(f"BDAT {len(payload)} bytes in {count} chunks")
    if count > MAX_CHUNKS:  # checked before slicing: the list itself would be the problem
        raise LocalProtocolError(
            f"{len(payload):,} bytes in chunks of {action.chunk_size} make {count:,} BDAT "
            f"chunks, more than {MAX_CHUNKS:,} (the limit); raise chunk_size"
        )
    chunks = split(payload, action.chunk_size)
    for number, chunk in enumerate(chunks[:-1], start=1):
        await _send_chunk(ctx, chunk, last=False)
        if not await _chunk_accepted(ctx, number, count):
            return
    await _send_chunk(ctx, chunks[-1], last=True)
    await message.judge_end(ctx)


async def _send_chunk(ctx: StepContext, chunk: bytes, last: bool) -> None:
    await ctx.send_line(f"BDAT {len(chunk)}{' LAST' if last else ''}")
    if chunk:
        await ctx.send(chunk, message.display(chunk))


async def _chunk_accepted(ctx: StepContext, number: int, count: int) -> bool:
    """Whether to go on after the reply to an intermediate chunk (False: the step is over).

    A refusal or close mid-way fails the step, unless the step expects it: `expect: 552`
    checks that a message over the size limit is refused, whichever chunk crosses it.
    """
    reply = await ctx.read()
    if isinstance(reply, protocol.Reply) and 200 <= reply.code < 300:
        return True
    where = f"BDAT chunk {number} of {count}"
    if not ctx.expects_codes():
        ctx.fail(f"expected 2xx to {where}, got {ctx.got(reply)}")
    try:
        ctx.judge(reply)
    except StepFailed as exc:
        ctx.fail(f"{where}: {exc}")
    return False


SPEC = ActionSpec(
    name="bdat",
    order=75,
    schema=_schema(),
    build=build,
    run=run,
    default_expect=CodePattern(("250",)),
    check=check,
    # LMTP servers that offer CHUNKING (Dovecot, Cyrus) answer BDAT LAST once per
    # accepted recipient, as they answer the end of DATA (RFC 2033 4.2)
    per_recipient=True,
    summary="BDAT chunks (RFC 3030): the exact message bytes, no dot-stuffing; last one LAST",
)
