"""Sans-IO SMTP: bytes in, replies out; commands and message content out as bytes.

Theory of operation (in the spirit of h11): nothing here touches a socket. The
session feeds whatever it read into a ReplyParser and pulls complete Reply
objects; it asks this module for the exact bytes of commands, DATA payloads and
AUTH responses, and writes them itself. Everything is testable on bytes alone.

The parser works eagerly inside feed(): it splits the new data into lines as it
arrives, so it only ever holds one partial line (at most LINE_LIMIT + 2 bytes)
and the lines of one unfinished reply (at most REPLY_BYTES_LIMIT bytes), plus
the complete replies the caller has not pulled yet. A misbehaving server
therefore cannot make us buffer without bound, and feeding byte by byte costs
O(n) overall because we never rescan what we have already looked at.

Errors follow h11: LocalProtocolError means we were asked to send something
SMTP forbids; RemoteProtocolError means the server's bytes are not SMTP (or
break a limit). feed() never raises for bad bytes: the error is kept and raised
by next_reply() once the replies that arrived before it have been handed out,
so a pipelined exchange keeps its evidence. Any other exception is a bug.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections import deque
from dataclasses import dataclass

from smtpscript.errors import LocalProtocolError, RemoteProtocolError

LINE_LIMIT = 64 * 1024  # one reply line longer than this (without its CRLF) is refused
REPLY_LINES_LIMIT = 1000  # a reply with more lines is refused
REPLY_BYTES_LIMIT = 1024 * 1024  # a reply bigger than this (raw bytes) is refused

_PREVIEW_CHARS = 80

# RFC 3463: class "." subject "." detail, at the start of the text, then space or end.
_STATUS_RE = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})(?=[ \t]|$)")


# --- display -------------------------------------------------------------------------------

# Everything but printable ASCII (and, for bytes, the backslash: so the output is unambiguous).
_BYTES_ESCAPE_RE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")
_TEXT_ESCAPE_RE = re.compile(r"[^\x20-\x7e]")
# The bytes escape_bytes leaves as they are (what _BYTES_ESCAPE_RE does not match).
PLAIN_BYTES = bytes(b for b in range(0x20, 0x7F) if b != 0x5C)
_NAMED_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\\": "\\\\"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    point = ord(char)
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    if 0xDC80 <= point <= 0xDCFF:  # an undecodable byte, smuggled through surrogateescape
        return f"\\x{point - 0xDC00:02x}"
    if point < 0x80:
        return f"\\x{point:02x}"
    if char.isprintable():
        return char
    # Invisible or control characters (C1, bidi overrides, NBSP) must not hide in evidence.
    return f"\\u{point:04x}" if point <= 0xFFFF else f"\\U{point:08x}"


def escape_bytes(data: bytes) -> str:
    """Render bytes for transcripts and reports: printable text as is, the rest escaped.

    CR, LF and TAB become \\r, \\n, \\t; other control bytes and bytes that are not
    valid UTF-8 become \\xNN; a backslash becomes \\\\ so no rendering is ambiguous;
    valid non-ASCII characters stay, unless they are invisible (\\uNNNN).
    """
    if not data.translate(None, PLAIN_BYTES):  # nothing to escape: the usual case
        return data.decode("ascii")
    return _BYTES_ESCAPE_RE.sub(_escape_char, data.decode("utf-8", "surrogateescape"))


def _escape_text(text: str) -> str:
    # For one-line messages: no line breaks, no terminal control codes.
    return _TEXT_ESCAPE_RE.sub(_escape_char, text)


def escape_controls(text: str) -> str:
    """Text made safe for a terminal: what could move the cursor, recolour or hide is escaped.

    C0 controls and DEL become \\xNN (ESC as \\x1b; CR, LF, TAB as \\r, \\n, \\t), C1
    controls, lone surrogates (undecodable file-name bytes) and other invisible characters
    \\uNNNN. Printable text, non-ASCII letters and backslashes stay as they are, so text
    that is already escaped (transcripts) passes unchanged.
    """
    return _TEXT_ESCAPE_RE.sub(_escape_control_char, text)


def _escape_control_char(match: re.Match[str]) -> str:
    char = match.group()
    point = ord(char)
    if char in "\r\n\t":
        return _NAMED_ESCAPES[char]
    if point < 0x80:
        return f"\\x{point:02x}"
    if char.isprintable():
        return char
    return f"\\u{point:04x}" if point <= 0xFFFF else f"\\U{point:08x}"


def _preview(data: bytes) -> str:
    shown = escape_bytes(data[:_PREVIEW_CHARS])
    return f"'{shown}...'" if len(data) > _PREVIEW_CHARS else f"'{shown}'"


# --- replies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One complete SMTP reply, single- or multi-line."""

    code: int
    lines: tuple[str, ...]
    raw: bytes
    status: str | None
    bare_lf: bool

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def short(self) -> str:
        """One line for messages: the first line, and how many lines were left out."""
        first = f"{self.code} {self.lines[0]}" if self.lines and self.lines[0] else str(self.code)
        more = len(self.lines) - 1
        suffix = f" (+{more} more lines)" if more > 0 else ""
        return _escape_text(first) + suffix


