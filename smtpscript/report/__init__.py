"""Views over a RunResult: the HTML audit report, JUnit XML and a Markdown summary.

Both are pure functions of the result model (``smtpscript.results``); neither
touches the runner. Jinja is imported only when an HTML report is rendered, so
importing this package costs nothing at CLI start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smtpscript.baseline import Comparison
    from smtpscript.results import RunResult

__all__ = ["render_html", "render_junit", "render_markdown", "write_html", "write_junit"]


def render_html(run: RunResult, comparison: Comparison | None = None) -> str:
    """The self-contained HTML audit report (same result in, same bytes out);
    ``comparison``: each finding marked new / still open, and what was fixed."""
    from smtpscript.report.html import render

    return render(run, comparison)


def write_html(run: RunResult, path: Path | str, comparison: Comparison | None = None) -> None:
    _write(Path(path), render_html(run, comparison))


def render_markdown(run: RunResult, comparison: Comparison | None = None) -> str:
    """A Markdown summary for CI job pages (GitHub $GITHUB_STEP_SUMMARY, GitLab notes)."""
    from smtpscript.report.markdown import render

    return render(run, comparison)


def render_junit(run: RunResult) -> str:
    """JUnit XML: one ``<testsuite>`` per target, one ``<testcase>`` per scenario."""
    from smtpscript.report.junit import render

    return render(run)


def write_junit(run: RunResult, path: Path | str) -> None:
    _write(Path(path), render_junit(run))


def _write(path: Path, text: str) -> None:
    # errors="replace": a lone surrogate from a decoded-then-escaped reply must
    # not lose the whole report.
    path.write_text(text, encoding="utf-8", errors="replace")
