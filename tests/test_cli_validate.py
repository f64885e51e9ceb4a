"""`smtpscript validate`, `list` and `schema`: exit codes, output, the schema itself."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from test_validation import CATALOGUE

from smtpscript.cli import run_cli
from smtpscript.errors import ConfigError
from smtpscript.yamlsource import parse_document

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"


def smtpscript(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command in a child process (the package as installed, or PYTHONPATH's)."""
    return subprocess.run(
        [sys.executable, "-m", "smtpscript", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


def _counts() -> tuple[int, int, int]:
    files = sorted(SCENARIOS.rglob("*.yaml")) + sorted(SCENARIOS.rglob("*.yml"))
    fragments = sum(
        parse_document(p.read_bytes(), p.name).data.get("fragment") is True for p in files
    )
    return len(files), len(files) - fragments, fragments


def test_validate_the_shipped_scenarios(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    files, scenarios, fragments = _counts()
    assert run_cli(["validate", "scenarios/"]) == 0
    out, err = capsys.readouterr()
    expected = f"{files} files: {scenarios} valid scenarios"
    expected += f", {fragments} fragment{'s' if fragments != 1 else ''}" if fragments else ""
    assert (out, err) == (f"{expected}: all valid\n", "")
    # without a path, ./scenarios is validated when it exists
    assert run_cli(["validate"]) == 0
    assert capsys.readouterr().out == f"{expected}: all valid\n"


def test_validate_in_a_child_process(tmp_path):
    proc = smtpscript("validate", str(SCENARIOS), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(
        r"\d+ files: \d+ valid scenarios(, \d+ fragments?)?: all valid\n", proc.stdout
    )
    for name in ("syntax_unclosed_quote", "billion_laughs", "bad_code_pattern", "not_utf8"):
        text = CATALOGUE[name].text()
        path = tmp_path / "bad.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        proc = smtpscript("validate", "bad.yaml", cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stdout == ""
        assert proc.stderr.splitlines()[:-1] == CATALOGUE[name].errors
        assert "Traceback" not in proc.stderr


LIST_A = """\
smtpscript: 1
title: Refuses to relay
severity: high
tags: [relay, security]
steps:
  - send: "RCPT TO:<{{ victim }}>"
"""
LIST_B = """\
# a comment first
smtpscript: 1
title: Says hello
steps:
  - ehlo: client.example.org
"""


def test_list(tmp_path, monkeypatch, capsys):
    (tmp_path / "lib" / "relay").mkdir(parents=True)
    (tmp_path / "lib" / "relay" / "a.yaml").write_text(LIST_A, encoding="utf-8")
    (tmp_path / "lib" / "b.yaml").write_text(LIST_B, encoding="utf-8")
    (tmp_path / "lib" / "frag.yaml").write_text(
        "smtpscript: 1\nfragment: true\nsteps:\n  - send: NOOP\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    # listing is not validating: {{ victim }} is defined nowhere and that is fine here
    assert run_cli(["list", "lib"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        "SEVERITY  TITLE             TAGS            FILE",
        "medium    Says hello                        lib/b.yaml:2",
        "high      Refuses to relay  relay,security  lib/relay/a.yaml:1",
    ]


def test_list_reports_invalid_files(tmp_path, monkeypatch, capsys):
    (tmp_path / "a.yaml").write_text(LIST_A, encoding="utf-8")
    (tmp_path / "bad.yaml").write_text("smtpscript: 1\ntitle: t\nsteps: []\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run_cli(["list", "."]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[1].startswith("high      Refuses to relay")
    assert err == "bad.yaml:3:8: steps: a scenario needs at least one step\n"


def test_list_of_the_shipped_scenarios(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert run_cli(["list", "scenarios"]) == 0
    out, _ = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["SEVERITY", "TITLE", "TAGS", "FILE"]
    assert len(lines) == 1 + _counts()[1]
    assert any("Refuses to relay for an unauthenticated outsider" in line for line in lines)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "nope.yaml"], "smtpscript: error: nope.yaml: no such file or directory\n"),
        (["validate", "empty"], "no scenario files found (*.yaml, *.yml)\n"),
        (
            ["validate", "empty", "--var", "no-equals"],
            "smtpscript: error: --var 'no-equals': expected NAME=VALUE with NAME a plain "
            "identifier\n",
        ),
        (["list", "nope"], "smtpscript: error: nope: no such file or directory\n"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, message, tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    assert run_cli(argv) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", message)


def test_traceback_flag_lets_errors_through(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError):
        run_cli(["--traceback", "validate", "nope.yaml"])


def test_help_and_version(capsys):
    assert run_cli(["--version"]) == 0
    assert re.fullmatch(r"smtpscript \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)
    assert run_cli(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("validate", "list", "schema"):
        assert command in out
    assert run_cli(["validate", "--help"]) == 0
    assert "--var" in capsys.readouterr().out


COMMANDS = ("validate", "list", "run", "report", "serve", "init", "schema")
ONE_COMMAND_LINES = [
    *([name, "--help"] for name in COMMANDS),
    ["--traceback", "validate", "--help"],
    ["validate", "--bogus"],
    ["run", "--jobs", "0"],
    ["schema", "nope"],
]


@pytest.mark.parametrize("args", ONE_COMMAND_LINES, ids=" ".join)
def test_a_command_built_alone_says_what_the_whole_group_says(args, capsys, monkeypatch):
    """cli._command builds only the command named; its help and errors are unchanged."""
    from smtpscript import cli

    alone = cli._command(args)
    assert list(alone.commands) == [args[1] if args[0] == "--traceback" else args[0]]
    said_alone = run_cli(args), capsys.readouterr()
    monkeypatch.setattr(cli, "_command", lambda args: cli.typer.main.get_command(cli.app))
    assert said_alone == (run_cli(args), capsys.readouterr())


def test_version_answered_before_typer_is_the_same(tmp_path):
    """`smtpscript --version` alone skips typer (__main__.py): same bytes, same exit status
    as typer's --version, for both the console script and python -m."""
    typer_said = smtpscript("--traceback", "--version", cwd=tmp_path)  # not alone: via typer
    assert (typer_said.returncode, typer_said.stderr) == (0, "")
    assert re.fullmatch(r"smtpscript \d+\.\d+\.\d+\S*\n", typer_said.stdout)
    script = Path(sys.executable).with_name("smtpscript")
    commands = [[sys.executable, "-m", "smtpscript"]] + [[str(script)]] * script.exists()
    for command in commands:
        fast = subprocess.run(
            [*command, "--version"], cwd=tmp_path, capture_output=True, timeout=60, check=False
        )
        assert (fast.returncode, fast.stderr) == (0, b"")
        assert fast.stdout == typer_said.stdout.encode()
    imports = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "smtpscript", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert imports.returncode == 0
    assert not re.search(r"\|\s+typer$", imports.stderr, re.MULTILINE)


def test_validate_answered_before_typer_is_the_same(tmp_path):
    """`smtpscript validate [PATH...]` without options skips typer (__main__.py): same
    output, same exit status as through typer (`validate -- PATH...`), whatever happens:
    valid, invalid, missing, a folder without scenarios, no PATH and no library, a
    library whose config is broken, a name that is not UTF-8."""
    (tmp_path / "good.yaml").write_text("smtpscript: 1\ntitle: t\nsteps: [{ehlo: x}]\n")
    (tmp_path / "bad.yaml").write_text("smtpscript: 1\ntitle: t\nsteps: [{ehlo: '{{ nope }}'}]\n")
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "smtpscript.yaml").write_text("paths: [1, 2\n")
    cases = [
        (tmp_path, ["good.yaml"]),
        (tmp_path, ["good.yaml", "bad.yaml"]),
        (tmp_path, ["missing.yaml"]),
        (tmp_path, ["empty"]),
        (tmp_path, []),
        (broken, []),
        (tmp_path, ["caf\udce9.yaml"]),
        (REPO, []),
    ]
    statuses = []
    for cwd, paths in cases:
        fast = smtpscript("validate", *paths, cwd=cwd)
        via_typer = smtpscript("validate", "--", *paths, cwd=cwd)
        said = (fast.returncode, fast.stdout, fast.stderr)
        assert said == (via_typer.returncode, via_typer.stdout, via_typer.stderr), paths
        assert "Traceback" not in fast.stderr
        statuses.append(fast.returncode)
    assert statuses == [0, 2, 2, 2, 2, 2, 2, 0]
    # on the way out, whether typer was imported
    probe = (
        "import atexit, runpy, sys; "
        "atexit.register(lambda: print('typer' in sys.modules, file=sys.stderr)); "
        "runpy.run_module('smtpscript', run_name='__main__')"
    )
    imports = subprocess.run(
        [sys.executable, "-c", probe, "validate", "good.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (imports.returncode, imports.stdout) == (0, "1 file: 1 valid scenario: all valid\n")
    assert imports.stderr == "False\n"


# --- the schema -------------------------------------------------------------------------


def _printed_schema(capsys) -> dict:
    assert run_cli(["schema"]) == 0
    return json.loads(capsys.readouterr().out)


def test_schema_is_valid_draft_2020_12(capsys):
    schema = _printed_schema(capsys)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema == json.loads((REPO / "schemas" / "scenario.schema.json").read_text())


def _properties(node: object, path: str = "#"):
    """Every (path, schema) of a named property, anywhere in the schema."""
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{path}/properties/{name}", sub
        for key, sub in node.items():
            if key in ("examples", "enum", "const"):
                continue
            if key in ("properties", "$defs"):
                for name, inner in sub.items():
                    yield from _properties(inner, f"{path}/{key}/{name}")
            else:
                yield from _properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _properties(sub, f"{path}/{i}")


def test_every_property_has_a_description(capsys):
    schema = _printed_schema(capsys)
    found = list(_properties(schema))
    assert len(found) > 60
    missing = [path for path, sub in found if not sub.get("description")]
    assert missing == []
    # additionalProperties: false on every object that lists its properties
    objects = list(_objects(schema))
    assert len(objects) > 8
    assert [path for path, sub in objects if sub.get("additionalProperties") is not False] == []


def _objects(node: object, path: str = "#"):
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict) and node.get("type") == "object":
            yield path, node
        for key, sub in node.items():
            if key not in ("examples", "enum", "const"):
                yield from _objects(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _objects(sub, f"{path}/{i}")


def test_schema_json_is_what_the_generator_writes(capsys):
    spec = importlib.util.spec_from_file_location("gen", REPO / "tools" / "gen_scenario_schema.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert _printed_schema(capsys) == json.loads(json.dumps(gen.SCENARIO))


def test_schema_accepts_every_shipped_scenario(capsys):
    validator = Draft202012Validator(_printed_schema(capsys))
    for path in sorted(SCENARIOS.rglob("*.yaml")):
        data = parse_document(path.read_bytes(), path.name).data
        assert list(validator.iter_errors(data)) == [], path


def test_schema_piped_to_json_tool(tmp_path):
    proc = subprocess.run(
        f'"{sys.executable}" -m smtpscript schema | "{sys.executable}" -m json.tool',
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["title"] == "smtpscript scenario (format 1)"