def _new_reply(
    code: int, lines: tuple[str, ...], raw: bytes, status: str | None, bare_lf: bool
) -> Reply:
    """Reply(code, lines, raw, status, bare_lf) without a frozen dataclass's __init__
    (object.__setattr__ field by field: 3 us of a parsed reply's 10); the same fields in
    the same order, so it compares, hashes, prints and pickles the same."""
    reply: Reply = object.__new__(Reply)
    fields = reply.__dict__
    fields["code"] = code
    fields["lines"] = lines
    fields["raw"] = raw
    fields["status"] = status
    fields["bare_lf"] = bare_lf
    return reply


@dataclass
class Closed:
    """The server closed the connection (FIN or reset) instead of a complete reply: what a
    read gives in place of a Reply."""

    partial: bytes = b""
    reset: bool = False

    def describe(self) -> str:
        how = "reset the connection" if self.reset else "closed the connection"
        shown = escape_bytes(self.partial[:80]) + ("..." if len(self.partial) > 80 else "")
        extra = f" after a partial reply '{shown}'" if self.partial else ""
        return f"server {how}{extra}"


def enhanced_status(code: int, text: str) -> str | None:
    """The RFC 3463 status at the start of text, if its class matches the reply code."""
    if text[1:2] != "." or text[:1] != chr(48 + code // 100):
        return None  # most replies: no regex needed to say so (nor "250 5.1.1": text)
    # the status, if any, is decided by the first 10 characters (9 and what follows);
    # servers repeat the same few ("2.1.0 Ok"), so they are looked up, not matched again
    head = text[:10]
    status = _status_seen.get(head, _UNSEEN)
    if status is _UNSEEN:
        match = _STATUS_RE.match(head)
        status = match.group(0) if match is not None else None
        if len(_status_seen) >= MAX_STATUSES_SEEN:
            _status_seen.clear()  # a server sending endless variants: bounded, still right
        _status_seen[head] = status
    return status  # type: ignore[return-value]


_UNSEEN = object()
MAX_STATUSES_SEEN = 1024
_status_seen: dict[str, object] = {}


def _check_code(code: int, line: bytes) -> None:
    # RFC 5321 4.2: first digit 2-5 (we never get 1yz), second digit 0-5.
    first, second = code // 100, code // 10 % 10
    if not (2 <= first <= 5 and second <= 5):
        raise RemoteProtocolError(f"reply code {code:03d} out of range: {_preview(line)}")


def _split_line(content: bytes, line: bytes) -> tuple[int, bool, str]:
    """(code, is_last, text) of one reply line without its line ending."""
    head, sep = content[:3], content[3:4]
    if len(head) < 3 or not head.isdigit() or sep not in (b"", b" ", b"-"):
        raise RemoteProtocolError(f"malformed reply line: {_preview(line)}")
    text = content[4:].decode("utf-8", "backslashreplace")
    return int(head), sep != b"-", text


class ReplyParser:
    """Feed bytes, pull complete replies.

    Handles multi-line replies, replies split across reads at any byte, several
    replies in one read (pipelining), CRLF and bare LF, and non-UTF-8 bytes.
    """

    def __init__(self) -> None:
        self._partial = bytearray()  # the current line so far; never holds an LF
        self._raw = bytearray()  # complete lines of the unfinished reply
        self._lines: list[str] = []
        self._code = 0
        self._bare_lf = False
        self._ready: deque[Reply] = deque()
        self._error: RemoteProtocolError | None = None
        self._eof = False

    @property
    def pending(self) -> bool:
        """True while part of a reply is buffered (complete replies not pulled don't count)."""
        return bool(self._partial or self._lines)

    @property
    def buffered(self) -> int:
        """Bytes of the unfinished reply held in memory."""
        return len(self._partial) + len(self._raw)

    @property
    def unfinished(self) -> bytes:
        """The bytes of the unfinished reply (what a close in its middle cuts off)."""
        return bytes(self._raw + self._partial)

    @property
    def held_bytes(self) -> int:
        """Bytes held: complete replies not pulled yet and the unfinished one."""
        held = len(self._partial) + len(self._raw)
        return held + sum(len(reply.raw) for reply in self._ready) if self._ready else held

    def feed(self, data: bytes) -> None:
        if self._eof:
            raise RuntimeError("feed() after feed_eof()")  # a bug in the caller, not SMTP
        if self._error is not None:
            return  # the stream is already broken; keep nothing more
        try:
            self._consume(data)
        except RemoteProtocolError as exc:
            self._error = exc
            self._reset()
            self._partial.clear()

    def feed_eof(self) -> None:
        self._eof = True

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None when more data is needed."""
        if self._ready:
            return self._ready.popleft()
        if self._error is not None:
            raise self._error
        if self._eof and self.pending:
            partial = self.unfinished
            raise RemoteProtocolError(
                f"connection closed in the middle of a reply: {_preview(partial)}"
            )
        return None

    def _consume(self, data: bytes) -> None:
        size = len(data)
        partial = self._partial
        # most reads hold one whole reply ("250 2.1.0 Ok\r\n", an EHLO reply), nothing pending
        if not partial and not self._lines and self._whole_reply(data):
            return
        start = 0
        while start < size:
            # Never look further than the longest line we accept: bounded work and memory.
            room = LINE_LIMIT + 2 - len(partial)
            end = data.find(b"\n", start, start + room)
            if end < 0:
                partial += data[start : start + room]
                self._check_partial()
                return
            if partial:
                line = bytes(partial) + data[start : end + 1]
                partial.clear()
            else:
                line = data[start : end + 1]
            self._take_line(line)
            start = end + 1

    def _whole_reply(self, data: bytes) -> bool:
        """A read holding exactly one whole reply with CRLF endings, one line or many:
        taken at once, True; anything else is left to the line-by-line path."""
        if not data.endswith(b"\r\n") or len(data) > REPLY_BYTES_LIMIT:
            return False
        if data[3:4] == b" " and data.find(b"\n") == len(data) - 1:  # one line ("250 Ok")
            head = data[:3]
            if not head.isdigit() or len(data) > LINE_LIMIT + 2:
                return False
            code = int(head)
            _check_code(code, data)
            text = data[4:-2].decode("utf-8", "backslashreplace")
            self._ready.append(_new_reply(code, (text,), data, enhanced_status(code, text), False))
            return True
        lines = data[:-2].split(b"\r\n")
        count = len(lines)
        if count > REPLY_LINES_LIMIT or data.count(b"\n") != count:  # a bare LF: not here
            return False
        head = data[:3]
        if not head.isdigit() or data[3:4] != b"-" or lines[-1][:4] != head + b" ":
            return False
        # every line between the first and the last starts "<code>-": counted, not looped
        # (each LF here ends a CRLF, so "\n<code>-" is found only where a line starts)
        if data.count(b"\n" + head + b"-") != count - 2:
            return False
        if len(data) > LINE_LIMIT and max(map(len, lines)) > LINE_LIMIT:
            return False
        code = int(head)
        _check_code(code, lines[0] + b"\r\n")
        # decoded whole, then split: the same text as line by line (CRLF is ASCII, and
        # an invalid sequence cut by one is replaced the same either way)
        texts = tuple(
            [line[4:] for line in data[:-2].decode("utf-8", "backslashreplace").split("\r\n")]
        )
        status = enhanced_status(code, texts[0])
        self._ready.append(_new_reply(code, texts, data, status, False))
        return True

    def _check_partial(self) -> None:
        partial = self._partial
        content = len(partial) - (1 if partial.endswith(b"\r") else 0)  # CR may start CRLF
        if content > LINE_LIMIT:
            raise RemoteProtocolError(
                f"reply line longer than {LINE_LIMIT} bytes: {_preview(bytes(partial))}"
            )
        self._check_size()

    def _check_size(self) -> None:
        if self.buffered > REPLY_BYTES_LIMIT:
            raise RemoteProtocolError(f"reply bigger than {REPLY_BYTES_LIMIT} bytes")

    def _take_line(self, line: bytes) -> None:
        crlf = line.endswith(b"\r\n")
        content = line[:-2] if crlf else line[:-1]
        if len(content) > LINE_LIMIT:
            raise RemoteProtocolError(
                f"reply line longer than {LINE_LIMIT} bytes: {_preview(line)}"
            )
        code, last, text = _split_line(content, line)
        lines = self._lines
        if not lines:
            _check_code(code, line)
            self._code = code
        elif code != self._code:
            raise RemoteProtocolError(
                f"reply line with code {code:03d} inside a {self._code:03d} reply: {_preview(line)}"
            )
        self._raw += line
        lines.append(text)
        if not crlf:
            self._bare_lf = True
        if len(lines) > REPLY_LINES_LIMIT:
            raise RemoteProtocolError(f"reply has more than {REPLY_LINES_LIMIT} lines")
        if len(self._raw) + len(self._partial) > REPLY_BYTES_LIMIT:  # _check_size, inline
            self._check_size()
        if last:
            self._ready.append(self._finish())

    def _finish(self) -> Reply:
        lines = tuple(self._lines)
        code = self._code
        status = enhanced_status(code, lines[0])
        reply = _new_reply(code, lines, bytes(self._raw), status, self._bare_lf)
        self._reset()
        return reply

    def _reset(self) -> None:
        self._raw.clear()
        self._lines.clear()
        self._code = 0
        self._bare_lf = False


def parse_replies(data: bytes) -> list[Reply]:
    """Every reply in data, which must end on a reply boundary (handy in tests and tools)."""
    parser = ReplyParser()
    parser.feed(data)
    parser.feed_eof()
    replies = []
    while (reply := parser.next_reply()) is not None:
        replies.append(reply)
    return replies


# --- commands and message content -----------------------------------------------------------


def encode_command(line: str) -> bytes:
    """The bytes of one command line: UTF-8 plus CRLF. Over-long lines are allowed on purpose."""
    for index, char in enumerate(line):
        if char in "\r\n":
            # The line itself may hold a secret, so name the offset rather than quoting it.
            raise LocalProtocolError(
                "command contains CR or LF; use a raw step to send exact bytes "
                f"(first one at offset {index})"
            )
    return _encode_utf8(line, "command") + b"\r\n"


def _encode_utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates cannot go on the wire
        raise LocalProtocolError(f"{what} is not valid Unicode: {exc.reason}") from None


_LINE_END_RE = re.compile(rb"\r\n|\r|\n")


def normalize_crlf(data: bytes) -> bytes:
    """Make every line ending (CRLF, bare CR, bare LF) a CRLF."""
    crs = data.count(b"\r")
    if not crs:
        return data.replace(b"\n", b"\r\n")  # LF only (a YAML block): no regex needed
    if crs == data.count(b"\n") == data.count(b"\r\n"):
        return data  # every CR starts a CRLF and every LF ends one: nothing to change
    return _LINE_END_RE.sub(b"\r\n", data)


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 4.5.2: double a leading "." on every line (input CRLF-normalised)."""
    # Stuffing after any LF also covers un-normalised input; a CRLF always ends with LF.
    stuffed = data.replace(b"\n.", b"\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


def message_payload(message: str | bytes) -> bytes:
    """What follows a 354: the message with CRLF endings, dot-stuffed, then ".\\r\\n"."""
    data = _encode_utf8(message, "message") if isinstance(message, str) else message
    data = normalize_crlf(data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"  # the terminator must start on a line of its own
    return dot_stuff(data) + b".\r\n"


def parse_ehlo(reply: Reply) -> dict[str, str]:
    """Capabilities of an EHLO/LHLO reply: {"SIZE": "10240000", "AUTH": "PLAIN LOGIN", ...}.

    The first line is the greeting. Keywords are upper-cased; "AUTH=..." (old
    style) counts as AUTH, and every AUTH line adds its mechanisms (upper-cased,
    no duplicates). For other repeated keywords the first one wins.
    """
    caps: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, value = line.strip().partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword.startswith("AUTH="):
            keyword, value = "AUTH", f"{keyword[5:]} {value}"
        if keyword == "AUTH":
            caps["AUTH"] = _merge_mechanisms(caps.get("AUTH", ""), value)
        elif keyword:
            caps.setdefault(keyword, value)
    return caps


def _merge_mechanisms(known: str, more: str) -> str:
    mechanisms = dict.fromkeys(known.split())  # an ordered set
    mechanisms.update(dict.fromkeys(more.upper().split()))
    return " ".join(mechanisms)


# --- AUTH (RFC 4954, 4616, 2195; Google XOAUTH2) -------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(_encode_utf8(text, "AUTH data")).decode("ascii")


def b64decode(data: str) -> bytes:
    """Decode a server's base64, forgiving whitespace and missing padding."""
    compact = "".join(data.split()).rstrip("=")
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError(
            f"invalid base64 from server: {data[:_PREVIEW_CHARS]!r}"
        ) from None


def b64decode_text(data: str) -> str:
    """A server challenge as text (e.g. "Username:"); bytes that are not UTF-8 escaped."""
    return b64decode(data).decode("utf-8", "backslashreplace")


def auth_plain(username: str, password: str, authzid: str = "") -> str:
    """RFC 4616: base64 of authzid NUL username NUL password."""
    if "\0" in authzid + username + password:
        # A NUL would shift the fields: the server would check different credentials.
        raise LocalProtocolError("AUTH PLAIN fields must not contain NUL")
    return b64(f"{authzid}\0{username}\0{password}")


def cram_md5_response(username: str, password: str, challenge_b64: str) -> str:
    """RFC 2195: base64 of the username, a space and the hex HMAC-MD5 of the challenge."""
    challenge = b64decode(challenge_b64)  # HMAC the exact bytes, not a re-encoded text
    key = _encode_utf8(password, "password")
    digest = hmac.new(key, challenge, hashlib.md5).hexdigest()
    return b64(f"{username} {digest}")


def xoauth2(username: str, token: str) -> str:
    """Google's XOAUTH2 initial response."""
    return b64(f"user={username}\x01auth=Bearer {token}\x01\x01")
