"""The loopback Postfix's extra listeners and extensions, over raw sockets (no smtpscript engine).

What the protocol-extension work relies on (tests/postfix/setup.sh): a PROXY-protocol port
whose claimed client reaches the maillog and ``Received:``, an XCLIENT port, SMTPUTF8 (a
UTF-8 sender, and jörg@postfix.test, a UTF-8 alias of alice), CHUNKING (BDAT stores the
bytes as sent, no dot-stuffing) and DSN. If these fail, the test server is broken, not
smtpscript.
"""

from __future__ import annotations

import itertools
import re
import socket
import time
import uuid

import pytest
from postfix_env import (
    SETUP_HINT,
    PostfixServer,
    header_values,
    is_reachable,
    proxy_v1_header,
    proxy_v2_header,
    queue_id_of,
    split_message,
)

from smtpscript.protocol import Reply, ReplyParser, parse_ehlo

pytestmark = pytest.mark.postfix

BANNER = "mx.postfix.test ESMTP Postfix"
CLAIMED = "203.0.113.7"  # TEST-NET-3: what the PROXY header / XCLIENT says the client is
XCLIENT_ATTRIBUTES = {"NAME", "ADDR", "PROTO", "HELO", "REVERSE_NAME", "PORT", "LOGIN"}
# Lines Postfix puts in front of a delivered message: its trace, then the message as sent.
TRACE_HEADERS = (b"Return-Path:", b"X-Original-To:", b"Delivered-To:", b"Received:")


class RawSmtp:
    """One plain SMTP connection: bytes out, replies parsed by smtpscript.protocol."""

    def __init__(self, postfix: PostfixServer, port: int, preamble: bytes = b"") -> None:
        self.sock = socket.create_connection((postfix.host, port), timeout=10)
        self.parser = ReplyParser()
        try:
            if preamble:
                self.sock.sendall(preamble)
            self.banner = self.read()
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> RawSmtp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def read(self) -> Reply:
        while (reply := self.parser.next_reply()) is None:
            data = self.sock.recv(65536)
            if not data:
                self.parser.feed_eof()
                if (reply := self.parser.next_reply()) is None:
                    raise AssertionError("the server closed the connection without a reply")
                return reply
            self.parser.feed(data)
        return reply

    def send(self, data: str | bytes) -> Reply:
        """Send a command (str: UTF-8, CRLF added) or exact bytes, and read one reply."""
        self.sock.sendall(data.encode() + b"\r\n" if isinstance(data, str) else data)
        return self.read()

    def ehlo(self, name: str = "client.example.org") -> dict[str, str]:
        reply = self.send(f"EHLO {name}")
        assert reply.code == 250, reply.short()
        return parse_ehlo(reply)

    def ok(self, command: str, code: int = 250) -> Reply:
        reply = self.send(command)
        assert reply.code == code, f"{command!r}: {reply.short()}"
        return reply

    def deliver(self, sender: str, recipient: str, message: bytes) -> str:
        """MAIL, RCPT, DATA (message: CRLF lines, not dot-stuffed); returns the queue id."""
        self.ok(f"MAIL FROM:<{sender}>")
        self.ok(f"RCPT TO:<{recipient}>")
        self.ok("DATA", 354)
        stuffed = message.replace(b"\r\n.", b"\r\n..")
        return queue_id_of(self.send(stuffed + b".\r\n").text)

    def quit(self) -> None:
        assert self.send("QUIT").code == 221


def make_message(subject: str, body: bytes, sender: str = "probe@example.org") -> bytes:
    """A complete message (CRLF): with From, Date and Message-ID Postfix adds no header."""
    return (
        f"From: <{sender}>\r\n"
        f"To: <alice@postfix.test>\r\n"
        f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@smtpscript.invalid>\r\n"
        f"Subject: {subject}\r\n"
        "\r\n"
    ).encode() + body


def without_trace(stored: bytes) -> bytes:
    """The stored message minus the trace headers Postfix put in front of it."""
    lines = stored.split(b"\n")
    index = 0
    while index < len(lines) and (
        lines[index].startswith(TRACE_HEADERS) or (index > 0 and lines[index][:1] in (b" ", b"\t"))
    ):
        index += 1
    return b"\n".join(lines[index:])


