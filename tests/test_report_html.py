"""The HTML audit report: escaping, self-containment, anchors, order, counts."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from smtpscript.report import render_html, write_html
from smtpscript.report.html import anchor, format_ms
from smtpscript.results import (
    ReplyRecord,
    RunResult,
    ScenarioResult,
    StepResult,
    TargetInfo,
    TlsFacts,
    TranscriptEntry,
    from_dict,
    to_json,
)

HOSTILE_BANNER = (
    "mx.example <script>alert(1)</script> {{7*7}} </pre> \"'& "
    "<script>document.title='PWNED'</script> <img src=x onerror=alert(2)> \\x1b[31m"
)
LONG_LINE = "Z" * 5000

MX1 = TargetInfo(name="mx1", host="192.0.2.10", port=25)
MX2 = TargetInfo(name="mx2.example.org:2525", host="mx2.example.org", port=2525)


def _reply(code: int | None, *lines: str, ms: float = 3.0) -> ReplyRecord:
    return ReplyRecord(code=code, status=None, lines=list(lines), elapsed_ms=ms)


def _step(index: int, kind: str, sent: list[str], replies: list[ReplyRecord], **kw) -> StepResult:
    base = {
        "path": f"steps[{index - 1}]",
        "name": kind.upper(),
        "line": 10 + index,
        "verdict": "passed",
        "expected": "2xx",
        "duration_ms": 4.0 * index,
    }
    base.update(kw)
    return StepResult(index=index, kind=kind, sent=sent, replies=replies, **base)


def _scenario(sid: str, target: TargetInfo, verdict: str, **kw) -> ScenarioResult:
    base = {
        "file": f"scenarios/{sid}",
        "line": 1,
        "title": sid.removesuffix(".yaml"),
        "description": "",
        "severity": "medium",
        "tags": [],
        "references": [],
        "started_at": "2026-01-02T03:04:05+00:00",
        "duration_ms": 100.0,
    }
    base.update(kw)
    return ScenarioResult(scenario_id=sid, target=target, verdict=verdict, **base)


def relay_failed(target: TargetInfo) -> ScenarioResult:
    """An open relay: the finding, with a hostile banner and TLS facts."""
    tls = TlsFacts(
        version="TLSv1.3",
        cipher="TLS_AES_256_GCM_SHA384",
        bits=256,
        subject="CN=mx.example <b>bold</b>",
        issuer="CN=Example CA",
        sans=["mx.example", "{{7*7}}.example"],
        not_before="2025-12-01T00:00:00Z",
        not_after="2026-02-01T00:00:00Z",
        days_left=12,
        verified=False,
        verify_error="self-signed certificate",
        server_name="mx.example",
        name_matches=True,
    )
    steps = [
        _step(1, "connect", [], [_reply(220, HOSTILE_BANNER)], expected="220"),
        _step(
            2,
            "ehlo",
            ["EHLO audit.example.org"],
            [_reply(250, "mx.example", "STARTTLS", "SIZE 10240000")],
            expected="250",
            captures={"size": "10240000", "evil": "<script>alert(1)</script>"},
        ),
        _step(3, "starttls", ["STARTTLS"], [_reply(220, "Ready")], expected="220", tls=tls),
        _step(4, "send", ["MAIL FROM:<probe@example.org>"], [_reply(250, "2.1.0 Ok")]),
        _step(
            5,
            "send",
            ["RCPT TO:<victim@example.net>"],
            [_reply(250, "2.1.5 Ok " + LONG_LINE)],
            verdict="failed",
            expected="550 or 554, status 5.7.x",
            message="expected 550 or 554, status 5.7.x; got 250 2.1.5 Ok <b>relayed</b>",
        ),
    ]
    transcript = [
        TranscriptEntry(0.001, "S", "220 " + HOSTILE_BANNER),
        TranscriptEntry(0.002, "C", "EHLO audit.example.org"),
        TranscriptEntry(0.010, "*", "TLS established: TLSv1.3"),
        TranscriptEntry(0.020, "S", "250 2.1.5 Ok " + LONG_LINE),
    ]
    return _scenario(
        "relay.yaml",
        target,
        "failed",
        severity="high",
        duration_ms=250.5,
        title="Refuses to relay for an outsider </pre><script>alert(1)</script>",
        description="An outside sender must not reach an outside recipient.",
        tags=["relay", "security"],
        references=["RFC 5321 section 3.6.2"],
        reason="expected 550 or 554, status 5.7.x; got 250 2.1.5 Ok <b>relayed</b>",
        steps=steps,
        transcript=transcript,
        protocol_violations=["reply line longer than 512 octets <i>x</i>"],
    )


def sample_run() -> RunResult:
    """Passed, failed (two severities), error and skipped on two targets, hostile data."""
    critical = _scenario(
        "smuggling.yaml",
        MX2,
        "failed",
        severity="critical",
        duration_ms=900.0,
        reason="expected closed; got 250 Ok",
        steps=[
            _step(
                1,
                "raw",
                ["DATA\\r\\n.\\n"],
                [_reply(250, "Ok")],
                verdict="failed",
                expected="closed",
                message="expected closed; got 250 Ok",
            )
        ],
    )
    errored = _scenario(
        "auth.yaml",
        MX2,
        "error",
        severity="low",
        reason="connection refused by 198.51.100.7:2525 {{7*7}}",
    )
    skipped = _scenario(
        "oauth.yaml", MX1, "skipped", severity="info", reason="env.SMTP_TOKEN is not defined"
    )
    passed = [
        _scenario(
            "banner.yaml",
            t,
            "passed",
            severity="info",
            duration_ms=20.0,
            steps=[_step(1, "connect", [], [_reply(220, "mx ESMTP")], expected="220")],
        )
        for t in (MX1, MX2)
    ]
    return RunResult(
        tool_version="0.1.0",
        started_at="2026-01-02T03:04:05+00:00",
        finished_at="2026-01-02T03:04:07.5+00:00",
        duration_ms=2500.0,
        targets=[MX1, MX2],
        scenarios=[
            passed[0],
            relay_failed(MX1),
            skipped,
            passed[1],
            errored,
            critical,
            relay_failed(MX2),
        ],
    )


# --- a small HTML inspector ---------------------------------------------------


class Inspector(HTMLParser):
    """Collects ids, fragment links, fetching attributes, scripts and style text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.fragments: list[str] = []
        self.fetching: list[tuple[str, str, str]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.text: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "id" and value:
                self.ids.append(value)
            if name == "href" and value and value.startswith("#"):
                self.fragments.append(value[1:])
            elif name in ("href", "src", "srcset", "data", "action", "poster", "background"):
                self.fetching.append((tag, name, value or ""))
            if name == "style" or name.startswith("on"):
                self.fetching.append((tag, name, value or ""))
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "style":
            self.styles.append(data)
        else:
            self.text.append(data)


def inspect(html: str) -> Inspector:
    parser = Inspector()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def html() -> str:
    return render_html(sample_run())


# --- escaping -----------------------------------------------------------------


def test_server_markup_never_appears_raw(html: str) -> None:
    assert "<script>alert(1)" not in html
    assert "<script>document.title" not in html
    assert "<img src=x" not in html
    assert "<b>relayed</b>" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # only our own, at the end


def test_template_syntax_in_data_is_shown_literally(html: str) -> None:
    text = "".join(inspect(html).text)
    assert "{{7*7}}" in text
    assert "{{7*7}}.example" in text
    assert "49" not in text


def test_hostile_text_survives_as_text(html: str) -> None:
    text = "".join(inspect(html).text)
    assert HOSTILE_BANNER in text  # quotes, ampersand, </pre>, \x1b: all literally there
    assert LONG_LINE in text


EVIL = "<b a='1' b=\"2\">&amp;</b>"  # every character HTML escaping touches


def test_every_step_field_is_escaped_as_markupsafe_does() -> None:
    """Steps and conversations are written in Python (html.steps_html, conv_html) for
    speed: each value from the results must still come out as autoescape writes it."""
    from markupsafe import escape

    step = _step(
        1,
        f"send{EVIL}",
        [f"MAIL FROM:{EVIL}"],
        [_reply(250, f"ok {EVIL}", f"more {EVIL}")],
        name=f"name {EVIL}",
        expected=f"2xx {EVIL}",
        message=f"note {EVIL}",
        path=f"steps[0]{EVIL}",
        file=f"frag{EVIL}.yaml",
        included_from=[f"main{EVIL}.yaml:3"],
        captures={f"key{EVIL}": f"value{EVIL}"},
        repeat_index=2,
    )
    run = RunResult(targets=[MX1], scenarios=[_scenario("s.yaml", MX1, "passed", steps=[step])])
    out = render_html(run)
    assert EVIL not in out and "<b a=" not in out
    for text in (
        f"send{EVIL}",
        f"name {EVIL}",
        f"2xx {EVIL}",
        f"note {EVIL}",
        f"steps[0]{EVIL} in frag{EVIL}.yaml:11 · included from main{EVIL}.yaml:3",
        f"frag{EVIL}.yaml:11",
        f"captured key{EVIL}",
        f"value{EVIL}",
        f"C: MAIL FROM:{EVIL}",
        f"S: 250-ok {EVIL}",
        f"S: 250 more {EVIL}",
    ):
        assert str(escape(text)) in out, text


def test_raw_control_bytes_are_made_visible() -> None:
    run = sample_run()
    run.scenarios[0].steps[0].replies[0].lines = ["ESMTP \x1b[31mred\x00"]
    out = render_html(run)
    assert "\x1b" not in out and "\x00" not in out
    assert "\\x1b[31mred\\x00" in out


# --- self-contained -----------------------------------------------------------


def test_nothing_is_fetched(html: str) -> None:
    page = inspect(html)
    assert page.fetching == []
    css = "".join(page.styles)
    assert "url(" not in css and "@import" not in css and "@font-face" not in css
    assert "http://" not in html and "https://" not in html
    assert "src=" not in html.replace("src=x", "")  # the only one is escaped hostile text


def test_csp_allows_only_our_script(html: str) -> None:
    match = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert match is not None
    policy = match.group(1)
    assert "default-src 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]


def test_script_is_optional_filter_only(html: str) -> None:
    page = inspect(html)
    assert len(page.scripts) == 1
    assert 'id="filter-bar" class="filter" hidden' in html  # invisible without JS


# --- structure ----------------------------------------------------------------


def test_every_fragment_link_resolves(html: str) -> None:
    page = inspect(html)
    assert len(page.ids) == len(set(page.ids))
    assert page.fragments
    assert set(page.fragments) <= set(page.ids)


def test_matrix_links_each_result() -> None:
    run = sample_run()
    html = render_html(run)
    for result in run.scenarios:
        assert f'href="#{anchor(result.target.name, result.scenario_id)}"' in html


def test_anchors_are_stable_slugs() -> None:
    a = anchor("mx2.example.org:2525", "relay/open relay.yaml")
    assert a == anchor("mx2.example.org:2525", "relay/open relay.yaml")
    assert re.fullmatch(r"r-mx2-example-org-2525-relay-open-relay-yaml-[0-9a-f]{6}", a)
    assert anchor("a", "b/c") != anchor("a", "b-c")
    assert re.fullmatch(r"r-[a-z0-9-]+", anchor("<x>\"'", "{{7*7}}"))


def test_duplicate_results_get_distinct_ids() -> None:
    run = sample_run()
    run.scenarios.append(run.scenarios[0])
    page = inspect(render_html(run))
    assert len(page.ids) == len(set(page.ids))


def test_failures_sorted_first(html: str) -> None:
    details = re.findall(
        r'<(?:article|details) class="result (?:finding )?v-(\w+)" id="([^"]+)"', html
    )
    verdicts = [v for v, _ in details]
    assert verdicts == ["failed"] * 3 + ["error", "skipped", "passed", "passed"]
    assert details[0][1] == anchor("mx2.example.org:2525", "smuggling.yaml")  # critical first


def test_findings_and_errors_are_always_open_the_rest_one_line(html: str) -> None:
    # a finding (and a run that could not be judged) is an article: nothing to open
    assert re.findall(r'<article class="result finding v-(\w+)"', html) == [
        "failed",
        "failed",
        "failed",
        "error",
    ]
    # passed and skipped runs are one line each, their conversation a click away
    assert re.findall(r'<details class="result v-(\w+)" id="[^"]+"(?: open)?>', html) == [
        "skipped",
        "passed",
        "passed",
    ]
    assert not re.search(r'<details class="result v-\w+" id="[^"]+" open>', html)


def test_findings_by_severity_counts(html: str) -> None:
    counts = dict(re.findall(r'data-severity="(\w+)"><span class="num">(\d+)</span>', html))
    assert counts == {"critical": "1", "high": "2", "medium": "0", "low": "0", "info": "0"}
    assert list(counts) == ["critical", "high", "medium", "low", "info"]
    assert "3 findings, 1 error" in html


def test_verdict_counts(html: str) -> None:
    tally = re.findall(r'<li class="v-(\w+)(?: zero)?"><span class="num">(\d+)</span>', html)
    assert dict(tally) == {"failed": "3", "error": "1", "skipped": "1", "passed": "2"}


def test_failure_message_and_facts_shown(html: str) -> None:
    text = " ".join(" ".join(inspect(html).text).split())
    assert "expected 550 or 554, status 5.7.x; got 250 2.1.5 Ok <b>relayed</b>" in text
    assert "connection refused by 198.51.100.7:2525 {{7*7}}" in text
    assert "env.SMTP_TOKEN is not defined" in text
    for fact in (
        "TLSv1.3",
        "TLS_AES_256_GCM_SHA384",
        "Example CA",
        "12 days left",
        "self-signed certificate",
        "captured evil",
        "line 15",
        "reply line longer than 512 octets <i>x</i>",
        "RFC 5321 section 3.6.2",
    ):
        assert fact in text, fact


def test_conversation_rebuilds_multiline_replies(html: str) -> None:
    text = "".join(inspect(html).text)
    assert "C: EHLO audit.example.org\nS: 250-mx.example\nS: 250-STARTTLS\nS: 250 SIZE" in text


def test_summary_names_version_and_times(html: str) -> None:
    text = " ".join(inspect(html).text)
    assert "2026-01-02 03:04:05 UTC" in text and "2026-01-02 03:04:07 UTC" in text
    assert "0.1.0" in text and "2.50 s" in text


def test_no_time_chart_when_every_run_took_under_a_second(html: str) -> None:
    assert max(r.duration_ms for r in sample_run().scenarios) < 1000
    assert "<svg" not in html and "where the time went" not in html


def test_chart_is_inline_svg_with_escaped_labels_in_the_appendix() -> None:
    run = sample_run()
    run.scenarios[1].duration_ms = 1500.0  # one run worth looking at
    html = render_html(run)
    assert html.index('id="appendix"') > html.index('id="checks"')  # after every check
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert svg.count("<rect") == 7
    assert "<script" not in svg and "&lt;/pre&gt;" in svg


def test_empty_run_renders() -> None:
    out = render_html(RunResult(tool_version="0.1.0"))
    assert "no scenario results" in out and "<svg" not in out


@pytest.mark.parametrize(
    ("ms", "text"), [(0.25, "0.25 ms"), (12.4, "12 ms"), (2500, "2.50 s"), (125_000, "2 min 5 s")]
)
def test_format_ms(ms: float, text: str) -> None:
    assert format_ms(ms) == text


# --- determinism and JSON -----------------------------------------------------


def test_deterministic(html: str) -> None:
    assert render_html(sample_run()) == html


def test_same_html_from_saved_json(html: str, tmp_path: Path) -> None:
    saved = tmp_path / "results.json"
    saved.write_text(to_json(sample_run()), encoding="utf-8")
    again = from_dict(json.loads(saved.read_text(encoding="utf-8")))
    assert again == sample_run()
    assert render_html(again) == html


def test_write_html(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    write_html(sample_run(), path)
    assert path.read_text(encoding="utf-8") == render_html(sample_run())


# --- in a real browser --------------------------------------------------------

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture
def report_url(tmp_path: Path) -> str:
    path = tmp_path / "report.html"
    write_html(sample_run(), path)
    return path.as_uri()


@pytest.mark.chromium
def test_browser_runs_no_server_script(browser, report_url: str) -> None:  # type: ignore[no-untyped-def]
    browser.open(report_url, width=1280, height=1000)
    browser.settle(0.5)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(ARTIFACTS / "report-chromium.png")
    assert browser.evaluate("document.title").startswith("smtpscript audit · ")
    assert browser.log.dialogs == []
    assert browser.evaluate("document.querySelectorAll('script').length") == 1
    assert browser.evaluate("document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert browser.log.errors() == []
    assert browser.log.requests == [report_url]


@pytest.mark.chromium
def test_browser_shows_hostile_text_literally(browser, report_url: str) -> None:  # type: ignore[no-untyped-def]
    browser.open(report_url)
    browser.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    text = browser.evaluate("document.body.innerText")
    assert "<script>alert(1)</script> {{7*7}} </pre>" in text
    assert "<script>document.title='PWNED'</script>" in text
    assert "\\x1b[31m" in text
    visible = browser.evaluate(
        "[...document.querySelectorAll('pre.conv')].some(p => p.offsetHeight > 0"
        " && p.textContent.includes('{{7*7}}'))"
    )
    assert visible is True


@pytest.mark.chromium
def test_browser_filter_toggle_and_anchor(browser, report_url: str) -> None:  # type: ignore[no-untyped-def]
    passed_id = anchor("mx1", "banner.yaml")
    browser.open(f"{report_url}#{passed_id}")
    assert browser.evaluate(f"document.getElementById('{passed_id}').open") is True
    assert browser.evaluate("document.getElementById('filter-bar').hidden") is False
    browser.evaluate("document.getElementById('failures-only').click()")
    shown = "id => getComputedStyle(document.getElementById(id)).display"
    assert browser.evaluate(f"({shown})('{passed_id}')") == "none"
    failed_id = anchor("mx1", "relay.yaml")
    assert browser.evaluate(f"({shown})('{failed_id}')") == "block"
    assert browser.log.errors() == []


@pytest.mark.chromium
def test_browser_print_media_hides_filter(browser, report_url: str) -> None:  # type: ignore[no-untyped-def]
    browser.emulate_media([{"name": "prefers-color-scheme", "value": "dark"}])
    browser.open(report_url)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(ARTIFACTS / "report-chromium-dark.png", full_page=False)
    dark = browser.evaluate("getComputedStyle(document.body).backgroundColor")
    browser.emulate_media([], media="print")
    assert (
        browser.evaluate("getComputedStyle(document.getElementById('filter-bar')).display")
        == "none"
    )
    assert browser.evaluate("getComputedStyle(document.body).backgroundColor") != dark
    closed = anchor("mx1", "banner.yaml")  # a passed result: one line, on screen and on paper
    assert browser.evaluate(f"document.getElementById('{closed}').open") is False
    shown = "sel => document.querySelector(sel).checkVisibility()"
    assert browser.evaluate(f"({shown})('#{closed} .r-body')") is False
    finding = anchor("mx1", "relay.yaml")  # a finding prints with its evidence
    assert browser.evaluate(f"({shown})('#{finding} .evidence pre.conv')") is True
    assert browser.evaluate(f"({shown})('#{finding} .conversation .steps')") is False
