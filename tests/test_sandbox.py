"""The embedded sandbox, driven by the stdlib SMTP client over real loopback sockets."""

from __future__ import annotations

import base64
import ipaddress
import smtplib
import socket
import ssl
from collections.abc import Iterator

import pytest

from smtpscript.sandbox import (
    DEFAULT_USERS,
    Sandbox,
    SandboxConfig,
    SandboxError,
    StoredMessage,
    serve_forever,
)

TIMEOUT = 5


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(tls_port=0)) as server:
        yield server


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A second server: tiny size limit, Maildir delivery, open relay."""
    maildir = tmp_path_factory.mktemp("maildir")
    config = SandboxConfig(max_size=1000, maildir=maildir, open_relay=True)
    with Sandbox(config) as server:
        yield server


def client(server: Sandbox) -> smtplib.SMTP:
    return smtplib.SMTP(server.host, server.port, timeout=TIMEOUT)


def ca_context(server: Sandbox) -> ssl.SSLContext:
    assert server.cert_path is not None
    return ssl.create_default_context(cafile=str(server.cert_path))


def secure_client(server: Sandbox) -> smtplib.SMTP:
    """EHLO, STARTTLS (verified against cert_path), EHLO again."""
    smtp = client(server)
    smtp._host = "localhost"  # the name smtplib checks the certificate against
    smtp.ehlo("client.example")
    code, _ = smtp.starttls(context=ca_context(server))
    assert code == 220
    smtp.ehlo("client.example")
    return smtp


def _normal(name: str) -> str:
    """IP addresses in one spelling (OpenSSL writes ::1 as 0:0:0:0:0:0:0:1)."""
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def queue_id(reply: bytes) -> str:
    assert reply.startswith(b"2.0.0 Ok: queued as "), reply
    return reply.rsplit(b" ", 1)[1].decode()


def stored(server: Sandbox, reply: bytes) -> StoredMessage:
    wanted = queue_id(reply)
    [message] = [m for m in server.messages if m.queue_id == wanted]
    return message


def test_banner_and_ehlo_before_tls(sandbox: Sandbox) -> None:
    with client(sandbox) as smtp:
        code, text = smtp.ehlo("client.example")
        assert code == 250
        lines = text.decode().splitlines()
    assert lines[0] == "sandbox.test"
    assert lines[1:] == [
        "SIZE 10240000",
        "8BITMIME",
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ]


def test_banner_text(sandbox: Sandbox) -> None:
    with socket.create_connection((sandbox.host, sandbox.port), timeout=TIMEOUT) as sock:
        banner = sock.makefile("rb").readline()
    assert banner == b"220 sandbox.test ESMTP smtpscript sandbox\r\n"


def test_auth_before_tls_is_refused(sandbox: Sandbox) -> None:
    with client(sandbox) as smtp:
        smtp.ehlo("client.example")
        assert smtp.docmd("AUTH", "PLAIN AGFsaWNlAHg=") == (
            530,
            b"5.7.0 Must issue a STARTTLS command first",
        )


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_after_starttls(sandbox: Sandbox, mechanism: str) -> None:
    with secure_client(sandbox) as smtp:
        assert smtp.esmtp_features["auth"].strip() == "PLAIN LOGIN"
        assert "starttls" not in smtp.esmtp_features
        smtp.user, smtp.password = "bob", DEFAULT_USERS["bob"]
        authobject = getattr(smtp, f"auth_{mechanism.lower()}")
        assert smtp.auth(mechanism, authobject) == (235, b"2.7.0 Authentication successful")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_wrong_password(sandbox: Sandbox, mechanism: str) -> None:
    with secure_client(sandbox) as smtp:
        smtp.user, smtp.password = "alice", "not-her-password"
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            smtp.auth(mechanism, getattr(smtp, f"auth_{mechanism.lower()}"))
    assert caught.value.smtp_code == 535
    assert caught.value.smtp_error == b"5.7.8 Authentication credentials invalid"


def test_local_delivery_is_stored_byte_exact(sandbox: Sandbox) -> None:
    body = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n\xc3\xa9 8bit\r\n"
    with client(sandbox) as smtp:
        smtp.ehlo("client.example")
        assert smtp.mail("sender@example.org", ["BODY=8BITMIME"]) == (250, b"2.1.0 Sender OK")
        assert smtp.rcpt("alice@sandbox.test") == (250, b"2.1.5 Recipient OK")
        assert smtp.rcpt("Postmaster@SANDBOX.test") == (250, b"2.1.5 Recipient OK")
        code, reply = smtp.data(body)  # smtplib dot-stuffs the dotted lines
    assert code == 250
    message = stored(sandbox, reply)
    assert message.data == body
    assert message.mail_from == "sender@example.org"
    assert message.rcpt_tos == ("alice@sandbox.test", "Postmaster@SANDBOX.test")
    assert message.authenticated_user is None


def test_relay_refused_without_auth(sandbox: Sandbox) -> None:
    with client(sandbox) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("outsider@example.org")
        assert smtp.rcpt("victim@example.net") == (550, b"5.7.1 Unable to relay")


def test_relay_allowed_after_auth(sandbox: Sandbox) -> None:
    with secure_client(sandbox) as smtp:
        smtp.login("alice", DEFAULT_USERS["alice"])
        smtp.mail("alice@sandbox.test")
        assert smtp.rcpt("friend@example.net") == (250, b"2.1.5 Recipient OK")
        code, reply = smtp.data(b"Subject: out\r\n\r\nhi\r\n")
    assert code == 250
    assert stored(sandbox, reply).authenticated_user == "alice"


def test_unknown_local_user(sandbox: Sandbox) -> None:
    with client(sandbox) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("sender@example.org")
        assert smtp.rcpt("nobody@Sandbox.Test") == (
            550,
            b"5.1.1 <nobody@Sandbox.Test>: Recipient address rejected: User unknown",
        )


def test_vrfy(sandbox: Sandbox) -> None:
    with client(sandbox) as smtp:
        smtp.ehlo("client.example")
        assert smtp.verify("alice") == (
            252,
            b"2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
        )


def test_aiosmtpd_replies_get_enhanced_codes(sandbox: Sandbox) -> None:
    with client(sandbox) as smtp:
        smtp.ehlo("client.example")
        assert smtp.noop() == (250, b"2.0.0 Ok")
        assert smtp.docmd("RCPT TO:<alice@sandbox.test>") == (
            503,
            b"5.5.1 Error: need MAIL command",
        )
        assert smtp.docmd("STARTTLS", "now")[1].startswith(b"5.5.4 ")
        assert smtp.quit() == (221, b"2.0.0 Bye")


def test_pipelined_commands_each_get_a_reply(sandbox: Sandbox) -> None:
    with socket.create_connection((sandbox.host, sandbox.port), timeout=TIMEOUT) as sock:
        replies = sock.makefile("rb")
        replies.readline()
        sock.sendall(
            b"EHLO client.example\r\nMAIL FROM:<a@example.org>\r\n"
            b"RCPT TO:<bob@sandbox.test>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n"
        )
        ehlo = [replies.readline() for _ in range(6)]
        rest = [replies.readline() for _ in range(4)]
        sock.sendall(b"hi\r\n.\r\nQUIT\r\n")
        done = [replies.readline(), replies.readline()]
    assert ehlo[-1] == b"250 STARTTLS\r\n"
    assert rest == [
        b"250 2.1.0 Sender OK\r\n",
        b"250 2.1.5 Recipient OK\r\n",
        b"550 5.7.1 Unable to relay\r\n",
        b"354 End data with <CR><LF>.<CR><LF>\r\n",
    ]
    assert done[0].startswith(b"250 2.0.0 Ok: queued as ")
    assert done[1] == b"221 2.0.0 Bye\r\n"


def test_size_limit_on_mail_parameter(small: Sandbox) -> None:
    with client(small) as smtp:
        smtp.ehlo("client.example")
        assert smtp.esmtp_features["size"] == "1000"
        assert smtp.mail("a@example.org", ["SIZE=1001"]) == (
            552,
            b"5.3.4 Message size exceeds fixed maximum message size",
        )
        assert smtp.mail("a@example.org", ["SIZE=1000"])[0] == 250


def test_size_limit_on_data(small: Sandbox) -> None:
    with client(small) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("a@example.org")
        smtp.rcpt("bob@sandbox.test")
        assert smtp.data(b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * 20) == (
            552,
            b"5.3.4 Message size exceeds fixed maximum message size",
        )
        assert smtp.noop()[0] == 250  # the session goes on


def test_implicit_tls_port(sandbox: Sandbox) -> None:
    assert sandbox.tls_port is not None
    context = ca_context(sandbox)
    with smtplib.SMTP_SSL("localhost", sandbox.tls_port, context=context, timeout=TIMEOUT) as smtp:
        assert smtp.ehlo("client.example")[0] == 250
        assert "auth" in smtp.esmtp_features
        assert "starttls" not in smtp.esmtp_features
        assert smtp.login("bob", DEFAULT_USERS["bob"]) == (235, b"2.7.0 Authentication successful")
        assert smtp.docmd("STARTTLS") == (554, b"5.5.1 Error: TLS already active")


def test_implicit_tls_banner(sandbox: Sandbox) -> None:
    assert sandbox.tls_port is not None
    with (
        socket.create_connection((sandbox.host, sandbox.tls_port), timeout=TIMEOUT) as raw,
        ca_context(sandbox).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}
        assert tls.makefile("rb").readline() == b"220 sandbox.test ESMTP smtpscript sandbox\r\n"


@pytest.mark.parametrize("name", ["localhost", "sandbox.test", "127.0.0.1"])
def test_cert_path_works_as_ca_file(sandbox: Sandbox, name: str) -> None:
    context = ca_context(sandbox)
    context.verify_flags |= ssl.VERIFY_X509_STRICT  # the default from Python 3.13 on
    with client(sandbox) as smtp:
        smtp._host = name
        smtp.ehlo("client.example")
        smtp.starttls(context=context)
        assert smtp.sock is not None
        cert = smtp.sock.getpeercert()  # type: ignore[attr-defined]
    assert cert["subject"] == ((("commonName", "sandbox.test"),),)
    names = {(kind, _normal(value)) for kind, value in cert["subjectAltName"]}
    assert names == {
        ("DNS", "sandbox.test"),
        ("DNS", "localhost"),
        ("IP Address", "127.0.0.1"),
        ("IP Address", "::1"),
    }
    lifetime = ssl.cert_time_to_seconds(cert["notAfter"]) - ssl.cert_time_to_seconds(
        cert["notBefore"]
    )
    assert 89 * 86400 < lifetime <= 91 * 86400


def test_open_relay_accepts_any_domain(small: Sandbox) -> None:
    with client(small) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("outsider@example.org")
        assert smtp.rcpt("victim@example.net") == (250, b"2.1.5 Recipient OK")
        assert smtp.rcpt("nobody@sandbox.test")[0] == 550  # local users still checked


def test_maildir_delivery(small: Sandbox) -> None:
    body = b"Subject: maildir\r\n\r\n.dot\r\n"
    with client(small) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("a@example.org")
        for rcpt in ("alice@sandbox.test", "ALICE@sandbox.test", "bob@sandbox.test", "x@y.test"):
            smtp.rcpt(rcpt)
        code, reply = smtp.data(body)
    assert code == 250
    maildir = small.config.maildir
    assert maildir is not None
    ident = queue_id(reply)
    for box in ("alice", "bob"):
        [file] = [f for f in (maildir / box / "new").iterdir() if ident in f.name]
        assert file.read_bytes() == body
        assert (maildir / box / "cur").is_dir()
        assert not list((maildir / box / "tmp").iterdir())
    assert not (maildir / "x").exists()


def test_start_stop_twice() -> None:
    server = Sandbox()
    for _ in range(2):
        server.start()
        cert = server.cert_path
        assert cert is not None and cert.exists()
        with client(server) as smtp:
            assert smtp.noop()[0] == 250
        port = server.port
        server.stop()
        server.stop()  # idempotent
        assert not cert.parent.exists()
        with pytest.raises(OSError):
            socket.create_connection((server.host, port), timeout=TIMEOUT).close()
    with Sandbox() as other, client(other) as smtp:
        assert smtp.noop()[0] == 250


def test_stop_closes_open_connections() -> None:
    server = Sandbox().start()
    with secure_client(server) as smtp:
        server.stop()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            smtp.noop()


def test_start_twice_is_an_error(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match="already started"):
        sandbox.start()


def test_port_in_use_is_a_clear_error(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match="cannot listen"):
        Sandbox(SandboxConfig(port=sandbox.port, tls=False)).start()


def test_without_tls_no_starttls_and_no_auth() -> None:
    with Sandbox(SandboxConfig(tls=False)) as server, client(server) as smtp:
        assert server.cert_path is None
        smtp.ehlo("client.example")
        assert "starttls" not in smtp.esmtp_features
        assert "auth" not in smtp.esmtp_features
        assert smtp.docmd("AUTH PLAIN")[0] == 503


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with Sandbox(SandboxConfig(host="::1", tls_port=0)) as server:
        with secure_client(server) as smtp:
            smtp.login("alice", DEFAULT_USERS["alice"])
        with smtplib.SMTP_SSL("::1", server.tls_port, context=ca_context(server)) as smtp:
            assert smtp.ehlo("client.example")[0] == 250


def test_serve_forever_stops_on_keyboard_interrupt() -> None:
    seen: list[Sandbox] = []

    def on_ready(server: Sandbox) -> None:
        seen.append(server)
        with client(server) as smtp:
            assert smtp.ehlo("client.example")[0] == 250
        raise KeyboardInterrupt  # what Ctrl-C does in the foreground

    serve_forever(SandboxConfig(), on_ready)
    [server] = seen
    assert server.cert_path is None  # stopped: temp dir gone
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=TIMEOUT).close()


def test_auth_plain_with_initial_response(sandbox: Sandbox) -> None:
    token = base64.b64encode(b"\0bob\0" + DEFAULT_USERS["bob"].encode()).decode()
    with secure_client(sandbox) as smtp:
        assert smtp.docmd("AUTH", f"PLAIN {token}")[0] == 235
        assert smtp.docmd("AUTH", f"PLAIN {token}")[0] == 503


def test_failed_client_handshake_leaves_server_serving(sandbox: Sandbox) -> None:
    with client(sandbox) as smtp:
        smtp.ehlo("client.example")
        with pytest.raises(ssl.SSLCertVerificationError):
            smtp.starttls(context=ssl.create_default_context())  # does not trust cert_path
    with secure_client(sandbox) as smtp:
        assert smtp.noop() == (250, b"2.0.0 Ok")
