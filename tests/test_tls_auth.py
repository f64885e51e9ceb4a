"""TLS and AUTH against real servers: the in-process sandbox and the loopback Postfix."""

from __future__ import annotations

import pytest
from scenario_helpers import SCENARIOS, explain, run_file, write

from smtpscript.model import Endpoint, Target, TlsOptions
from smtpscript.targets import parse_target

TLS_AUTH_SCENARIOS = [
    "tls/starttls-offered.yaml",
    "tls/implicit-tls-banner.yaml",
    "auth/no-auth-before-tls.yaml",
    "auth/login-after-tls.yaml",
    "auth/wrong-password-rejected.yaml",
]


@pytest.mark.parametrize("name", TLS_AUTH_SCENARIOS)
def test_example_scenarios_pass_against_the_sandbox(sandbox_target, name):
    result = run_file(SCENARIOS / name, sandbox_target)
    assert result.verdict == "passed", explain(result)


def test_starttls_records_certificate_facts(sandbox_target):
    result = run_file(SCENARIOS / "tls/starttls-offered.yaml", sandbox_target)
    tls = next(step.tls for step in result.steps if step.kind == "starttls")
    assert tls.version in ("TLSv1.2", "TLSv1.3")
    assert tls.cipher
    assert tls.verified is True and tls.verify_error is None
    assert "sandbox.test" in (tls.subject or "")
    assert "127.0.0.1" in tls.sans
    assert tls.name_matches is True
    assert 80 <= tls.days_left <= 90


STARTTLS_VERIFY = """
smtpscript: 1
title: starttls verify {verify}
steps:
  - ehlo: client.example
  - starttls: {{verify: {verify}}}
  - ehlo: client.example
  - send: QUIT
    expect: 221
"""


def test_verify_true_against_self_signed_sandbox_fails_with_reason(sandbox, tmp_path):
    untrusted = parse_target(f"127.0.0.1:{sandbox.port}")  # no CA: the system store
    path = write(tmp_path, STARTTLS_VERIFY.format(verify="true"))
    result = run_file(path, untrusted)
    assert result.verdict == "failed", explain(result)
    step = next(s for s in result.steps if s.kind == "starttls")
    assert step.verdict == "failed"
    assert step.message.startswith("certificate verify failed: ")
    assert "self-signed" in step.message or "self signed" in step.message
    assert "certificate verify failed" in result.reason


def test_verify_false_passes_and_still_records_facts(sandbox, tmp_path):
    untrusted = parse_target(f"127.0.0.1:{sandbox.port}")
    result = run_file(write(tmp_path, STARTTLS_VERIFY.format(verify="false")), untrusted)
    assert result.verdict == "passed", explain(result)
    tls = next(s.tls for s in result.steps if s.kind == "starttls")
    assert tls.verified is False
    assert "sandbox.test" in tls.subject and tls.not_after and tls.days_left > 0
    assert tls.name_matches is True


def test_tls_expectation_failure_is_spelled_out(sandbox_target, tmp_path):
    path = write(
        tmp_path,
        """
smtpscript: 1
title: wants a certificate valid for 400 days
steps:
  - ehlo: client.example
  - starttls: {}
    tls: {days_left: 400, min_version: TLSv1.2}
""",
    )
    result = run_file(path, sandbox_target)
    assert result.verdict == "failed"
    step = next(s for s in result.steps if s.kind == "starttls")
    assert step.message.startswith(
        "expected the certificate valid for at least 400 more days, got "
    )


def test_auth_before_tls_is_refused_530_on_sandbox(sandbox_target, tmp_path):
    path = write(
        tmp_path,
        """
smtpscript: 1
title: AUTH before TLS
steps:
  - ehlo: client.example
  - auth: {mechanism: PLAIN, username: alice, password: sandbox-alice-pw}
    expect: 530
    status: 5.7.0
""",
    )
    result = run_file(path, sandbox_target)
    assert result.verdict == "passed", explain(result)


AUTH_SCENARIO = """
smtpscript: 1
title: AUTH {mechanism}
vars: {{user: "{user}", password: "{{{{ env.SMTP_PASSWORD }}}}"}}
target: {{port: {port}}}
steps:
  - ehlo: client.example
  - starttls: {{}}
  - ehlo: client.example
  - auth: {{mechanism: {mechanism}, username: "{{{{ user }}}}", password: "{{{{ password }}}}"}}
    expect: {expect}
  - send: "MAIL FROM:<{{{{ user }}}}>"
  - send: "RCPT TO:<someone@example.net>"
    expect: {relay}
  - send: QUIT
    expect: 221
"""


def _postfix_target(postfix) -> Target:
    return Target(
        name="postfix",
        endpoint=Endpoint(
            host=postfix.host,
            port=postfix.port,
            tls_options=TlsOptions(ca_file=str(postfix.ca_file)),
        ),
        implicit_tls_port=postfix.smtps_port,
    )


@pytest.mark.postfix
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_postfix_every_mechanism_logs_in_and_then_may_relay(postfix, tmp_path, mechanism):
    assert mechanism in postfix.mechs
    path = write(
        tmp_path,
        AUTH_SCENARIO.format(
            mechanism=mechanism, user=postfix.user, port=postfix.port, expect=235, relay=250
        ),
    )
    result = run_file(path, _postfix_target(postfix), environ={"SMTP_PASSWORD": postfix.password})
    assert result.verdict == "passed", explain(result)


