"""The sans-IO SMTP core, on bytes alone: no sockets, no event loop."""

from __future__ import annotations

import base64
import itertools
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpscript import protocol as P
from smtpscript.errors import LocalProtocolError, RemoteProtocolError
from smtpscript.protocol import Reply, ReplyParser

EHLO_REPLY = (
    b"250-mail.example.net Hello\r\n"
    b"250-PIPELINING\r\n"
    b"250-SIZE 10240000\r\n"
    b"250-AUTH PLAIN LOGIN\r\n"
    b"250 STARTTLS\r\n"
)


def drain(parser: ReplyParser) -> list[Reply]:
    replies = []
    while (reply := parser.next_reply()) is not None:
        replies.append(reply)
    return replies


def feed_all(chunks: list[bytes], eof: bool = True) -> list[Reply]:
    """Feed chunks one by one, pulling replies after each, as a session would."""
    parser = ReplyParser()
    replies = []
    for chunk in chunks:
        parser.feed(chunk)
        replies += drain(parser)
    if eof:
        parser.feed_eof()
        replies += drain(parser)
    return replies


def one(data: bytes) -> Reply:
    (reply,) = P.parse_replies(data)
    return reply


def split_at(data: bytes, points: list[int]) -> list[bytes]:
    cuts = [0, *sorted(points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(cuts)]


# --- well-formed replies ---------------------------------------------------------------------


def test_single_line_reply():
    reply = one(b"220 mail.example.net ESMTP ready\r\n")
    assert reply.code == 220
    assert reply.lines == ("mail.example.net ESMTP ready",)
    assert reply.raw == b"220 mail.example.net ESMTP ready\r\n"
    assert reply.status is None
    assert not reply.bare_lf
    assert reply.short() == "220 mail.example.net ESMTP ready"


def test_multi_line_reply():
    reply = one(EHLO_REPLY)
    assert reply.code == 250
    assert reply.lines[0] == "mail.example.net Hello"
    assert reply.text.splitlines()[-1] == "STARTTLS"
    assert len(reply.lines) == 5
    assert reply.raw == EHLO_REPLY
    assert reply.short() == "250 mail.example.net Hello (+4 more lines)"


def test_multi_line_reply_split_at_every_byte():
    for cut in range(len(EHLO_REPLY) + 1):
        replies = feed_all([EHLO_REPLY[:cut], EHLO_REPLY[cut:]])
        assert [r.raw for r in replies] == [EHLO_REPLY], cut


def test_byte_by_byte_is_not_ready_until_the_last_line():
    parser = ReplyParser()
    for index in range(len(EHLO_REPLY) - 1):
        parser.feed(EHLO_REPLY[index : index + 1])
        assert parser.next_reply() is None
        assert parser.pending
    parser.feed(EHLO_REPLY[-1:])
    assert parser.next_reply().raw == EHLO_REPLY
    assert not parser.pending
    assert parser.next_reply() is None


def test_pipelined_replies_in_one_feed():
    data = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554-5.7.1 Relay\r\n554 5.7.1 denied\r\n354 go\r\n"
    replies = P.parse_replies(data)
    assert [r.code for r in replies] == [250, 250, 554, 354]
    assert [r.status for r in replies] == ["2.1.0", "2.1.5", "5.7.1", None]
    assert b"".join(r.raw for r in replies) == data


def test_partial_reply_after_complete_one_waits():
    parser = ReplyParser()
    parser.feed(b"250 Ok\r\n250-first\r\n25")
    assert parser.next_reply().code == 250
    assert parser.next_reply() is None
    assert parser.pending
    parser.feed(b"0 last\r\n")
    assert parser.next_reply().lines == ("first", "last")


def test_bare_lf_is_accepted_and_flagged():
    reply = one(b"250-a\r\n250 b\n")
    assert reply.lines == ("a", "b")
    assert reply.bare_lf
    assert not one(b"250 b\r\n").bare_lf


def test_bare_code_without_text():
    reply = one(b"250\r\n")
    assert (reply.code, reply.lines, reply.status) == (250, ("",), None)
    assert reply.short() == "250"
    assert one(b"250-x\r\n250\r\n").lines == ("x", "")
    assert one(b"250 \r\n").lines == ("",)


def test_text_keeps_its_own_spaces_and_inner_cr():
    assert one(b"250  two spaces \r\n").lines == (" two spaces ",)
    assert one(b"250 a\rb\r\n").lines == ("a\rb",)


def test_non_utf8_bytes_kept_raw_and_shown_escaped():
    data = b"250 caf\xe9 \xc3\xa9t\xc3\xa9\r\n"
    reply = one(data)
    assert reply.raw == data
    assert reply.lines == ("caf\\xe9 \u00e9t\u00e9",)
    assert P.escape_bytes(reply.raw) == "250 caf\\xe9 \u00e9t\u00e9\\r\\n"


def test_short_is_one_safe_line():
    reply = one(b"250-evil\x1b[2Jtext\rX\r\n250 more\r\n")
    assert reply.short() == "250 evil\\x1b[2Jtext\\rX (+1 more lines)"
    assert one(b"250-a\r\n250 b\r\n").short() == "250 a (+1 more lines)"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"250 2.1.5 <victim@example.net>... Recipient ok\r\n", "2.1.5"),
        (b"550 5.7.1 Relaying denied\r\n", "5.7.1"),
        (b"451 4.7.1 Try later\r\n", "4.7.1"),
        (b"554 5.7.11 Encryption required\r\n", "5.7.11"),
        (b"250 2.0.0\r\n", "2.0.0"),
        (b"250 5.1.1 mismatched class\r\n", None),
        (b"550 2.0.0 mismatched class\r\n", None),
        (b"354 3.0.0 class 3 does not exist\r\n", None),
        (b"250 2.1.5x not followed by a space\r\n", None),
        (b"250 2.1 too short\r\n", None),
        (b"250 2.1000.1 subject too long\r\n", None),
        (b"250 text 2.1.5 not at the start\r\n", None),
        (b"250-first line\r\n250 2.1.5 second\r\n", None),
    ],
)
def test_enhanced_status(data, status):
    assert one(data).status == status


