"""Discovery, includes and the model built from valid scenarios."""

from __future__ import annotations

import os
import socket
import textwrap
from pathlib import Path

import pytest

from smtpscript import model as m
from smtpscript.actions.auth import Auth
from smtpscript.actions.connect import Connect
from smtpscript.actions.greet import Greet
from smtpscript.actions.message import Message
from smtpscript.actions.raw import Raw
from smtpscript.actions.read import Read
from smtpscript.actions.send import Send
from smtpscript.actions.sleep import Sleep
from smtpscript.actions.starttls import StartTls
from smtpscript.errors import ConfigError, ScenarioError
from smtpscript.loading import discover, display_name, load_file, load_paths
from smtpscript.patterns import CodePattern, StatusPattern

REPO = Path(__file__).resolve().parent.parent


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --- discovery --------------------------------------------------------------------


def test_discover_walks_folders_in_a_stable_order(tmp_path):
    for name in ("b.yaml", "a.yml", "sub/z.yaml", "sub/deeper/y.yaml", "notes.txt"):
        write(tmp_path, name, "x: 1\n")
    write(tmp_path, ".hidden/secret.yaml", "x: 1\n")
    write(tmp_path, "smtpscript.yaml", "targets: {}\n")  # the library config is not a scenario
    found = [p.relative_to(tmp_path).as_posix() for p in discover([tmp_path])]
    assert found == ["a.yml", "b.yaml", "sub/deeper/y.yaml", "sub/z.yaml"]


def test_discover_keeps_named_files_and_drops_repeats(tmp_path):
    a = write(tmp_path, "a.yaml", "x: 1\n")
    b = write(tmp_path, "b.txt", "x: 1\n")  # named explicitly: taken whatever its suffix
    assert discover([b, a, tmp_path, a]) == [b, a]


def test_discover_refuses_a_missing_path(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file or directory"):
        discover([tmp_path / "nope.yaml"])


def _odd_files(root: Path) -> None:
    """A FIFO, a socket, a link to a device, a broken link and a link loop, all *.yaml."""
    os.mkfifo(root / "pipe.yaml")
    (root / "zero.yaml").symlink_to("/dev/zero")
    (root / "broken.yml").symlink_to(root / "nowhere.yaml")
    (root / "loop.yaml").symlink_to(root / "loop.yaml")
    cwd = os.getcwd()
    os.chdir(root)  # a relative name: socket paths are limited to ~100 bytes
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind("sock.yaml")  # the socket file outlives the socket
    finally:
        os.chdir(cwd)


def test_discover_skips_files_that_are_not_regular_with_a_warning(tmp_path):
    write(tmp_path, "lib/a.yaml", "x: 1\n")
    _odd_files(tmp_path / "lib")
    (tmp_path / "lib" / "up").symlink_to(tmp_path)  # a link back up: not followed
    warnings: list[str] = []
    assert discover([tmp_path / "lib"], warnings) == [tmp_path / "lib" / "a.yaml"]
    lib = tmp_path / "lib"
    assert warnings == [
        f"{lib}/broken.yml: skipped: broken symbolic link",
        f"{lib}/loop.yaml: skipped: cannot read: Too many levels of symbolic links",
        f"{lib}/pipe.yaml: skipped: not a regular file (a FIFO)",
        f"{lib}/sock.yaml: skipped: not a regular file (a socket)",
        f"{lib}/zero.yaml: skipped: not a regular file (a character device)",
    ]


def test_load_paths_reports_skipped_files_as_warnings(tmp_path, monkeypatch):
    write(tmp_path, "s.yaml", "smtpscript: 1\ntitle: t\nsteps: [{send: QUIT}]\n")
    os.mkfifo(tmp_path / "pipe.yaml")
    monkeypatch.chdir(tmp_path)
    result = load_paths(["."])
    assert result.ok and result.files == 1 and len(result.scenarios) == 1
    assert result.warnings == ["pipe.yaml: skipped: not a regular file (a FIFO)"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("pipe.yaml", "not a regular file or directory (a FIFO)"),
        ("sock.yaml", "not a regular file or directory (a socket)"),
        ("zero.yaml", "not a regular file or directory (a character device)"),
        ("broken.yml", "broken symbolic link"),
        ("loop.yaml", "cannot read: Too many levels of symbolic links"),
    ],
)
def test_discover_refuses_a_named_path_that_is_not_a_file_or_folder(tmp_path, name, why):
    _odd_files(tmp_path)
    with pytest.raises(ConfigError) as info:
        discover([tmp_path / name])
    assert str(info.value) == f"{tmp_path / name}: {why}"


