"""The HTML audit report: one self-contained, deterministic file.

Python computes everything that needs logic (sorting, counts, anchors, chart
geometry); the templates only lay it out. Templates are rendered in a sandboxed,
autoescaping Jinja environment, and result data is only ever passed *into* a
template, never rendered *as* one: a server reply of ``{{7*7}}`` shows as
``{{7*7}}``. A Content-Security-Policy in the page allows no network access
and only our own inline script (pinned by hash), as a second line of defence.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from smtpscript.baseline import LABELS, Comparison
from smtpscript.report.posture import Posture, TlsSummary, postures, target_names
from smtpscript.results import (
    SEVERITY_ORDER,
    VERDICTS,
    ReplyRecord,
    RunResult,
    ScenarioResult,
    StepResult,
    TargetInfo,
    TlsFacts,
    TranscriptEntry,
    escape_surrogates,
    paused_gc,
)
from smtpscript.wording import Story, story

if TYPE_CHECKING:
    from jinja2 import Environment

VERDICT_ORDER = ("failed", "error", "skipped", "passed")
DEFAULT_TITLE = "smtpscript audit"
CHART_BARS = 15
CHART_WORTH_MS = 1000.0  # the time chart only when some run took a second or more
BAR_PITCH = 26  # px per bar row in the chart
BAR_MAX = 480  # px of the longest bar
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NON_SLUG = re.compile(r"[^a-z0-9]+")


class ConvLine(NamedTuple):
    """One line of a conversation: css class ("c" sent, "n" note, "" received), text."""

    cls: str
    text: str
    t: str = ""  # seconds since the scenario started, transcript lines only


@dataclass(frozen=True)
class StepView:
    """One step as the conversation shows it: one numbering (``Step 4``), the YAML
    path and source only as a tooltip and a quiet ``line 14``."""

    step: StepResult
    where: str  # "line 14", "fragment.yaml:34", "implicit"
    tip: str  # "steps[2] in relay.yaml:14"
    failing: bool  # the step the verdict came from (its message is the item's story)
    bare_lf: bool  # a reply ended a line with a bare LF


@dataclass(frozen=True)
class Item:
    """One scenario on one target, as the details section shows it."""

    result: ScenarioResult
    anchor: str
    failing: StepResult | None
    steps: list[StepView]
    transcript: list[ConvLine]  # empty where the steps already tell it all
    story: Story
    evidence: list[ConvLine]  # the failing step's exchange: the command and the reply
    status: str | None = None  # against a baseline: "new" or "still open"


@dataclass(frozen=True)
class ThemeCell:
    """One theme on one target: scenario runs failed, in error, and judged (not skipped)."""

    failed: int
    errors: int
    total: int


@dataclass(frozen=True)
class MatrixRow:
    scenario_id: str
    title: str
    severity: str
    cells: list[Item | None]
    bad: bool  # a failure or error on some target
    failed: bool  # a failure on some target: the severity weighs (shown in colour)


@dataclass(frozen=True)
class Bar:
    label: str
    value: str
    anchor: str
    verdict: str
    y: int
    width: float  # px

    @property
    def value_x(self) -> float:
        return round(386 + self.width, 1)


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    height: int
    caption: str


_PLAIN_TYPES = frozenset(
    {
        StepView,
        Story,
        Posture,
        TlsSummary,
        Comparison,
        RunResult,
        ScenarioResult,
        StepResult,
        ReplyRecord,
        TlsFacts,
        TargetInfo,
        TranscriptEntry,
        ConvLine,
        Item,
        MatrixRow,
        ThemeCell,
        Bar,
        Chart,
    }
)


def render(run: RunResult, comparison: Comparison | None = None) -> str:
    template = _environment().get_template("report.html.j2")
    script = _script()
    with paused_gc():  # a large report makes a few million objects, and no cycles
        html = template.render(
            view=build_view(run, comparison),
            script=_markup(script),
            script_hash=base64.b64encode(hashlib.sha256(script.encode()).digest()).decode(),
        )
    # The engine already escapes control bytes; this keeps a stray one visible
    # instead of letting it reach the browser (or a terminal that cats the file).
    # Lone surrogates (undecodable file-name bytes) cannot be UTF-8: shown as \udcXX.
    return escape_surrogates(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", html))


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    from jinja2 import PackageLoader, StrictUndefined

    env = _sandbox_class()(
        loader=PackageLoader("smtpscript.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ms"] = format_ms
    env.filters["conv"] = conv_html
    env.filters["steps"] = steps_html
    env.filters["load_row"] = lambda step: (f"{step.path} {step.name}", step.latency)
    env.filters["when"] = format_when
    return env


def _sandbox_class() -> type[Environment]:
    from jinja2.sandbox import SandboxedEnvironment

    class ReportEnvironment(SandboxedEnvironment):
        """The sandbox, with a fast path for public fields of our own plain data.

        The sandbox's per-lookup safety checks were two thirds of the render
        time of a large report; our result dataclasses hold nothing unsafe.
        """

        def getattr(self, obj: Any, attribute: str) -> Any:
            if type(obj) in _PLAIN_TYPES and not attribute.startswith("_"):
                try:
                    return getattr(obj, attribute)
                except AttributeError:
                    pass
            return super().getattr(obj, attribute)

    return ReportEnvironment


@functools.lru_cache(maxsize=1)
def _script() -> str:
    env = _environment()
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, "report.js.j2")
    return source.strip()


def _markup(text: str) -> Any:
    from markupsafe import Markup

    return Markup(text)


# --- view model ---------------------------------------------------------------


def build_view(run: RunResult, comparison: Comparison | None = None) -> dict[str, Any]:
    items = sorted_items(run, comparison)
    targets = target_names(run)
    counts = run.counts()
    slowest = max((r.duration_ms for r in run.scenarios), default=0.0)
    return {
        "run": run,
        "title": getattr(run, "title", "") or DEFAULT_TITLE,
        "status": "passed" if run.ok and not run.incomplete else "failed",
        "counts": [(v, counts[v]) for v in VERDICT_ORDER],
        "total": len(run.scenarios),
        "errors": counts["error"],
        "findings": run.findings_by_severity(),
        "finding_items": [i for i in items if i.result.verdict == "failed"],
        "error_items": [i for i in items if i.result.verdict == "error"],
        "quiet_groups": _groups(items, ("skipped", "passed")),
        "targets": targets,
        "target_info": {t.name: t for t in run.targets},
        "postures": postures(run, targets),
        "comparison": comparison,
        "baseline_counts": _baseline_counts(comparison),
        "severities": SEVERITY_MEANINGS,
        "matrix": matrix(items, targets),
        "themes": themes(run.scenarios, targets),
        "chart": chart(items) if slowest >= CHART_WORTH_MS else None,
    }


# What each severity means (scenarios/README.md, "Severity policy"): the legend.
SEVERITY_MEANINGS = (
    ("critical", "The server can be abused by anyone, now (e.g. an open relay)."),
    ("high", "A direct security weakness (SMTP smuggling, passwords in clear text, no TLS)."),
    ("medium", "Breaks standards others rely on, or weakens security indirectly."),
    ("low", "An information leak or missing hardening (user enumeration, no size limit)."),
    ("info", "Worth knowing, rarely worth an alarm (the banner names the software)."),
)


def _baseline_counts(comparison: Comparison | None) -> list[tuple[str, str, int]]:
    """(status, label, count) for the summary; empty without a baseline."""
    if comparison is None:
        return []
    counts = comparison.counts()
    shown = ("new", "open", "fixed") + (("unverified",) if counts["unverified"] else ())
    return [(s, LABELS[s], counts[s]) for s in shown]


def sorted_items(run: RunResult, comparison: Comparison | None = None) -> list[Item]:
    anchors = anchors_for(run.scenarios)
    items = [_item(r, a, comparison) for r, a in zip(run.scenarios, anchors, strict=True)]
    return sorted(items, key=_item_key)


def _item_key(item: Item) -> tuple[int, int, str, str, str]:
    r = item.result
    return (
        _rank(VERDICT_ORDER, r.verdict),
        _rank(SEVERITY_ORDER, r.severity),
        r.target.name,
        r.scenario_id,
        item.anchor,
    )


def _rank(order: tuple[str, ...], value: str) -> int:
    return order.index(value) if value in order else len(order)


def _item(result: ScenarioResult, anchor: str, comparison: Comparison | None = None) -> Item:
    told = story(result)
    failing = told.step
    steps = [_step_view(result, s, s is failing) for s in result.steps]
    # The per-step conversation is the transcript cut at step boundaries; the
    # full one (with timings and TLS/close notes) is repeated only as evidence
    # for failures and errors, or when the steps recorded no conversation.
    whole = result.verdict in ("failed", "error") or not any(
        s.sent or s.replies for s in result.steps
    )
    status = comparison.of(result) if comparison is not None else None
    return Item(
        result=result,
        anchor=anchor,
        failing=failing,
        steps=steps,
        transcript=transcript_lines(result) if whole else [],
        story=told,
        evidence=evidence(result, failing) if failing is not None else [],
        status=LABELS[status] if status else None,
    )


def _step_view(result: ScenarioResult, step: StepResult, failing: bool) -> StepView:
    file = step.file or result.file
    if step.name == "connect (implicit)":
        where, tip = "implicit", "the scenario has no connect step: connected before the next one"
    else:
        where = f"{step.file}:{step.line}" if file != result.file else f"line {step.line}"
        tip = f"{step.path} in {file}:{step.line}"
        if step.included_from:
            tip += " · included from " + " → ".join(step.included_from)
    bare_lf = any(reply.bare_lf for reply in step.replies)
    return StepView(step, where, tip, failing, bare_lf)


def transcript_lines(result: ScenarioResult) -> list[ConvLine]:
    css = {"C": "c", "S": ""}
    return [
        ConvLine(css.get(e.direction, "n"), f"{e.direction}: {e.text}", f"{e.t:8.3f}")
        for e in result.transcript
    ]


def conversation(step: StepResult) -> list[ConvLine]:
    """C:/S: lines of one step, replies written back in SMTP's own shape."""
    lines = [ConvLine("c", f"C: {text}") for text in step.sent]
    for reply in step.replies:
        lines.extend(_reply_lines(reply))
    return lines


