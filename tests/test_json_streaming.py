"""JSON results are streamed (results.iter_json): compact by default, --json-indent for
humans, the same value as the old whole-text writer (to_dict + json.dumps(indent=2)),
and `report` checks its input with the compiled schema check before jsonschema."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from scenario_helpers import cli, steps_file
from test_report_html import sample_run

from smtpscript import schemafile
from smtpscript.api import load_results, write_reports
from smtpscript.errors import ConfigError
from smtpscript.latency import LatencySummary
from smtpscript.results import (
    _SURROGATE,
    LoadSummary,
    ReasonCount,
    RunResult,
    StepLatency,
    TargetInfo,
    TranscriptEntry,
    iter_json,
    to_dict,
    to_json,
)

REPO = Path(__file__).resolve().parent.parent


def old_writer(run: RunResult, indent: int | None = 2) -> str:
    """What write_reports wrote before streaming: the whole text at once."""
    text = json.dumps(to_dict(run), indent=indent, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\\\u{ord(m.group()):04x}", text) + "\n"


def hostile_run() -> RunResult:
    run = sample_run()
    first = run.scenarios[0]
    first.transcript = [
        TranscriptEntry(0.0, "S", "220 ready"),  # outside every step: no "step" key
        TranscriptEntry(0.1, "C", "EHLO caf\udce9.test", step=1),  # a lone surrogate
    ]
    first.file = "scenarios/bad-\udcff.yaml"
    run.title = "audit of caf\u00e9 \u2014 \U0001f4e7"
    return run


def load_run() -> RunResult:
    run = sample_run()
    run.load = LoadSummary(
        scenario="s.yaml",
        title="load",
        target="sandbox",
        concurrency=50,
        repeat=1000,
        sessions=1000,
        verdicts={"passed": 998, "error": 2},
        session=LatencySummary(1000, 1.0, 2.0, 3.0, 4.0, 5.0),
        steps=[StepLatency("steps[0]", "ehlo", LatencySummary(1000, 0.1, 0.2, 0.3, 0.4, 0.5))],
        reasons=[ReasonCount("connection refused", 2)],
        kept=3,
    )
    return run


RUNS = {"empty": RunResult, "sample": sample_run, "hostile": hostile_run, "load": load_run}


@pytest.mark.parametrize("make", RUNS.values(), ids=RUNS.keys())
def test_written_json_is_compact_and_the_same_value_as_the_old_writer(tmp_path, make):
    run = make()
    path = tmp_path / "r.json"
    assert write_reports(run, json_path=path) == []
    text = path.read_bytes().decode("utf-8")
    assert text.endswith("}\n") and "\n" not in text[:-1]
    assert json.loads(text) == json.loads(old_writer(run))
    compact = json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    assert text == compact + "\n"  # no spaces at all between tokens


@pytest.mark.parametrize("make", RUNS.values(), ids=RUNS.keys())
@pytest.mark.parametrize("indent", [0, 2, 4])
def test_indented_json_is_exactly_what_json_dumps_indents(make, indent):
    run = make()
    assert "".join(iter_json(run, indent)) == old_writer(run, indent)
    assert to_json(run) == old_writer(run).removesuffix("\n")  # to_json keeps indent=2


def test_surrogates_are_written_as_text_and_the_file_is_utf8(tmp_path):
    path = tmp_path / "r.json"
    assert write_reports(hostile_run(), json_path=path) == []
    raw = path.read_bytes()
    assert b"\\\\udce9" in raw and b"\\\\udcff" in raw
    data = json.loads(raw.decode("utf-8"))  # strict UTF-8: no raw surrogate got through
    assert data["scenarios"][0]["transcript"][1]["text"] == "EHLO caf\\udce9.test"
    assert data["title"] == "audit of caf\u00e9 \u2014 \U0001f4e7"  # ensure_ascii=False
    assert "\u2014".encode() in raw


def test_optional_keys_are_omitted_as_before(tmp_path):
    run = hostile_run()
    run.targets.append(TargetInfo("mx:example.org", "mx.example.org", 25, facts={"mx": []}))
    data = json.loads("".join(iter_json(run)))
    assert data == json.loads(old_writer(run))
    transcript = data["scenarios"][0]["transcript"]
    assert "step" not in transcript[0] and transcript[1]["step"] == 1
    assert "load" not in data
    assert "facts" not in data["targets"][0] and data["targets"][-1]["facts"] == {"mx": []}
    assert "title" not in json.loads("".join(iter_json(RunResult())))
    loaded = json.loads("".join(iter_json(load_run())))
    assert loaded["load"] == to_dict(load_run())["load"]
    assert loaded["load"]["session"]["p99_ms"] == 4.0
    assert list(loaded) == list(to_dict(load_run()))  # keys in the same order


def test_stdout_gets_the_same_bytes(tmp_path):
    run = hostile_run()
    binary = io.BytesIO()
    wrapper = io.TextIOWrapper(binary, encoding="ascii")  # a report is UTF-8 regardless
    assert write_reports(run, json_path=Path("-"), stdout=wrapper) == []
    path = tmp_path / "r.json"
    write_reports(run, json_path=path)
    assert binary.getvalue() == path.read_bytes()
    text = io.StringIO()  # a stream without .buffer
    assert write_reports(run, json_path=Path("-"), stdout=text, json_indent=2) == []
    assert text.getvalue() == old_writer(run)


def test_a_failure_half_way_removes_the_truncated_file(tmp_path):
    run = sample_run()
    run.scenarios[-1].steps[0].captures = {"x": object()}  # not JSON: fails on the last one
    path = tmp_path / "r.json"
    path.write_text("older results\n", encoding="utf-8")
    [error] = write_reports(run, json_path=path, html_path=tmp_path / "r.html")
    assert error.internal and "TypeError" in error.message
    assert not path.exists()  # a partial file would mislead
    assert (tmp_path / "r.html").is_file()  # the other reports still written


def test_a_full_disk_mid_stream_removes_the_truncated_file(tmp_path):
    """A file size limit (EFBIG) stands in for a full disk, in a child process."""
    code = textwrap.dedent(
        """
        import resource, signal, sys
        from pathlib import Path
        sys.path.insert(0, sys.argv[2])
        from bench_report import build_run
        from smtpscript.api import write_reports
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        path = Path(sys.argv[1])
        print([e.message for e in write_reports(build_run(200), json_path=path)])
        print(path.exists())
        """
    )
    path = tmp_path / "r.json"
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(REPO / "benchmarks")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "File too large" in out[0] and str(path) in out[0]
    assert out[1] == "False"


def test_dev_full_is_reported_and_left_alone():
    [error] = write_reports(sample_run(), json_path=Path("/dev/full"))
    assert "No space left on device" in error.message
    assert Path("/dev/full").exists()


# --- the CLI ------------------------------------------------------------------


def test_run_writes_compact_json_unless_given_an_indent(capsys, tmp_path):
    path = steps_file(tmp_path, "- ehlo: client.test\n", title="streaming")
    compact, indented = tmp_path / "c.json", tmp_path / "i.json"
    status, _, err = cli(capsys, "run", path, "-t", "sandbox", "--json", compact)
    assert status == 0, err
    status, _, err = cli(
        capsys, "run", path, "-t", "sandbox", "--json", indented, "--json-indent", "3"
    )
    assert status == 0, err
    text = compact.read_text("utf-8")
    assert text.startswith('{"format":1,') and text.count("\n") == 1
    pretty = indented.read_text("utf-8")
    assert pretty.startswith('{\n   "format": 1,\n')
    data = json.loads(pretty)
    assert pretty == json.dumps(data, indent=3, ensure_ascii=False) + "\n"
    assert data["scenarios"][0]["verdict"] == "passed"


def test_report_rewrites_json_compact_or_indented_and_to_stdout(capsys, tmp_path):
    source = tmp_path / "in.json"
    source.write_text(old_writer(hostile_run()), encoding="utf-8")
    out = tmp_path / "out.json"
    assert cli(capsys, "report", source, "--json", out)[0] == 0
    assert out.read_text("utf-8").count("\n") == 1
    assert json.loads(out.read_text("utf-8")) == json.loads(source.read_text("utf-8"))
    assert cli(capsys, "report", source, "--json", out, "--json-indent", "2")[0] == 0
    assert out.read_text("utf-8") == source.read_text("utf-8")  # the old writer's text
    done = subprocess.run(
        [sys.executable, "-m", "smtpscript", "report", str(source), "--json", "-"],
        capture_output=True,
        check=True,
    )
    assert json.loads(done.stdout.decode("utf-8")) == json.loads(source.read_text("utf-8"))
    status, _, err = cli(capsys, "report", source, "--json", out, "--json-indent", "-1")
    assert status == 2 and "--json-indent" in err


# --- report's input check -------------------------------------------------------


def _expected_error(path: Path, data: dict[str, Any]) -> str:
    """The message load_results gave before the fast check: jsonschema's first error."""
    error = next(iter(schemafile.reader_validator("results").iter_errors(data)))
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
    return f"{path}: {where}: not smtpscript results: {message}"


