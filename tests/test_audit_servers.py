"""The audit servers themselves, byte by byte: are they configured as the audit expects?

The audit library (scenarios/, issue 11) is verified against three private loopback MTAs
(see tests/audit_servers.py): a hardened Postfix, a deliberately weak Postfix and an Exim 4.
These tests use raw sockets only (no smtpscript), so a failure here means the test server is
not what the scenario tests assume, not that smtpscript is wrong. Every expected reply below
was observed against Postfix 3.7.11 (Debian 12) and Exim 4.96 (Debian 4.96-15+deb12u11);
the comments say where a reply is not the obvious one.
"""

from __future__ import annotations

import base64
import re
import ssl
import subprocess
import uuid
import warnings

import pytest
from audit_servers import AuditServer, ConnectionClosed, RawSmtp, Reply, require_audit_server

OUTSIDE = "outside.example"  # a domain none of the servers is responsible for
SENDER = "<sender@example.org>"

# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def hardened() -> AuditServer:
    return require_audit_server("postfix-hardened")


@pytest.fixture(scope="module")
def weak() -> AuditServer:
    return require_audit_server("postfix-weak")


@pytest.fixture(scope="module")
def exim() -> AuditServer:
    return require_audit_server("exim")


postfix = pytest.mark.postfix  # registered in pyproject.toml; Exim has no marker of its own


# ---------------------------------------------------------------------- helpers


def session(server: AuditServer, ehlo: bool = True) -> RawSmtp:
    """A connection that has read the 220 banner (and sent EHLO unless ehlo=False)."""
    client = RawSmtp(server.host, server.port)
    banner = client.reply()
    assert banner.code == 220, banner
    if ehlo:
        reply = client.command("EHLO client.example")
        assert reply.code == 250, reply
    return client


def keywords(ehlo: Reply) -> dict[str, str]:
    """EHLO keywords (upper case) -> their parameters, from a 250 EHLO reply."""
    found = {}
    for line in ehlo.lines[1:]:
        name, _, params = line.partition(" ")
        found[name.upper()] = params
    return found


def auth_plain(user: str, password: str) -> str:
    return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def expect(reply: Reply, code: int, text: str | None = None) -> None:
    assert reply.code == code, f"expected {code}, got:\n{reply}"
    if text is not None:
        assert text in reply.text, f"expected {text!r} in:\n{reply}"


# ====================================================================== banners and EHLO


@postfix
def test_hardened_banner_names_no_software(hardened):
    with RawSmtp(hardened.host, hardened.port) as client:
        banner = client.reply()
    assert str(banner) == "220 mx.hardened.test ESMTP"


@postfix
def test_weak_banner_discloses_the_version(weak):
    with RawSmtp(weak.host, weak.port) as client:
        banner = client.reply()
    assert str(banner) == f"220 mx.weak.test ESMTP Postfix {weak.version}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", weak.version)


def test_exim_banner_discloses_the_version(exim):
    with RawSmtp(exim.host, exim.port) as client:
        banner = client.reply()
    # Exim's default smtp_banner: name, "ESMTP Exim", version, date.
    assert banner.code == 220
    assert banner.text.startswith(f"mx.exim.test ESMTP Exim {exim.version} "), banner


@postfix
def test_hardened_ehlo_before_tls_offers_starttls_but_no_auth_and_no_vrfy(hardened):
    with session(hardened, ehlo=False) as client:
        ehlo = keywords(client.command("EHLO client.example"))
        assert "STARTTLS" in ehlo
        assert "AUTH" not in ehlo
        assert "VRFY" not in ehlo  # disable_vrfy_command also drops the keyword
        assert "EXPN" not in ehlo
        assert ehlo["SIZE"] == "10485760"
        # AUTH anyway, in the clear: refused as if AUTH did not exist here.
        expect(
            client.command(auth_plain(hardened.user, hardened.password)),
            503,
            "5.5.1 Error: authentication not enabled",
        )


@postfix
def test_weak_ehlo_offers_auth_in_the_clear_vrfy_and_no_starttls(weak):
    with session(weak, ehlo=False) as client:
        ehlo = keywords(client.command("EHLO client.example"))
        assert "STARTTLS" not in ehlo
        assert ehlo["AUTH"].split() == ["PLAIN", "LOGIN"]
        assert "VRFY" in ehlo
        assert ehlo["SIZE"] == ""  # message_size_limit = 0: SIZE without a number, no limit
        expect(client.command("STARTTLS"), 502, "5.5.1 Error: command not implemented")