def conv_html(lines: list[ConvLine]) -> Any:
    """A conversation as the report shows it: ``<pre class="conv">``, one line each.

    Written here, not as a macro: conversations are most of a large report's lines, and
    a macro pays attribute lookups and escapes on each. The result text of every line
    is escaped (_esc) as the template's autoescape does; ``cls`` ("c",
    "n" or "") and ``t`` (a formatted number) are ours, with nothing to escape.
    """
    return _markup(_conv_text(lines))


def _conv_text(lines: list[ConvLine]) -> str:
    parts = ['<pre class="conv">']
    for cls, text, t in lines:
        if t:
            parts += ('<span class="t">', t, "</span> ")
        if cls:
            parts += ('<span class="', cls, '">', _esc(text), "</span>\n")
        else:
            parts += (_esc(text), "\n")
    parts.append("</pre>\n")
    return "".join(parts)


def steps_html(item: Item) -> Any:
    """An item's steps as ``<ol class="steps">``, each with its conversation.

    Written here rather than as a macro, for the same reason as conv_html: a large
    report has tens of thousands of steps. Every value from the results is escaped
    (_esc), as the template's autoescape would; the TLS block of a step
    is the template's own ``tls`` macro (one render per distinct certificate).
    """
    parts = ['<ol class="steps">\n']
    for view in item.steps:
        step = view.step
        verdict = _esc(step.verdict)
        parts += (
            '<li class="step s-', verdict, " failing" if view.failing else "",
            '"><div class="step-head"><span class="n">Step ', _esc(step.index),
            '</span> <span class="kind">', _esc(step.kind),
            '</span> <span class="step-name">', _esc(step.name),
        )  # fmt: skip
        if step.repeat_index:
            parts += (' <span class="rep">#', _esc(step.repeat_index), "</span>")
        parts += (
            '</span> <span class="expect">expect ',
            _esc(step.expected or "nothing"),
            "</span>",
        )
        if step.verdict != "passed":
            parts += (' <span class="badge v-', verdict, '">', verdict, "</span>")
        parts += (
            ' <span class="ms">', _esc(format_ms(step.duration_ms)),
            '</span> <span class="src" title="', _esc(view.tip), '">', _esc(view.where),
            "</span></div>\n",
        )  # fmt: skip
        if step.sent or step.replies:
            parts.append(_conv_text(conversation(step)))
        if step.message and not view.failing:
            parts += ('<p class="step-msg">', _esc(step.message), "</p>")
        if view.bare_lf:
            parts.append('<p class="warn">A reply ended a line with a bare LF instead of CRLF.</p>')
        if step.tls:
            parts.append(tls_html(step.tls))
        if step.captures:
            parts.append('<dl class="kv captures">')
            for name, value in sorted(step.captures.items(), key=_capture_order):
                parts += (
                    "<div><dt>captured ", _esc(name), '</dt><dd class="mono">', _esc(value),
                    "</dd></div>",
                )  # fmt: skip
            parts.append("</dl>")
        parts.append("</li>\n")
    parts.append("</ol>\n")
    return _markup("".join(parts))