# --- broken replies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 400 Bad Request\r\n",
        b"\r\n",
        b"25\r\n",
        b"2x0 Ok\r\n",
        b"250x Ok\r\n",
        b"250\tOk\r\n",
        b"\xff\xfe\xfd\r\n",
        b"\xd9\xa2\xd9\xa5\xd9\xa0 arabic-indic digits\r\n",
    ],
)
def test_malformed_line(data):
    with pytest.raises(RemoteProtocolError, match="malformed reply line"):
        P.parse_replies(data)


def test_malformed_line_is_shown_escaped_and_truncated():
    with pytest.raises(RemoteProtocolError) as info:
        P.parse_replies(b"\x00\x1b" + b"A" * 500 + b"\r\n")
    message = str(info.value)
    assert "\\x00\\x1b" in message
    assert "\x00" not in message
    assert len(message) < 150


@pytest.mark.parametrize("code", [b"000", b"199", b"600", b"999", b"260", b"599", b"370"])
def test_code_out_of_range(code):
    with pytest.raises(RemoteProtocolError, match="out of range"):
        P.parse_replies(code + b" x\r\n")


@pytest.mark.parametrize("code", [200, 250, 354, 421, 455, 554])
def test_code_in_range(code):
    assert one(b"%d x\r\n" % code).code == code


def test_mismatched_continuation_code():
    with pytest.raises(RemoteProtocolError, match="inside a 250 reply"):
        P.parse_replies(b"250-a\r\n251 b\r\n")


def test_replies_before_an_error_are_delivered_first():
    parser = ReplyParser()
    parser.feed(b"250 Ok\r\n221 Bye\r\ngarbage\r\n")
    assert [r.code for r in drain_until_error(parser)] == [250, 221]
    with pytest.raises(RemoteProtocolError):  # the error stays
        parser.next_reply()
    parser.feed(b"250 Ok\r\n")  # and later bytes are dropped
    with pytest.raises(RemoteProtocolError):
        parser.next_reply()


def drain_until_error(parser: ReplyParser) -> list[Reply]:
    replies = []
    with pytest.raises(RemoteProtocolError):
        while True:
            replies.append(parser.next_reply())
    return replies


