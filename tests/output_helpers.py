"""Every view of a run as text, for tests that look for what must never be shown."""

from __future__ import annotations

import html
import io
import json
from collections.abc import Iterator
from typing import Any

from lxml import etree

from smtpscript.console import ConsoleView
from smtpscript.report import render_html, render_junit
from smtpscript.results import RunResult, to_json


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield str(key)
            yield from _strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)


def all_outputs(run: RunResult) -> dict[str, str]:
    """console (-v), JSON strings (decoded), JUnit text and attributes, HTML text (unescaped)."""
    console = io.StringIO()
    view = ConsoleView(console, verbose=True, colour=False)
    for result in run.scenarios:
        view.scenario(result)
    view.summary(run)
    junit = etree.fromstring(render_junit(run).encode("utf-8"))
    junit_text = [*junit.itertext()]
    junit_text += [v for element in junit.iter() for v in element.attrib.values()]
    return {
        "console": console.getvalue(),
        "json": "\n".join(_strings(json.loads(to_json(run)))),
        "junit": "\n".join(junit_text),
        "html": html.unescape(render_html(run)),
    }