def _mutations() -> list[tuple[str, Any]]:
    return [
        ("verdict", "maybe"),
        ("line", "one"),
        ("steps", {}),
        ("target", None),
        ("tags", [1]),
        ("duration_ms", True),
    ]


@pytest.mark.parametrize(("key", "value"), _mutations())
def test_a_rejected_file_is_explained_as_before(tmp_path, key, value):
    data = to_dict(sample_run())
    data["scenarios"][1][key] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert schemafile.reader_fast_check("results")(data) is False
    with pytest.raises(ConfigError) as caught:
        load_results([path])
    assert str(caught.value) == _expected_error(path, data)


def test_a_valid_file_never_reaches_jsonschema(tmp_path, monkeypatch):
    data = to_dict(load_run())
    data["from_a_newer_release"] = {"anything": [1]}  # readers ignore what they don't know
    data["scenarios"][0]["extra"] = True
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(data), encoding="utf-8")

    def slow(name: str) -> Any:
        raise AssertionError("jsonschema consulted for a valid file")

    monkeypatch.setattr(schemafile, "reader_validator", slow)
    run = load_results([path])
    assert run.load is not None and len(run.scenarios) == len(load_run().scenarios)


def test_the_reader_fast_check_agrees_with_jsonschema():
    check = schemafile.reader_fast_check("results")
    validator = schemafile.reader_validator("results")
    base = to_dict(hostile_run())
    samples = [base, to_dict(load_run()), to_dict(RunResult()), {}, {"format": "1"}]
    for key, value in _mutations():
        data = json.loads(json.dumps(base))
        data["scenarios"][0][key] = value
        samples.append(data)
    data = json.loads(json.dumps(base))
    data["scenarios"][0]["transcript"][0]["direction"] = "X"
    samples.append(data)
    for data in samples:
        assert check(data) == validator.is_valid(data), data.get("scenarios", [None])[:1]


@pytest.mark.parametrize(
    ("escape", "refused"),
    [("\\ud800", True), ("\\uDC80", True), ("\\\\udc80", False), ("\\ud83d\\udce7", False)],
)
def test_lone_surrogate_escapes_are_still_refused(tmp_path, escape, refused):
    path = tmp_path / "r.json"
    text = "".join(iter_json(sample_run()))
    path.write_text(text.replace('"title":"', f'"title":"x{escape}', 1), encoding="utf-8")
    if refused:
        with pytest.raises(ConfigError, match="lone surrogate"):
            load_results([path])
    else:
        assert load_results([path]).scenarios[0].title.startswith("x")