def test_eof_mid_reply():
    parser = ReplyParser()
    parser.feed(b"250-first\r\n250 sec")
    parser.feed_eof()
    with pytest.raises(RemoteProtocolError, match="connection closed in the middle of a reply"):
        parser.next_reply()


def test_eof_between_replies_is_quiet():
    parser = ReplyParser()
    parser.feed(b"221 Bye\r\n")
    parser.feed_eof()
    assert parser.next_reply().code == 221
    assert parser.next_reply() is None
    assert not parser.pending


def test_feed_after_eof_is_a_caller_bug():
    parser = ReplyParser()
    parser.feed_eof()
    with pytest.raises(RuntimeError):
        parser.feed(b"250 Ok\r\n")


# --- limits ----------------------------------------------------------------------------------


def feed_until_error(chunks, parser: ReplyParser) -> int:
    """Feed chunks, pulling after each; return how many bytes went in before the error."""
    fed = 0
    for chunk in chunks:
        parser.feed(chunk)
        fed += len(chunk)
        try:
            drain(parser)
        except RemoteProtocolError:
            return fed
        assert parser.buffered <= P.REPLY_BYTES_LIMIT + 2
    raise AssertionError("no error")


def endless(first: bytes, chunk: bytes):
    yield first
    while True:
        yield chunk


def test_line_limit_boundary():
    longest = b"250 " + b"a" * (P.LINE_LIMIT - 4)
    assert len(one(longest + b"\r\n").lines[0]) == P.LINE_LIMIT - 4
    assert len(one(longest + b"\n").lines[0]) == P.LINE_LIMIT - 4
    with pytest.raises(RemoteProtocolError, match="longer than"):
        P.parse_replies(longest + b"a\r\n")


def test_line_limit_raises_promptly_when_fed_in_chunks():
    parser = ReplyParser()
    fed = feed_until_error(endless(b"250 ", b"a" * 4096), parser)
    assert P.LINE_LIMIT < fed <= P.LINE_LIMIT + 4096 + 4


def test_line_limit_with_cr_waiting_for_its_lf():
    parser = ReplyParser()
    parser.feed(b"250 " + b"a" * (P.LINE_LIMIT - 4) + b"\r")
    assert parser.next_reply() is None  # the CR may still become a CRLF
    parser.feed(b"\n")
    assert parser.next_reply().code == 250


def test_ten_megabyte_line_in_one_feed_stays_bounded():
    data = b"2" * (10 * 1024 * 1024)
    parser = ReplyParser()
    tracemalloc.start()
    try:
        parser.feed(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * P.LINE_LIMIT
    with pytest.raises(RemoteProtocolError, match="longer than"):
        parser.next_reply()


def test_lines_limit():
    many = b"250-x\r\n" * (P.REPLY_LINES_LIMIT - 1)
    assert len(one(many + b"250 end\r\n").lines) == P.REPLY_LINES_LIMIT
    parser = ReplyParser()
    fed = feed_until_error(endless(b"", b"250-x\r\n"), parser)
    assert fed == 7 * (P.REPLY_LINES_LIMIT + 1)


def test_bytes_limit_raises_promptly():
    line = b"250-" + b"a" * 60_000 + b"\r\n"
    parser = ReplyParser()
    chunks = (line[i : i + 4096] for _ in range(100) for i in range(0, len(line), 4096))
    fed = feed_until_error(chunks, parser)
    assert P.REPLY_BYTES_LIMIT < fed <= P.REPLY_BYTES_LIMIT + 4096


def test_bytes_limit_counts_the_whole_reply_not_the_stream():
    line = b"250 " + b"a" * 60_000 + b"\r\n"
    replies = feed_all([line] * 40)  # 2.4 MB in all, but each reply is small
    assert len(replies) == 40


def test_byte_by_byte_feeding_is_linear():
    # 200 KB byte by byte: quadratic rescans would take minutes, linear takes well under one.
    data = (b"250-" + b"a" * 1000 + b"\r\n") * 200 + b"250 end\r\n"
    parser = ReplyParser()
    for index in range(len(data)):
        parser.feed(data[index : index + 1])
    assert len(parser.next_reply().lines) == 201


# --- property tests --------------------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [b"250", b"220", b"354", b"550", b"199", b"-", b" ", b"\r\n", b"\n", b"\r", b"5.7.1", b"\xff"]
)
STREAMS = st.lists(st.one_of(st.binary(max_size=20), FRAGMENTS), max_size=40).map(b"".join)


