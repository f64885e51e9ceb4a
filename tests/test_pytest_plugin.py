"""The pytest plugin: scenarios as pytest items, run in-process with pytester, and the
audit library under `python -m pytest` compared with `smtpscript run` (both subprocesses)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from lxml import etree

from smtpscript import sandbox as sandbox_module
from smtpscript.loading import load_paths

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
STRICT_INI = "[pytest]\nfilterwarnings = error\naddopts = --strict-markers -p no:cacheprovider\n"

PASSES = """\
smtpscript: 1
title: Greets with 220
tags: [basics]
steps:
  - connect: {}
    expect: 220
  - ehlo: client.example
"""
FAILS = """\
smtpscript: 1
title: Expects the wrong banner
severity: high
tags: [relay, security]
remediation: Nothing to fix; the scenario is wrong on purpose.
steps:
  - connect: {}
    expect: 554
"""
SKIPS = """\
smtpscript: 1
title: Only when asked
tags: [relay]
vars:
  wanted: "no"
when: "wanted == 'yes'"
skip_reason: not asked for
steps:
  - connect: {}
"""
FRAGMENT = """\
smtpscript: 1
fragment: true
steps:
  - connect: {}
"""


def _project(pytester: pytest.Pytester, **files: str) -> None:
    """A tmp project: pytest.ini (strict markers, warnings as errors) and scenario files."""
    pytester.makefile(".ini", pytest=STRICT_INI)
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _junit(path: Path) -> dict[tuple[str, str], str]:
    """(classname, name) -> outcome of every testcase in a JUnit XML file."""
    outcomes = {}
    for case in etree.parse(str(path)).iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[(case.get("classname"), case.get("name"))] = kinds[0] if kinds else "passed"
    return outcomes


def _smtpscript_run(cwd: Path, *args: str) -> list[dict]:
    """The scenario results in the JSON results of `smtpscript run ARGS` in ``cwd``."""
    out = cwd / "smtpscript-results.json"
    command = [sys.executable, "-m", "smtpscript", "run", *args, "--json", str(out), "-q"]
    subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    return json.loads(out.read_text())["scenarios"]


# --- off unless turned on --------------------------------------------------------------


def test_off_by_default_a_scenario_file_is_not_collected(pytester: pytest.Pytester) -> None:
    _project(pytester, **{"scenarios/greet.yaml": PASSES})
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest("--collect-only", "-q")
    assert result.ret == 0
    assert "test_plain.py::test_plain" in result.stdout.str()
    assert ".yaml" not in result.stdout.str()


def test_this_repositorys_own_run_collects_no_yaml() -> None:
    """tests/ holds YAML data files: without an option none of them is collected."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    files = {line.split("::")[0] for line in done.stdout.splitlines() if "::" in line}
    assert files and all(name.endswith(".py") for name in files)


def test_the_ini_setting_turns_it_on_with_the_librarys_default_targets(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".ini", pytest=STRICT_INI + "smtpscript_collect = true\n")
    library = "smtpscript: 1\ntargets:\n  box:\n    sandbox: true\ndefaults:\n  targets: [box]\n"
    pytester.path.joinpath("smtpscript.yaml").write_text(library)
    pytester.mkdir("scenarios").joinpath("greet.yaml").write_text(PASSES)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["scenarios/greet.yaml::box PASSED*"])


def test_only_scenarios_are_collected_not_fragments_config_or_other_yaml(
    pytester: pytest.Pytester,
) -> None:
    _project(
        pytester,
        **{
            "scenarios/greet.yaml": PASSES,
            "scenarios/fragments/connect.yaml": FRAGMENT,
            "compose.yaml": "services:\n  web:\n    image: nginx\n",
            "smtpscript.yaml": "smtpscript: 1\n",
        },
    )
    result = pytester.runpytest("--smtpscript-target", "sandbox", "--collect-only", "-q")
    assert result.ret == 0
    collected = [line for line in result.stdout.lines if "::" in line]
    assert collected == ["scenarios/greet.yaml::sandbox"]


# --- collection ------------------------------------------------------------------------


def test_each_scenario_times_each_target_is_an_item_named_file_and_target(
    pytester: pytest.Pytester,
) -> None:
    library = "smtpscript: 1\ntargets:\n  box:\n    sandbox: true\n    tags: [local]\n"
    _project(pytester, **{"smtpscript.yaml": library, "s/a.yaml": PASSES, "s/b.yaml": FAILS})
    result = pytester.runpytest(
        "s", "--smtpscript-target", "sandbox", "--smtpscript-target=@local", "--co", "-q"
    )
    assert [line for line in result.stdout.lines if "::" in line] == [
        "s/a.yaml::sandbox",
        "s/a.yaml::box",
        "s/b.yaml::sandbox",
        "s/b.yaml::box",
    ]


