"""The Markdown summary (--markdown) for CI job pages: content, and escaping.

It is rendered with markdown-it-py (CommonMark plus GitHub's tables, as GitHub and
GitLab read it) to check that nothing a server or a scenario wrote becomes markup:
no script, no link, no image, no extra table cell.
"""

from __future__ import annotations

import re

import pytest
from hostile import Conn, Hostile
from scenario_helpers import REPO, write

from smtpscript.api import run_paths
from smtpscript.baseline import compare
from smtpscript.cli import run_cli
from smtpscript.report import render_markdown
from smtpscript.report.markdown import code, text
from smtpscript.results import RunResult
from smtpscript.sandbox import Sandbox, SandboxConfig

markdown_it = pytest.importorskip("markdown_it")


def to_html(markdown: str) -> str:
    return markdown_it.MarkdownIt("commonmark").enable("table").render(markdown)


def _relay(open_relay: bool) -> RunResult:
    with Sandbox(SandboxConfig(open_relay=open_relay)) as server:
        run = run_paths(
            [REPO / "scenarios" / "relay"],
            targets=[f"{server.host}:{server.port}"],
            ca_file=server.cert_path,
            environ={},
        ).run
    for result in run.scenarios:
        result.target.name = "mx1"
    run.targets = [run.scenarios[0].target]
    return run


@pytest.fixture(scope="module")
def open_relay() -> RunResult:
    return _relay(True)


def test_title_posture_findings_and_how_to_fix(open_relay):
    open_relay.title = "Weekly relay audit"
    markdown = render_markdown(open_relay)
    lines = markdown.splitlines()
    assert lines[0] == "# Weekly relay audit"
    assert "- **mx1** (`" in markdown and "16 critical; relay 16/16 accepted" in markdown
    rows = [line for line in lines if line.startswith("| **critical** | mx1 |")]
    assert len(rows) == 16
    # words first, the technical line beneath in a code span
    assert any(
        "The server accepted the message for &lt;victim@example.net&gt; where a refusal was "
        "expected.<br>`step 5 (RCPT was accepted, so the message must be refused at the end "
        "of DATA): expected 5xx, got 250 " in row
        for row in rows
    ), rows[0]
    how = markdown.split("## How to fix\n")[1]
    assert how.count("\n- **") == 16  # once per failed check, with the targets it failed on
    assert "(mx1): " in how and "smtpd\\_relay\\_restrictions" in how
    # a valid table: four cells in every row, whatever the texts hold
    assert {row.count(" | ") for row in rows} == {3}
    html = to_html(markdown)
    assert html.count("<tr>") == 17  # the header and 16 findings


def test_with_a_baseline_each_finding_says_new_and_fixed_ones_are_listed(open_relay):
    closed = _relay(False)
    markdown = render_markdown(open_relay, compare(open_relay, closed))
    assert "| Since baseline |" in markdown
    assert markdown.count(" new |") == 16
    assert "Compared with the baseline run of " in markdown
    assert "16 new, 0 still open, 0 fixed" in markdown
    fixed = render_markdown(closed, compare(closed, open_relay))
    assert "No findings." in fixed and fixed.count("- fixed: **") == 16


def test_no_findings_says_so():
    markdown = render_markdown(RunResult(tool_version="0.1.0"))
    assert markdown.startswith("# smtpscript audit\n")
    assert "No findings." in markdown


# --- escaping -----------------------------------------------------------------------------

HOSTILE_REPLY = (
    b"250 2.1.5 <script>alert(1)</script> | `tick` ![x](http://evil.test/i.png) "
    b"[click](http://evil.test) **bold** <img src=x onerror=alert(2)>\r\n"
)


async def hostile_mx(conn: Conn) -> None:
    await conn.send(b"220 <b>mx</b> | ESMTP\r\n")
    await conn.serve({b"RCPT": HOSTILE_REPLY})


SCENARIO = """
smtpscript: 1
title: "Refuses to relay | [click](http://evil.test) <script>x</script> *em*"
severity: critical
remediation: "Set `x` | see [docs](http://evil.test) <img src=y>"
steps:
  - connect: {}
  - ehlo: audit.example
  - send: "MAIL FROM:<a@example.org>"
  - send: "RCPT TO:<victim@example.net>"
    name: "RCPT | refused [here](http://evil.test)"
    expect: [550, 554]
"""


def test_server_and_scenario_text_never_becomes_markup(tmp_path):
    scenario = write(tmp_path, SCENARIO)
    with Hostile(hostile_mx) as server:
        run = run_paths([scenario], targets=[f"{server.host}:{server.port}"], environ={}).run
    assert [r.verdict for r in run.scenarios] == ["failed"]
    markdown = render_markdown(run)
    html = to_html(markdown)
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "<a " not in html and "<em>" not in html and "<strong>bold" not in html
    # the text is still there, literally, for a reader
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "[click](http://evil.test)" in html
    row = next(line for line in markdown.splitlines() if line.startswith("| **critical**"))
    cells = re.findall(r"<t[dh]>", to_html("| a | b | c | d |\n|---|---|---|---|\n" + row))
    assert len(cells) == 4 + 4  # the pipes inside the texts did not add cells


def test_text_and_code_helpers():
    assert text("a <b> & *c* _d_ [e](f) | g\nh") == (
        "a &lt;b&gt; &amp; \\*c\\* \\_d\\_ \\[e\\](f) \\| g h"
    )
    assert code("250 ok") == "`250 ok`"
    assert code("a `b` c") == "``a `b` c``"
    assert code("`x`") == "`` `x` ``"
    assert code("a|b") == "`a\\|b`"


def test_run_writes_the_summary_to_a_file_or_stdout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    failing = write(
        tmp_path,
        "smtpscript: 1\ntitle: Expects a relay\nseverity: high\nsteps:\n"
        '  - ehlo: c.example\n  - send: "MAIL FROM:<a@example.org>"\n'
        '  - send: "RCPT TO:<b@example.net>"\n    expect: 250\n',
    )
    status = run_cli(["run", str(failing), "-t", "sandbox", "--markdown", "-", "--title", "CI"])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.out.startswith("# CI\n")
    assert "| **high** | sandbox | Expects a relay | The server refused RCPT TO:" in captured.out
    assert "FAIL" in captured.err  # the console lines moved to stderr
    assert run_cli(["run", str(failing), "-t", "sandbox", "--markdown", "summary.md"]) == 1
    assert (tmp_path / "summary.md").read_text().startswith("# smtpscript audit\n")