@settings(max_examples=300)
@given(data=STREAMS, points=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_arbitrary_bytes_only_raise_remote_protocol_error(data, points):
    points = [p for p in points if p <= len(data)]
    try:
        replies = feed_all(split_at(data, points))
    except RemoteProtocolError:
        return
    assert b"".join(r.raw for r in replies) == data


CODES = st.builds(
    lambda a, b, c: 100 * a + 10 * b + c,
    st.integers(2, 5),
    st.integers(0, 5),
    st.integers(0, 9),
)
TEXTS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"))
REPLIES = st.tuples(CODES, st.lists(TEXTS, min_size=1, max_size=5), st.booleans())


def encode_reply(code: int, lines: list[str], crlf: bool) -> bytes:
    end = b"\r\n" if crlf else b"\n"
    out = b""
    for index, text in enumerate(lines):
        sep = b" " if index == len(lines) - 1 else b"-"
        if sep == b" " and not text:
            sep = b""  # a bare "250" is a valid last line
        out += b"%d" % code + sep + text.encode() + end
    return out


@settings(max_examples=200)
@given(
    replies=st.lists(REPLIES, min_size=1, max_size=4),
    points=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_well_formed_replies_round_trip_whatever_the_splits(replies, points):
    data = b"".join(encode_reply(*r) for r in replies)
    parsed = feed_all(split_at(data, [p for p in points if p <= len(data)]))
    assert [(r.code, list(r.lines)) for r in parsed] == [(c, lines) for c, lines, _ in replies]
    assert [r.bare_lf for r in parsed] == [not crlf for _, _, crlf in replies]
    assert b"".join(r.raw for r in parsed) == data


# --- commands and message content ------------------------------------------------------------


def test_encode_command():
    assert P.encode_command("MAIL FROM:<a@example.org>") == b"MAIL FROM:<a@example.org>\r\n"
    assert P.encode_command("EHLO \u00e9t\u00e9") == "EHLO \u00e9t\u00e9\r\n".encode()
    assert P.encode_command("") == b"\r\n"


def test_encode_command_allows_over_long_lines():
    assert len(P.encode_command("NOOP " + "x" * 2000)) == 2007


@pytest.mark.parametrize("line", ["MAIL FROM:<a>\r\nRCPT TO:<b>", "NOOP\n", "\rNOOP"])
def test_encode_command_refuses_cr_lf(line):
    with pytest.raises(LocalProtocolError, match="command contains CR or LF; use a raw step"):
        P.encode_command(line)


def test_encode_command_refuses_lone_surrogate():
    with pytest.raises(LocalProtocolError):
        P.encode_command("NOOP \udcff")


def test_normalize_crlf():
    assert P.normalize_crlf(b"a\nb\rc\r\nd\n\re") == b"a\r\nb\r\nc\r\nd\r\n\r\ne"
    assert P.normalize_crlf(b"\r\r\n\n") == b"\r\n\r\n\r\n"


def test_dot_stuff():
    assert P.dot_stuff(b".start\r\nmid\r\n.\r\n..two\r\nno.dot\r\n") == (
        b"..start\r\nmid\r\n..\r\n...two\r\nno.dot\r\n"
    )
    assert P.dot_stuff(b"") == b""
    assert P.dot_stuff(b".") == b".."


def test_message_payload():
    assert P.message_payload("Subject: hi\n\nbody\n") == b"Subject: hi\r\n\r\nbody\r\n.\r\n"
    assert P.message_payload(b"no final newline") == b"no final newline\r\n.\r\n"
    assert P.message_payload(b"a\r\n.\r\nb") == b"a\r\n..\r\nb\r\n.\r\n"  # a lone "." line
    assert P.message_payload(b".\n..\nx\r") == b"..\r\n...\r\nx\r\n.\r\n"
    assert P.message_payload("") == b".\r\n"
    assert P.message_payload("\u00e9") == "\u00e9\r\n.\r\n".encode()


def test_message_payload_defuses_smuggling_sequences():
    payload = P.message_payload(b"a\n.\nMAIL FROM:<x>\r\r\n.\r")
    assert payload.endswith(b"\r\n.\r\n")
    assert b"\r\n.\r\n" not in payload[:-5]
    assert b"\n" not in payload.replace(b"\r\n", b"")
    assert b"\r" not in payload.replace(b"\r\n", b"")


@given(st.binary(max_size=200))
def test_message_payload_has_one_terminator(body):
    payload = P.message_payload(body)
    assert payload.endswith(b"\r\n.\r\n") or payload == b".\r\n"
    lines = payload.split(b"\r\n")[:-2]
    assert all(line != b"." for line in lines)


def test_parse_ehlo():
    assert P.parse_ehlo(one(EHLO_REPLY)) == {
        "PIPELINING": "",
        "SIZE": "10240000",
        "AUTH": "PLAIN LOGIN",
        "STARTTLS": "",
    }


def test_parse_ehlo_old_style_and_duplicate_auth():
    reply = one(
        b"250-mx Hello\r\n250-auth login plain\r\n250-AUTH=LOGIN CRAM-MD5\r\n"
        b"250-size  100 \r\n250-SIZE 200\r\n250 8bitmime\r\n"
    )
    assert P.parse_ehlo(reply) == {
        "AUTH": "LOGIN PLAIN CRAM-MD5",
        "SIZE": "100",
        "8BITMIME": "",
    }


def test_parse_ehlo_single_line_has_no_capabilities():
    assert P.parse_ehlo(one(b"250 mx Hello\r\n")) == {}
    assert P.parse_ehlo(one(b"250-mx\r\n250\r\n")) == {}


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (b"EHLO x\r\n", "EHLO x\\r\\n"),
        (b"a\tb\x00\x7f", "a\\tb\\x00\\x7f"),
        (b"\xff\xc3", "\\xff\\xc3"),
        ("\u00e9t\u00e9 \u2713".encode(), "\u00e9t\u00e9 \u2713"),
        ("\u202e\u00a0\u0085".encode(), "\\u202e\\u00a0\\u0085"),
        (b"\xed\xb2\x80", "\\xed\\xb2\\x80"),  # an encoded surrogate is not valid UTF-8
        (b"C:\\x41", "C:\\\\x41"),  # a real backslash never looks like an escape
    ],
)
def test_escape_bytes(data, shown):
    assert P.escape_bytes(data) == shown


