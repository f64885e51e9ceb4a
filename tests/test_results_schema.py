"""schemas/results.schema.json describes results.to_dict(run) exactly."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from test_report_html import sample_run

from smtpscript.latency import LatencySummary
from smtpscript.report import render_html
from smtpscript.results import (
    RESULTS_FORMAT,
    LoadSummary,
    ReasonCount,
    ReplyRecord,
    RunResult,
    ScenarioResult,
    StepLatency,
    StepResult,
    TargetInfo,
    TlsFacts,
    TranscriptEntry,
    from_dict,
    to_dict,
    to_json,
)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "results.schema.json"
DEFS = {
    "target": TargetInfo,
    "scenario": ScenarioResult,
    "step": StepResult,
    "reply": ReplyRecord,
    "tls": TlsFacts,
    "transcriptEntry": TranscriptEntry,
    "load": LoadSummary,
    "stepLatency": StepLatency,
    "reasonCount": ReasonCount,
    "latency": LatencySummary,
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _errors(validator: Draft202012Validator, data: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]


def test_sample_run_validates(validator: Draft202012Validator) -> None:
    assert _errors(validator, to_dict(sample_run())) == []


def test_json_text_validates(validator: Draft202012Validator) -> None:
    assert _errors(validator, json.loads(to_json(sample_run()))) == []


def test_defaults_validate(validator: Draft202012Validator) -> None:
    empty_step = StepResult(
        index=1, path="steps[0]", kind="read", name="read", line=0, verdict="passed", expected="any"
    )
    result = ScenarioResult(
        scenario_id="a.yaml",
        file="a.yaml",
        line=1,
        title="t",
        description="",
        severity="medium",
        tags=[],
        references=[],
        target=TargetInfo("x", "x", 25),
        verdict="passed",
        steps=[dataclasses.replace(empty_step, tls=TlsFacts())],
    )
    assert _errors(validator, to_dict(RunResult())) == []
    assert _errors(validator, to_dict(RunResult(scenarios=[result]))) == []


@pytest.mark.parametrize(("name", "cls"), [("$root", RunResult), *DEFS.items()])
def test_schema_matches_dataclass_fields(schema: dict[str, Any], name: str, cls: type) -> None:
    node = schema if name == "$root" else schema["$defs"][name]
    fields = {f.name for f in dataclasses.fields(cls)}
    assert node["additionalProperties"] is False
    assert set(node["properties"]) == fields
    assert set(node["required"]) == fields - ADDED_IN_FORMAT_1.get(cls.__name__, set())


# Properties added after the first release of format 1: optional, so older files stay valid.
ADDED_IN_FORMAT_1 = {
    "RunResult": {"incomplete", "title", "load"},
    "ScenarioResult": {"internal_error", "warnings", "remediation", "finding", "plan_index"},
    "TranscriptEntry": {"step"},
    "StepResult": {"file", "included_from"},
    "TargetInfo": {"facts"},
    "TlsFacts": {"cert_sha256", "spki_sha256"},
    "LoadSummary": {"engine"},
}


def test_every_property_is_described(schema: dict[str, Any]) -> None:
    nodes = [schema, *(schema["$defs"][name] for name in DEFS)]
    missing = [
        p for node in nodes for p, spec in node["properties"].items() if not spec.get("description")
    ]
    assert missing == []


def test_format_is_pinned(schema: dict[str, Any], validator: Draft202012Validator) -> None:
    assert schema["properties"]["format"]["const"] == RESULTS_FORMAT == 1
    data = to_dict(sample_run())
    data["format"] = 2
    assert _errors(validator, data)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(extra=1),
        lambda d: d["scenarios"][1].update(verdict="broken"),
        lambda d: d["scenarios"][1].update(severity="severe"),
        lambda d: d["scenarios"][1]["steps"][0].update(unknown=True),
        lambda d: d["scenarios"][1]["steps"][2]["tls"].update(bits="256"),
        lambda d: d["scenarios"][1]["transcript"][0].update(direction="X"),
        lambda d: d["scenarios"][1]["steps"][0]["replies"][0].pop("bare_lf"),
        lambda d: d["targets"][0].update(port=70000),
        lambda d: d["scenarios"][1]["steps"][1]["captures"].update(n=1),
    ],
)
def test_rejects_what_to_dict_never_writes(validator: Draft202012Validator, mutate: Any) -> None:
    data = copy.deepcopy(to_dict(sample_run()))
    mutate(data)
    assert _errors(validator, data)


def test_round_trip_and_same_report() -> None:
    run = sample_run()
    again = from_dict(json.loads(to_json(run)))
    assert again == run
    assert render_html(again) == render_html(run)
