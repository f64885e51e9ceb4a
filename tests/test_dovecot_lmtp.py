"""A real LMTP server (RFC 2033): the loopback Dovecot of tests/dovecot/setup.sh, over TCP
and over its UNIX socket, driven with raw sockets (smtpscript only parses the replies).

If these fail, the test server is broken (or Dovecot changed), not smtpscript's LMTP support.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator

import pytest
from dovecot_env import DovecotServer, split_message

from smtpscript.protocol import Reply, ReplyParser

pytestmark = pytest.mark.dovecot

TIMEOUT = 10.0
SENDER = "a@b.test"


class Lmtp:
    """A blocking LMTP client on one socket: send lines, pull whole replies."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = ReplyParser()

    def reply(self) -> Reply:
        while (reply := self.parser.next_reply()) is None:
            data = self.sock.recv(65536)
            if not data:
                self.parser.feed_eof()
                reply = self.parser.next_reply()
                if reply is None:
                    raise AssertionError("the server closed the connection")
                return reply
            self.parser.feed(data)
        return reply

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str) -> Reply:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def start(self) -> None:
        """LHLO, then MAIL FROM."""
        assert self.command("LHLO client.test").code == 250
        assert self.command(f"MAIL FROM:<{SENDER}>").code == 250


def _open(server: DovecotServer, transport: str) -> socket.socket:
    if transport == "tcp":
        return socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(str(server.socket_path))
    except OSError:
        sock.close()
        raise
    return sock