def test_display_names_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    path = write(tmp_path, "lib/a.yaml", "x: 1\n")
    monkeypatch.chdir(tmp_path)
    assert display_name(path) == "lib/a.yaml"
    monkeypatch.chdir(tmp_path / "lib")
    assert display_name(Path("a.yaml")) == "a.yaml"
    outside = Path("/") / "definitely-not-here.yaml"
    assert display_name(outside) == str(outside)


# --- every shipped scenario ----------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    sorted((REPO / "scenarios").rglob("*.yaml")),
    ids=lambda p: p.relative_to(REPO).as_posix(),
)
def test_every_shipped_scenario_is_valid(path):
    item = load_file(path)
    assert isinstance(item, m.Scenario | str)
    if isinstance(item, m.Scenario):
        assert item.title and item.steps and item.severity in m.SEVERITIES


# --- the model ---------------------------------------------------------------------

FRAGMENT = """
smtpscript: 1
fragment: true
description: banner and EHLO
vars:
  helo: default.example.org
  port: 25
steps:
  - connect: {}
    expect: 220
  - ehlo: "{{ helo }}"
    capture:
      size: "SIZE (\\\\d+)"
"""

SCENARIO = """
smtpscript: 1
title: Everything a scenario can say
description: One of each kind of step.
severity: high
tags: [relay, security]
references: ["RFC 5321"]
target:
  host: mx.example.org
  port: 587
  tls: none
  verify: false
  timeout: 5
vars:
  sender: probe@example.org
secrets: [password]
public_env: [SMTP_USER]
when: "env.SMTP_USER is defined"
steps:
  - include: fragments/greet.yaml
    with:
      helo: me.example.org
  - starttls:
      server_name: mx.example.org
      min_version: TLSv1.2
    tls:
      min_version: TLSv1.2
      days_left: 14
  - auth:
      mechanism: PLAIN
      username: "{{ env.SMTP_USER }}"
      password: "{{ password }}"
  - send: "MAIL FROM:<{{ sender }}>"
    name: sender
    expect: [250, "2xx"]
    status: 2.1.0
    match: "(?i)ok"
    timeout: 2.5
    continue_on_fail: true
  - pipeline:
      - send: "RCPT TO:<a@example.net>"
        expect: 550
      - send: "RCPT TO:<b{{ index }}@example.net>"
    repeat: 3
  - data:
      headers:
        Subject: hello
        X-Count: 2
      body: "size {{ size }}"
  - raw: "NOOP\\r\\n"
    expect: any
  - sleep: 1
  - read: {}
    expect: closed
    when: "'PIPELINING' in caps"
"""


@pytest.fixture
def scenario(tmp_path, monkeypatch) -> m.Scenario:
    write(tmp_path, "fragments/greet.yaml", FRAGMENT)
    write(tmp_path, "all.yaml", SCENARIO)
    monkeypatch.chdir(tmp_path)
    result = load_paths(["."], extra_names={"password"})
    assert result.problems == []
    assert result.fragments == ["fragments/greet.yaml"]
    assert result.files == 2
    [scenario] = result.scenarios
    return scenario


