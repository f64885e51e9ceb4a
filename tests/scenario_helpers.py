"""Helpers for tests that run scenario files through the library API."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from smtpscript.cli import run_cli
from smtpscript.loading import load_paths
from smtpscript.model import Target
from smtpscript.results import ScenarioResult
from smtpscript.runner import RunOptions, run

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"


def run_file(
    path: Path | str, target: Target, environ: dict[str, str] | None = None, **overrides: Any
) -> ScenarioResult:
    """Run one scenario file on one target and return its result (validation must pass)."""
    loaded = load_paths([path], extra_names=overrides)
    assert not loaded.problems, [str(p) for p in loaded.problems]
    assert len(loaded.scenarios) == 1
    options = RunOptions(overrides=dict(overrides), environ=environ or {})
    return run(loaded.scenarios, [target], options).scenarios[0]


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def explain(result: ScenarioResult) -> str:
    """Assertion message: the verdict, reason and conversation."""
    lines = [f"{result.verdict}: {result.reason}"]
    lines += [f"{e.direction}: {e.text}" for e in result.transcript]
    return "\n".join(lines)


def steps_file(
    folder: Path, steps: str, *, name: str = "s.yaml", title: str = "cli test", extra: str = ""
) -> Path:
    """A scenario from its steps (YAML, any indentation); ``extra`` goes before steps:."""
    path = folder / name
    body = textwrap.indent(textwrap.dedent(steps).strip(), "  ")
    path.write_text(f"smtpscript: 1\ntitle: {title}\n{extra}steps:\n{body}\n", encoding="utf-8")
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit status, stdout, stderr); never a traceback."""
    status = run_cli([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, out, err
