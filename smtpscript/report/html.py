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
import functools
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

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
)

if TYPE_CHECKING:
    from jinja2 import Environment

VERDICT_ORDER = ("failed", "error", "skipped", "passed")
CHART_BARS = 15
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
class Item:
    """One scenario on one target, as the details section shows it."""

    result: ScenarioResult
    anchor: str
    failing: StepResult | None
    steps: list[tuple[StepResult, list[ConvLine]]]
    transcript: list[ConvLine]  # empty where the steps already tell it all


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


def render(run: RunResult) -> str:
    template = _environment().get_template("report.html.j2")
    script = _script()
    html = template.render(
        view=build_view(run),
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


def build_view(run: RunResult) -> dict[str, Any]:
    items = sorted_items(run)
    targets = _target_names(run)
    return {
        "run": run,
        "status": "passed" if run.ok and not run.incomplete else "failed",
        "counts": [(v, run.counts()[v]) for v in VERDICT_ORDER],
        "total": len(run.scenarios),
        "errors": run.counts()["error"],
        "findings": run.findings_by_severity(),
        "finding_items": [i for i in items if i.result.verdict == "failed"],
        "targets": targets,
        "target_info": {t.name: t for t in run.targets},
        "matrix": matrix(items, targets),
        "themes": themes(run.scenarios, targets),
        "groups": _groups(items),
        "chart": chart(items),
    }


def sorted_items(run: RunResult) -> list[Item]:
    anchors = anchors_for(run.scenarios)
    items = [_item(r, a) for r, a in zip(run.scenarios, anchors, strict=True)]
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


def _item(result: ScenarioResult, anchor: str) -> Item:
    failing = next((s for s in result.steps if s.verdict in ("failed", "error")), None)
    steps = [(s, conversation(s)) for s in result.steps]
    # The per-step conversation is the transcript cut at step boundaries; the
    # full one (with timings and TLS/close notes) is repeated only as evidence
    # for failures and errors, or when the steps recorded no conversation.
    evidence = result.verdict in ("failed", "error") or not any(lines for _, lines in steps)
    return Item(
        result=result,
        anchor=anchor,
        failing=failing,
        steps=steps,
        transcript=transcript_lines(result) if evidence else [],
    )


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


def _target_names(run: RunResult) -> list[str]:
    names = [t.name for t in run.targets]
    for r in run.scenarios:
        if r.target.name not in names:
            names.append(r.target.name)
    return names


def matrix(items: list[Item], targets: list[str]) -> list[MatrixRow]:
    """Scenarios x targets; rows in the items' order, so the worst come first."""
    rows: dict[str, dict[str, Item]] = {}
    for item in items:
        rows.setdefault(item.result.scenario_id, {}).setdefault(item.result.target.name, item)
    out = []
    for scenario_id, cells in rows.items():
        first = next(iter(cells.values())).result
        bad = any(c.result.verdict in ("failed", "error") for c in cells.values())
        out.append(
            MatrixRow(
                scenario_id, first.title, first.severity, [cells.get(t) for t in targets], bad
            )
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


def _groups(items: list[Item]) -> list[tuple[str, list[Item]]]:
    groups = [(v, [i for i in items if i.result.verdict == v]) for v in VERDICT_ORDER]
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