@given(st.binary())
def test_escape_bytes_is_one_printable_line(data):
    shown = P.escape_bytes(data)
    assert shown.isprintable()


# --- AUTH ------------------------------------------------------------------------------------


def test_auth_plain():
    assert P.auth_plain("tim", "tanstaaftanstaaf") == "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
    decoded = base64.b64decode(P.auth_plain("u", "p\u00e9", authzid="admin"))
    assert decoded == "admin\0u\0p\u00e9".encode()


def test_auth_plain_refuses_nul():
    with pytest.raises(LocalProtocolError):
        P.auth_plain("u\0admin", "p")


def test_b64_round_trip():
    assert P.b64("Username:") == "VXNlcm5hbWU6"
    assert P.b64decode_text("VXNlcm5hbWU6") == "Username:"
    assert P.b64decode_text("UGFzc3dvcmQ6") == "Password:"
    assert P.b64decode_text(" UGFzc3dvcmQ6\r\n") == "Password:"
    assert P.b64decode_text("YQ") == "a"  # missing padding tolerated
    assert P.b64decode_text("") == ""
    assert P.b64decode_text("/w==") == "\\xff"


@pytest.mark.parametrize("data", ["not base64!", "a", "\u00e9\u00e9\u00e9\u00e9"])
def test_b64decode_text_errors(data):
    with pytest.raises(RemoteProtocolError):
        P.b64decode_text(data)


def test_cram_md5_rfc2195_example():
    challenge = P.b64("<1896.697170952@postoffice.reston.mci.net>")
    assert challenge == "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
    response = P.cram_md5_response("tim", "tanstaaftanstaaf", challenge)
    assert response == "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"


def test_cram_md5_invalid_challenge():
    with pytest.raises(RemoteProtocolError):
        P.cram_md5_response("tim", "pw", "***")


def test_xoauth2():
    # The example from Google's XOAUTH2 protocol documentation.
    assert P.xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg") == (
        "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNS"
        "bGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    )
