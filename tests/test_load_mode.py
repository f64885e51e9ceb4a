"""Load mode (run --repeat/--duration/--rate) against the real sandbox, and the latency
histogram it summarises with."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from scenario_helpers import cli, steps_file

from smtpscript.latency import Histogram

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "results.schema.json"


def _load_run(tmp_path: Path, capsys, steps: str, *options: object) -> tuple[int, str, dict]:
    """A load run of ``steps`` on the sandbox: (status, console, its validated JSON)."""
    path = steps_file(tmp_path, steps)
    out_file = tmp_path / "r.json"
    status, out, _ = cli(capsys, "run", path, "-t", "sandbox", "--json", out_file, *options)
    return status, out, _load(out_file)


def _load(path: Path) -> dict:
    data = json.loads(path.read_text())
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors(data)) == []  # the strict schema, load section and all
    return data


def test_repeat_runs_the_scenario_n_times_and_keeps_aggregates(tmp_path, capsys):
    steps = "- ehlo: load.example.org\n- send: NOOP\n- send: QUIT\n  expect: 221"
    status, out, data = _load_run(tmp_path, capsys, steps, "--repeat", "120", "-j", "8")
    assert status == 0, out
    load = data["load"]
    assert load["sessions"] == 120 and load["verdicts"] == {"passed": 120}
    assert load["concurrency"] == 8 and load["repeat"] == 120
    # the implicit connect is labelled with the first step's path
    assert [s["name"] for s in load["steps"]][1:] == ["EHLO load.example.org", "NOOP", "QUIT"]
    session = load["session"]
    assert session["count"] == 120
    assert session["min_ms"] <= session["median_ms"] <= session["p90_ms"] <= session["p99_ms"]
    assert session["p99_ms"] <= session["max_ms"]
    assert load["kept"] == 3  # a few passes as evidence, not 120 transcripts
    assert "120 sessions in" in out and "sessions/s (8 at once): 120 passed" in out
    assert "p99" in out and "session" in out
    assert "  engine: compiled plan\n" in out


def test_a_scenario_that_does_not_compile_runs_on_the_general_runner(tmp_path, capsys):
    steps = '- ehlo: load.example.org\n- raw: "NOOP\\r\\n"\n  expect: 250\n- send: QUIT'
    status, out, data = _load_run(tmp_path, capsys, steps, "--repeat", "6", "-j", "3")
    assert status == 0, out
    assert data["load"]["verdicts"] == {"passed": 6}
    assert data["load"]["engine"] == "general runner (steps[1]: raw steps are not compiled)"
    assert "  engine: general runner (steps[1]: raw steps are not compiled)\n" in out


def test_failures_are_counted_by_reason_and_only_a_sample_is_kept(tmp_path, capsys):
    steps = "- send: NOOP\n  expect: 550"
    status, out, data = _load_run(tmp_path, capsys, steps, "--repeat", "130", "-j", "4")
    assert status == 1
    load = data["load"]
    assert load["verdicts"] == {"failed": 130}
    assert len(load["reasons"]) == 1 and load["reasons"][0]["count"] == 130
    assert "expected 550, got 250" in load["reasons"][0]["reason"]
    assert load["kept"] == 100 == len(data["scenarios"])  # failures first, bounded
    assert "130 x " in out


def test_duration_stops_starting_sessions(tmp_path, capsys):
    started = time.monotonic()
    status, _, data = _load_run(tmp_path, capsys, "- send: NOOP", "--duration", "0.4", "-j", "2")
    assert status == 0
    assert time.monotonic() - started < 10  # stopped by itself (generous: a loaded machine)
    load = data["load"]
    assert load["sessions"] > 0 and load["duration_s"] == 0.4 and load["repeat"] is None


def test_rate_paces_the_starts(tmp_path, capsys):
    options = ("--repeat", "6", "--rate", "20", "-j", "6")
    status, _, data = _load_run(tmp_path, capsys, "- send: NOOP", *options)
    assert status == 0
    load = data["load"]
    # six starts at 20/s: the last one 0.25 s after the first, whatever -j allows
    assert load["sessions"] == 6 and load["elapsed_ms"] >= 250


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--rate", "5"], "--rate paces a load run"),
        (["--repeat", "2", "-t", "127.0.0.1:1"], "one scenario on one target"),
        (["--duration", "nan"], "--duration nan: give a positive, finite number"),
        (["--repeat", "2", "--rate", "nan"], "--rate nan: give a positive, finite number"),
    ],
)
def test_load_mode_misuse_is_one_clear_line(tmp_path, capsys, args, words):
    path = steps_file(tmp_path, "- send: NOOP")
    status, _, err = cli(capsys, "run", path, "-t", "sandbox", *args)
    assert status == 2 and words in err and len(err.strip().splitlines()) == 1


def test_two_scenarios_are_refused_in_load_mode(tmp_path, capsys):
    steps_file(tmp_path, "- send: NOOP", name="a.yaml")
    steps_file(tmp_path, "- send: NOOP", name="b.yaml")
    status, _, err = cli(capsys, "run", tmp_path, "-t", "sandbox", "--repeat", "2")
    assert status == 2 and "2 scenarios and 1 target" in err


@pytest.mark.parametrize("shape", ["uniform", "lognormal", "constant"])
def test_histogram_percentiles_are_within_one_percent(shape):
    rng = random.Random(7)
    values = {
        "uniform": [rng.uniform(0.05, 500) for _ in range(20000)],
        "lognormal": [rng.lognormvariate(1, 1.5) for _ in range(20000)],
        "constant": [3.25] * 1000,
    }[shape]
    histogram = Histogram()
    for value in values:
        histogram.add(value)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99):
        exact = ordered[max(0, int(q * len(ordered)) - 1)]
        assert abs(histogram.quantile(q) - exact) <= 0.011 * exact + 1e-9, (q, exact)
    summary = histogram.summary()
    assert summary.min_ms == round(ordered[0], 3) and summary.max_ms == round(ordered[-1], 3)
    assert len(histogram.buckets) < 2000  # constant memory whatever the count


def test_histogram_ignores_nan_and_negative():
    histogram = Histogram()
    for value in (float("nan"), -1.0, 2.0):
        histogram.add(value)
    assert histogram.count == 1 and histogram.summary().median_ms == 2.0


def test_workers_split_a_load_run_and_add_it_up(tmp_path, capsys):
    options = ("--repeat", "41", "-j", "4", "--workers", "2")
    status, _, data = _load_run(tmp_path, capsys, "- send: NOOP", *options)
    assert status == 0
    load = data["load"]
    assert load["sessions"] == 41 and load["verdicts"] == {"passed": 41}
    assert load["session"]["count"] == 41 and load["kept"] == 3


def test_the_html_report_of_a_load_run_shows_the_aggregates(tmp_path, capsys):
    html = tmp_path / "r.html"
    status, _, data = _load_run(
        tmp_path, capsys, "- send: NOOP\n  name: '<b>noop</b>'", "--repeat", "20", "--html", html
    )
    assert status == 0
    page = html.read_text()
    assert "Load run" in page and "20 passed" in page and "sessions/s" in page
    assert "&lt;b&gt;noop&lt;/b&gt;" in page and "<b>noop</b>" not in page  # names stay text
    assert "Run by the compiled plan." in page
    # the report renders again from the JSON, the same
    (tmp_path / "r.json").write_text(json.dumps(data))
    assert cli(capsys, "report", tmp_path / "r.json", "--html", tmp_path / "again.html")[0] == 0
    assert (tmp_path / "again.html").read_text() == page