def test_tags_are_markers_that_m_selects(pytester: pytest.Pytester) -> None:
    _project(pytester, **{"s/a.yaml": PASSES, "s/b.yaml": FAILS, "s/c.yaml": SKIPS})
    result = pytester.runpytest("s", "--smtpscript-target", "sandbox", "-m", "relay", "--co", "-q")
    assert [line for line in result.stdout.lines if "::" in line] == [
        "s/b.yaml::sandbox",
        "s/c.yaml::sandbox",
    ]
    result = pytester.runpytest("s", "--smtpscript-target", "sandbox", "-m", "basics")
    result.assert_outcomes(passed=1, deselected=2)


def test_a_tag_named_like_a_pytest_mark_does_not_act_as_one(pytester: pytest.Pytester) -> None:
    _project(pytester, **{"s/a.yaml": PASSES.replace("[basics]", "[skip, xfail]")})
    result = pytester.runpytest("s", "--smtpscript-target", "sandbox")
    result.assert_outcomes(passed=1)


def test_an_invalid_scenario_is_a_collection_error_with_file_line_column(
    pytester: pytest.Pytester,
) -> None:
    broken = PASSES.replace("expect: 220", "expect: '2x'")
    _project(pytester, **{"s/broken.yaml": broken, "s/ok.yaml": PASSES})
    result = pytester.runpytest("s", "--smtpscript-target", "sandbox")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR collecting s/broken.yaml*", "s/broken.yaml:6:13: steps[[]0].expect: '2x' is not*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_smtpscript_var_defines_a_variable(pytester: pytest.Pytester) -> None:
    needs = PASSES.replace("client.example", "'{{ helo_name }}'")
    _project(pytester, **{"s/a.yaml": needs})
    missing = pytester.runpytest("s", "--smtpscript-target", "sandbox")
    missing.assert_outcomes(errors=1)
    missing.stdout.fnmatch_lines(["*undefined variable 'helo_name'*"])
    given = pytester.runpytest(
        "s", "--smtpscript-target", "sandbox", "--smtpscript-var", "helo_name=me.example"
    )
    given.assert_outcomes(passed=1)


def test_a_bad_option_is_a_usage_error_in_pytests_words(pytester: pytest.Pytester) -> None:
    _project(pytester, **{"s/a.yaml": PASSES})
    result = pytester.runpytest("s", "--smtpscript-env", "staging")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*smtpscript: --smtpscript-env staging: no such environment*"])
    result = pytester.runpytest("s", "--smtpscript-var", "not a name")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--smtpscript-var 'not a name': expected NAME=VALUE*"])


def test_smtpscript_config_names_the_library(pytester: pytest.Pytester) -> None:
    library = "smtpscript: 1\ntargets:\n  lab:\n    sandbox: true\n"
    _project(pytester, **{"conf/lib.yaml": library, "s/a.yaml": PASSES})
    result = pytester.runpytest(
        "s", "--smtpscript-config", "conf/lib.yaml", "--smtpscript-target", "lab", "-v"
    )
    result.stdout.fnmatch_lines(["s/a.yaml::lab PASSED*"])
    pytester.path.joinpath("conf/lib.yaml").write_text("smtpscript: 1\ntargets: 3\n")
    result = pytester.runpytest("s", "--smtpscript-config", "conf/lib.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*smtpscript: conf/lib.yaml:2:10: targets: *"])


# --- running ---------------------------------------------------------------------------


def test_a_failure_reports_its_reason_and_the_conversation_without_a_traceback(
    pytester: pytest.Pytester,
) -> None:
    title = 'title: "Expects the wrong \\e[31mbanner"'
    _project(pytester, **{"s/fails.yaml": FAILS.replace("title: Expects the wrong banner", title)})
    result = pytester.runpytest("s", "--smtpscript-target", "sandbox", "-rf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ Expects the wrong \\x1b[[]31mbanner on sandbox _*",
            "s/fails.yaml:7: steps[[]0] (connect 127.0.0.1:*): expected 554, got 220 sandbox.test*",
            "failed [[]high] s/fails.yaml:1",
            "*step 1 (connect 127.0.0.1:*) line 7: failed",
            "*  * connected to 127.0.0.1:*",
            "     >> *S: 220 sandbox.test ESMTP smtpscript sandbox",
            "*expected 554, got 220*",
            "*C: QUIT",
            "fix: Nothing to fix; the scenario is wrong on purpose.",
            "FAILED s/fails.yaml::sandbox - s/fails.yaml:7: steps[[]0] (connect 127.0.0.1:*",
        ]
    )
    text = result.stdout.str()
    assert "\x1b[31m" not in text
    assert "Traceback" not in text and "pytest_plugin.py" not in text


def test_an_error_verdict_is_a_failure_with_its_reason(pytester: pytest.Pytester) -> None:
    _project(pytester, **{"s/a.yaml": PASSES})
    port = _closed_port()
    result = pytester.runpytest("s", "--smtpscript-target", f"127.0.0.1:{port}", "-rf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [f"FAILED s/a.yaml::127.0.0.1:{port} - error: s/a.yaml:5: steps[[]0] *"]
    )


