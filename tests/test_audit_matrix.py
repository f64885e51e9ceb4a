"""The whole audit library (scenarios/) against three real MTAs and the sandbox: the verdict
of every check on every server, in one table (MATRIX below).

Each column is one call of the library API per module (tests/audit_helpers.py), as
``smtpscript run scenarios/ -t SERVER -j 4 --var ...`` would run it:

- hardened: the hardened Postfix 3.7 of tests/postfix_audit/setup.sh (127.0.0.1:10125,
  STARTTLS; its smtps port 10165 for the implicit-TLS check), SMTP_USER/SMTP_PASSWORD set;
- weak: the deliberately weak Postfix (127.0.0.1:10225: loopback in mynetworks, so an open
  relay for us; no STARTTLS; AUTH in clear text; VRFY; smtpd_forbid_bare_newline = no),
  SMTP_USER/SMTP_PASSWORD set;
- exim: Exim 4.96 of tests/exim/setup.sh (127.0.0.1:10325, STARTTLS, no AUTH at all, so no
  credentials: the checks that need a login are skipped as "not configured");
- sandbox: ``-t sandbox`` (the README's quick start).

Every server gets local_domain, a local mailbox (alice@DOMAIN) and server_ip=127.0.0.1, so
the relay variants with an IP literal run everywhere. tests/test_audit_servers.py shows
the raw behaviour behind each verdict; where a verdict is not the obvious one, MATRIX says
which reply it comes from. tools/audit_matrix.py prints the same matrix as Markdown.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from audit_helpers import (
    COLUMNS,
    RELAY_VARIANTS,
    SERVER_NAMES,
    SMUGGLING,
    by_check,
    library_checks,
    run_audit,
    run_sandbox_audit,
    step_named,
    verdicts,
)
from audit_servers import AuditServer, require_audit_server
from markupsafe import escape
from scenario_helpers import SCENARIOS, explain

from smtpscript.api import RunOutcome, write_reports
from smtpscript.results import ScenarioResult

P, F, S, E = "passed", "failed", "skipped", "error"

# The opt-in RCPT enumeration check, run a second time with check_rcpt_enumeration=yes.
RCPT_OPTED_IN = "enumeration/rcpt.yaml, opted in"

# check -> verdict on (hardened Postfix, weak Postfix, Exim, sandbox)
# fmt: off
MATRIX_ROWS: list[tuple[str, str, str, str, str]] = [
    #                                          hardened weak exim sandbox
    # weak has no STARTTLS: "STARTTLS" -> "502 5.5.1 Error: command not implemented", so no
    # login over TLS is possible (the real password is never sent in clear text). exim:
    # no AUTH, no credentials -> skipped "not configured: set SMTP_USER and SMTP_PASSWORD".
    ("auth/login-after-tls.yaml",                  P, F, S, P),
    # weak: EHLO in clear text lists "AUTH PLAIN LOGIN". exim offers no AUTH at all:
    # "AUTH PLAIN" -> "503 AUTH command used when not advertised" (refused: passes).
    ("auth/no-auth-before-tls.yaml",               P, F, P, P),
    # weak checks the made-up password in clear text: "535 5.7.8 Error: authentication
    # failed: authentication failure" (a 535 means the password crossed the wire).
    ("auth/plaintext-auth-refused.yaml",           P, F, P, P),
    # weak: no STARTTLS, so the wrong (made-up) password goes in clear text and gets
    # "535 5.7.8 Error: authentication failed": passes (before the fix in e4aeea5 it failed
    # on "STARTTLS: expected 220, got 502", a false high finding). exim: no user: skipped.
    ("auth/wrong-password-rejected.yaml",          P, P, S, P),
    ("basics/banner-and-ehlo.yaml",                P, P, P, P),
    ("basics/telnet-delivery.yaml",                P, P, P, P),
    # exim: "550 Unrouteable address" (no ENHANCEDSTATUSCODES, so no status is judged)
    ("basics/unknown-recipient.yaml",              P, P, P, P),
    # the domain checks need a domain target (-t mx:DOMAIN; tests/test_domain_targets.py):
    # "skipped: not a domain target: run it with -t mx:DOMAIN"
    ("domain/dane-dnssec.yaml",                    S, S, S, S),
    ("domain/dane-tlsa-match.yaml",                S, S, S, S),
    ("domain/mta-sts-enforced.yaml",               S, S, S, S),
    # Postfix has no EXPN: "500 5.5.2 Error: command not recognized"; exim: "550
    # Administrative prohibition".
    ("enumeration/expn.yaml",                      P, P, P, P),
    # opt-in (skip_reason "opt-in: pass --var check_rcpt_enumeration=yes ..."): see the
    # RCPT_OPTED_IN row for what it says when asked.
    ("enumeration/rcpt.yaml",                      S, S, S, S),
    # hardened: "502 5.5.1 VRFY command is disabled" for both. weak: "252 2.0.0
    # alice@weak.test" but "550 5.1.1 <no-such-user-7f3a@weak.test>: Recipient address
    # rejected: User unknown in virtual mailbox table": the difference enumerates. exim:
    # "252 Administrative prohibition" for both: non-committal, so it passes (scanners
    # report a 252 as "VRFY enabled" or "user exists"; it is neither).
    ("enumeration/vrfy.yaml",                      P, F, P, P),
    # the sandbox offers no CHUNKING: "skipped: CHUNKING is not offered: nothing to judge"
    ("extensions/bdat-chunking.yaml",              P, P, P, S),
    # exim and the sandbox do not advertise DSN: "skipped: DSN is not offered: nothing to
    # judge" (a skip step; before it, such a run passed with only an RSET sent)
    ("extensions/dsn-notify.yaml",                 P, P, S, S),
    # skipped everywhere: "not configured: pass --var proxy_listener=yes ..."
    ("extensions/proxy-protocol.yaml",             S, S, S, S),
    ("extensions/smtputf8.yaml",                   P, P, P, S),
    # XCLIENT is offered to none of us: "skipped: XCLIENT is not offered: nothing to judge"
    ("extensions/xclient.yaml",                    S, S, S, S),
    # weak: "220 mx.weak.test ESMTP Postfix 3.7.11"; exim: "220 mx.exim.test ESMTP Exim 4.96
    # <date>" (info). hardened: "220 mx.hardened.test ESMTP".
    ("hygiene/banner-version.yaml",                P, F, F, P),
    # weak: MAIL FROM before HELO -> "250 2.1.0 Ok"; exim: "503 HELO or EHLO required"
    ("hygiene/helo-required.yaml",                 P, F, P, P),
    ("hygiene/line-length.yaml",                   P, P, P, P),
    ("hygiene/null-sender.yaml",                   P, P, P, P),
    # hardened refuses the early talker: "554 5.5.0 Error: SMTP protocol synchronization"
    # and hangs up; weak and exim answer EHLO, then MAIL FROM, in order. All fine.
    ("hygiene/pipelining-early-talker.yaml",       P, P, P, P),
    ("hygiene/postmaster.yaml",                    P, P, P, P),
    # weak: message_size_limit = 0, so EHLO says "SIZE" without a number
    ("hygiene/size-limit.yaml",                    P, F, P, P),
    # The relay battery. hardened: every RCPT "554 5.7.1 <...>: Relay access denied".
    # weak relays (mynetworks = 127.0.0.0/8): RCPT "250 2.1.5 Ok" and "250 2.0.0 Ok: queued
    # as ..." at the end of DATA, discarded as to=<victim@example.net>. exim refuses each,
    # in its own session (EXIM_RELAY_REPLIES). sandbox: "550 5.7.1 Unable to relay".
    ("relay/bang-path-ip-literal.yaml",            P, F, P, P),
    # weak refuses the three <...@weak.test> tricks: weak.test is a virtual mailbox domain,
    # where Postfix rewrites neither ! nor % nor a second @: "550 5.1.1
    # <example.net!victim@weak.test>: Recipient address rejected: User unknown in virtual
    # mailbox table". Correct passes: nothing was relayed.
    ("relay/bang-path-own-domain.yaml",            P, P, P, P),
    ("relay/bang-path.yaml",                       P, F, P, P),
    ("relay/double-at-ip-literal.yaml",            P, F, P, P),
    ("relay/double-at-own-domain.yaml",            P, P, P, P),
    ("relay/no-open-relay.yaml",                   P, F, P, P),
    ("relay/null-sender.yaml",                     P, F, P, P),
    ("relay/percent-hack-ip-literal.yaml",         P, F, P, P),
    ("relay/percent-hack-own-domain.yaml",         P, P, P, P),
    ("relay/quoted-address.yaml",                  P, F, P, P),
    ("relay/quoted-at-ip-literal.yaml",            P, F, P, P),
    ("relay/quoted-percent.yaml",                  P, F, P, P),
    # weak: no STARTTLS, so RCPT before AUTH is judged in clear text: "250 2.1.5 Ok" (it
    # relays for loopback). exim: no credentials: skipped "not configured".
    ("relay/relay-after-auth.yaml",                P, F, S, P),
    ("relay/sender-ip-literal.yaml",               P, F, P, P),
    ("relay/sender-own-domain.yaml",               P, F, P, P),
    ("relay/source-route-ip-literal.yaml",         P, F, P, P),
    ("relay/source-route-own-domain.yaml",         P, F, P, P),
    # SMTP smuggling. weak (smtpd_forbid_bare_newline = no) takes a bare LF as a line end,
    # so the three sequences with a bare LF around the dot end DATA early and the smuggled
    # MAIL FROM is answered "250 2.1.0 Ok" where QUIT's 221 belongs; bare CR and NUL are
    # data to it. hardened (normalize) and exim (Debian's 4.96-15+deb12u*, with the
    # CVE-2023-51766 fix) answer the whole message once, then 221. The sandbox refuses a
    # bare CR or LF: "550 5.5.2 Error: bare <LF> received".
    ("smuggling/cr-dot-cr.yaml",                   P, P, P, P),
    ("smuggling/cr-dot-crlf.yaml",                 P, P, P, P),
    ("smuggling/cr-dot-lf.yaml",                   P, P, P, P),
    ("smuggling/crlf-dot-cr.yaml",                 P, P, P, P),
    ("smuggling/crlf-dot-lf.yaml",                 P, F, P, P),
    ("smuggling/crlf-nul-dot-crlf.yaml",           P, P, P, P),
    ("smuggling/lf-dot-cr.yaml",                   P, P, P, P),
    ("smuggling/lf-dot-crlf.yaml",                 P, F, P, P),
    ("smuggling/lf-dot-lf.yaml",                   P, F, P, P),
    # weak and exim have no implicit-TLS listener, so the target names no implicit-TLS
    # port and the check goes to the SMTP port: "TLS handshake ... failed:
    # WRONG_VERSION_NUMBER (the server did not answer in TLS: plain SMTP on this port?)".
    # An error, rightly: smtpscript cannot tell "no 465 service" from "465 is down or
    # filtered"; audit 465 apart or leave the check out (--tag). hardened: its smtps port.
    ("tls/implicit-tls-banner.yaml",               P, E, E, P),
    # weak: no STARTTLS: "skipped: STARTTLS is not offered: no TLS version to judge"
    # (tls/starttls-offered.yaml has the finding). exim negotiates
    # "TLSv1.1 (ECDHE-RSA-AES256-SHA)" with a client that offers nothing newer.
    ("tls/old-tls-refused.yaml",                   P, S, F, P),
    # weak: EHLO has no STARTTLS line
    ("tls/starttls-offered.yaml",                  P, F, P, P),
    ("tls/starttls-works.yaml",                    P, F, P, P),
    # With check_rcpt_enumeration=yes all four refuse an unknown local user at RCPT while
    # accepting alice (hardened and weak: "550 5.1.1 ... User unknown in virtual mailbox
    # table"; exim: "550 Unrouteable address"; sandbox: "550 5.1.1 ... User unknown"): a
    # finding by the check's definition, and the reason it is opt-in (an MX should refuse
    # unknown users). The weak open relay accepts every OUTSIDE address, which the check
    # never asks about; see test_an_open_relay_accepting_everything_is_not_enumeration.
    (RCPT_OPTED_IN,                                F, F, F, F),
]
# fmt: on
MATRIX: dict[str, dict[str, str]] = {
    check: dict(zip(COLUMNS, cells, strict=True)) for check, *cells in MATRIX_ROWS
}

WEAK_SMUGGLED = {"smuggling/lf-dot-lf.yaml", "smuggling/lf-dot-crlf.yaml",
                 "smuggling/crlf-dot-lf.yaml"}  # fmt: skip
WEAK_OWN_DOMAIN_REFUSED = {"bang-path-own-domain.yaml", "double-at-own-domain.yaml",
                           "percent-hack-own-domain.yaml"}  # fmt: skip

# Exim refuses every variant, each in its own session (it would hang up on a battery run
# in one: tests/test_audit_servers.py): RCPT TO's reply (MAIL FROM's for the sender one).
EXIM_RELAY_REPLIES = {
    "bang-path-ip-literal.yaml": "501 <example.net!victim@[127.0.0.1]>: domain literals not "
    "allowed",
    "bang-path-own-domain.yaml": "550 restricted characters in address",
    "bang-path.yaml": "501 <example.net!victim>: recipient address must contain a domain",
    "double-at-ip-literal.yaml": "501 <victim@example.net@[127.0.0.1]>: malformed address: "
    "@[127.0.0.1]> may not follow <victim@example.net",
    "double-at-own-domain.yaml": "501 <victim@example.net@exim.test>: malformed address: "
    "@exim.test> may not follow <victim@example.net",
    "no-open-relay.yaml": "550 relay not permitted",
    "null-sender.yaml": "550 relay not permitted",
    "percent-hack-ip-literal.yaml": "501 <victim%example.net@[127.0.0.1]>: domain literals "
    "not allowed",
    "percent-hack-own-domain.yaml": "550 restricted characters in address",
    "quoted-address.yaml": '501 <"victim@example.net">: recipient address must contain a domain',
    "quoted-at-ip-literal.yaml": '501 <"victim@example.net"@[127.0.0.1]>: domain literals not '
    "allowed",
    "quoted-percent.yaml": '501 <"victim%example.net">: recipient address must contain a domain',
    # the sender is refused, then RCPT gets "503 sender not yet given"
    "sender-ip-literal.yaml": "501 <antispam@[127.0.0.1]>: domain literals not allowed",
    "sender-own-domain.yaml": "550 relay not permitted",
    "source-route-ip-literal.yaml": "501 <@[127.0.0.1]:victim@example.net>: domain literals not "
    "allowed",
    "source-route-own-domain.yaml": "550 relay not permitted",
}


# ---------------------------------------------------------------------- the runs


class Column:
    """One column: the library's run on one server, and the opted-in RCPT check's."""

    def __init__(self, outcome: RunOutcome, rcpt_opted_in: RunOutcome, log_start: int = 0):
        self.outcome = outcome
        self.log_start = log_start  # the server's log size before the runs
        self.results = by_check(outcome)
        [self.rcpt_opted_in] = rcpt_opted_in.run.scenarios

    def verdicts(self) -> dict[str, str]:
        return {**verdicts(self.results), RCPT_OPTED_IN: self.rcpt_opted_in.verdict}

    def result(self, check: str) -> ScenarioResult:
        return self.rcpt_opted_in if check == RCPT_OPTED_IN else self.results[check]


OPT_IN = {"check_rcpt_enumeration": "yes"}
RCPT_CHECK = SCENARIOS / "enumeration" / "rcpt.yaml"


def _server_column(column: str) -> tuple[AuditServer, Column]:
    server = require_audit_server(SERVER_NAMES[column])
    start = server.log_size()
    return server, Column(run_audit(server), run_audit(server, [RCPT_CHECK], OPT_IN), start)


@pytest.fixture(scope="module")
def hardened() -> tuple[AuditServer, Column]:
    return _server_column("hardened")


@pytest.fixture(scope="module")
def weak() -> tuple[AuditServer, Column]:
    return _server_column("weak")


@pytest.fixture(scope="module")
def exim() -> tuple[AuditServer, Column]:
    return _server_column("exim")


@pytest.fixture(scope="module")
def sandbox_column() -> Column:
    return Column(run_sandbox_audit(), run_sandbox_audit([RCPT_CHECK], OPT_IN))


def column_of(request: pytest.FixtureRequest, name: str) -> Column:
    if name == "sandbox":
        column: Column = request.getfixturevalue("sandbox_column")
        return column
    _, column = request.getfixturevalue(name)
    return column


# ---------------------------------------------------------------------- the matrix


def test_the_matrix_has_every_check_of_the_library_once():
    checks = [row[0] for row in MATRIX_ROWS]
    assert len(checks) == len(set(checks))
    assert sorted(MATRIX) == sorted([*library_checks(), RCPT_OPTED_IN])


@pytest.mark.parametrize("column", COLUMNS)
def test_verdict_of_every_check(request, column):
    col = column_of(request, column)
    observed = col.verdicts()
    expected = {check: cells[column] for check, cells in MATRIX.items()}
    wrong = {
        check: f"expected {expected.get(check, 'no such check')}, "
        + (explain(col.result(check)) if check in observed else "not run")
        for check in sorted(set(observed) | set(expected))
        if observed.get(check) != expected.get(check)
    }
    assert not wrong, "\n\n".join(f"{check}: {text}" for check, text in wrong.items())


@pytest.mark.parametrize("column", COLUMNS)
def test_nothing_else_goes_wrong(request, column):
    """No internal error, no warning; errors only where MATRIX documents one."""
    col = column_of(request, column)
    assert not col.outcome.internal_errors and not col.outcome.warnings
    errors = {k for k, r in col.results.items() if r.verdict == "error"}
    assert errors == {k for k, cells in MATRIX.items() if cells[column] == E}
    for result in col.results.values():
        if result.verdict == "error":  # only the implicit-TLS handshake on the SMTP port
            assert "WRONG_VERSION_NUMBER" in (result.reason or ""), explain(result)


# ---------------------------------------------------------------------- relay


def test_hardened_refuses_every_relay_variant_at_rcpt(hardened):
    _, col = hardened
    for name in RELAY_VARIANTS:
        result = col.results[f"relay/{name}"]
        reply = step_named(result, "RCPT TO:").replies[0]
        assert (reply.code, reply.status) == (554, "5.7.1"), explain(result)
        assert reply.lines[0].endswith(": Relay access denied"), name
        assert step_named(result, "RCPT was accepted").verdict == "skipped", name
    after_auth = col.results["relay/relay-after-auth.yaml"]
    refused = step_named(after_auth, "RCPT TO:<victim@example.net> refused inside TLS")
    assert refused.replies[0].short() == "554 5.7.1 <victim@example.net>: Relay access denied"
    accepted = step_named(after_auth, "RCPT TO:<victim@example.net> accepted after AUTH")
    assert accepted.replies[0].short() == "250 2.1.5 Ok"
    starttls = next(s for s in after_auth.steps if s.kind == "starttls")
    assert starttls.verdict == "passed" and starttls.tls is not None


def test_weak_fails_the_relay_battery_with_critical_findings(weak):
    server, col = weak
    queued = {}
    for name in RELAY_VARIANTS:
        result = col.results[f"relay/{name}"]
        rcpt = step_named(result, "RCPT TO:").replies[0]
        if name in WEAK_OWN_DOMAIN_REFUSED:
            assert result.verdict == "passed", explain(result)
            assert (rcpt.code, rcpt.status) == (550, "5.1.1"), name
            assert rcpt.lines[0].endswith("User unknown in virtual mailbox table"), name
            continue
        assert (result.verdict, result.severity) == ("failed", "critical"), explain(result)
        assert rcpt.short() == "250 2.1.5 Ok", name
        data = step_named(result, "RCPT was accepted")
        assert data.verdict == "failed"
        match = re.fullmatch(r"expected 5xx, got 250 2\.0\.0 Ok: queued as (\w+)", data.message)
        assert match, (name, data.message)
        queued[name] = match[1]
    assert len(queued) == 13
    # Each accepted probe was really relayed: to victim@example.net, through the discard
    # transport that stands in for the Internet (so no verdict is a false alarm).
    for name, queue_id in queued.items():
        pattern = rf"{queue_id}: to=<victim@example\.net>.*status=sent"
        line = server.wait_for_log(pattern, start=col.log_start).string
        assert "smtpscript-test-no-outbound-mail" in line, (name, line)
    after_auth = col.results["relay/relay-after-auth.yaml"]
    assert (after_auth.verdict, after_auth.severity) == ("failed", "critical")
    assert after_auth.reason.endswith(
        "(RCPT TO:<victim@example.net> refused in clear text (no STARTTLS) before AUTH): "
        "expected 5xx, got 250 2.1.5 Ok"
    ), after_auth.reason
    findings = [r for r in col.results.values() if r.verdict == "failed"]
    critical = sorted(check for check, r in col.results.items() if r.severity == "critical"
                      and r.verdict == "failed")  # fmt: skip
    assert len(critical) == 14 and all(c.startswith("relay/") for c in critical)
    assert len(findings) > len(critical)


def test_exim_refuses_every_relay_variant_each_with_its_own_verdict(exim):
    _, col = exim
    assert sorted(EXIM_RELAY_REPLIES) == RELAY_VARIANTS
    for name, reply in EXIM_RELAY_REPLIES.items():
        result = col.results[f"relay/{name}"]
        assert result.verdict == "passed", explain(result)  # never an error: one session each
        step = step_named(result, "MAIL FROM:" if name == "sender-ip-literal.yaml" else "RCPT TO:")
        assert step.replies[0].short() == reply, name
        bye = step_named(result, "QUIT").replies[0].short()
        assert bye == "221 mx.exim.test closing connection", name
    sender = col.results["relay/sender-ip-literal.yaml"]
    assert step_named(sender, "RCPT TO:").replies[0].short() == "503 sender not yet given"


# ---------------------------------------------------------------------- smuggling


def _smuggling_replies(result: ScenarioResult) -> tuple[str, str]:
    message = step_named(result, "message hiding")
    quit_ = step_named(result, "the next reply answers QUIT")
    return message.replies[0].short(), quit_.replies[0].short()


def test_weak_is_flagged_for_the_bare_lf_smuggling_family(weak):
    _, col = weak
    for name in SMUGGLING:
        result = col.results[f"smuggling/{name}"]
        first, second = _smuggling_replies(result)
        assert first.startswith("250 2.0.0 Ok: queued as "), name
        if f"smuggling/{name}" in WEAK_SMUGGLED:
            assert (result.verdict, result.severity) == ("failed", "high")
            assert second == "250 2.1.0 Ok", name  # the smuggled MAIL FROM's reply
            assert any("desynchronised" in v for v in result.protocol_violations), name
            assert "CVE-2023-51764" in result.references
        else:
            assert result.verdict == "passed" and second == "221 2.0.0 Bye", name


@pytest.mark.parametrize(
    ("column", "queued"), [("hardened", "250 2.0.0 Ok: queued as "), ("exim", "250 OK id=")]
)
def test_hardened_and_exim_take_each_smuggling_probe_as_one_message(request, column, queued):
    col = column_of(request, column)
    bye = {"hardened": "221 2.0.0 Bye", "exim": "221 mx.exim.test closing connection"}[column]
    for name in SMUGGLING:
        result = col.results[f"smuggling/{name}"]
        first, second = _smuggling_replies(result)
        assert result.verdict == "passed", explain(result)
        assert first.startswith(queued) and second == bye, (name, first, second)
        assert result.protocol_violations == [], name


# ---------------------------------------------------------------------- enumeration


def test_vrfy_252_is_non_committal_and_550_for_unknown_users_enumerates(hardened, weak, exim):
    def replies(col: Column) -> list[str]:
        vrfy = col.results["enumeration/vrfy.yaml"]
        return [s.replies[0].short() for s in vrfy.steps if s.name.startswith("VRFY")]

    assert replies(hardened[1]) == ["502 5.5.1 VRFY command is disabled"] * 2
    assert replies(exim[1]) == ["252 Administrative prohibition"] * 2  # passes
    known, unknown = replies(weak[1])
    assert known == "252 2.0.0 alice@weak.test"  # non-committal on its own...
    assert unknown.startswith("550 5.1.1 <no-such-user-7f3a@weak.test>: Recipient address ")
    assert weak[1].results["enumeration/vrfy.yaml"].severity == "low"  # ...but the pair tells


@pytest.mark.parametrize("column", COLUMNS)
def test_opted_in_rcpt_enumeration_sees_user_unknown(request, column):
    """Every server here accepts alice at RCPT and refuses an unknown local user."""
    result = column_of(request, column).rcpt_opted_in
    exists = step_named(result, "RCPT TO:<alice@" if column != "sandbox" else "RCPT TO:<post")
    assert exists.replies[0].code == 250
    unknown = step_named(result, "RCPT TO:<no-such-user-7f3a@")
    assert unknown.verdict == "failed" and unknown.replies[0].code == 550, explain(result)
    if column == "exim":
        assert unknown.replies[0].short() == "550 Unrouteable address"
    else:
        assert unknown.replies[0].status == "5.1.1"


def test_an_open_relay_accepting_everything_is_not_enumeration(weak):
    """On the weak open relay every address of an OUTSIDE domain is accepted at RCPT (and
    relayed): asked about such a domain, the RCPT check sees two 250s and passes, because
    nothing about who exists is revealed. That acceptance is the relay battery's finding.
    (Its own domain it still checks, so there it does enumerate: the RCPT_OPTED_IN row.)"""
    server, _ = weak
    outside = {"local_domain": "example.net", "local_mailbox": "victim@example.net"}
    outcome = run_audit(server, [RCPT_CHECK], {**OPT_IN, **outside})
    [result] = outcome.run.scenarios
    assert result.verdict == "passed", explain(result)
    rcpts = [
        (s.name, s.replies[0].short()) for s in result.steps if s.name.startswith("RCPT TO:")
        and s.verdict != "skipped"
    ]  # fmt: skip
    assert rcpts == [
        ("RCPT TO:<victim@example.net> (exists)", "250 2.1.5 Ok"),
        ("RCPT TO:<no-such-user-7f3a@example.net> (unknown) accepted like the existing mailbox",
         "250 2.1.5 Ok"),
    ]  # fmt: skip


# ---------------------------------------------------------------------- the HTML audit


def _html_audit(col: Column, path: Path) -> str:
    assert write_reports(col.outcome.run, html_path=path) == []
    return path.read_text("utf-8")


def _findings_by_severity(page: str) -> dict[str, int]:
    found = re.findall(r'data-severity="(\w+)"><span class="num">(\d+)</span>', page)
    return {severity: int(n) for severity, n in found}


def test_html_audit_of_hardened_and_weak(hardened, weak, tmp_path):
    """`smtpscript run scenarios/ -t SERVER --html audit.html` for both Postfixes: every
    check is in the report; the weak one's findings include critical ones."""
    pages = {
        name: _html_audit(col, tmp_path / f"audit-{name}.html")
        for name, (_, col) in (("hardened", hardened), ("weak", weak))
    }
    checks = library_checks()
    for name, page in pages.items():
        col = {"hardened": hardened, "weak": weak}[name][1]
        for check in checks:
            result = col.results[check]
            assert escape(result.title) in page, (name, check)
            assert f'<span class="sub mono">{escape(result.scenario_id)}</span>' in page
        assert page.count('<span class="sub mono">') == len(checks), name
    hardened_findings = _findings_by_severity(pages["hardened"])
    assert set(hardened_findings.values()) == {0}, hardened_findings
    assert "No findings" in pages["hardened"]
    weak_findings = _findings_by_severity(pages["weak"])
    assert weak_findings["critical"] == 14, weak_findings
    failed = [r.severity for r in weak[1].results.values() if r.verdict == "failed"]
    assert weak_findings == {s: failed.count(s) for s in weak_findings}
    assert "How to fix" in pages["weak"]
    # the relay battery as one line per server ('Checks by theme')
    assert re.search(r">relay</th>\s*<td><span class=\"bad\">14 of 17 failed", pages["weak"])
    assert re.search(r">relay</th>\s*<td><span class=\"good\">0 of 17 failed", pages["hardened"])