def test_scenario_fields(scenario):
    assert scenario.version == 1
    assert scenario.title == "Everything a scenario can say"
    assert scenario.file == "all.yaml"
    assert scenario.pos == m.SourcePos("all.yaml", 1, 1)
    assert scenario.description == "One of each kind of step."
    assert (scenario.severity, scenario.tags, scenario.references) == (
        "high",
        ("relay", "security"),
        ("RFC 5321",),
    )
    assert scenario.target == m.Endpoint(
        host="mx.example.org",
        port=587,
        tls="none",
        tls_options=m.TlsOptions(verify=False),
        timeout=5,
    )
    assert scenario.vars == {"sender": "probe@example.org"}
    assert (scenario.secrets, scenario.public_env) == (("password",), ("SMTP_USER",))
    assert scenario.when == "env.SMTP_USER is defined"


def test_step_kinds_paths_and_positions(scenario):
    steps = scenario.steps
    assert [s.kind for s in steps] == [
        "include", "starttls", "auth", "send", "pipeline", "data", "raw", "sleep", "read",
    ]  # fmt: skip
    assert [s.path for s in steps] == [f"steps[{i}]" for i in range(9)]
    assert [(s.pos.line, s.pos.column) for s in steps] == [
        (19, 5), (22, 5), (28, 5), (32, 5), (39, 5), (44, 5), (49, 5), (51, 5), (52, 5),
    ]  # fmt: skip
    assert all(s.pos.file == "all.yaml" for s in steps)


def test_include_becomes_a_group_with_layered_vars(scenario):
    group = scenario.steps[0].action
    assert isinstance(group, m.Group)
    assert group.source == "fragments/greet.yaml"
    assert group.with_vars == {"helo": "me.example.org"}
    # the fragment's own vars: defaults under everything the scenario and the run set
    assert group.defaults == {"helo": "default.example.org", "port": 25}
    connect, ehlo = group.steps
    assert connect.action == Connect(m.Endpoint())
    assert connect.expect.codes == CodePattern(("220",))
    assert ehlo.action == Greet("EHLO", "{{ helo }}")
    assert ehlo.capture == (("size", "SIZE (\\d+)"),)
    # steps of a fragment: their own file and position, a path through the include
    assert [s.path for s in group.steps] == [
        "steps[0].include.steps[0]",
        "steps[0].include.steps[1]",
    ]
    assert [str(s.pos) for s in group.steps] == [
        "fragments/greet.yaml:8:5",
        "fragments/greet.yaml:10:5",
    ]


def test_actions_and_expectations(scenario):
    _, starttls, auth, send, pipeline, data, raw, sleep, read = scenario.steps
    assert starttls.action == StartTls(
        m.TlsOptions(server_name="mx.example.org", min_version="TLSv1.2")
    )
    assert starttls.expect.tls == m.TlsExpectation(min_version="TLSv1.2", days_left=14)
    assert auth.action == Auth("PLAIN", "{{ env.SMTP_USER }}", password="{{ password }}")
    assert auth.expect == m.Expectation()  # the action's default applies
    assert send.action == Send("MAIL FROM:<{{ sender }}>")
    assert send.expect == m.Expectation(
        codes=CodePattern(("250", "2xx")), status=StatusPattern("2.1.0"), match="(?i)ok"
    )
    assert (send.name, send.timeout, send.continue_on_fail) == ("sender", 2.5, True)
    assert isinstance(pipeline.action, m.Pipeline)
    assert pipeline.repeat == 3
    inner = pipeline.action.steps
    assert [s.action for s in inner] == [
        Send("RCPT TO:<a@example.net>"),
        Send("RCPT TO:<b{{ index }}@example.net>"),
    ]
    assert [s.path for s in inner] == ["steps[4].pipeline[0]", "steps[4].pipeline[1]"]
    assert inner[0].expect.codes == CodePattern(("550",))
    assert data.action == Message(
        headers=(("Subject", "hello"), ("X-Count", "2")), body="size {{ size }}"
    )
    assert raw.action == Raw("NOOP\r\n")
    assert raw.expect.codes is not None and raw.expect.codes.accepts_any_reply
    assert sleep.action == Sleep(1.0)
    assert read.action == Read()
    assert read.expect.codes is not None and read.expect.codes.expects_closed
    assert read.when == "'PIPELINING' in caps"