def test_a_skipped_scenario_is_a_pytest_skip_with_its_reason(pytester: pytest.Pytester) -> None:
    _project(pytester, **{"s/c.yaml": SKIPS})
    result = pytester.runpytest("s", "--smtpscript-target", "sandbox", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED [[]1] s/c.yaml:1: not asked for (when: *is false)"])


def test_the_sandbox_starts_once_per_session_and_stops_at_its_end(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    start, stop = sandbox_module.Sandbox.start, sandbox_module.Sandbox.stop

    def counted_start(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("start")
        return start(self, *args, **kwargs)

    def counted_stop(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("stop")
        return stop(self, *args, **kwargs)

    monkeypatch.setattr(sandbox_module.Sandbox, "start", counted_start)
    monkeypatch.setattr(sandbox_module.Sandbox, "stop", counted_stop)
    _project(pytester, **{"s/a.yaml": PASSES, "s/b.yaml": FAILS, "s/c.yaml": SKIPS})
    pytester.runpytest("s", "--smtpscript-target", "sandbox").assert_outcomes(
        passed=1, failed=1, skipped=1
    )
    assert calls == ["start", "stop"]
    pytester.runpytest("s", "--smtpscript-target", "sandbox", "--collect-only")
    assert calls == ["start", "stop"]  # nothing to run: no sandbox


def test_counts_match_smtpscript_run_with_passes_failures_errors_and_skips(
    pytester: pytest.Pytester,
) -> None:
    _project(pytester, **{"s/a.yaml": PASSES, "s/b.yaml": FAILS, "s/c.yaml": SKIPS})
    targets = ["sandbox", f"127.0.0.1:{_closed_port()}"]
    options = [arg for target in targets for arg in ("--smtpscript-target", target)]
    outcomes = pytester.runpytest("s", *options).parseoutcomes()
    results = _smtpscript_run(pytester.path, "s", *(a for t in targets for a in ("-t", t)))
    verdicts = Counter(s["verdict"] for s in results)
    assert verdicts == {"passed": 1, "failed": 1, "error": 2, "skipped": 2}
    assert outcomes == {
        "passed": verdicts["passed"],
        "failed": verdicts["failed"] + verdicts["error"],
        "skipped": verdicts["skipped"],
    }


def test_junit_has_one_testcase_per_scenario_and_target(pytester: pytest.Pytester) -> None:
    library = "smtpscript: 1\ntargets:\n  box:\n    sandbox: true\n"
    _project(pytester, **{"smtpscript.yaml": library, "s/a.yaml": PASSES, "s/b.yaml": FAILS})
    junit = pytester.path / "junit.xml"
    pytester.runpytest(
        "s", "--smtpscript-target", "sandbox", "--smtpscript-target", "box", f"--junitxml={junit}"
    )
    assert _junit(junit) == {
        ("s.a.yaml", "sandbox"): "passed",
        ("s.a.yaml", "box"): "passed",
        ("s.b.yaml", "sandbox"): "failure",
        ("s.b.yaml", "box"): "failure",
    }
    failure = etree.parse(str(junit)).find(".//failure")
    assert failure is not None
    assert failure.get("message", "").startswith("s/b.yaml:7: steps[0] (connect 127.0.0.1:")
    assert ">> " in (failure.text or "")


# --- the audit library: pytest and smtpscript run agree -----------------------------------


def test_the_audit_library_under_pytest_counts_as_under_smtpscript_run(tmp_path: Path) -> None:
    """`pytest scenarios/ --smtpscript-target sandbox` against `smtpscript run scenarios/ -t
    sandbox`, in a copy (so no state lands in the repository), pair by pair."""
    shutil.copytree(REPO / "scenarios", tmp_path / "scenarios")
    tmp_path.joinpath("pytest.ini").write_text(STRICT_INI)
    junit = tmp_path / "junit.xml"
    command = [sys.executable, "-m", "pytest", "scenarios/", "--smtpscript-target", "sandbox"]
    done = subprocess.run(
        [*command, f"--junitxml={junit}", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    outcomes = _junit(junit)
    results = _smtpscript_run(tmp_path, "scenarios/", "-t", "sandbox")
    verdicts = Counter(s["verdict"] for s in results)
    got = Counter(outcomes.values())
    assert got["passed"] == verdicts["passed"] > 0
    assert got["failure"] == verdicts["failed"] + verdicts["error"]
    assert got["skipped"] == verdicts["skipped"]
    expected = {
        (s["file"].replace("/", "."), s["target"]["name"]): {
            "passed": "passed",
            "skipped": "skipped",
        }.get(s["verdict"], "failure")
        for s in results
    }
    assert outcomes == expected

    # -m relay: the scenarios tagged relay, each once on the one target
    relay = [s for s in load_paths([tmp_path / "scenarios"]).scenarios if "relay" in s.tags]
    done = subprocess.run(
        [*command, "-m", "relay", "--collect-only", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    collected = [line for line in done.stdout.splitlines() if line.endswith("::sandbox")]
    assert len(collected) == len(relay) > 10