def _esc(value: Any) -> str:
    """markupsafe.escape as a plain str: the same bytes (its own pure-Python version of
    the escape) at a third of the cost, with no Markup object per value."""
    if type(value) is str:
        return (
            value.replace("&", "&amp;")
            .replace(">", "&gt;")
            .replace("<", "&lt;")
            .replace("'", "&#39;")
            .replace('"', "&#34;")
        )
    if type(value) is int:
        return str(value)
    from markupsafe import escape

    return str(escape(value))  # anything with __html__ keeps its meaning


def _capture_order(pair: tuple[str, str]) -> Any:
    # Jinja's dictsort: by key, case-insensitive
    return pair[0].lower() if isinstance(pair[0], str) else pair[0]


def tls_html(facts: TlsFacts) -> Any:
    """The template's ``tls`` macro for these facts: the same few certificates recur on
    every STARTTLS step of a run, so each is rendered once."""
    key = tuple(
        tuple(v) if isinstance(v, list) else v for v in map(facts.__getattribute__, _TLS_FIELDS)
    )
    return _tls_block(key)


@functools.lru_cache(maxsize=64)
def _tls_block(key: tuple[Any, ...]) -> Any:
    values = (list(v) if isinstance(v, tuple) else v for v in key)
    facts = TlsFacts(**dict(zip(_TLS_FIELDS, values, strict=True)))
    return _environment().get_template("macros.j2").module.tls(facts)  # type: ignore[attr-defined]


