"""Source positions follow includes: a step from a fragment points into the fragment, and
carries the include chain, in the result, the reason, JSON, HTML and JUnit."""

from __future__ import annotations

from output_helpers import all_outputs
from scenario_helpers import write

from smtpscript.loading import load_paths
from smtpscript.runner import run

INNER = """smtpscript: 1
fragment: true
steps:
  - send: "VRFY alice"
    expect: 250
"""
OUTER = """smtpscript: 1
fragment: true
steps:
  - ehlo: client.test
  - include: inner.yaml
"""
SCENARIO = """smtpscript: 1
title: nested includes
steps:
  - send: NOOP
  - include: outer.yaml
"""


def test_a_failing_step_in_a_nested_fragment_points_into_it(tmp_path, sandbox_target):
    inner = write(tmp_path, INNER, "inner.yaml")
    outer = write(tmp_path, OUTER, "outer.yaml")
    scenario = write(tmp_path, SCENARIO)
    result = run(load_paths([scenario]).scenarios, [sandbox_target])
    failed = result.scenarios[0].steps[-1]
    assert failed.verdict == "failed"  # VRFY gets 252 from the sandbox
    assert (failed.file, failed.line, failed.path) == (
        str(inner),
        4,
        "steps[1].include.steps[1].include.steps[0]",
    )
    assert failed.included_from == [f"{scenario}:5", f"{outer}:5"]
    noop = result.scenarios[0].steps[1]
    assert (noop.file, noop.included_from) == (str(scenario), [])
    assert result.scenarios[0].reason == (
        f"{inner}:4: steps[1].include.steps[1].include.steps[0] (VRFY alice): "
        "expected 250, got 252 2.0.0 Cannot VRFY user, but will accept message and attempt "
        "delivery"
    )
    outputs = all_outputs(result)
    assert f"{inner}:4" in outputs["html"]
    assert f"included from {scenario}:5 → {outer}:5" in outputs["html"]
    assert f"{inner}:4 steps[1].include.steps[1].include.steps[0]" in outputs["junit"]
