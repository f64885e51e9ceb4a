"""smtpscript.yaml: discovery, validation with positions, targets, environments, -t names."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from scenario_helpers import cli

from smtpscript.errors import ConfigError, ScenarioError
from smtpscript.library import CONFIG_NAME, find_config, load_library
from smtpscript.selection import Selection, compile_keyword
from smtpscript.targetnames import select_targets


def library_at(folder: Path, text: str) -> Path:
    path = folder / CONFIG_NAME
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        load_library(path, cwd=path.parent)
    return [str(p) for p in caught.value.problems]


INVENTORY = """
    smtpscript: 1
    targets:
      local: {sandbox: true, tags: [lab]}
      mx1: {host: mx1.example.com, tags: [production, mx]}
      mx2: {address: "smtps://mx2.example.com", tags: [production]}
      lmtp: {address: "unix:/run/lmtp.sock", max_connections: 1}
    environments:
      staging:
        targets:
          mx1: {host: mx1.staging.example.com, port: 2525, tags: [mx]}
"""


# --- discovery -----------------------------------------------------------------------


def test_the_config_is_found_by_walking_up(tmp_path):
    config = library_at(tmp_path, "smtpscript: 1\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_config(deep) == config
    library = load_library(cwd=deep)
    assert library.path == config and library.root == tmp_path
    assert library.paths == (tmp_path / "scenarios",)  # relative to the config, not the cwd


def test_without_a_config_the_library_is_scenarios_under_the_working_directory(tmp_path):
    library = load_library(cwd=tmp_path)
    assert library.path is None and library.targets == {}
    assert library.paths == (tmp_path / "scenarios",)


def test_no_path_no_config_no_scenarios_folder_is_a_usage_error_not_a_scan(
    tmp_path, capsys, monkeypatch
):
    # what a recursive scan of the working directory used to stumble on
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    os.mkfifo(tmp_path / "pipe.yaml")
    monkeypatch.chdir(tmp_path)
    for command in ("run", "validate", "list"):
        status, _, err = cli(capsys, command)
        assert status == 2, command
        assert "no PATH given" in err and "smtpscript init" in err
        assert len(err.strip().splitlines()) == 1


def test_no_path_uses_the_scenarios_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "s.yaml").write_text(
        "smtpscript: 1\ntitle: t\nsteps:\n  - send: NOOP\n"
    )
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")  # never looked at
    monkeypatch.chdir(tmp_path)
    status, out, _ = cli(capsys, "validate")
    assert status == 0 and "1 file: 1 valid scenario" in out


def test_no_path_uses_the_config_paths_from_a_subfolder(tmp_path, capsys, monkeypatch):
    library_at(tmp_path, "smtpscript: 1\npaths: [checks]\n")
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "s.yaml").write_text(
        "smtpscript: 1\ntitle: t\nsteps:\n  - send: 'NOOP {{ shared }}'\n"
    )
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    status, _, err = cli(capsys, "validate")
    assert status == 2 and "undefined variable 'shared'" in err
    library_at(tmp_path, "smtpscript: 1\npaths: [checks]\nvars: {shared: x}\n")
    status, out, _ = cli(capsys, "validate")
    assert status == 0 and "all valid" in out


# --- validation ----------------------------------------------------------------------


def test_schema_problems_name_file_line_and_path(tmp_path):
    config = library_at(
        tmp_path,
        """
        smtpscript: 1
        targets:
          mx1:
            host: mx1.example.com
            prot: 25
          mx2: {host: mx2.example.com, max_connections: 0}
        defaults:
          fail_on: severe
        """,
    )
    found = problems_of(config)
    assert (
        "smtpscript.yaml:5:5: targets.mx1.prot: unknown key 'prot' (did you mean 'port'?)" in found
    )
    assert any(p.startswith("smtpscript.yaml:6:") and "max_connections" in p for p in found)
    assert any(p.startswith("smtpscript.yaml:8:") and "'severe' is not one of" in p for p in found)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smtpscript: 1\ntargets:\n  mx1: {tags: [a]}\n", "needs exactly one of host, address"),
        ("smtpscript: 1\ntargets:\n  mx1: {host: a, address: b}\n", "found host and address"),
        ("smtpscript: 1\ntargets:\n  mx1: {address: 'a:99999'}\n", "port must be a number"),
        ("smtpscript: 1\ntargets:\n  mx1: {address: a, port: 25}\n", "'port' goes with host"),
        ("smtpscript: 1\ntargets:\n  all: {host: a}\n", "'all' is reserved"),
        ("smtpscript: 1\ntargets:\n  '@x': {host: a}\n", "'@x' is not a valid name"),
        ("smtpscript: 1\nvars:\n  a: '{{ b '\n", "'{{' is never closed"),
        ("smtpscript: 1\nvars:\n  a: '{{ b | nofilter }}'\n", "no filter named 'nofilter'"),
        ("smtpscript: 1\nvars_files: [missing.yaml]\n", "vars file missing.yaml does not exist"),
        ("smtpscript: 1\ndefaults: {environment: prod}\n", "no environment named 'prod'"),
        ("smtpscript: 2\n", "unsupported format version 2"),
        ("targets: {}\n", "missing required key 'smtpscript'"),
        ("- a\n", "the top level must be a mapping"),
        ("smtpscript: 1\nsmtpscript: 1\n", "duplicate key"),
    ],
)
def test_bad_configs_get_one_positioned_line_each(tmp_path, text, expected):
    found = problems_of(library_at(tmp_path, text))
    assert any(expected in p for p in found), found
    assert all(p.startswith("smtpscript.yaml:") for p in found)


def test_a_bad_vars_file_is_reported_in_that_file(tmp_path):
    (tmp_path / "vars").mkdir()
    (tmp_path / "vars" / "common.yaml").write_text("ok: 1\n2bad: x\nt: '{% if %}'\n")
    found = problems_of(library_at(tmp_path, "smtpscript: 1\nvars_files: [vars/common.yaml]\n"))
    assert any(p.startswith("vars/common.yaml:2:1: 2bad:") for p in found), found
    assert any(p.startswith("vars/common.yaml:3:") and "template error" in p for p in found)


def test_a_fifo_as_vars_file_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "vars.yaml")
    found = problems_of(library_at(tmp_path, "smtpscript: 1\nvars_files: [vars.yaml]\n"))
    assert any("not a regular file (a FIFO)" in p for p in found), found


def test_cli_prints_every_config_problem_and_exits_2(tmp_path, capsys, monkeypatch):
    library_at(tmp_path, "smtpscript: 1\ntargets:\n  mx1: {hots: a}\n  mx2: {host: 5}\n")
    monkeypatch.chdir(tmp_path)
    status, _, err = cli(capsys, "run", "-t", "mx1")
    assert status == 2
    lines = err.strip().splitlines()
    assert any("targets.mx1.hots: unknown key 'hots' (did you mean 'host'?)" in x for x in lines)
    assert any("targets.mx2.host: must be a string" in x for x in lines)


def test_a_hostile_config_is_safe_yaml(tmp_path):
    config = library_at(tmp_path, "smtpscript: 1\nvars: !!python/object/apply:os.system [id]\n")
    assert any("tag" in p for p in problems_of(config))


# --- targets -------------------------------------------------------------------------


def names(specs) -> list[str]:
    return [spec.name for spec in specs]


def test_names_tags_all_and_addresses(tmp_path):
    library = load_library(library_at(tmp_path, INVENTORY), cwd=tmp_path)
    targets = library.targets_in(library.environment(None))
    assert names(select_targets(["mx1"], library, targets)) == ["mx1"]
    assert names(select_targets(["@production"], library, targets)) == ["mx1", "mx2"]
    assert names(select_targets(["all"], library, targets)) == ["local", "mx1", "mx2", "lmtp"]
    # each once, in the order first named
    assert names(select_targets(["mx2", "@production", "mx1"], library, targets)) == ["mx2", "mx1"]
    chosen = select_targets(["127.0.0.1:2525", "sandbox"], library, targets)
    assert [(s.name, s.where, s.sandbox) for s in chosen] == [
        ("127.0.0.1:2525", "127.0.0.1:2525", False),
        ("sandbox", "sandbox", True),
    ]
    mx2 = select_targets(["mx2"], library, targets)[0]
    assert mx2.target.endpoint.tls == "implicit" and mx2.target.endpoint.port == 465
    assert select_targets(["lmtp"], library, targets)[0].target.max_connections == 1
    assert select_targets(["local"], library, targets)[0].sandbox


def test_an_environment_brings_its_own_targets(tmp_path):
    library = load_library(library_at(tmp_path, INVENTORY), cwd=tmp_path)
    staging = library.targets_in(library.environment("staging"))
    (mx1,) = select_targets(["mx1"], library, staging)
    assert mx1.where == "mx1.staging.example.com:2525"
    with pytest.raises(ConfigError, match="targets: mx1"):
        select_targets(["mx2"], library, staging)
    with pytest.raises(ConfigError, match=r"--env prod: no such environment .*staging"):
        library.environment("prod")


def test_an_unknown_name_says_which_exist_and_is_not_looked_up_as_a_host(tmp_path):
    library = load_library(library_at(tmp_path, INVENTORY), cwd=tmp_path)
    targets = library.targets_in(library.environment(None))
    with pytest.raises(ConfigError) as caught:
        select_targets(["mx3-no-such-host"], library, targets)
    message = str(caught.value)
    assert "not a target name" in message and "lmtp, local, mx1, mx2" in message
    with pytest.raises(ConfigError, match=r"no target has tag 'prod' \(tags: lab, mx, production"):
        select_targets(["@prod"], library, targets)


def test_without_a_config_names_and_all_explain_themselves(tmp_path):
    library = load_library(cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"no smtpscript\.yaml found"):
        select_targets(["all"], library, {})
    with pytest.raises(ConfigError, match=r"no smtpscript\.yaml found"):
        select_targets(["mx1-no-such-host"], library, {})
    # a host name that resolves is a host
    assert names(select_targets(["localhost"], library, {})) == ["localhost"]


def test_tls_files_of_a_target_are_relative_to_the_config(tmp_path):
    library = load_library(
        library_at(tmp_path, "smtpscript: 1\ntargets:\n  a: {host: h, ca_file: certs/ca.pem}\n"),
        cwd=tmp_path / "..",
    )
    options = library.targets["a"].target.endpoint.tls_options
    assert options.ca_file == str(tmp_path / "certs" / "ca.pem")


# --- selection -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "text", "expected"),
    [
        ("relay", "Refuses RELAY for outsiders scenarios/relay.yaml", True),
        ("relay and not auth", "relay after auth", False),
        ("relay and not auth", "relay for outsiders", True),
        ("tls or auth", "auth posture", True),
        ("not (tls or auth)", "auth posture", False),
        ("basics/", "title scenarios/basics/banner.yaml", True),
    ],
)
def test_keyword_expressions(expression, text, expected):
    assert compile_keyword(expression)(text) is expected


@pytest.mark.parametrize("expression", ["relay and", "(relay", "or relay", "relay )", "", "not"])
def test_bad_keyword_expressions_are_config_errors(expression):
    with pytest.raises(ConfigError, match="-k"):
        compile_keyword(expression)


def test_deep_keyword_nesting_is_refused_not_a_recursion_error():
    with pytest.raises(ConfigError, match="nested too deeply"):
        compile_keyword("not " * 200 + "x")


def test_selection_by_tags_severity_and_keyword(tmp_path):
    from smtpscript.loading import load_paths

    for name, severity, tags in [
        ("alpha", "low", "[relay]"),
        ("beta", "critical", "[relay, auth]"),
        ("gamma", "high", "[tls]"),
    ]:
        (tmp_path / f"{name}.yaml").write_text(
            f"smtpscript: 1\ntitle: check {name}\nseverity: {severity}\ntags: {tags}\n"
            "steps:\n  - send: NOOP\n"
        )
    scenarios = load_paths([tmp_path]).scenarios

    def titles(**kwargs) -> list[str]:
        return [s.title for s in Selection(**kwargs).apply(scenarios)]

    assert titles(tags=("relay", "tls")) == ["check alpha", "check beta", "check gamma"]
    assert titles(tags=("relay",), skip_tags=("auth",)) == ["check alpha"]
    assert titles(severity_min="high") == ["check beta", "check gamma"]
    assert titles(keyword="check and not beta") == ["check alpha", "check gamma"]


def test_the_readme_example_config_loads(tmp_path):
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Sharing a library in a team")[1]
    example = section.split("```yaml\n")[1].split("```")[0]
    (tmp_path / "vars").mkdir()
    for name in ("common", "staging"):
        (tmp_path / "vars" / f"{name}.yaml").write_text("x: 1\n")
    library = load_library(library_at(tmp_path, example), cwd=tmp_path)
    assert set(library.targets) == {"sandbox", "mx1", "mx2"}
    staging = library.environment(None)  # defaults.environment
    assert staging.name == "staging"
    assert set(library.targets_in(staging)) == {"mx1"}
    assert library.targets["mx1"].target.max_connections == 1


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            '{host: "mx\\x1b[31m.example.com"}',
            "targets.a.host: the host contains spaces or control",
        ),
        ('{host: "a b"}', "targets.a.host: the host contains spaces"),
        ('{host: "a/b"}', "a host name has no '/'"),
        (
            '{host: h, proxy: {version: 1, source: x, destination: "192.0.2.1:25"}}',
            "targets.a.proxy.source:",
        ),
    ],
)
def test_hostile_target_addresses_are_config_problems(tmp_path, target, expected):
    found = problems_of(library_at(tmp_path, f"smtpscript: 1\ntargets:\n  a: {target}\n"))
    assert any(expected in p for p in found), found