def test_data_as_text_and_connect_with_options(tmp_path):
    path = write(
        tmp_path,
        "s.yaml",
        """
        smtpscript: 1
        title: t
        steps:
          - connect:
              host: "{{ relay }}"
              port: 465
              tls: implicit
              ca_file: ca.pem
          - data: "Subject: hi\\r\\n\\r\\nbody\\r\\n"
          - connect:
        """,
    )
    scenario = load_file(path, extra_names=["relay"])
    assert isinstance(scenario, m.Scenario)
    connect, data, bare = scenario.steps
    assert connect.action == Connect(
        m.Endpoint(
            host="{{ relay }}", port=465, tls="implicit", tls_options=m.TlsOptions(ca_file="ca.pem")
        )
    )
    assert data.action == Message(text="Subject: hi\r\n\r\nbody\r\n")
    assert bare.action == Connect(m.Endpoint())


# --- includes: problems ----------------------------------------------------------------


def test_all_include_problems_of_a_file_are_reported(tmp_path, monkeypatch):
    write(tmp_path, "plain.yaml", "smtpscript: 1\ntitle: p\nsteps:\n  - send: NOOP\n")
    path = write(
        tmp_path,
        "s.yaml",
        """
        smtpscript: 1
        title: t
        steps:
          - include: one.yaml
          - include: plain.yaml
          - include: two.yaml
        """,
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ScenarioError) as info:
        load_file(path)
    assert str(info.value).splitlines() == [
        "s.yaml:4:14: steps[0].include: included file not found: one.yaml",
        "s.yaml:5:14: steps[1].include: plain.yaml is not a fragment (add 'fragment: true' to it)",
        "s.yaml:6:14: steps[2].include: included file not found: two.yaml",
    ]


def test_cycles_through_two_fragments(tmp_path, monkeypatch):
    write(tmp_path, "a.yaml", "smtpscript: 1\nfragment: true\nsteps:\n  - include: b.yaml\n")
    write(tmp_path, "b.yaml", "smtpscript: 1\nfragment: true\nsteps:\n  - include: a.yaml\n")
    write(tmp_path, "s.yaml", "smtpscript: 1\ntitle: t\nsteps:\n  - include: a.yaml\n")
    monkeypatch.chdir(tmp_path)
    result = load_paths(["."])
    assert [str(p) for p in result.problems] == [
        "a.yaml:4:14: steps[0].include: include cycle: b.yaml includes itself "
        "(directly or indirectly)",
        "b.yaml:4:14: steps[0].include: include cycle: a.yaml includes itself "
        "(directly or indirectly)",
    ]
    assert result.scenarios == []


