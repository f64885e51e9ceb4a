"""The built-in audit library (scenarios/) against real servers: every check's verdict.

- the sandbox in its normal, closed mode: every check passes, or is skipped for a reason
  asserted here (the README's quick start runs exactly this);
- the sandbox as an open relay (SandboxConfig(open_relay=True), what `smtpscript serve
  --open-relay` runs): every relay variant fails with a critical finding, the rest passes;
- the loopback Postfix of tests/postfix/setup.sh (127.0.0.1:10025): a fairly stock
  Postfix 3.7, so besides passes it has real findings (SMTP smuggling with bare LF, VRFY,
  HELO not required, postmaster@ its virtual domain unknown), each documented below with
  the reply it gives.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import RELAY_VARIANTS, SMUGGLING, check_key, step_named, verdicts
from scenario_helpers import REPO, SCENARIOS, explain

from smtpscript import model as m
from smtpscript.api import run_paths
from smtpscript.loading import load_paths
from smtpscript.model import Endpoint, Target, TlsOptions
from smtpscript.results import ScenarioResult
from smtpscript.runner import RunOptions, run
from smtpscript.sandbox import Sandbox, SandboxConfig
from smtpscript.targets import sandbox_target

# Skipped on the sandbox, and why (skip_reason, then the `when:` that is false): run on
# purpose only.
SKIPPED_ON_SANDBOX = {
    "extensions/proxy-protocol.yaml": "not configured: pass --var proxy_listener=yes for a "
    "listener that expects the PROXY protocol (when: proxy_listener | string | lower in "
    "('true', 'yes', '1') is false)",
    "enumeration/rcpt.yaml": "opt-in: pass --var check_rcpt_enumeration=yes where the server "
    "is configured to check recipients (when: check_rcpt_enumeration | string | lower in "
    "('yes', 'true', '1') is false)",
    # extensions the sandbox does not offer: nothing to judge (a skip step)
    **{
        f"extensions/{name}.yaml": f"{keyword} is not offered: nothing to judge"
        for name, keyword in (
            ("bdat-chunking", "CHUNKING"),
            ("dsn-notify", "DSN"),
            ("smtputf8", "SMTPUTF8"),
            ("xclient", "XCLIENT"),
        )
    },
}
# The domain checks judge a domain target's MTA-STS and DANE facts (-t mx:DOMAIN,
# tests/test_domain_targets.py): skipped on any other target.
SKIPPED_OFF_DOMAIN = {
    f"domain/{name}.yaml": f"not a domain target: run it with -t mx:DOMAIN (when: {when} is false)"
    for name, when in (
        ("dane-dnssec", "dane is not none"),
        ("dane-tlsa-match", "dane is not none"),
        ("mta-sts-enforced", "mta_sts is not none"),
    )
}
SKIPPED_ON_SANDBOX |= SKIPPED_OFF_DOMAIN
# The loopback Postfix offers CHUNKING, DSN and SMTPUTF8, but XCLIENT only on its XCLIENT
# listener (10027), not on 10025: the opt-in checks and xclient are skipped there.
SKIPPED_ON_POSTFIX = {
    "extensions/proxy-protocol.yaml",
    "enumeration/rcpt.yaml",
    "extensions/xclient.yaml",
    *SKIPPED_OFF_DOMAIN,
}
SEVERITIES = set(m.SEVERITIES)
FOLDERS = (
    "auth", "basics", "domain", "enumeration", "extensions", "hygiene", "relay", "smuggling", "tls"
)  # fmt: skip


def run_library(
    target: Target, environ: dict[str, str] | None = None, **overrides: Any
) -> dict[str, ScenarioResult]:
    loaded = load_paths([SCENARIOS], extra_names=overrides)
    assert not loaded.problems, [str(p) for p in loaded.problems]
    options = RunOptions(overrides=dict(overrides), environ=environ or {}, concurrency=8)
    results = run(loaded.scenarios, [target], options).scenarios
    return {check_key(r): r for r in results}


# --- the library itself ----------------------------------------------------------------


def test_the_library_has_at_least_30_checks_in_folders_by_theme():
    loaded = load_paths([SCENARIOS])
    assert not loaded.problems, [str(p) for p in loaded.problems]
    folders = {Path(s.file).resolve().relative_to(SCENARIOS).parts[0] for s in loaded.scenarios}
    assert folders == set(FOLDERS)
    audit = [s for s in loaded.scenarios if "/extensions/" not in s.file]
    assert len(audit) >= 30
    assert len(RELAY_VARIANTS) == 16 and len(SMUGGLING) == 9


def test_every_check_says_what_why_how_bad_and_how_to_fix():
    for scenario in load_paths([SCENARIOS]).scenarios:
        where = scenario.file
        assert scenario.title and len(scenario.description) > 80, where
        assert scenario.severity in SEVERITIES, where
        assert scenario.tags and scenario.references, where
        assert len(scenario.remediation) > 60, where
        assert not scenario.remediation.endswith("\n"), where


def test_the_relay_battery_is_one_critical_scenario_per_variant_tagged_relay():
    loaded = load_paths([SCENARIOS / "relay"])
    for scenario in loaded.scenarios:
        assert scenario.severity == "critical", scenario.file
        assert {"relay", "security"} <= set(scenario.tags), scenario.file
        connects = [s for s in scenario.steps if s.kind == "connect"]
        assert len(connects) == 1, scenario.file  # one session per variant
    rcpts = set()
    for name in RELAY_VARIANTS:
        text = (SCENARIOS / "relay" / name).read_text("utf-8")
        mail, rcpt = re.findall(r"- send: \W((?:MAIL FROM|RCPT TO):<.*>)\W\n", text)
        rcpts.add((mail, rcpt))
    assert len(rcpts) == 16  # no two variants alike


def test_smuggling_checks_name_their_sequence_and_the_cves():
    sequences = set()
    for name in SMUGGLING:
        text = (SCENARIOS / "smuggling" / name).read_text("utf-8")
        [sequence] = re.findall(r'sequence: "(.*)"', text)
        sequences.add(sequence)
        for cve in ("CVE-2023-51764", "CVE-2023-51765", "CVE-2023-51766"):
            assert cve in text, name
    assert sequences == {
        r"\n.\n", r"\n.\r\n", r"\r.\r\n", r"\r\n.\r", r"\r\n.\n", r"\n.\r", r"\r.\n",
        r"\r.\r", r"\r\n\x00.\r\n",
    }  # fmt: skip


# --- the sandbox, closed (a sane hardened MTA) -------------------------------------------


def test_the_readme_quick_start_passes_against_the_sandbox(monkeypatch):
    """`smtpscript run scenarios/ -t sandbox` through the library API."""
    monkeypatch.chdir(REPO)
    outcome = run_paths(["scenarios/"], targets=["sandbox"], environ={})
    assert not outcome.problems and not outcome.failed()
    results = {check_key(r): r for r in outcome.run.scenarios}
    assert len(results) == len(load_paths([SCENARIOS]).scenarios)
    skipped = {k: r.reason for k, r in results.items() if r.verdict == "skipped"}
    assert skipped == SKIPPED_ON_SANDBOX
    assert {r.verdict for r in results.values()} == {"passed", "skipped"}


@pytest.fixture(scope="module")
def closed_sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(tls_port=0)) as server:
        yield server


@pytest.fixture(scope="module")
def closed_results(closed_sandbox: Sandbox) -> dict[str, ScenarioResult]:
    server = closed_sandbox
    target = sandbox_target(server.host, server.port, server.tls_port, str(server.cert_path))
    return run_library(target)


def test_closed_sandbox_passes_everything_else(closed_results):
    for name, result in closed_results.items():
        if name in SKIPPED_ON_SANDBOX:
            assert result.verdict == "skipped", explain(result)
            assert result.reason == SKIPPED_ON_SANDBOX[name]
        else:
            assert result.verdict == "passed", f"{name}: {explain(result)}"


def test_closed_sandbox_refuses_every_relay_variant_at_rcpt(closed_results):
    for name in RELAY_VARIANTS:
        result = closed_results[f"relay/{name}"]
        rcpt = step_named(result, "RCPT TO:")
        assert rcpt.replies[0].short() == "550 5.7.1 Unable to relay", name
        assert step_named(result, "RCPT was accepted").verdict == "skipped", name


def test_closed_sandbox_refuses_bare_line_endings_and_answers_once(closed_results):
    for name in SMUGGLING:
        result = closed_results[f"smuggling/{name}"]
        message = step_named(result, "message hiding")
        quit_ = step_named(result, "the next reply answers QUIT")
        parts = name.removesuffix(".yaml").split("-")
        if "nul" in parts:  # <CR><LF><NUL>.<CR><LF> has no bare CR or LF: one message
            assert message.replies[0].short().startswith("250 2.0.0 Ok: queued as "), name
        else:
            what = "LF" if "lf" in parts else "CR"  # a bare LF is reported first
            assert message.replies[0].short() == f"550 5.5.2 Error: bare <{what}> received"
        assert quit_.replies[0].code == 221, name
        assert result.protocol_violations == [], name


def test_closed_sandbox_enumeration_and_hygiene_replies(closed_results):
    vrfy = closed_results["enumeration/vrfy.yaml"]
    assert [s.replies[0].code for s in vrfy.steps if s.kind == "send"][:2] == [252, 252]
    expn = closed_results["enumeration/expn.yaml"]
    assert step_named(expn, "EXPN root").replies[0].short() == "502 5.5.1 EXPN not implemented"
    helo = closed_results["hygiene/helo-required.yaml"]
    first = step_named(helo, "MAIL FROM before")
    assert first.replies[0].short() == "503 5.5.1 Error: send HELO first"
    null = closed_results["hygiene/null-sender.yaml"]
    assert step_named(null, "MAIL FROM:<>").replies[0].code == 250
    size = closed_results["hygiene/size-limit.yaml"]
    assert step_named(size, "MAIL FROM with SIZE=10240001").replies[0].code == 552
    long_lines = closed_results["hygiene/line-length.yaml"]
    # aiosmtpd refuses both: command lines over 512 octets, message lines over 1000
    assert step_named(long_lines, "a 5,009-octet").replies[0].code == 500
    assert step_named(long_lines, "a message with").replies[0].code == 500


# --- the sandbox as an open relay --------------------------------------------------------


@pytest.fixture(scope="module")
def open_results() -> dict[str, ScenarioResult]:
    with Sandbox(SandboxConfig(tls_port=0, open_relay=True)) as server:
        target = sandbox_target(server.host, server.port, server.tls_port, str(server.cert_path))
        return run_library(target)


def test_open_relay_fails_every_relay_variant_with_a_critical_finding(open_results):
    for name in RELAY_VARIANTS:
        result = open_results[f"relay/{name}"]
        assert result.verdict == "failed", f"{name}: {explain(result)}"
        assert result.severity == "critical"
        assert step_named(result, "RCPT TO:").replies[0].short() == "250 2.1.5 Recipient OK"
        data = step_named(result, "RCPT was accepted")
        assert data.verdict == "failed"
        assert data.message.startswith("expected 5xx, got 250 2.0.0 Ok: queued as "), name
        assert result.remediation.endswith("with RemoteIPRanges.")
    after_auth = open_results["relay/relay-after-auth.yaml"]
    assert after_auth.verdict == "failed" and after_auth.severity == "critical"
    assert after_auth.reason.endswith(
        "(RCPT TO:<victim@example.net> refused inside TLS before AUTH): "
        "expected 5xx, got 250 2.1.5 Recipient OK"
    )


def test_open_relay_has_no_other_finding(open_results):
    others = {
        name: result.verdict
        for name, result in open_results.items()
        if not name.startswith("relay/") and name not in SKIPPED_ON_SANDBOX
    }
    assert set(others.values()) == {"passed"}, others
    findings = [r for r in open_results.values() if r.verdict == "failed"]
    assert len(findings) == 17 and {r.severity for r in findings} == {"critical"}


def test_open_relay_cli_run_of_the_battery(tmp_path, monkeypatch):
    """`smtpscript serve --open-relay` + `smtpscript run scenarios/relay -t HOST:PORT`."""
    monkeypatch.chdir(REPO)
    with Sandbox(SandboxConfig(open_relay=True)) as server:
        outcome = run_paths(
            ["scenarios/relay"],
            targets=[f"{server.host}:{server.port}"],
            ca_file=server.cert_path,
            environ={},
        )
    assert outcome.failed("critical")
    runs = outcome.run.scenarios
    # relay-after-auth is skipped on a plain HOST:PORT target without credentials
    assert sorted(r.verdict for r in runs) == ["failed"] * 16 + ["skipped"]


# --- the loopback Postfix (tests/postfix/setup.sh) ---------------------------------------

POSTFIX_FINDINGS = {
    # smtpd_forbid_bare_newline = no (Debian's Postfix 3.7 default): a bare LF ends a line,
    # so <LF>.<LF>, <LF>.<CR><LF> and <CR><LF>.<LF> end DATA early (CVE-2023-51764)
    "smuggling/lf-dot-lf.yaml",
    "smuggling/lf-dot-crlf.yaml",
    "smuggling/crlf-dot-lf.yaml",
    # disable_vrfy_command = no: "VRFY alice@postfix.test" -> 252 2.0.0 alice@postfix.test
    # (non-committal on its own) but "VRFY no-such-user-7f3a@postfix.test" -> 550 5.1.1
    # ... User unknown in virtual mailbox table: the difference enumerates users
    "enumeration/vrfy.yaml",
    # smtpd_helo_required = no: MAIL FROM before any greeting -> 250 2.1.0 Ok
    "hygiene/helo-required.yaml",
    # RCPT TO:<Postmaster> (no domain) -> 250, but postfix.test is a virtual mailbox domain
    # without a postmaster entry: RCPT TO:<postmaster@postfix.test> -> 550 5.1.1
    "hygiene/postmaster.yaml",
    # smtpd_tls_protocols left at Debian's default (!SSLv2, !SSLv3): a client offering at
    # most TLS 1.1 gets "TLS established: TLSv1.1 ECDHE-RSA-AES256-SHA"
    "tls/old-tls-refused.yaml",
}


@pytest.fixture(scope="module")
def postfix_results(postfix) -> dict[str, ScenarioResult]:  # type: ignore[no-untyped-def]
    target = Target(
        name="postfix",
        endpoint=Endpoint(
            host=postfix.host, port=postfix.port, tls_options=TlsOptions(ca_file=postfix.ca_file)
        ),
        implicit_tls_port=postfix.smtps_port,
    )
    mailbox = f"{postfix.user}@{postfix.domain}"
    return run_library(
        target,
        environ={"SMTP_USER": postfix.user, "SMTP_PASSWORD": postfix.password},
        local_domain=postfix.domain,
        local_mailbox=mailbox,
        recipient=mailbox,  # basics/telnet-delivery.yaml and extensions/
        nobody=f"nobody-x@{postfix.domain}",  # basics/unknown-recipient.yaml
    )


@pytest.mark.postfix
def test_postfix_verdict_of_every_check(postfix_results):
    expected = {}
    for name in postfix_results:
        if name in POSTFIX_FINDINGS:
            expected[name] = "failed"
        elif name in SKIPPED_ON_POSTFIX:
            expected[name] = "skipped"
        else:
            expected[name] = "passed"
    assert verdicts(postfix_results) == expected, {
        name: explain(r) for name, r in postfix_results.items() if r.verdict != expected[name]
    }


@pytest.mark.postfix
def test_postfix_refuses_every_relay_variant_with_554(postfix_results):
    for name in RELAY_VARIANTS:
        reply = step_named(postfix_results[f"relay/{name}"], "RCPT TO:").replies[0]
        assert (reply.code, reply.status) == (554, "5.7.1"), name
        assert reply.lines[0].endswith(": Relay access denied"), name
    # Postfix shows the address as it resolved it: quotes and source routes gone
    quoted = step_named(postfix_results["relay/quoted-address.yaml"], "RCPT TO:")
    assert quoted.replies[0].lines == ["5.7.1 <victim@example.net>: Relay access denied"]
    routed = step_named(postfix_results["relay/source-route-own-domain.yaml"], "RCPT TO:")
    assert routed.replies[0].lines == ["5.7.1 <victim@example.net>: Relay access denied"]
    after_auth = postfix_results["relay/relay-after-auth.yaml"]
    assert step_named(after_auth, "RCPT TO:<victim@example.net> accepted").replies[0].code == 250


@pytest.mark.postfix
def test_postfix_smuggling_findings_name_the_smuggled_reply(postfix_results):
    for name in SMUGGLING:
        result = postfix_results[f"smuggling/{name}"]
        message = step_named(result, "message hiding")
        assert message.replies[0].code == 250, name  # queued (the whole message, or part 1)
        quit_ = step_named(result, "the next reply answers QUIT")
        if f"smuggling/{name}" in POSTFIX_FINDINGS:
            # the reply to the smuggled MAIL FROM came where QUIT's should have been
            assert quit_.replies[0].short() == "250 2.1.0 Ok", name
            assert any("desynchronised" in v for v in result.protocol_violations), name
        else:
            assert quit_.replies[0].short() == "221 2.0.0 Bye", name
            assert result.protocol_violations == [], name


@pytest.mark.postfix
def test_postfix_enumeration_and_hygiene_replies(postfix_results):
    vrfy = postfix_results["enumeration/vrfy.yaml"]
    known = step_named(vrfy, "VRFY alice@postfix.test")
    assert known.replies[0].short() == "252 2.0.0 alice@postfix.test"
    unknown = step_named(vrfy, "VRFY no-such-user")
    assert unknown.replies[0].code == 550 and unknown.replies[0].status == "5.1.1"
    expn = postfix_results["enumeration/expn.yaml"]  # Postfix has no EXPN at all
    assert (
        step_named(expn, "EXPN root").replies[0].short()
        == "500 5.5.2 Error: command not recognized"
    )
    postmaster = postfix_results["hygiene/postmaster.yaml"]
    assert step_named(postmaster, "RCPT TO:<Postmaster>").verdict == "passed"
    assert step_named(postmaster, "RCPT TO:<postmaster@").replies[0].status == "5.1.1"
    long_lines = postfix_results["hygiene/line-length.yaml"]
    # Postfix takes both: the command line is cut at line_length_limit (2048) and the rest
    # skipped, the message line folded; one reply each, no desync
    assert step_named(long_lines, "a 5,009-octet").replies[0].short() == "250 2.0.0 Ok"
    assert step_named(long_lines, "a message with").replies[0].code == 250
    early = postfix_results["hygiene/pipelining-early-talker.yaml"]
    assert [s.replies[0].code for s in early.steps if s.kind == "read"] == [250, 250]


def test_the_html_report_sums_up_each_theme_per_target(closed_results, open_results):
    from smtpscript.report import render_html
    from smtpscript.results import RunResult

    # two columns: the closed and the open sandbox
    opened = [
        replace(r, target=replace(r.target, name="open-relay")) for r in open_results.values()
    ]
    html = render_html(RunResult(scenarios=[*closed_results.values(), *opened]))
    table = html[html.index("<h3>Checks by theme</h3>") : html.index("<h3>Scenarios")]
    rows = {
        re.sub(r"<[^>]+>", "", row.split("</th>")[0]).strip(): re.findall(
            r"(\d+ of \d+ failed)", row
        )
        for row in table.split("<tr>")[2:]
    }
    assert rows["relay"] == ["0 of 17 failed", "17 of 17 failed"]
    assert rows["smuggling"] == ["0 of 9 failed", "0 of 9 failed"]
    assert "proxy" not in rows  # skipped everywhere: nothing to sum up
