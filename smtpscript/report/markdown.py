"""A Markdown summary of a run, for CI job pages.

GitHub shows ``$GITHUB_STEP_SUMMARY`` on the job page, GitLab a note or an MR comment:
the title, one posture line per target, the findings table (severity, target, check,
what happened in words, baseline status) and how to fix each failed check. The full
evidence stays in the HTML report.

Everything from scenarios and servers is escaped: HTML special characters become
entities (nothing renders as markup, GitHub and GitLab both accept entities), Markdown
punctuation gets a backslash (no links, emphasis or headings out of server text), and
line breaks become spaces so a table row stays one row. Command and reply text goes in
code spans, where nothing is interpreted.
"""

from __future__ import annotations

import re

from smtpscript.baseline import LABELS, Comparison
from smtpscript.report.posture import postures, target_names
from smtpscript.results import RunResult, ScenarioResult
from smtpscript.wording import story

DEFAULT_TITLE = "smtpscript audit"
MAX_ROWS = 200  # GitHub caps a step summary at 1 MiB: the HTML report has the rest
_PUNCTUATION = re.compile(r"([\\`*_\[\]|~])")
_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def text(value: str) -> str:
    """Plain text that no Markdown or HTML reader will treat as markup."""
    value = _BREAKS.sub(" ", value)
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _PUNCTUATION.sub(r"\\\1", value)


def code(value: str) -> str:
    """A code span: shown exactly, whatever it holds (a pipe is escaped for tables,
    which GitHub and GitLab undo inside code spans)."""
    value = _BREAKS.sub(" ", value).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    pad = " " if value.startswith("`") or value.endswith("`") or not value.strip() else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def render(run: RunResult, comparison: Comparison | None = None) -> str:
    title = getattr(run, "title", "") or DEFAULT_TITLE
    counts = run.counts()
    findings = sorted((r for r in run.scenarios if r.verdict == "failed"), key=_order)
    errors = [r for r in run.scenarios if r.verdict == "error"]
    out = [f"# {text(title)}", ""]
    verdicts = ", ".join(f"{counts[v]} {v}" for v in ("failed", "error", "skipped", "passed"))
    out.append(
        f"{len(run.scenarios)} check runs on {len(target_names(run))} target"
        f"{'' if len(target_names(run)) == 1 else 's'}: {verdicts}. "
        f"Started {text(run.started_at or 'at an unknown time')}, smtpscript "
        f"{text(run.tool_version or 'unknown')}."
    )
    if run.incomplete:
        out += ["", f"**Incomplete run:** {text(run.incomplete)}."]
    out += ["", "## Posture", ""]
    for p in postures(run, target_names(run)):
        line = f"- **{text(p.name)}** ({code(p.where)}): {text(p.summary)}"
        if comparison is not None:
            line += f"; since the baseline: {comparison.summary(p.name)}"
        out.append(line)
    if comparison is not None:
        out += [
            "",
            f"Compared with the baseline run of {text(comparison.baseline_started_at)}: "
            f"{comparison.summary()}.",
        ]
    out += _findings_table(findings, errors, comparison)
    out += _fixed(comparison)
    out += _remediation(findings)
    out += ["", "The HTML report holds the evidence: every command and reply."]
    return "\n".join(out) + "\n"


def _findings_table(
    findings: list[ScenarioResult], errors: list[ScenarioResult], comparison: Comparison | None
) -> list[str]:
    if not findings and not errors:
        return ["", "## Findings", "", "No findings."]
    out = ["", "## Findings", ""]
    head = "| Severity | Target | Check | What happened |"
    rule = "|---|---|---|---|"
    if comparison is not None:
        head += " Since baseline |"
        rule += "---|"
    out += [head, rule]
    rows = [*findings, *errors]
    for result in rows[:MAX_ROWS]:
        severity = result.severity if result.verdict == "failed" else "error"
        told = story(result)
        what = text(told.words)
        if told.beneath:
            what += f"<br>{code(told.beneath)}"
        row = (
            f"| **{text(severity)}** | {text(result.target.name)} | {text(result.title)} | {what} |"
        )
        if comparison is not None:
            status = comparison.of(result)
            row += f" {LABELS[status] if status else ''} |"
        out.append(row)
    if len(rows) > MAX_ROWS:
        out += ["", f"… and {len(rows) - MAX_ROWS} more: see the HTML report."]
    return out


def _fixed(comparison: Comparison | None) -> list[str]:
    if comparison is None or not (comparison.fixed or comparison.unverified):
        return []
    out = ["", "## Findings of the baseline no longer seen", ""]
    for result in comparison.fixed:
        out.append(f"- fixed: **{text(result.title)}** on {text(result.target.name)}")
    for result in comparison.unverified:
        out.append(
            f"- not re-checked (no verdict this time): **{text(result.title)}** on "
            f"{text(result.target.name)}"
        )
    return out


def _remediation(findings: list[ScenarioResult]) -> list[str]:
    """How to fix each failed check once, however many targets it failed on."""
    seen: dict[str, tuple[ScenarioResult, list[str]]] = {}
    for result in findings:
        if result.remediation.strip():
            entry = seen.setdefault(result.scenario_id, (result, []))
            entry[1].append(result.target.name)
    if not seen:
        return []
    out = ["", "## How to fix", ""]
    for result, targets in list(seen.values())[:MAX_ROWS]:
        on = ", ".join(text(t) for t in targets)
        out.append(f"- **{text(result.title)}** ({on}): {text(result.remediation.strip())}")
    return out


def _order(result: ScenarioResult) -> tuple[int, str, str]:
    from smtpscript.results import SEVERITY_ORDER

    rank = (
        SEVERITY_ORDER.index(result.severity)
        if result.severity in SEVERITY_ORDER
        else len(SEVERITY_ORDER)
    )
    return (rank, result.target.name, result.scenario_id)