def test_exim_ehlo_offers_starttls_no_auth(exim):
    with session(exim, ehlo=False) as client:
        ehlo = keywords(client.command("EHLO client.example"))
        assert "STARTTLS" in ehlo
        assert "AUTH" not in ehlo
        assert "VRFY" not in ehlo  # Exim never advertises VRFY or EXPN
        # Exim 4.96 advertises PIPECONNECT (early pipelining, see the early-talker test).
        assert "PIPECONNECT" in ehlo


# ====================================================================== relay

# An outsider's relay attempts: (MAIL FROM, RCPT TO). IP is the server's address literal,
# ME its host name. The classic battery of the network scanners (issue 11).
RELAY_BATTERY = [
    (SENDER, f"<user@{OUTSIDE}>"),
    ("<>", f"<user@{OUTSIDE}>"),
    ("<postmaster@ME>", f"<user@{OUTSIDE}>"),
    ("<postmaster@[IP]>", f"<user@{OUTSIDE}>"),
    (SENDER, f"<user%{OUTSIDE}@[IP]>"),
    (SENDER, f'<"user@{OUTSIDE}">'),
    (SENDER, f'<"user%{OUTSIDE}">'),
    (SENDER, f"<user@{OUTSIDE}@[IP]>"),
    (SENDER, f'<"user@{OUTSIDE}"@[IP]>'),
    (SENDER, f"<@[IP]:user@{OUTSIDE}>"),
    (SENDER, f"<@ME:user@{OUTSIDE}>"),
    (SENDER, f"<{OUTSIDE}!user>"),
    (SENDER, f"<{OUTSIDE}!user@[IP]>"),
]
BATTERY_IDS = [f"{mail}->{rcpt}" for mail, rcpt in RELAY_BATTERY]


def try_relay(server: AuditServer, mail: str, rcpt: str) -> tuple[Reply, Reply | None]:
    """One relay attempt in its own session: (reply to MAIL, reply to RCPT or None)."""
    mail = mail.replace("ME", server.hostname).replace("IP", server.host)
    rcpt = rcpt.replace("ME", server.hostname).replace("IP", server.host)
    with session(server) as client:
        mail_reply = client.command(f"MAIL FROM:{mail}")
        if mail_reply.code != 250:
            return mail_reply, None
        return mail_reply, client.command(f"RCPT TO:{rcpt}")


@postfix
@pytest.mark.parametrize(("mail", "rcpt"), RELAY_BATTERY, ids=BATTERY_IDS)
def test_hardened_refuses_every_relay_variant(hardened, mail, rcpt):
    mail_reply, rcpt_reply = try_relay(hardened, mail, rcpt)
    expect(mail_reply, 250)
    # Always "554 5.7.1 <...>: Relay access denied" (relay_domains_reject_code = 554). Postfix
    # shows the address as it resolved it: the quotes go, the source route goes
    # (<@[IP]:user@outside> -> <user@outside>), the % and ! forms stay as sent.
    assert rcpt_reply is not None
    expect(rcpt_reply, 554, "5.7.1")
    assert rcpt_reply.text.endswith(": Relay access denied"), rcpt_reply


@postfix
@pytest.mark.parametrize(("mail", "rcpt"), RELAY_BATTERY, ids=BATTERY_IDS)
def test_weak_accepts_every_relay_variant(weak, mail, rcpt):
    # Loopback is in mynetworks: every variant is "250 2.1.5 Ok". (Only <user%outside@weak.test>
    # and <user%outside@mx.weak.test>, not in the battery, are refused: the percent hack is not
    # applied there and the user does not exist: 550 5.1.1.)
    mail_reply, rcpt_reply = try_relay(weak, mail, rcpt)
    expect(mail_reply, 250)
    assert rcpt_reply is not None
    expect(rcpt_reply, 250, "2.1.5 Ok")