def require_listener(postfix: PostfixServer, port: int, what: str) -> None:
    """A running instance set up by an older setup.sh has no such port: say so plainly."""
    if not is_reachable(postfix.host, port):
        pytest.fail(
            f"nothing listens on {postfix.host}:{port} ({what}): the loopback Postfix was "
            f"configured by an older setup.sh; {SETUP_HINT}",
            pytrace=False,
        )


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------- PROXY protocol


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(proxy_v1_header(CLAIMED, "198.51.100.1", 40000, 25), id="v1"),
        pytest.param(proxy_v2_header(CLAIMED, "198.51.100.1", 40000, 25), id="v2"),
    ],
)
def test_proxy_header_sets_the_client(postfix, header):
    assert header == (
        b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 25\r\n"
        if header.startswith(b"PROXY")
        else b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"
        + bytes([203, 0, 113, 7, 198, 51, 100, 1])
        + b"\x9c\x40\x00\x19"
    )
    require_listener(postfix, postfix.proxy_port, "PROXY protocol port")
    log_start = postfix.maillog_size()
    subject = unique("proxy")
    with RawSmtp(postfix, postfix.proxy_port, preamble=header) as client:
        assert (client.banner.code, client.banner.lines) == (220, (BANNER,))
        caps = client.ehlo("proxied.example.org")
        assert "XCLIENT" not in caps
        queue_id = client.deliver(
            "probe@example.org", "alice@postfix.test", make_message(subject, b"via proxy\r\n")
        )
        client.quit()

    # The queue id ties the session's smtpd process to its "connect from" line.
    client_line = postfix.wait_for_maillog(
        rf"/proxy/smtpd\[(\d+)\]: {queue_id}: client=unknown\[203\.0\.113\.7\]$",
        start=log_start,
    )
    pid = client_line.group(1)
    postfix.wait_for_maillog(
        rf"postfix-smtpscript/proxy/smtpd\[{pid}\]: connect from unknown\[203\.0\.113\.7\]$",
        start=log_start,
    )

    stored = postfix.wait_for_message("alice", queue_id=queue_id)
    received = header_values(stored, "Received")[0]
    assert received.startswith("from proxied.example.org (unknown [203.0.113.7])"), received
    assert f"with ESMTP id {queue_id}" in received
    assert without_trace(stored).endswith(b"\n\nvia proxy\n")


def test_proxy_port_refuses_a_client_without_a_proxy_header(postfix):
    require_listener(postfix, postfix.proxy_port, "PROXY protocol port")
    log_start = postfix.maillog_size()
    with socket.create_connection((postfix.host, postfix.proxy_port), timeout=10) as sock:
        sock.sendall(b"EHLO client.example.org\r\n")
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass  # Postfix may close before reading the rest: a reset, after its reply
    assert received.startswith(b"421 4.3.0 "), received
    assert b"220" not in received
    postfix.wait_for_maillog(r"/proxy/smtpd\[\d+\]: warning: haproxy read: ", start=log_start)


# ---------------------------------------------------------------------- XCLIENT


def test_xclient_sets_the_client_name_and_address(postfix):
    require_listener(postfix, postfix.xclient_port, "XCLIENT port")
    log_start = postfix.maillog_size()
    with RawSmtp(postfix, postfix.xclient_port) as client:
        assert (client.banner.code, client.banner.lines) == (220, (BANNER,))
        caps = client.ehlo("relay.example.org")
        assert "XCLIENT" in caps
        assert set(caps["XCLIENT"].split()) >= XCLIENT_ATTRIBUTES
        reply = client.send(f"XCLIENT ADDR={CLAIMED} NAME=client.example")
        assert (reply.code, reply.lines) == (220, (BANNER,))
        caps = client.ehlo("helo.client.example")  # XCLIENT reset the session: greet again
        assert "XCLIENT" not in caps  # 203.0.113.7 is not an authorized XCLIENT host
        queue_id = client.deliver(
            "probe@example.org", "alice@postfix.test", make_message(unique("xclient"), b"x\r\n")
        )
        client.quit()

    stored = postfix.wait_for_message("alice", queue_id=queue_id)
    received = header_values(stored, "Received")[0]
    assert received.startswith("from helo.client.example (client.example [203.0.113.7])"), received
    postfix.wait_for_maillog(
        rf"/xclient/smtpd\[\d+\]: {queue_id}: client=client\.example\[203\.0\.113\.7\]$",
        start=log_start,
    )


def test_main_port_refuses_xclient(postfix):
    with RawSmtp(postfix, postfix.port) as client:
        assert "XCLIENT" not in client.ehlo()
        reply = client.send(f"XCLIENT ADDR={CLAIMED}")
        assert (reply.code, reply.status) == (550, "5.7.0")
        client.quit()


# ---------------------------------------------------------------------- SMTPUTF8