def test_a_fragment_with_a_broken_include_is_invalid_on_its_own(tmp_path, monkeypatch):
    write(tmp_path, "f.yaml", "smtpscript: 1\nfragment: true\nsteps:\n  - include: gone.yaml\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ScenarioError, match=r"f\.yaml:4:14: steps\[0\]\.include: included file"):
        load_file(Path("f.yaml"))


def test_nested_includes_are_resolved_relative_to_each_file(tmp_path, monkeypatch):
    write(
        tmp_path,
        "lib/outer.yaml",
        "smtpscript: 1\nfragment: true\nsteps:\n  - include: inner/inner.yaml\n  - send: NOOP\n",
    )
    write(
        tmp_path, "lib/inner/inner.yaml", "smtpscript: 1\nfragment: true\nsteps:\n  - send: RSET\n"
    )
    write(tmp_path, "s.yaml", "smtpscript: 1\ntitle: t\nsteps:\n  - include: lib/outer.yaml\n")
    monkeypatch.chdir(tmp_path)
    scenario = load_file(Path("s.yaml"))
    assert isinstance(scenario, m.Scenario)
    [outer] = scenario.steps
    assert isinstance(outer.action, m.Group)
    inner_group, noop = outer.action.steps
    assert isinstance(inner_group.action, m.Group)
    assert inner_group.action.source == "lib/inner/inner.yaml"
    assert inner_group.action.steps[0].path == "steps[0].include.steps[0].include.steps[0]"
    assert noop.action == Send("NOOP")


def test_load_file_returns_a_fragments_name(tmp_path, monkeypatch):
    write(tmp_path, "f.yaml", "smtpscript: 1\nfragment: true\nsteps:\n  - send: NOOP\n")
    monkeypatch.chdir(tmp_path)
    assert load_file(Path("f.yaml")) == "f.yaml"


def test_anchors_and_merge_keys_in_a_valid_scenario(tmp_path, monkeypatch, capsys):
    path = write(
        tmp_path,
        "merge.yaml",
        """
        smtpscript: 1
        title: Anchors and merge keys stay within bounds
        vars:
          outsider: &outsider probe@example.org
          helo: *outsider
        steps:
          - send: "MAIL FROM:<{{ outsider }}>"
            <<: &refused {expect: [550, 554], status: 5.7.x, timeout: 5}
          - send: "RCPT TO:<a@example.net>"
            <<: *refused
          - send: "RCPT TO:<b@example.net>"
            <<: *refused
            timeout: 9
        """,
    )
    monkeypatch.chdir(tmp_path)
    from smtpscript.cli import run_cli

    assert run_cli(["validate", "merge.yaml"]) == 0, capsys.readouterr().err
    scenario = load_file(path)
    assert isinstance(scenario, m.Scenario)
    assert scenario.vars == {"outsider": "probe@example.org", "helo": "probe@example.org"}
    refused = m.Expectation(codes=CodePattern(("550", "554")), status=StatusPattern("5.7.x"))
    assert [(s.expect, s.timeout) for s in scenario.steps] == [
        (refused, 5),
        (refused, 5),
        (refused, 9),
    ]
    # positions are those of the steps themselves, not of the anchor they merge
    assert [s.pos.line for s in scenario.steps] == [7, 9, 11]


def _library(root: Path, count: int) -> None:
    """A library of ``count`` scenarios: most valid, some broken, all using one fragment."""
    write(
        root,
        "fragments/greet.yaml",
        "smtpscript: 1\nfragment: true\nsteps:\n  - ehlo: client.example\n",
    )
    for i in range(count):
        broken = i % 7 == 3
        expect = '"2x"' if broken else "250"
        write(
            root,
            f"s{i:04d}.yaml",
            f"""
            smtpscript: 1
            title: scenario {i}
            steps:
              - include: fragments/greet.yaml
              - send: NOOP
                expect: {expect}
            """,
        )


def test_validate_checks_a_large_library_in_parallel_with_the_same_answer(tmp_path, monkeypatch):
    import subprocess
    import sys

    from smtpscript import loading

    count = loading.PARALLEL_FROM + 50
    _library(tmp_path, count)
    monkeypatch.chdir(tmp_path)
    serial = load_paths(["."])  # keeps the models: one process
    assert serial.valid == len(serial.scenarios) == count - len(serial.problems)
    # the CLI counts only, and loads big libraries in worker processes (no threads there)
    proc = subprocess.run(
        [sys.executable, "-m", "smtpscript", "validate", "."],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[:-1] == [str(p) for p in serial.problems]
    assert lines[-1] == (
        f"{count + 1} files: {serial.valid} valid scenarios, 1 fragment; "
        f"{len(serial.problems)} problems in {len(serial.problems)} files"
    )


def test_counting_without_models_gives_the_same_counts(tmp_path, monkeypatch):
    _library(tmp_path, 30)
    monkeypatch.chdir(tmp_path)
    full = load_paths(["."])
    counted = load_paths(["."], keep_models=False)
    assert counted.scenarios == [] and counted.valid == full.valid == len(full.scenarios)
    assert counted.problems == full.problems and counted.fragments == full.fragments


def test_an_include_of_a_fifo_says_what_it_is_and_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "frag.yaml")
    scenario = tmp_path / "s.yaml"
    scenario.write_text("smtpscript: 1\ntitle: t\nsteps:\n  - include: frag.yaml\n")
    problems = [str(p) for p in load_paths([scenario]).problems]
    assert problems == [
        f"{scenario}:4:14: steps[0].include: included file frag.yaml is not a regular file (a FIFO)"
    ]
