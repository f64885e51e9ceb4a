"""Secrets never leak: console, JSON, JUnit and HTML of an AUTH run hold no password form."""

from __future__ import annotations

import base64
import json

from scenario_helpers import write

from smtpscript.cli import run_cli

PASSWORD = "sandbox-alice-pw"  # the sandbox's documented password for alice
TOKEN = "ya29.secret-oauth-token-value"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SECRET_FORMS = [
    PASSWORD,
    _b64(PASSWORD),
    _b64(f"\0alice\0{PASSWORD}"),  # the AUTH PLAIN payload
    TOKEN,
    _b64(f"user=alice\x01auth=Bearer {TOKEN}\x01\x01"),  # the XOAUTH2 payload
]

SCENARIO = """
smtpscript: 1
title: AUTH with secrets from the environment
vars:
  password: "{{ env.SMTP_PASSWORD }}"
steps:
  - ehlo: client.example
  - starttls: {}
  - ehlo: client.example
  - auth: {mechanism: XOAUTH2, username: alice, token: "{{ env.OAUTH_TOKEN }}"}
    expect: 5xx
  - auth: {mechanism: LOGIN, username: alice, password: "{{ password }}"}
  - connect: {}
  - ehlo: client.example
  - starttls: {}
  - ehlo: client.example
  - auth: {mechanism: PLAIN, username: alice, password: "{{ password }}"}
    name: "PLAIN login for {{ password }}"
  - send: "NOOP {{ password }}"
    name: the server sees it, the report must not
  - send: QUIT
    expect: 221
"""


def test_no_secret_in_any_output(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("OAUTH_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    scenario = write(tmp_path, SCENARIO)
    outputs = {
        "json": tmp_path / "r.json",
        "junit": tmp_path / "j.xml",
        "html": tmp_path / "r.html",
    }
    status = run_cli(
        [
            "run",
            str(scenario),
            "-t",
            "sandbox",
            "-v",
            "--json",
            str(outputs["json"]),
            "--junit",
            str(outputs["junit"]),
            "--html",
            str(outputs["html"]),
        ]
    )
    console = capsys.readouterr()
    assert status == 0, console.out + console.err
    texts = {"stdout": console.out, "stderr": console.err}
    texts |= {name: path.read_text(encoding="utf-8") for name, path in outputs.items()}
    for where, text in texts.items():
        for secret in SECRET_FORMS:
            assert secret not in text, f"{secret!r} leaked into {where}"
    # the run really authenticated and the evidence is still there, masked
    assert "235" in console.out and "AUTH PLAIN ********" in console.out
    assert "C: NOOP ********" in console.out
    results = json.loads(texts["json"])
    steps = results["scenarios"][0]["steps"]
    assert [s["replies"][-1]["code"] for s in steps if s["kind"] == "auth"] == [504, 235, 235]
