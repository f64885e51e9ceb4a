"""JUnit XML for CI: one ``<testsuite>`` per target, one ``<testcase>`` per scenario.

The dialect is the Jenkins xUnit plugin's ``junit-10.xsd`` (which GitLab's
parser also reads): ``<testsuites>`` holds only name/tests/failures/errors/time;
``<testcase>`` only name/classname/time. GitLab keys test cases by classname
and name, so classname is the target and names are made unique per target.
Text from servers may hold characters XML 1.0 cannot carry at all (even as
character references); they become U+FFFD so the file is always well-formed.
Lone surrogates (undecodable file-name bytes) become the text ``\\udcXX``, as in
every other view. An incomplete run (Ctrl-C, SIGTERM) says so in an ``incomplete``
property of every suite.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter

from smtpscript.results import (
    RunResult,
    ScenarioResult,
    StepResult,
    TargetInfo,
    escape_surrogates,
)
from smtpscript.wording import Story, story

# Outside XML 1.0's Char production, plus DEL and C1 controls (allowed but
# discouraged, and rejected by some consumers).
_ILLEGAL_XML = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: str) -> str:
    """Replace what XML 1.0 forbids (C0 controls, U+FFFE/FFFF) and DEL/C1 by U+FFFD.

    Lone surrogates become the text ``\\udcXX`` first (see results.escape_surrogates).
    """
    return _ILLEGAL_XML.sub("\ufffd", escape_surrogates(text))


def render(run: RunResult) -> str:
    root = ET.Element(
        "testsuites",
        {
            "name": "smtpscript",
            "tests": str(len(run.scenarios)),
            "failures": str(run.counts()["failed"]),
            "errors": str(run.counts()["error"]),
            "time": seconds(run.duration_ms),
        },
    )
    for target, results in _by_target(run):
        root.append(testsuite(target, results, run.started_at, run.incomplete))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _by_target(run: RunResult) -> list[tuple[TargetInfo, list[ScenarioResult]]]:
    groups: dict[str, tuple[TargetInfo, list[ScenarioResult]]] = {
        t.name: (t, []) for t in run.targets
    }
    for result in run.scenarios:
        groups.setdefault(result.target.name, (result.target, []))[1].append(result)
    return [g for g in groups.values() if g[1]]


def testsuite(
    target: TargetInfo,
    results: list[ScenarioResult],
    timestamp: str,
    incomplete: str | None = None,
) -> ET.Element:
    counts = Counter(r.verdict for r in results)
    suite = ET.Element(
        "testsuite",
        _attrs(
            {
                "name": target.name,
                "tests": str(len(results)),
                "failures": str(counts["failed"]),
                "errors": str(counts["error"]),
                "skipped": str(counts["skipped"]),
                "time": seconds(sum(r.duration_ms for r in results)),
            }
            | ({"timestamp": timestamp} if timestamp else {})
        ),
    )
    props = ET.SubElement(suite, "properties")
    facts = [("host", target.host), ("port", str(target.port))]
    for name, value in facts + ([("incomplete", incomplete)] if incomplete else []):
        ET.SubElement(props, "property", _attrs({"name": name, "value": value}))
    for result, name in zip(results, _unique_names(results), strict=True):
        suite.append(testcase(result, name))
    return suite


def _unique_names(results: list[ScenarioResult]) -> list[str]:
    """Titles, with the scenario id added where two share a title on one target."""
    counts = Counter(r.title for r in results)
    return [r.title if counts[r.title] == 1 else f"{r.title} [{r.scenario_id}]" for r in results]


def testcase(result: ScenarioResult, name: str) -> ET.Element:
    case = ET.Element(
        "testcase",
        _attrs(
            {"classname": result.target.name, "name": name, "time": seconds(result.duration_ms)}
        ),
    )
    verdict_element = _verdict_element(result)
    if verdict_element is not None:
        case.append(verdict_element)
    out = ET.SubElement(case, "system-out")
    out.text = clean(system_out(result))
    return case


def _verdict_element(result: ScenarioResult) -> ET.Element | None:
    told = story(result)
    failing = told.step
    # words first, the technical expectation after: the same story as every other view
    message = told.line() or result.reason or result.verdict
    if result.verdict == "failed":
        element = ET.Element("failure", _attrs({"message": message, "type": result.severity}))
    elif result.verdict == "error":
        element = ET.Element("error", _attrs({"message": message, "type": "error"}))
    elif result.verdict == "skipped":  # the element says skipped: the reason is enough
        return ET.Element("skipped", _attrs({"message": result.reason or "skipped"}))
    else:
        return None
    element.text = clean(_failure_text(result, told, failing))
    return element


def _failure_text(result: ScenarioResult, told: Story, step: StepResult | None) -> str:
    """The story (words, then the technical line), where it happened, how to fix it."""
    lines = [told.words or result.reason or result.verdict]
    if told.beneath:
        lines.append(told.beneath)
    if step is not None:
        lines.append(
            f"step {step.index} ({step.kind}: {step.name}) at "
            f"{step.file or result.file}:{step.line} {step.path}, expected {step.expected}"
        )
    lines.append(
        f"scenario {result.scenario_id} ({result.file}:{result.line}), severity {result.severity}"
    )
    if result.verdict == "failed" and result.remediation:
        lines.append(f"remediation: {result.remediation.strip()}")
    return "\n".join(lines)


def system_out(result: ScenarioResult) -> str:
    """The (already redacted) conversation, ``C: ...`` / ``S: ...`` lines."""
    head = [
        f"# {result.title}",
        f"# {result.file}:{result.line} on {result.target.name} "
        f"({result.target.host}:{result.target.port}): {result.verdict}",
    ]
    if result.transcript:
        body = [f"{e.direction}: {e.text}" for e in result.transcript]
    else:
        body = [line for step in result.steps for line in _step_lines(step)]
    body += [f"!: protocol violation: {v}" for v in result.protocol_violations]
    body += [f"?: warning: {w}" for w in result.warnings]
    return "\n".join(head + body) + "\n"


def _step_lines(step: StepResult) -> list[str]:
    lines = [f"C: {text}" for text in step.sent]
    for reply in step.replies:
        if reply.code is None:
            lines.append("*: connection closed")
        else:
            lines += [f"S: {reply.code} {text}".rstrip() for text in reply.lines] or [
                f"S: {reply.code}"
            ]
    return lines


def _attrs(values: dict[str, str]) -> dict[str, str]:
    return {k: clean(v) for k, v in values.items()}


def seconds(ms: float) -> str:
    """Seconds with millisecond precision, in the xsd's SUREFIRE_TIME shape."""
    return f"{max(ms, 0.0) / 1000:.3f}"
