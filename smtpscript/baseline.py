"""Comparison over time: this run's findings against a baseline run's.

A finding is one failed scenario run, keyed by scenario id and target name (the same
check on the same server). Against a baseline each finding of this run is

- ``new``: the baseline did not have it (the check passed then, or did not run);
- ``open``: still open, the baseline had it too;

and each finding of the baseline that this run does not have is

- ``fixed``: the check ran again and passed;
- ``unverified``: the check did not give a verdict this time (not run, skipped, or an
  error), so nobody can say it is fixed.

Every view (HTML, console recap, Markdown) reads the same Comparison.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from smtpscript.results import SEVERITY_ORDER, RunResult, ScenarioResult

Status = Literal["new", "open", "fixed", "unverified"]
STATUSES: tuple[Status, ...] = ("new", "open", "fixed", "unverified")
LABELS: dict[str, str] = {
    "new": "new",
    "open": "still open",
    "fixed": "fixed",
    "unverified": "not re-checked",
}

Key = tuple[str, str]  # (scenario_id, target name)


def key(result: ScenarioResult) -> Key:
    return (result.scenario_id, result.target.name)


@dataclass(frozen=True)
class Comparison:
    """How this run's findings stand against the baseline's."""

    baseline_started_at: str
    baseline_tool_version: str
    status: dict[Key, Status]  # every finding of this run: new or open
    fixed: list[ScenarioResult] = field(default_factory=list)  # the baseline's results
    unverified: list[ScenarioResult] = field(default_factory=list)  # the baseline's results

    def of(self, result: ScenarioResult) -> Status | None:
        """new or open for a finding of this run; None for anything else."""
        return self.status.get(key(result)) if result.verdict == "failed" else None

    def counts(self, target: str | None = None) -> dict[Status, int]:
        """How many of each, in STATUSES order; ``target``: on that target only."""
        out: Counter[Status] = Counter(
            s for (_, name), s in self.status.items() if target is None or name == target
        )
        out["fixed"] = sum(1 for r in self.fixed if target is None or r.target.name == target)
        out["unverified"] = sum(
            1 for r in self.unverified if target is None or r.target.name == target
        )
        return {s: out[s] for s in STATUSES}

    def summary(self, target: str | None = None) -> str:
        """``3 new, 10 still open, 2 fixed`` (not re-checked only when there are any)."""
        counts = self.counts(target)
        parts = [f"{counts[s]} {LABELS[s]}" for s in ("new", "open", "fixed")]
        if counts["unverified"]:
            parts.append(f"{counts['unverified']} {LABELS['unverified']}")
        return ", ".join(parts)


def compare(current: RunResult, baseline: RunResult) -> Comparison:
    before: dict[Key, ScenarioResult] = {}
    for result in baseline.scenarios:
        before.setdefault(key(result), result)  # merged inputs: the first one counts
    now: dict[Key, ScenarioResult] = {}
    for result in current.scenarios:
        now.setdefault(key(result), result)
    was_finding = {k for k, r in before.items() if r.verdict == "failed"}
    status: dict[Key, Status] = {
        k: ("open" if k in was_finding else "new") for k, r in now.items() if r.verdict == "failed"
    }
    fixed, unverified = [], []
    for k in sorted(was_finding, key=lambda k: _order(before[k])):
        again = now.get(k)
        if again is not None and again.verdict == "passed":
            fixed.append(before[k])
        elif again is None or again.verdict != "failed":
            unverified.append(before[k])
    return Comparison(
        baseline_started_at=baseline.started_at,
        baseline_tool_version=baseline.tool_version,
        status=status,
        fixed=fixed,
        unverified=unverified,
    )


def _order(result: ScenarioResult) -> tuple[int, str, str]:
    severity = result.severity
    rank = SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else len(SEVERITY_ORDER)
    return (rank, result.target.name, result.scenario_id)