def test_utf8_sender_is_accepted_and_delivered(postfix):
    subject = unique("utf8 sender")
    body = "Grüße aus Köln\r\n".encode()
    with RawSmtp(postfix, postfix.port) as client:
        assert "SMTPUTF8" in client.ehlo()
        client.ok("MAIL FROM:<jörg@example.org> SMTPUTF8")
        client.ok("RCPT TO:<alice@postfix.test>")
        client.ok("DATA", 354)
        message = make_message(subject, body, sender="jörg@example.org")
        queue_id = queue_id_of(client.send(message + b".\r\n").text)
        client.quit()

    stored = postfix.wait_for_message("alice", queue_id=queue_id)
    assert header_values(stored, "Return-Path") == ["<jörg@example.org>"]
    assert f"with UTF8SMTP id {queue_id}" in header_values(stored, "Received")[0]
    assert without_trace(stored) == message.replace(b"\r\n", b"\n")


@pytest.mark.parametrize("recipient", ["jörg@postfix.test", "JÖRG@postfix.test"])
def test_utf8_local_part_is_an_alias_of_alice(postfix, recipient):
    """virtual_alias_maps maps jörg@postfix.test to alice; UTF-8 keys are case-folded."""
    with RawSmtp(postfix, postfix.port) as client:
        client.ehlo()
        client.ok("MAIL FROM:<probe@example.org> SMTPUTF8")
        client.ok(f"RCPT TO:<{recipient}>")
        client.ok("DATA", 354)
        message = make_message(unique("utf8 recipient"), b"hallo J\xc3\xb6rg\r\n")
        queue_id = queue_id_of(client.send(message + b".\r\n").text)
        client.quit()

    stored = postfix.wait_for_message("alice", queue_id=queue_id)
    headers = dict(split_message(stored)[0])
    assert headers["X-Original-To"] == recipient
    assert headers["Delivered-To"] == "alice@postfix.test"
    assert without_trace(stored) == message.replace(b"\r\n", b"\n")


# ---------------------------------------------------------------------- CHUNKING / BDAT

DOT_BODY = b"first\r\n.leading dot\r\n..two dots\r\n.\r\n. space\r\n.\r\nlast\r\n"


@pytest.mark.parametrize("chunks", [1, 3], ids=["one-chunk", "three-chunks"])
def test_bdat_is_stored_byte_exact(postfix, chunks):
    message = make_message(unique("bdat"), DOT_BODY)
    # Three chunks cut right after a CR and right before a ".": no boundary is special.
    cuts = [0, message.index(b"\r\n.leading") + 1, message.index(b".\r\n. space"), len(message)]
    pieces = [message] if chunks == 1 else [message[a:b] for a, b in itertools.pairwise(cuts)]
    with RawSmtp(postfix, postfix.port) as client:
        assert "CHUNKING" in client.ehlo()
        client.ok("MAIL FROM:<probe@example.org>")
        client.ok("RCPT TO:<alice@postfix.test>")
        for number, piece in enumerate(pieces, start=1):
            last = " LAST" if number == len(pieces) else ""
            reply = client.send(f"BDAT {len(piece)}{last}\r\n".encode() + piece)
            assert reply.code == 250, reply.short()
        assert f"{len(message)} bytes queued as " in reply.text
        queue_id = queue_id_of(reply.text)
        client.quit()

    stored = postfix.wait_for_message("alice", queue_id=queue_id)
    assert without_trace(stored) == message.replace(b"\r\n", b"\n")  # Postfix stores LF


# ---------------------------------------------------------------------- DSN


def test_dsn_parameters_are_accepted_and_honoured(postfix):
    """NOTIFY=SUCCESS makes Postfix send bob (the sender) a "delivered" report."""
    envid = f"smtpscript-{uuid.uuid4().hex}"
    since = time.time()
    with RawSmtp(postfix, postfix.port) as client:
        assert "DSN" in client.ehlo()
        client.ok(f"MAIL FROM:<bob@postfix.test> RET=HDRS ENVID={envid}")
        reply = client.ok(
            "RCPT TO:<alice@postfix.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@postfix.test"
        )
        assert reply.status == "2.1.5"
        client.ok("DATA", 354)
        message = make_message(unique("dsn"), b"notify me\r\n", sender="bob@postfix.test")
        queue_id = queue_id_of(client.send(message + b".\r\n").text)
        client.quit()

    postfix.wait_for_message("alice", queue_id=queue_id)
    report = postfix.wait_for_message("bob", containing=envid.encode(), since=since - 1)
    assert header_values(report, "Return-Path") == ["<>"]
    assert re.search(rb"\nOriginal-Envelope-Id: " + envid.encode() + rb"\n", report)
    assert b"\nOriginal-Recipient: rfc822;alice@postfix.test\n" in report
    assert b"\nAction: delivered\n" in report