@pytest.mark.postfix
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_postfix_wrong_password_gets_535_and_relay_stays_refused(postfix, tmp_path, mechanism):
    path = write(
        tmp_path,
        AUTH_SCENARIO.format(
            mechanism=mechanism, user=postfix.user, port=postfix.port, expect=535, relay=554
        ),
    )
    result = run_file(path, _postfix_target(postfix), environ={"SMTP_PASSWORD": "wrong-pw-x"})
    assert result.verdict == "passed", explain(result)
    auth = next(s for s in result.steps if s.kind == "auth")
    assert auth.replies[-1].status == "5.7.8"


@pytest.mark.postfix
@pytest.mark.parametrize("name", TLS_AUTH_SCENARIOS)
def test_example_scenarios_pass_against_postfix(postfix, name):
    extra = {}
    if name in ("auth/login-after-tls.yaml", "auth/wrong-password-rejected.yaml"):
        extra = {"auth_user": postfix.user}
    environ = {"SMTP_PASSWORD": postfix.password}
    result = run_file(SCENARIOS / name, _postfix_target(postfix), environ=environ, **extra)
    assert result.verdict == "passed", explain(result)


@pytest.mark.postfix
def test_postfix_implicit_tls_certificate_facts(postfix):
    result = run_file(SCENARIOS / "tls/implicit-tls-banner.yaml", _postfix_target(postfix))
    assert result.verdict == "passed", explain(result)
    tls = result.steps[0].tls
    assert tls.verified and "mx.postfix.test" in tls.subject
    assert result.target.port == postfix.port  # reported as the target; TLS went to smtps
    assert f":{postfix.smtps_port}" in result.transcript[0].text


@pytest.mark.postfix
def test_cli_ca_file_makes_verify_true_pass_against_postfix(postfix, capsys):
    from smtpscript.cli import run_cli

    scenario = str(SCENARIOS / "tls/starttls-offered.yaml")
    target = f"{postfix.host}:{postfix.port}"
    assert run_cli(["run", scenario, "-t", target]) == 1
    untrusted = capsys.readouterr().out
    assert "certificate verify failed: unable to get local issuer certificate" in untrusted
    assert run_cli(["run", scenario, "-t", target, "--ca-file", str(postfix.ca_file)]) == 0
    assert "PASS" in capsys.readouterr().out


def test_cli_ca_file_must_exist(tmp_path, capsys):
    from smtpscript.cli import run_cli

    scenario = str(SCENARIOS / "tls/starttls-offered.yaml")
    missing = tmp_path / "nope.pem"
    assert run_cli(["run", scenario, "-t", "127.0.0.1:1", "--ca-file", str(missing)]) == 2
    assert capsys.readouterr().err == f"smtpscript: error: --ca-file {missing}: no such file\n"


def _run_text(tmp_path, body: str, target: Target):  # type: ignore[no-untyped-def]
    path = write(tmp_path, "smtpscript: 1\ntitle: tls check\n" + body.lstrip("\n"))
    return run_file(path, target)


OLD_TLS = """
steps:
  - connect: {{}}
  - ehlo: client.example.org
  - starttls:
      verify: false
      max_version: {version}
    tls:
      established: false
"""


def test_old_tls_refused_passes_when_the_server_refuses_it(tmp_path, sandbox_target):
    result = _run_text(tmp_path, OLD_TLS.format(version="TLSv1.1"), sandbox_target)
    assert result.verdict == "passed", result.reason
    assert any("TLS handshake refused, as expected" in e.text for e in result.transcript)


def test_old_tls_refused_fails_when_the_handshake_succeeds(tmp_path, sandbox_target):
    result = _run_text(tmp_path, OLD_TLS.format(version="TLSv1.2"), sandbox_target)
    assert result.verdict == "failed"
    assert "expected the server to refuse the TLS handshake, got TLSv1.2" in result.reason


@pytest.mark.parametrize(
    ("days", "verdict", "words"),
    [
        ("1", "passed", None),
        ("100000", "failed", "at least 100000 more days"),
        ("soon", "error", "'soon' is not a whole number of days"),
    ],
)
def test_days_left_may_be_a_template(tmp_path, sandbox_target, days, verdict, words):
    text = (
        "vars:\n  min_days: '" + days + "'\nsteps:\n  - connect: {}\n  - ehlo: c.example.org\n"
        "  - starttls: {}\n    tls:\n      days_left: '{{ min_days }}'\n"
    )
    result = _run_text(tmp_path, text, sandbox_target)
    assert result.verdict == verdict, result.reason
    if words:
        assert words in result.reason


def test_tls_templates_and_established_are_validated(tmp_path):
    from smtpscript.loading import load_paths

    path = write(
        tmp_path,
        "smtpscript: 1\ntitle: t\nsteps:\n  - connect: {}\n    tls:\n      established: false\n"
        "  - starttls: {}\n    tls:\n      days_left: '{{ nope }}'\n",
    )
    problems = [str(p) for p in load_paths([path]).problems]
    assert any(
        "steps[0].tls.established: 'established: false' is judged on a starttls" in p
        for p in problems
    ), problems
    assert any("steps[1].tls.days_left: undefined variable 'nope'" in p for p in problems)
