"""End to end: a run against a hostile server, its HTML report opened in real Chromium.

The banner and replies carry markup and template syntax; the report written by
`smtpscript run --html` must show them literally, run none of it, log no
errors and fetch nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import Conn, Hostile
from scenario_helpers import write

from smtpscript.cli import run_cli

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
BANNER = b"220 <script>alert(1)</script> {{7*7}} <img src=x onerror=alert(2)> ESMTP\r\n"
EHLO = b"250-evil.test <script>document.title='PWNED'</script>\r\n250 8BITMIME\r\n"


async def hostile_mx(conn: Conn) -> None:
    await conn.send(BANNER)
    await conn.serve(
        {
            b"EHLO": EHLO,
            b"RCPT": b"250 2.1.5 <b>relayed</b> \x1b[31m\xff</pre>\r\n",  # an open relay
        }
    )


SCENARIO = """
smtpscript: 1
title: Refuses to relay for an outsider
severity: high
steps:
  - connect: {}
  - ehlo: audit.example
  - send: "MAIL FROM:<a@example.org>"
  - send: "RCPT TO:<victim@example.net>"
    expect: [550, 554]
"""


@pytest.mark.chromium
def test_hostile_run_report_is_inert_in_chromium(tmp_path, monkeypatch, capsys, browser):
    monkeypatch.chdir(tmp_path)
    scenario = write(tmp_path, SCENARIO)
    with Hostile(hostile_mx) as server:
        status = run_cli(
            ["run", str(scenario), "-t", f"{server.host}:{server.port}", "--html", "r.html"]
        )
    assert status == 1, capsys.readouterr()
    url = (tmp_path / "r.html").as_uri()
    browser.open(url, width=1280, height=1400)
    browser.settle(0.5)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(ARTIFACTS / "report-hostile-run.png")
    # the evidence is a click away: open every details element, as a reader would
    browser.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    text = browser.evaluate("document.body.innerText")
    assert "<script>alert(1)</script> {{7*7}} <img src=x onerror=alert(2)>" in text
    assert "<script>document.title='PWNED'</script>" in text
    assert "expected 550 or 554, got 250 2.1.5 <b>relayed</b>" in text
    assert "\\xff" in text and "\\x1b[31m" in text  # bytes shown visibly, not interpreted
    assert "PWNED" not in browser.evaluate("document.title")
    assert browser.log.dialogs == []
    assert browser.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert browser.log.errors() == []
    assert browser.log.requests == [url]