# Exim refuses each variant, but not always with "550 relay not permitted": most of the
# odd forms are syntax errors to it (501), and so is a sender at an address literal (Exim's
# allow_domain_literals is false by default).
EXIM_BATTERY_REPLIES = {
    (SENDER, f"<user@{OUTSIDE}>"): ("RCPT", 550, "relay not permitted"),
    ("<>", f"<user@{OUTSIDE}>"): ("RCPT", 550, "relay not permitted"),
    ("<postmaster@ME>", f"<user@{OUTSIDE}>"): ("RCPT", 550, "relay not permitted"),
    ("<postmaster@[IP]>", f"<user@{OUTSIDE}>"): ("MAIL", 501, "domain literals not allowed"),
    (SENDER, f"<user%{OUTSIDE}@[IP]>"): ("RCPT", 501, "domain literals not allowed"),
    (SENDER, f'<"user@{OUTSIDE}">'): ("RCPT", 501, "recipient address must contain a domain"),
    (SENDER, f'<"user%{OUTSIDE}">'): ("RCPT", 501, "recipient address must contain a domain"),
    (SENDER, f"<user@{OUTSIDE}@[IP]>"): ("RCPT", 501, "malformed address"),
    (SENDER, f'<"user@{OUTSIDE}"@[IP]>'): ("RCPT", 501, "domain literals not allowed"),
    (SENDER, f"<@[IP]:user@{OUTSIDE}>"): ("RCPT", 501, "domain literals not allowed"),
    # The source route is dropped (RFC 5321 says to ignore it): plain relay refusal.
    (SENDER, f"<@ME:user@{OUTSIDE}>"): ("RCPT", 550, "relay not permitted"),
    (SENDER, f"<{OUTSIDE}!user>"): ("RCPT", 501, "recipient address must contain a domain"),
    (SENDER, f"<{OUTSIDE}!user@[IP]>"): ("RCPT", 501, "domain literals not allowed"),
}


@pytest.mark.parametrize(("mail", "rcpt"), RELAY_BATTERY, ids=BATTERY_IDS)
def test_exim_refuses_every_relay_variant(exim, mail, rcpt):
    where, code, text = EXIM_BATTERY_REPLIES[(mail, rcpt)]
    mail_reply, rcpt_reply = try_relay(exim, mail, rcpt)
    if where == "MAIL":
        expect(mail_reply, code, text)
        assert rcpt_reply is None
    else:
        expect(mail_reply, 250)
        assert rcpt_reply is not None
        expect(rcpt_reply, code, text)


@postfix
def test_weak_relays_and_the_message_is_discarded(weak):
    """An accepted relay goes to the discard transport: nothing leaves the machine."""
    start = weak.log_size()
    with session(weak) as client:
        expect(client.command(f"MAIL FROM:{SENDER}"), 250)
        expect(client.command(f"RCPT TO:<user@{OUTSIDE}>"), 250)
        expect(client.command("DATA"), 354)
        done = client.command(b"Subject: relay test\r\n\r\nrelayed\r\n.")
        expect(done, 250, "queued as ")
    queue_id = done.text.rsplit(" ", 1)[-1]
    weak.wait_for_log(
        rf"/discard\[\d+\]: {queue_id}: to=<user@{re.escape(OUTSIDE)}>, relay=none, .*"
        r"status=sent \(smtpscript-test-no-outbound-mail\)",
        start=start,
    )


@postfix
def test_hardened_relays_after_auth_over_tls_and_discards(hardened):
    start = hardened.log_size()
    with session(hardened) as client:
        expect(client.starttls(hardened.tls_context(), hardened.hostname), 220)
        ehlo = keywords(client.command("EHLO client.example"))
        assert ehlo["AUTH"].split() == ["PLAIN", "LOGIN"]
        expect(
            client.command(auth_plain(hardened.user, hardened.password + "x")),
            535,
            "5.7.8 Error: authentication failed",
        )
        expect(
            client.command(auth_plain(hardened.user, hardened.password)),
            235,
            "2.7.0 Authentication successful",
        )
        expect(client.command(f"MAIL FROM:<{hardened.user}>"), 250)
        expect(client.command(f"RCPT TO:<user@{OUTSIDE}>"), 250)
        expect(client.command("DATA"), 354)
        done = client.command(b"Subject: relay after auth\r\n\r\nrelayed\r\n.")
        expect(done, 250, "queued as ")
    queue_id = done.text.rsplit(" ", 1)[-1]
    hardened.wait_for_log(
        rf"/discard\[\d+\]: {queue_id}: to=<user@{re.escape(OUTSIDE)}>, relay=none, .*"
        r"status=sent \(smtpscript-test-no-outbound-mail\)",
        start=start,
    )