@pytest.fixture(params=["tcp", "unix"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def banner_and_client(dovecot: DovecotServer, transport: str) -> Iterator[tuple[Reply, Lmtp]]:
    """A fresh connection over the transport, its banner read."""
    with _open(dovecot, transport) as sock:
        client = Lmtp(sock)
        banner = client.reply()
        yield banner, client
        with contextlib.suppress(OSError):
            client.send(b"QUIT\r\n")


@pytest.fixture
def client(banner_and_client: tuple[Reply, Lmtp]) -> Lmtp:
    banner, client = banner_and_client
    assert banner.code == 220, banner.short()
    return client


def _message(tag: str) -> tuple[bytes, bytes]:
    """(the message, its dot-stuffed wire form after DATA ending with CRLF.CRLF)."""
    header = (
        f"From: <{SENDER}>\r\n"
        f"To: <alice@lmtp.test>\r\n"
        f"Subject: lmtp {tag}\r\n"
        f"Message-ID: <{tag}@client.test>\r\n"
    ).encode()
    body = (
        b"first line\r\n"
        b".a line that starts with a dot\r\n"
        b".\r\n"
        b"..two dots\r\n"
        b"\r\n"
        b"trailing spaces and a tab \t \r\n"
        b"last line\r\n"
    )
    wire_body = (
        b"first line\r\n"
        b"..a line that starts with a dot\r\n"
        b"..\r\n"
        b"...two dots\r\n"
        b"\r\n"
        b"trailing spaces and a tab \t \r\n"
        b"last line\r\n"
    )
    return header + b"\r\n" + body, header + b"\r\n" + wire_body + b".\r\n"


def _tag() -> str:
    return f"smtpscript-{uuid.uuid4().hex}"


def _assert_delivered(dovecot: DovecotServer, user: str, tag: str, stored: bytes) -> None:
    found = dovecot.find_message(user, f"<{tag}@client.test>".encode())
    assert found is not None, f"no message {tag} in {dovecot.mailbox(user)}"
    # Dovecot prepends its trace headers; the rest is byte-for-byte what was sent
    # (dot-unstuffed, CRLF kept: mail_save_crlf = yes).
    assert found.endswith(stored)
    headers, body = split_message(found)
    assert headers.startswith(f"Return-Path: <{SENDER}>\r\n".encode())
    assert body == split_message(stored)[1]


def test_banner_and_lhlo(dovecot: DovecotServer, banner_and_client) -> None:
    banner, client = banner_and_client
    assert banner.code == 220
    assert banner.lines == (f"{dovecot.hostname} Dovecot (Debian) ready.",)
    reply = client.command("LHLO client.test")
    assert reply.code == 250
    assert reply.lines[0] == dovecot.hostname
    caps = {line.split()[0].upper() for line in reply.lines[1:]}
    assert {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "CHUNKING"} <= caps
    assert "STARTTLS" not in caps  # ssl = no


def test_helo_and_ehlo_are_not_lmtp(client: Lmtp) -> None:
    for verb in ("EHLO", "HELO"):
        reply = client.command(f"{verb} client.test")
        assert (reply.code, reply.status) == (500, "5.5.1"), reply.short()
    assert client.command("LHLO client.test").code == 250


def test_one_reply_per_accepted_recipient_in_rcpt_order(
    dovecot: DovecotServer, client: Lmtp
) -> None:
    client.start()
    alice, bob = dovecot.address("alice"), dovecot.address("bob")
    nobody = dovecot.address("nobody")

    reply = client.command(f"RCPT TO:<{alice}>")
    assert (reply.code, reply.status) == (250, "2.1.5")
    reply = client.command(f"RCPT TO:<{nobody}>")
    assert (reply.code, reply.status) == (550, "5.1.1")
    assert reply.lines == (f"5.1.1 <{nobody}> User doesn't exist: {nobody}",)
    reply = client.command(f"RCPT TO:<{bob}>")
    assert (reply.code, reply.status) == (250, "2.1.5")

    reply = client.command("DATA")
    assert reply.code == 354
    tag = _tag()
    stored, wire = _message(tag)
    client.send(wire)
    first, second = client.reply(), client.reply()
    assert (first.code, first.status) == (250, "2.0.0")
    assert first.lines[0].startswith(f"2.0.0 <{alice}> ")
    assert first.lines[0].endswith(" Saved")
    assert (second.code, second.status) == (250, "2.0.0")
    assert second.lines[0].startswith(f"2.0.0 <{bob}> ")
    # Exactly two: the next reply is the NOOP's, not a third one for the refused recipient.
    noop = client.command("NOOP")
    assert noop.lines == ("2.0.0 OK",)

    _assert_delivered(dovecot, "alice", tag, stored)
    _assert_delivered(dovecot, "bob", tag, stored)
    assert dovecot.find_message("nobody", tag.encode()) is None


@pytest.mark.parametrize("full_first", [False, True], ids=["alice-full", "full-alice"])
def test_full_mailbox_fails_after_data_alone(
    dovecot: DovecotServer, client: Lmtp, full_first: bool
) -> None:
    alice, full = dovecot.address("alice"), dovecot.address(dovecot.full_user)
    order = [full, alice] if full_first else [alice, full]
    client.start()
    for rcpt in order:
        reply = client.command(f"RCPT TO:<{rcpt}>")
        assert (reply.code, reply.status) == (250, "2.1.5"), reply.short()  # accepted at RCPT
    assert client.command("DATA").code == 354
    tag = _tag()
    stored, wire = _message(tag)
    client.send(wire)
    replies = {rcpt: client.reply() for rcpt in order}

    refused = replies[full]
    assert (refused.code, refused.status) == (552, "5.2.2")
    assert refused.lines == (f"5.2.2 <{full}> Quota exceeded (mailbox for user is full)",)
    saved = replies[alice]
    assert (saved.code, saved.status) == (250, "2.0.0")
    assert saved.lines[0].startswith(f"2.0.0 <{alice}> ")
    assert client.command("NOOP").lines == ("2.0.0 OK",)

    _assert_delivered(dovecot, "alice", tag, stored)
    assert dovecot.find_message(dovecot.full_user, tag.encode()) is None


def test_pipelined_transaction(dovecot: DovecotServer, client: Lmtp) -> None:
    """PIPELINING: the whole envelope in one write, replies in order, then the message."""
    alice, bob = dovecot.address("alice"), dovecot.address("bob")
    nobody = dovecot.address("nobody")
    assert client.command("LHLO client.test").code == 250
    client.send(
        f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{bob}>\r\nRCPT TO:<{nobody}>\r\n"
        f"RCPT TO:<{alice}>\r\nDATA\r\n".encode()
    )
    codes = [client.reply().code for _ in range(5)]
    assert codes == [250, 250, 550, 250, 354]
    tag = _tag()
    stored, wire = _message(tag)
    client.send(wire)
    first, second = client.reply(), client.reply()
    assert first.lines[0].startswith(f"2.0.0 <{bob}> ")
    assert second.lines[0].startswith(f"2.0.0 <{alice}> ")
    _assert_delivered(dovecot, "alice", tag, stored)
    _assert_delivered(dovecot, "bob", tag, stored)


def test_bdat_last_gets_one_reply_per_recipient(dovecot: DovecotServer, client: Lmtp) -> None:
    """CHUNKING (RFC 3030) in LMTP: the per-recipient replies come after BDAT ... LAST."""
    alice, full = dovecot.address("alice"), dovecot.address(dovecot.full_user)
    client.start()
    for rcpt in (alice, full):
        assert client.command(f"RCPT TO:<{rcpt}>").code == 250
    tag = _tag()
    stored, _wire = _message(tag)
    half = len(stored) // 2
    client.send(f"BDAT {half}\r\n".encode() + stored[:half])
    reply = client.reply()
    assert reply.code == 250, reply.short()
    rest = stored[half:]
    client.send(f"BDAT {len(rest)} LAST\r\n".encode() + rest)
    first, second = client.reply(), client.reply()
    assert first.lines[0].startswith(f"2.0.0 <{alice}> ")
    assert (second.code, second.status) == (552, "5.2.2")
    assert second.lines[0].startswith(f"5.2.2 <{full}> ")
    assert client.command("NOOP").lines == ("2.0.0 OK",)
    # BDAT carries the message as is: no dot-stuffing, so ".\r\n" lines arrive unchanged.
    _assert_delivered(dovecot, "alice", tag, stored)


def test_data_without_an_accepted_recipient(dovecot: DovecotServer, client: Lmtp) -> None:
    client.start()
    assert client.command(f"RCPT TO:<{dovecot.address('nobody')}>").code == 550
    reply = client.command("DATA")
    assert (reply.code, reply.status) == (503, "5.5.0"), reply.short()
    assert client.command("RSET").code == 250