_TLS_FIELDS = tuple(f.name for f in dataclasses.fields(TlsFacts))


EVIDENCE_MESSAGE_LINES = 8


def evidence(result: ScenarioResult, step: StepResult) -> list[ConvLine]:
    """The exact commands and replies that prove a finding: the failing step's exchange,
    a message cut to its first lines, and for a message judged at the end of DATA the
    MAIL FROM and RCPT TO it was sent with (what the server accepted it for)."""
    lines: list[ConvLine] = []
    if step.kind in ("data", "bdat"):
        for earlier in result.steps:
            if earlier is step:
                break
            first = earlier.sent[0].upper() if earlier.sent else ""
            if first.startswith(("MAIL FROM", "RCPT TO")):
                lines += conversation(earlier)
    if step.kind != "data" or len(step.replies) < 2 or step.replies[0].code != 354:
        return lines + conversation(step)
    body = step.sent[1:]
    lines.append(ConvLine("c", f"C: {step.sent[0]}" if step.sent else "C: DATA"))
    lines += _reply_lines(step.replies[0])
    if len(body) > EVIDENCE_MESSAGE_LINES + 1:
        cut = len(body) - EVIDENCE_MESSAGE_LINES - 1
        lines += [ConvLine("c", f"C: {text}") for text in body[:EVIDENCE_MESSAGE_LINES]]
        lines.append(
            ConvLine("n", f"*  ... {cut} more line{'' if cut == 1 else 's'} of the message")
        )
        body = body[-1:]
    lines += [ConvLine("c", f"C: {text}") for text in body]
    for reply in step.replies[1:]:
        lines += _reply_lines(reply)
    return lines


def _reply_lines(reply: ReplyRecord) -> list[ConvLine]:
    if reply.code is None:
        return [ConvLine("n", "*  connection closed")]
    if not reply.lines:
        return [ConvLine("", f"S: {reply.code}")]
    last = len(reply.lines) - 1
    return [
        ConvLine("", f"S: {reply.code}{' ' if i == last else '-'}{text}".rstrip())
        for i, text in enumerate(reply.lines)
    ]