@postfix
@pytest.mark.parametrize("name", ["postfix-hardened", "postfix-weak"])
def test_postfix_instances_have_no_way_out(name):
    """Configuration check: outside mail can only go to discard; there is no SMTP client."""
    server = require_audit_server(name)
    conf = str(server.statedir / "config")
    values = subprocess.run(
        ["postconf", "-c", conf, "-h", "default_transport", "relay_transport"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert values == ["discard:smtpscript-test-no-outbound-mail"] * 2
    services = subprocess.run(
        ["postconf", "-c", conf, "-M"], capture_output=True, text=True, check=True
    ).stdout
    commands = {line.split()[7] for line in services.splitlines() if line.strip()}
    assert not commands & {"smtp", "lmtp", "local", "pipe"}, commands


# ====================================================================== recipients


@postfix
def test_hardened_postmaster_in_every_form_and_unknown_user(hardened):
    with session(hardened) as client:
        expect(client.command("MAIL FROM:<>"), 250)  # the null sender (bounces)
        for rcpt in (
            "<postmaster>",
            "<postmaster@hardened.test>",
            "<postmaster@mx.hardened.test>",
            "<postmaster@[127.0.0.1]>",
            "<alice@hardened.test>",
        ):
            expect(client.command(f"RCPT TO:{rcpt}"), 250, "2.1.5 Ok")
        expect(
            client.command("RCPT TO:<nobody@hardened.test>"),
            550,
            "5.1.1 <nobody@hardened.test>: Recipient address rejected:"
            " User unknown in virtual mailbox table",
        )
        # Surprise: an unknown user at the address literal is refused with the text of the
        # error: local transport (local delivery is off), not "User unknown".
        expect(
            client.command("RCPT TO:<nobody@[127.0.0.1]>"),
            550,
            "5.1.1 <nobody@[127.0.0.1]>: Recipient address rejected: local delivery is disabled",
        )


def test_exim_postmaster_and_unknown_user(exim):
    with session(exim) as client:
        expect(client.command("MAIL FROM:<>"), 250)
        for rcpt in ("<postmaster>", "<postmaster@exim.test>", "<postmaster@mx.exim.test>"):
            expect(client.command(f"RCPT TO:{rcpt}"), 250, "Accepted")
        expect(client.command("RCPT TO:<nobody@exim.test>"), 550, "Unrouteable address")
        expect(
            client.command("RCPT TO:<postmaster@[127.0.0.1]>"), 501, "domain literals not allowed"
        )


def test_exim_discards_what_it_accepts(exim):
    start = exim.log_size()
    marker = uuid.uuid4().hex
    with session(exim) as client:
        expect(client.command(f"MAIL FROM:{SENDER}"), 250)
        expect(client.command("RCPT TO:<alice@exim.test>"), 250)
        expect(client.command("DATA"), 354)
        done = client.command(f"Subject: {marker}\r\n\r\nbody\r\n.".encode())
        expect(done, 250, "OK id=")
    message_id = done.text.removeprefix("OK id=")
    exim.wait_for_log(
        rf"{re.escape(message_id)} => blackhole \(DATA ACL discarded recipients\)", start=start
    )


# ====================================================================== VRFY / EXPN


@postfix
def test_hardened_vrfy_disabled_and_no_expn(hardened):
    with session(hardened) as client:
        for arg in ("alice@hardened.test", "nobody@hardened.test", "postmaster"):
            expect(client.command(f"VRFY {arg}"), 502, "5.5.1 VRFY command is disabled")
        # Postfix has no EXPN at all: 500 (not 502) "command not recognized".
        expect(client.command("EXPN postmaster"), 500, "5.5.2 Error: command not recognized")


@postfix
def test_weak_vrfy_tells_users_apart(weak):
    with session(weak) as client:
        # Postfix never answers 250 to VRFY: a known user gets 252 (the address, as if
        # non-committal), an unknown one 550 -- the difference enumerates users anyway.
        expect(client.command("VRFY alice@weak.test"), 252, "2.0.0 alice@weak.test")
        expect(
            client.command("VRFY nobody@weak.test"),
            550,
            "5.1.1 <nobody@weak.test>: Recipient address rejected:"
            " User unknown in virtual mailbox table",
        )
        expect(client.command("EXPN postmaster"), 500, "5.5.2 Error: command not recognized")


def test_exim_vrfy_non_committal_and_expn_refused(exim):
    with session(exim) as client:
        # No acl_smtp_vrfy: Exim answers every VRFY "252 Administrative prohibition" (a
        # non-committal 252, the same for known and unknown users); an unqualified address
        # is a syntax error first. No acl_smtp_expn: "550 Administrative prohibition".
        for arg in ("alice@exim.test", "nobody@exim.test"):
            expect(client.command(f"VRFY {arg}"), 252, "Administrative prohibition")
        expect(client.command("VRFY alice"), 501, "recipient address must contain a domain")
        expect(client.command("EXPN postmaster@exim.test"), 550, "Administrative prohibition")


# ====================================================================== AUTH and TLS


@postfix
def test_weak_accepts_plain_auth_in_the_clear(weak):
    with session(weak) as client:
        expect(client.command(auth_plain(weak.user, weak.password + "x")), 535, "5.7.8")
        expect(client.command(auth_plain(weak.user, weak.password)), 235, "2.7.0")


@postfix
def test_hardened_starttls_verifies_and_negotiates_tls12_or_later(hardened):
    with session(hardened) as client:
        expect(
            client.starttls(hardened.tls_context(), hardened.hostname), 220, "Ready to start TLS"
        )
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        cert = client.sock.getpeercert()
        assert ("DNS", "mx.hardened.test") in cert["subjectAltName"]
        expect(client.command("EHLO client.example"), 250)


@postfix
def test_hardened_smtps_port(hardened):
    assert hardened.smtps_port is not None
    context = hardened.tls_context()
    client = RawSmtp(hardened.host, hardened.smtps_port)
    client.sock = context.wrap_socket(client.sock, server_hostname=hardened.hostname)
    with client:
        expect(client.reply(), 220, "mx.hardened.test ESMTP")
        ehlo = keywords(client.command("EHLO client.example"))
        assert "AUTH" in ehlo
        assert "STARTTLS" not in ehlo


def test_exim_starttls_verifies(exim):
    with session(exim) as client:
        expect(client.starttls(exim.tls_context(), exim.hostname), 220, "TLS go ahead")
        assert ("DNS", "mx.exim.test") in client.sock.getpeercert()["subjectAltName"]


def _old_tls_context(server: AuditServer, version: str) -> ssl.SSLContext:
    """A client context that offers only TLS 1.0 or 1.1 (if this OpenSSL still can)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(server.ca_file)
        try:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            tls_version = getattr(ssl.TLSVersion, version)
            context.minimum_version = tls_version
            context.maximum_version = tls_version
        except (ssl.SSLError, ValueError) as exc:
            pytest.skip(f"this OpenSSL cannot offer {version}: {exc}")
    return context


def _handshake_old_tls(server: AuditServer, version: str) -> str | ssl.SSLError:
    """STARTTLS offering only ``version``: the negotiated version, or the SSLError."""
    context = _old_tls_context(server, version)
    with session(server) as client:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                client.starttls(context, server.hostname)
        except ssl.SSLError as exc:
            return exc
        return str(client.sock.version())


@postfix
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_hardened_refuses_tls_1_0_and_1_1(hardened, version):
    outcome = _handshake_old_tls(hardened, version)
    assert isinstance(outcome, ssl.SSLError), f"negotiated {outcome}"
    if "ALERT_PROTOCOL_VERSION" not in str(outcome):
        pytest.skip(f"the client failed by itself, the server was not asked: {outcome}")


@pytest.mark.parametrize(("version", "negotiated"), [("TLSv1", "TLSv1"), ("TLSv1_1", "TLSv1.1")])
def test_exim_accepts_tls_1_0_and_1_1(exim, version, negotiated):
    # Observed: Exim 4.96 with Debian 12's GnuTLS defaults still negotiates TLS 1.0 and 1.1
    # (tls_require_ciphers unset), so the audit's "old TLS refused" check fails on this Exim.
    outcome = _handshake_old_tls(exim, version)
    if isinstance(outcome, ssl.SSLError) and "ALERT" not in str(outcome):
        pytest.skip(f"the client failed by itself, the server was not asked: {outcome}")
    assert outcome == negotiated


# ====================================================================== RFC hygiene


@postfix
def test_hardened_requires_helo_weak_does_not(hardened, weak):
    with session(hardened, ehlo=False) as client:
        expect(client.command(f"MAIL FROM:{SENDER}"), 503, "5.5.1 Error: send HELO/EHLO first")
    with session(weak, ehlo=False) as client:
        expect(client.command(f"MAIL FROM:{SENDER}"), 250)


def test_exim_requires_helo(exim):
    # Exim 4.96 refuses MAIL before HELO/EHLO out of the box (no option set for it).
    with session(exim, ehlo=False) as client:
        expect(client.command(f"MAIL FROM:{SENDER}"), 503, "HELO or EHLO required")


@postfix
def test_hardened_drops_an_early_talker(hardened):
    """EHLO before the banner: smtpd_forbid_unauth_pipelining = yes hangs up.

    Whether the EHLO really comes first is a race with smtpd writing its banner (on a
    busy machine the banner sometimes wins, and then the EHLO is an ordinary command):
    try until the EHLO arrives first, and judge that session.
    """
    for _ in range(20):
        with RawSmtp(hardened.host, hardened.port) as client:
            client.send(b"EHLO early.example\r\n")
            first = client.reply()
            if first.code == 220:  # the banner was out before our EHLO: no early talk
                expect(client.reply(), 250)
                continue
            expect(first, 554, "5.5.0 Error: SMTP protocol synchronization")
            assert client.closed()
            return
    pytest.fail("in 20 sessions the banner always came before the EHLO")


@postfix
def test_hardened_drops_pipelining_after_helo(hardened):
    """Commands pipelined after HELO (PIPELINING is an EHLO extension) end the session."""
    with session(hardened, ehlo=False) as client:
        expect(client.command("HELO client.example"), 250)
        client.send(f"MAIL FROM:{SENDER}\r\nRCPT TO:<postmaster>\r\nRSET\r\n".encode())
        expect(client.reply(), 554, "5.5.0 Error: SMTP protocol synchronization")
        assert client.closed()


@postfix
def test_weak_tolerates_an_early_talker(weak):
    with RawSmtp(weak.host, weak.port) as client:
        client.send(b"EHLO early.example\r\n")
        expect(client.reply(), 220)
        expect(client.reply(), 250)
        expect(client.command(f"MAIL FROM:{SENDER}"), 250)


def test_exim_early_talker_and_pipelining_after_helo(exim):
    # Surprise: Exim 4.96 does NOT reject an EHLO sent before its banner: it advertises
    # PIPECONNECT (pipelining_connect_advertise_hosts defaults to *), which allows exactly
    # that. Commands pipelined after HELO, though, get "554 SMTP synchronization error".
    with RawSmtp(exim.host, exim.port) as client:
        client.send(b"EHLO early.example\r\n")
        expect(client.reply(), 220)
        expect(client.reply(), 250)
    with session(exim, ehlo=False) as client:
        expect(client.command("HELO client.example"), 250)
        client.send(f"MAIL FROM:{SENDER}\r\nRCPT TO:<postmaster>\r\nRSET\r\n".encode())
        # The first pipelined command is still answered; the sync check catches the rest.
        expect(client.reply(), 250)
        expect(client.reply(), 554, "SMTP synchronization error")
        assert client.closed()


@postfix
def test_size_limits(hardened, weak):
    with session(hardened) as client:
        expect(
            client.command(f"MAIL FROM:{SENDER} SIZE=20000000"),
            552,
            "5.3.4 Message size exceeds fixed limit",
        )
    with session(weak) as client:
        expect(client.command(f"MAIL FROM:{SENDER} SIZE=20000000000"), 250)


def test_exim_size_limit(exim):
    # Exim's default message_size_limit: 50 MB (EHLO "SIZE 52428800").
    with session(exim) as client:
        expect(
            client.command(f"MAIL FROM:{SENDER} SIZE=60000000"),
            552,
            "Message size exceeds maximum permitted",
        )


# ====================================================================== SMTP smuggling

# Non-standard end-of-data sequences (issue 11), sent inside DATA and followed by a second,
# smuggled transaction, then a proper <CR><LF>.<CR><LF>.
SMUGGLING = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
    "CRLF.LF": b"\r\n.\n",
    "LF.CR": b"\n.\r",
    "CR.LF": b"\r.\n",
    "CR.CR": b"\r.\r",
    "CRLF-NUL.CRLF": b"\r\n\x00.\r\n",
}
# Observed on the weak Postfix (smtpd_forbid_bare_newline = no): every sequence in which the
# dot line is ended by, or follows, a bare <LF> ends DATA early -- Postfix takes a bare LF
# as the end of a line. Bare <CR> is just data to it, and so is the NUL variant.
WEAK_VULNERABLE = {"LF.LF", "LF.CRLF", "CRLF.LF"}
SENTINEL = b"XSENTINEL"  # an unknown command: its 500 reply marks the end of the replies


def smuggle(server: AuditServer, sequence: bytes, marker: str) -> list[Reply]:
    """Every reply after DATA's 354 up to the sentinel's 500 (not included)."""
    rcpt = f"RCPT TO:<alice@{server.domain}>"
    with session(server) as client:
        expect(client.command(f"MAIL FROM:{SENDER}"), 250)
        expect(client.command(rcpt), 250)
        expect(client.command("DATA"), 354)
        client.send(
            f"Subject: first {marker}\r\n\r\nfirst body".encode()
            + sequence
            + f"MAIL FROM:<smuggled@example.org>\r\n{rcpt}\r\nDATA\r\n".encode()
            + f"Subject: smuggled {marker}\r\n\r\nsmuggled body\r\n.\r\n".encode()
            + SENTINEL
            + b"\r\n"
        )
        replies = []
        while True:
            reply = client.reply()
            if reply.code == 500:
                return replies
            replies.append(reply)
            assert len(replies) < 10, replies


SMUGGLED_REPLY_CODES = [250, 250, 250, 354, 250]  # end of DATA, MAIL, RCPT, DATA, end of DATA


@postfix
@pytest.mark.parametrize("name", list(SMUGGLING))
def test_weak_postfix_smuggling(weak, name):
    replies = smuggle(weak, SMUGGLING[name], uuid.uuid4().hex)
    codes = [reply.code for reply in replies]
    if name in WEAK_VULNERABLE:
        # The smuggled MAIL FROM is answered (250 2.1.0 Ok) before the real end of data.
        assert codes == SMUGGLED_REPLY_CODES, replies
        assert replies[1].text == "2.1.0 Ok"
    else:
        assert codes == [250], replies


@postfix
@pytest.mark.parametrize("name", list(SMUGGLING))
def test_hardened_postfix_smuggling(hardened, name):
    # smtpd_forbid_bare_newline = normalize: only <CR><LF>.<CR><LF> ends DATA, so every
    # variant is one message and a single "250 2.0.0 Ok: queued as ...".
    replies = smuggle(hardened, SMUGGLING[name], uuid.uuid4().hex)
    assert [reply.code for reply in replies] == [250], replies
    expect(replies[0], 250, "2.0.0 Ok: queued as")


@pytest.mark.parametrize("name", list(SMUGGLING))
def test_exim_smuggling(exim, name):
    # Debian's 4.96-15+deb12u* carries the CVE-2023-51766 fix: no variant ends DATA early.
    replies = smuggle(exim, SMUGGLING[name], uuid.uuid4().hex)
    assert [reply.code for reply in replies] == [250], replies


@postfix
def test_smuggling_outcome_in_the_mailboxes(hardened, weak):
    """LF.CRLF: one message on hardened (the smuggled lines are body), two on weak."""
    marker = uuid.uuid4().hex
    smuggle(hardened, SMUGGLING["LF.CRLF"], marker)
    smuggle(weak, SMUGGLING["LF.CRLF"], marker)

    one = hardened.wait_for_message(f"first {marker}".encode())
    assert b"MAIL FROM:<smuggled@example.org>" in one
    assert f"Subject: smuggled {marker}".encode() in one  # inside the first message's body
    assert len(hardened.messages_containing(marker.encode())) == 1

    weak.wait_for_message(f"Subject: first {marker}".encode())
    second = weak.wait_for_message(f"Subject: smuggled {marker}".encode())
    assert b"smuggled@example.org" in second  # the smuggled envelope sender (Return-Path)
    first = weak.messages_containing(f"Subject: first {marker}".encode())
    assert len(first) == 1
    assert b"MAIL FROM" not in first[0]


# ====================================================================== hanging up


def test_exim_hangs_up_after_the_fourth_unknown_command(exim):
    # smtp_max_unknown_commands = 3 (default): the 4th unknown command gets
    # "500 Too many unrecognized commands" and the connection is closed.
    with session(exim) as client:
        for _ in range(3):
            expect(client.command("XFOO"), 500, "unrecognized command")
        expect(client.command("XFOO"), 500, "Too many unrecognized commands")
        assert client.closed()


def test_exim_hangs_up_after_the_fourth_syntax_or_protocol_error(exim):
    # smtp_max_synprot_errors = 3 (default): the 4th error's reply carries a second line
    # "Too many syntax or protocol errors", then the connection is closed.
    with session(exim) as client:
        for _ in range(3):
            expect(client.command("MAIL FROM:<a b>"), 501)
        last = client.command("MAIL FROM:<a b>")
        expect(last, 501, "Too many syntax or protocol errors")
        assert len(last.lines) == 2
        assert client.closed()
    with session(exim) as client:  # DATA without a recipient counts too (503)
        for _ in range(3):
            expect(client.command("DATA"), 503, "RCPT command must precede DATA")
        expect(client.command("DATA"), 503, "Too many syntax or protocol errors")
        assert client.closed()


def test_exim_hangs_up_after_too_many_nonmail_commands_not_after_refusals(exim):
    # Observed: refused relay attempts (550 at RCPT) are not counted by themselves, nor are
    # the 501s that odd recipient forms get (3 of them, then 2 DATA errors: still open).
    # What ends a relay battery run in ONE session is smtp_accept_max_nonmail = 10: RSET is
    # a "non-mail" command and MAIL does not reset the count, so after 11 MAIL/RCPT/RSET
    # rounds the 12th RSET gets "554 Too many nonmail commands" and the connection is
    # closed. (With NOOP, VRFY or HELP it is the 11th after EHLO.)
    with session(exim) as client:
        for _ in range(11):
            expect(client.command(f"MAIL FROM:{SENDER}"), 250)
            expect(client.command(f"RCPT TO:<user@{OUTSIDE}>"), 550, "relay not permitted")
            expect(client.command("RSET"), 250)
        expect(client.command(f"MAIL FROM:{SENDER}"), 250)
        expect(client.command(f"RCPT TO:<user@{OUTSIDE}>"), 550, "relay not permitted")
        expect(client.command("RSET"), 554, "Too many nonmail commands")
        assert client.closed()
    with session(exim) as client:
        expect(client.command(f"MAIL FROM:{SENDER}"), 250)
        for rcpt in (f'<"user@{OUTSIDE}">', f"<{OUTSIDE}!user>", f"<@[127.0.0.1]:user@{OUTSIDE}>"):
            expect(client.command(f"RCPT TO:{rcpt}"), 501)
        expect(client.command("DATA"), 503)
        expect(client.command("DATA"), 503)
        expect(client.command("NOOP"), 250)
    with session(exim) as client:
        for _ in range(10):
            expect(client.command("NOOP"), 250)
        expect(client.command("NOOP"), 554, "Too many nonmail commands")
        assert client.closed()


@postfix
def test_hardened_postfix_error_limits(hardened):
    # smtpd_soft_error_limit = 10, smtpd_error_sleep_time = 1s, smtpd_hard_error_limit = 20
    # (Postfix defaults): from the 11th rejected command on, each reply comes 1 s late; the
    # 21st command gets "421 4.7.0 mx.hardened.test Error: too many errors" and the
    # connection is closed. A relay battery run in one session takes >10 s and ends there.
    with session(hardened) as client:
        expect(client.command(f"MAIL FROM:{SENDER}"), 250)
        for number in range(1, 21):
            expect(client.command(f"RCPT TO:<user{number}@{OUTSIDE}>"), 554, "Relay access denied")
        expect(
            client.command(f"RCPT TO:<user21@{OUTSIDE}>"),
            421,
            "4.7.0 mx.hardened.test Error: too many errors",
        )
        assert client.closed()


def test_raw_client_reports_a_closed_connection(exim):
    with session(exim) as client:
        client.send(b"QUIT\r\n")
        expect(client.reply(), 221)
        with pytest.raises(ConnectionClosed):
            client.reply()
