"""Helpers for tests that run scenario files through the library API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