def anchors_for(results: list[ScenarioResult]) -> list[str]:
    """Stable, unique, URL-safe ids from target name + scenario id."""
    seen: Counter[str] = Counter()
    out = []
    for r in results:
        base = anchor(r.target.name, r.scenario_id)
        seen[base] += 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def anchor(target: str, scenario_id: str) -> str:
    digest = hashlib.sha256(f"{target}\0{scenario_id}".encode(errors="replace")).hexdigest()
    return f"r-{_slug(target)}-{_slug(scenario_id)}-{digest[:6]}"


def _slug(text: str) -> str:
    return _NON_SLUG.sub("-", text.lower()).strip("-")[:40].strip("-") or "x"


def matrix(items: list[Item], targets: list[str]) -> list[MatrixRow]:
    """Scenarios x targets; rows in the items' order, so the worst come first."""
    rows: dict[str, dict[str, Item]] = {}
    for item in items:
        rows.setdefault(item.result.scenario_id, {}).setdefault(item.result.target.name, item)
    out = []
    for scenario_id, cells in rows.items():
        first = next(iter(cells.values())).result
        verdicts = {c.result.verdict for c in cells.values()}
        row = [cells.get(t) for t in targets]
        bad = bool(verdicts & {"failed", "error"})
        out.append(
            MatrixRow(scenario_id, first.title, first.severity, row, bad, "failed" in verdicts)
        )
    return out


def themes(
    results: list[ScenarioResult], targets: list[str]
) -> list[tuple[str, list[ThemeCell | None]]]:
    """Checks by theme (a scenario's first tag: relay, smuggling, tls...) x targets: how
    many failed of how many ran, so a battery reads as one line ("relay: 0 of 17 failed").
    Empty when fewer than two scenarios share a theme (nothing to sum up)."""
    counts: dict[str, dict[str, list[int]]] = {}
    for r in results:
        if not r.tags:
            continue
        cell = counts.setdefault(r.tags[0], {}).setdefault(r.target.name, [0, 0, 0])
        cell[0] += r.verdict == "failed"
        cell[1] += r.verdict == "error"
        cell[2] += r.verdict != "skipped"
    if all(sum(c[2] for c in cells.values()) < 2 * len(cells) for cells in counts.values()):
        return []
    return [
        (theme, [ThemeCell(*cells[t]) if t in cells else None for t in targets])
        for theme, cells in sorted(counts.items())
        if any(c[2] for c in cells.values())  # all skipped: nothing to sum up
    ]


def _groups(items: list[Item], verdicts: tuple[str, ...]) -> list[tuple[str, list[Item]]]:
    groups = [(v, [i for i in items if i.result.verdict == v]) for v in verdicts]
    return [(v, members) for v, members in groups if members]


def chart(items: list[Item]) -> Chart:
    """Horizontal bars of the slowest scenario runs, laid out here (no JS)."""
    slowest = sorted(items, key=lambda i: (-i.result.duration_ms, i.anchor))[:CHART_BARS]
    top = max((i.result.duration_ms for i in slowest), default=0.0) or 1.0
    bars = [
        Bar(
            label=_clip(f"{i.result.title} · {i.result.target.name}", 48),
            value=format_ms(i.result.duration_ms),
            anchor=i.anchor,
            verdict=i.result.verdict,
            y=n * BAR_PITCH,
            width=round(max(i.result.duration_ms / top * BAR_MAX, 1.0), 1),
        )
        for n, i in enumerate(slowest)
    ]
    caption = (
        f"The {len(bars)} slowest of {len(items)} scenario runs"
        if len(items) > len(bars)
        else "Duration of each scenario run"
    )
    return Chart(bars=bars, height=len(bars) * BAR_PITCH, caption=caption)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- filters ------------------------------------------------------------------


def format_ms(ms: float) -> str:
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    minutes, seconds = divmod(ms / 1000, 60)
    return f"{minutes:.0f} min {seconds:.0f} s"


def format_when(iso: str) -> str:
    """ISO 8601 as a readable UTC time; anything unparsable is shown as given."""
    if not iso:
        return "—"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


assert set(VERDICT_ORDER) == set(VERDICTS)
