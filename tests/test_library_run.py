"""Runs through a library: variable precedence, the per-target cap, a stable order at any
-j, -x, --last-failed, colour, completion and `smtpscript init`. Real sandboxes on
loopback; the cap is counted at a real TCP proxy in front of one."""

from __future__ import annotations

import json
import os
import re
import selectors
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import yaml
from scenario_helpers import cli

from smtpscript import workers
from smtpscript.api import RunRequest, run_request
from smtpscript.library import CONFIG_NAME, load_library
from smtpscript.sandbox import Sandbox, SandboxConfig
from smtpscript.scaffold import create_library


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def scenario(folder: Path, name: str, steps: str, **top: object) -> Path:
    header = "".join(f"{key}: {json.dumps(value)}\n" for key, value in top.items())
    body = textwrap.indent(textwrap.dedent(steps).strip(), "  ")
    title = top.get("title", name)
    return write(
        folder / f"{name}.yaml", f"smtpscript: 1\ntitle: {title}\n{header}steps:\n{body}\n"
    )


@pytest.fixture(scope="module")
def sandboxes():
    """Three sandboxes: three targets on three ports."""
    servers = [Sandbox(SandboxConfig(port=0)).start() for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


# --- variable precedence ---------------------------------------------------------------

LAYERS = ["scenario", "library", "varsfile", "environment", "envfile", "target", "clifile", "cli"]


def test_every_step_of_the_variable_precedence(tmp_path):
    """v0 is set only by the scenario, v1 also by the library vars, ... v7 by every layer:
    each vN shows the highest layer that sets it."""

    def mapping(level: int) -> str:
        values = {f"v{n}": LAYERS[level] for n in range(level, len(LAYERS))}
        return json.dumps(values)

    write(tmp_path / "vars" / "common.yaml", mapping(2))
    write(tmp_path / "vars" / "staging.yaml", mapping(4))
    write(tmp_path / "cli.yaml", mapping(6))
    write(
        tmp_path / CONFIG_NAME,
        f"""
        smtpscript: 1
        vars: {mapping(1)}
        vars_files: [vars/common.yaml]
        environments:
          staging:
            vars: {mapping(3)}
            vars_files: [vars/staging.yaml]
            targets:
              lab: {{sandbox: true, vars: {mapping(5)}}}
        """,
    )
    steps = "- send: 'NOOP " + " ".join(f"{{{{ v{n} }}}}" for n in range(len(LAYERS))) + "'\n"
    scenario(tmp_path / "scenarios", "layers", steps, vars=json.loads(mapping(0)))
    library = load_library(cwd=tmp_path)
    request = RunRequest(
        targets=["lab"],
        environment="staging",
        vars_files=[tmp_path / "cli.yaml"],
        variables={"v7": "cli"},
        environ={},
    )
    outcome = run_request(request, library)
    assert not outcome.problems, outcome.problems
    (result,) = outcome.run.scenarios
    assert result.verdict == "passed", result.reason
    noop = next(step for step in result.steps if step.kind == "send")
    assert noop.sent == ["NOOP " + " ".join(LAYERS)]


def test_a_library_var_that_fails_to_render_names_its_layer(tmp_path):
    write(tmp_path / CONFIG_NAME, "smtpscript: 1\nvars: {who: '{{ env.NO_SUCH_VARIABLE }}'}\n")
    scenario(tmp_path / "scenarios", "s", "- send: 'NOOP {{ who }}'")
    outcome = run_request(RunRequest(targets=["sandbox"], environ={}), load_library(cwd=tmp_path))
    (result,) = outcome.run.scenarios
    assert result.verdict == "error"
    assert "smtpscript.yaml vars who" in result.reason
    assert "environment variable NO_SUCH_VARIABLE is not set" in result.reason


def test_library_secrets_from_the_environment_never_show(tmp_path, capsys, monkeypatch):
    write(tmp_path / CONFIG_NAME, "smtpscript: 1\nvars: {token: '{{ env.LIB_TOKEN }}'}\n")
    scenario(tmp_path / "scenarios", "s", "- send: 'NOOP {{ token }}'\n  expect: 550")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIB_TOKEN", "s3cret-library-token")
    status, out, err = cli(capsys, "run", "-t", "sandbox", "-v", "--json", "r.json")
    assert status == 1
    everything = out + err + (tmp_path / "r.json").read_text()
    assert "s3cret-library-token" not in everything and "NOOP" in everything


# --- many targets, any -j, one order -------------------------------------------------------


def _inventory(folder: Path, sandboxes: list[Sandbox], cap: int | None = None) -> None:
    lines = ["smtpscript: 1", "targets:"]
    for n, server in enumerate(sandboxes):
        extra = f", max_connections: {cap}" if cap else ""
        lines.append(f"  s{n}: {{host: 127.0.0.1, port: {server.port}, tags: [lab]{extra}}}")
    write(folder / CONFIG_NAME, "\n".join(lines) + "\n")


def _twenty(folder: Path) -> None:
    for n in range(20):
        sleep = f"- sleep: 0.0{(n * 7) % 5}\n" if n % 3 else ""
        verdict = "- send: 'VRFY nobody'\n  expect: 250\n" if n % 6 == 5 else ""
        scenario(folder / "scenarios", f"c{n:02}", f"{sleep}- send: 'NOOP {n}'\n{verdict}")


_VOLATILE = {"started_at", "finished_at", "duration_ms", "t", "elapsed_ms"}


def _stable(data: object) -> object:
    """Results without clock readings."""
    if isinstance(data, dict):
        return {k: _stable(v) for k, v in data.items() if k not in _VOLATILE}
    if isinstance(data, list):
        return [_stable(item) for item in data]
    return data


def _lab_run(capsys, name: str, *options: str) -> tuple[list[str], object]:
    """Run the lab inventory: (console lines without timings, results without clocks)."""
    status, out, _ = cli(capsys, "run", "-t", "@lab", "--json", f"{name}.json", "--color",
                         "never", *options)  # fmt: skip
    assert status == 1  # c05, c11 and c17 fail on every target
    lines = [re.sub(r"\d+\.\d\ds", "", line) for line in out.splitlines()]
    return lines, _stable(json.loads(Path(f"{name}.json").read_text()))


def test_three_targets_by_twenty_scenarios_give_the_same_results_and_order_at_any_j(
    tmp_path, sandboxes, capsys, monkeypatch
):
    _inventory(tmp_path, sandboxes)
    _twenty(tmp_path)
    monkeypatch.chdir(tmp_path)
    seen = {jobs: _lab_run(capsys, f"j{jobs}", "-j", jobs) for jobs in ("1", "16")}
    assert seen["1"][1] == seen["16"][1]
    assert seen["1"][0][:-1] == seen["16"][0][:-1]  # the last line holds the total time
    order = [(r["target"]["name"], r["title"]) for r in seen["16"][1]["scenarios"]]
    assert order == [(f"s{t}", f"c{n:02}") for t in range(3) for n in range(20)]
    failed = [r["title"] for r in seen["16"][1]["scenarios"] if r["verdict"] == "failed"]
    assert failed == ["c05", "c11", "c17"] * 3


# --- the per-target cap, counted at the server ---------------------------------------------


# connect first: the connection is held through the sleep (a sleep before any step that
# needs one would come before the implicit connect)
HOLD_A_CONNECTION = "- connect: {}\n- sleep: 0.3\n- send: NOOP"


class CountingProxy:
    """A TCP relay in front of a server that counts the sessions open at once.

    A session counts from its accept until its client sends QUIT (or, without one, until
    it closes): the client waits for the 221 this relay passes on before it closes and
    lets the next run start, so a QUIT is always seen before the next session's accept,
    where a close may be noticed after it.
    """

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open = self.peak = self.total = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self.lock:
                self.open += 1
                self.total += 1
                self.peak = max(self.peak, self.open)
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream, timeout=10)
        peers = {client: server, server: client}
        counted = True
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            try:
                while True:
                    events = selector.select(timeout=10)
                    if not events:
                        break
                    source = events[0][0].fileobj
                    data = source.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        break
                    if source is client and counted and b"QUIT\r\n" in data:
                        counted = self._done()
                    peers[source].sendall(data)  # type: ignore[index]
            except OSError:
                pass
        if counted:
            self._done()
        client.close()
        server.close()

    def _done(self) -> bool:
        with self.lock:
            self.open -= 1
        return False

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize(("cap", "expected"), [(None, 2), (1, 1), (3, 3)])
def test_the_per_target_cap_holds_at_the_server(tmp_path, sandboxes, cap, expected):
    proxy = CountingProxy((sandboxes[0].host, sandboxes[0].port))
    try:
        extra = f", max_connections: {cap}" if cap else ""
        write(
            tmp_path / CONFIG_NAME,
            f"smtpscript: 1\ntargets:\n  mx: {{host: 127.0.0.1, port: {proxy.port}{extra}}}\n",
        )
        for n in range(8):
            scenario(tmp_path / "scenarios", f"slow{n}", HOLD_A_CONNECTION)
        outcome = run_request(RunRequest(targets=["mx"], jobs=16), load_library(cwd=tmp_path))
    finally:
        proxy.close()
    assert outcome.run.counts()["passed"] == 8
    assert proxy.total == 8
    assert proxy.peak == expected


def test_max_connections_on_the_command_line_sets_the_default(tmp_path, sandboxes):
    proxy = CountingProxy((sandboxes[0].host, sandboxes[0].port))
    try:
        for n in range(6):
            scenario(tmp_path / "scenarios", f"slow{n}", HOLD_A_CONNECTION)
        request = RunRequest(
            paths=[tmp_path / "scenarios"],
            targets=[f"127.0.0.1:{proxy.port}"],
            jobs=16,
            max_connections=6,
        )
        outcome = run_request(request, load_library(cwd=tmp_path))
    finally:
        proxy.close()
    assert outcome.run.counts()["passed"] == 6 and proxy.peak == 6


# --- -x, --last-failed, --fail-on ---------------------------------------------------------


def test_exitfirst_starts_nothing_after_the_first_failure(tmp_path, capsys, monkeypatch):
    for n in range(5):
        expect = "550" if n == 1 else "250"
        scenario(tmp_path / "scenarios", f"s{n}", f"- send: NOOP\n  expect: {expect}")
    monkeypatch.chdir(tmp_path)
    status, _out, _ = cli(capsys, "run", "-t", "sandbox", "-j", "1", "-x", "--json", "r.json")
    assert status == 1
    results = json.loads((tmp_path / "r.json").read_text())
    assert [r["title"] for r in results["scenarios"]] == ["s0", "s1"]
    assert "stopped after the first failure (-x: s1 on sandbox): 2 of 5" in results["incomplete"]


def test_last_failed_reruns_only_the_failures_until_they_pass(tmp_path, capsys, monkeypatch):
    write(tmp_path / CONFIG_NAME, "smtpscript: 1\ndefaults: {targets: [sandbox]}\n")
    scenario(tmp_path / "scenarios", "good", "- send: NOOP")
    scenario(
        tmp_path / "scenarios",
        "flaky",
        "- send: '{{ command }}'\n  expect: 250",
        vars={"command": "BOGUS"},
    )
    scenario(tmp_path / "scenarios", "other", "- send: NOOP")
    monkeypatch.chdir(tmp_path)

    def titles(*args: str) -> tuple[int, list[str], str]:
        status, _, err = cli(capsys, "run", "--json", "r.json", *args)
        results = json.loads((tmp_path / "r.json").read_text())
        return status, [r["title"] for r in results["scenarios"]], err

    assert titles()[:2] == (1, ["flaky", "good", "other"])
    stored = json.loads((tmp_path / ".smtpscript" / "lastfailed.json").read_text())
    assert stored == {"failed": ["scenarios/flaky.yaml::sandbox"]}
    status, ran, err = titles("--last-failed")
    assert (status, ran) == (1, ["flaky"]) and "running 1 of 3" in err
    status, ran, _ = titles("--lf", "--var", "command=NOOP")
    assert (status, ran) == (0, ["flaky"])
    status, ran, err = titles("--last-failed", "--var", "command=NOOP")
    assert status == 0 and ran == ["flaky", "good", "other"] and "running all" in err


def test_fail_on_says_when_it_turned_failures_into_success(tmp_path, capsys, monkeypatch):
    scenario(tmp_path / "scenarios", "low", "- send: NOOP\n  expect: 550", severity="low")
    monkeypatch.chdir(tmp_path)
    status, out, _ = cli(capsys, "run", "-t", "sandbox", "--fail-on", "high")
    assert status == 0
    assert "below --fail-on high" in out
    write(tmp_path / CONFIG_NAME, "smtpscript: 1\ndefaults: {fail_on: medium}\n")
    assert cli(capsys, "run", "-t", "sandbox")[0] == 0
    assert cli(capsys, "run", "-t", "sandbox", "--fail-on", "low")[0] == 1


# --- colour --------------------------------------------------------------------------------

ANSI = "\x1b["


@pytest.mark.parametrize(
    ("environment", "args", "coloured"),
    [
        ({}, [], False),  # not a terminal
        ({"FORCE_COLOR": "1"}, [], True),
        ({"FORCE_COLOR": "1", "NO_COLOR": "1"}, [], False),
        ({"FORCE_COLOR": "0"}, [], False),
        ({"FORCE_COLOR": "1"}, ["--color", "never"], False),
        ({"NO_COLOR": "1"}, ["--color", "always"], True),
    ],
)
def test_colour_follows_no_color_force_color_and_the_option(
    tmp_path, capsys, monkeypatch, environment, args, coloured
):
    scenario(tmp_path / "scenarios", "s", "- send: NOOP")
    monkeypatch.chdir(tmp_path)
    for name in ("FORCE_COLOR", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    status, out, _ = cli(capsys, "run", "-t", "sandbox", *args)
    assert status == 0
    assert (ANSI in out) is coloured


# --- list, init, completion ------------------------------------------------------------------


def test_list_shows_targets_and_scenarios(tmp_path, capsys, monkeypatch):
    write(
        tmp_path / CONFIG_NAME,
        "smtpscript: 1\ntargets:\n  lab: {sandbox: true, tags: [local]}\n"
        "  mx1: {host: mx1.example.com, tags: [production, mx]}\n",
    )
    scenario(tmp_path / "scenarios", "s", "- send: NOOP", severity="high", tags=["relay"])
    monkeypatch.chdir(tmp_path)
    status, out, _ = cli(capsys, "list")
    assert status == 0
    assert re.search(r"lab\s+sandbox\s+local", out)
    assert re.search(r"mx1\s+mx1.example.com:25\s+production,mx", out)
    assert re.search(r"high\s+s\s+relay\s+scenarios/s.yaml:1", out)
    status, out, _ = cli(capsys, "list", "--json")
    listing = json.loads(out)
    assert [t["name"] for t in listing["targets"]] == ["lab", "mx1"]
    assert listing["scenarios"][0]["file"] == "scenarios/s.yaml"


def test_init_creates_a_library_that_passes_at_once(tmp_path, capsys, monkeypatch):
    library = tmp_path / "lib"
    status, out, _ = cli(capsys, "init", library)
    assert status == 0 and "smtpscript run" in out
    monkeypatch.chdir(library)
    status, out, err = cli(capsys, "run")
    assert status == 0, out + err
    assert (library / "reports" / "junit.xml").is_file()  # defaults: report paths
    assert cli(capsys, "validate")[0] == 0
    # the CI jobs run smtpscript with JUnit output
    github = yaml.safe_load((library / ".github/workflows/smtpscript.yml").read_text())
    commands = [step.get("run", "") for step in github["jobs"]["audit"]["steps"]]
    assert any(c.startswith("smtpscript run") and "--junit" in c for c in commands)
    gitlab = yaml.safe_load((library / ".gitlab-ci.yml").read_text())
    assert any("smtpscript run" in c and "--junit" in c for c in gitlab["smtpscript"]["script"])
    assert gitlab["smtpscript"]["artifacts"]["reports"]["junit"] == "reports/junit.xml"
    assert "reports/" in (library / ".gitignore").read_text()


def test_init_refuses_to_overwrite(tmp_path, capsys):
    create_library(tmp_path)
    status, _, err = cli(capsys, "init", tmp_path)
    assert status == 2 and "already holds smtpscript.yaml" in err and "--force" in err
    assert cli(capsys, "init", tmp_path, "--force")[0] == 0


def test_completion_scripts_are_generated():
    for shell in ("bash", "zsh", "fish"):
        proc = subprocess.run(
            [sys.executable, "-m", "smtpscript", "--show-completion", shell],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert "_SMTPSCRIPT_COMPLETE" in proc.stdout


def _completions(folder: Path, words: str) -> list[str]:
    """What bash completion offers for the last of ``words``, in ``folder``."""
    env = {
        **os.environ,
        "_SMTPSCRIPT_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "smtpscript"],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_target_names_and_environments_complete_from_the_library(tmp_path):
    write(
        tmp_path / CONFIG_NAME,
        "smtpscript: 1\ntargets:\n  mx1: {host: a, tags: [prod]}\n  mx2: {host: b}\n"
        "environments:\n  staging:\n    targets:\n      mx-stage: {host: c}\n",
    )
    assert _completions(tmp_path, "smtpscript run -t m") == ["mx-stage", "mx1", "mx2"]
    assert _completions(tmp_path, "smtpscript run -t @") == ["@prod"]
    assert _completions(tmp_path, "smtpscript run --env s") == ["staging"]
    # a broken config completes what needs no config, never a traceback
    write(tmp_path / CONFIG_NAME, "smtpscript: [\n")
    assert _completions(tmp_path, "smtpscript run -t s") == ["sandbox"]


def test_a_certificate_verify_failure_hints_at_ca_file(tmp_path, capsys, sandboxes):
    path = scenario(tmp_path, "tls", "- connect: {}\n- ehlo: me.example.org\n- starttls: {}")
    status, out, _ = cli(capsys, "run", path, "-t", f"127.0.0.1:{sandboxes[0].port}")
    assert status == 1
    assert "certificate verify failed" in out and "--ca-file" in out and "verify: false" in out


def test_the_library_schema_is_what_the_generator_writes_and_is_printed(capsys):
    import importlib.util

    repo = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("gen", repo / "tools" / "gen_library_schema.py")
    assert spec and spec.loader
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    status, out, _ = cli(capsys, "schema", "library")
    assert status == 0
    assert json.loads(out) == json.loads(json.dumps(generator.LIBRARY))


def test_help_shows_examples_and_exit_codes(capsys):
    status, out, _ = cli(capsys, "--help")
    assert status == 0
    assert "smtpscript init mylib" in out and "-t @production" in out
    assert "Exit status: 0 all passed; 1 a scenario failed" in " ".join(out.split())


@pytest.mark.parametrize("content", ["not json", '{"failed": [1]}', "[]"])
def test_a_broken_last_failed_file_is_one_clear_line(tmp_path, capsys, monkeypatch, content):
    scenario(tmp_path / "scenarios", "s", "- send: NOOP")
    (tmp_path / ".smtpscript").mkdir()
    (tmp_path / ".smtpscript" / "lastfailed.json").write_text(content)
    monkeypatch.chdir(tmp_path)
    status, _, err = cli(capsys, "run", "-t", "sandbox", "--last-failed")
    assert status == 2 and "lastfailed.json" in err and len(err.strip().splitlines()) == 1
    assert cli(capsys, "run", "-t", "sandbox")[0] == 0  # a run without --lf repairs it
    assert json.loads((tmp_path / ".smtpscript" / "lastfailed.json").read_text()) == {"failed": []}


def test_inside_an_include_var_beats_with_which_beats_scenario_vars_which_beat_defaults(
    tmp_path,
):
    write(
        tmp_path / "scenarios" / "fragments" / "probe.yaml",
        """
        smtpscript: 1
        fragment: true
        vars: {a: fragment, b: fragment, c: fragment, d: fragment}
        steps:
          - send: "NOOP {{ a }} {{ b }} {{ c }} {{ d }}"
        """,
    )
    scenario(
        tmp_path / "scenarios",
        "s",
        "- include: fragments/probe.yaml\n  with: {a: with, b: with}",
        vars={"a": "scenario", "b": "scenario", "c": "scenario"},
    )
    request = RunRequest(targets=["sandbox"], variables={"a": "cli"}, environ={})
    outcome = run_request(request, load_library(cwd=tmp_path))
    (result,) = outcome.run.scenarios
    assert result.verdict == "passed", result.reason
    noop = next(step for step in result.steps if step.kind == "send")
    assert noop.sent == ["NOOP cli with scenario fragment"]


# --- --shard I/N ----------------------------------------------------------------------------


def test_shards_split_the_pairs_once_each_and_stay_put_when_files_come(tmp_path):
    from smtpscript.selection import Shard

    for n in range(12):
        scenario(tmp_path / "scenarios", f"c{n:02}", "- send: NOOP")
    library = load_library(cwd=tmp_path)

    def shares() -> list[set[tuple[str, str]]]:
        found = []
        for index in (1, 2, 3):
            request = RunRequest(targets=["sandbox"], shard=Shard(index, 3), environ={})
            outcome = run_request(request, library)
            found.append({(r.title, r.target.name) for r in outcome.run.scenarios})
        return found

    before = shares()
    assert sum(len(s) for s in before) == 12 and set().union(*before) == {
        (f"c{n:02}", "sandbox") for n in range(12)
    }
    assert all(before), "a shard of 12 pairs over 3 jobs came out empty: the hash is off"
    scenario(tmp_path / "scenarios", "a-new-one", "- send: NOOP")
    after = shares()
    for old, new in zip(before, after, strict=True):
        assert old <= new  # nobody moved; the new pair went to exactly one shard
    assert sum(len(s) for s in after) == 13


def test_shards_split_the_same_wherever_the_library_is_checked_out(tmp_path):
    """CI jobs on different machines check the library out at different places: each
    pair must still fall to the same shard, or some run twice and some never."""
    import shutil

    from smtpscript.selection import Shard

    first = tmp_path / "job-a" / "checkout"
    for n in range(12):
        scenario(first / "scenarios", f"c{n:02}", "- send: NOOP")
    second = tmp_path / "elsewhere" / "deeper" / "checkout"
    shutil.copytree(first, second)

    def shares(root: Path) -> list[set[str]]:
        library = load_library(cwd=root)
        found = []
        for index in (1, 2, 3):
            request = RunRequest(targets=["sandbox"], shard=Shard(index, 3), environ={})
            found.append({r.title for r in run_request(request, library).run.scenarios})
        return found

    assert shares(first) == shares(second)


@pytest.mark.parametrize("value", ["0/3", "4/3", "x", "1/", "1/0", "²/3"])
def test_a_bad_shard_is_one_clear_line(capsys, value):
    status, _, err = cli(capsys, "run", "scenarios", "-t", "sandbox", "--shard", value)
    assert status == 2
    assert err.startswith("smtpscript: error: --shard") and len(err.strip().splitlines()) == 1


def test_workers_share_out_targets_and_give_the_same_results(
    tmp_path, sandboxes, capsys, monkeypatch
):
    _inventory(tmp_path, sandboxes)
    _twenty(tmp_path)
    monkeypatch.chdir(tmp_path)
    seen = {n: _lab_run(capsys, f"w{n}", "-j", "8", "--workers", n) for n in ("1", "2")}
    seen = {n: (lines[:-1], results) for n, (lines, results) in seen.items()}  # total time
    assert seen["1"] == seen["2"]


def _smtpscript(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtpscript", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


_CLOCKS = re.compile(  # timestamps and durations: what differs between two runs
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d[+\dZ:]*|\d\d:\d\d:\d\d( UTC)?"
    r"|\d+(\.\d+)?\s?(ms|s)\b|duration[^<]*|(?<=\"t\">)\s*[\d.]+"
)


def test_shards_run_apart_merge_into_the_unsharded_report(tmp_path, sandboxes):
    _inventory(tmp_path, sandboxes)
    _twenty(tmp_path)
    whole = _smtpscript(tmp_path, "run", "-t", "@lab", "--json", "whole.json")
    assert whole.returncode == 1, whole.stderr
    for index in (1, 2, 3):  # three processes, as three CI jobs would be
        shard = _smtpscript(
            tmp_path, "run", "-t", "@lab", "--shard", f"{index}/3", "--json", f"shard{index}.json"
        )
        assert shard.returncode in (0, 1), shard.stderr
    merged = _smtpscript(
        tmp_path, "report", "shard1.json", "shard2.json", "shard3.json",
        "--json", "merged.json", "--html", "merged.html",
    )  # fmt: skip
    assert merged.returncode == 0, merged.stderr
    assert _smtpscript(tmp_path, "report", "whole.json", "--html", "whole.html").returncode == 0
    whole_data = _stable(json.loads((tmp_path / "whole.json").read_text()))
    merged_data = _stable(json.loads((tmp_path / "merged.json").read_text()))
    assert merged_data == whole_data
    pages = [_CLOCKS.sub("", (tmp_path / f"{n}.html").read_text()) for n in ("whole", "merged")]
    assert pages[0] == pages[1]


_REAL_RUN_SHARE = workers._run_share


def _dies_for_s1(share: list[int]):  # type: ignore[no-untyped-def]
    """A worker's share (module level: the pool pickles it by name), dying for s1."""
    if any(workers._work["pairs"][i][1].name == "s1" for i in share):
        os._exit(9)  # no exception, no goodbye: the process is just gone
    return _REAL_RUN_SHARE(share)


def test_a_worker_that_dies_costs_only_its_own_runs(tmp_path, sandboxes, capsys, monkeypatch):
    """A worker process killed mid-run (out of memory, say): its runs are internal errors
    (exit 3), every other worker's results and every report are written."""
    monkeypatch.setattr(workers, "_run_share", _dies_for_s1)
    _inventory(tmp_path, sandboxes)
    _twenty(tmp_path)
    monkeypatch.chdir(tmp_path)
    status, _, err = cli(
        capsys, "run", "-t", "@lab", "--workers", "3", "--json", "r.json", "--junit", "j.xml"
    )
    assert status == 3 and "bug in smtpscript" in err
    results = json.loads((tmp_path / "r.json").read_text())["scenarios"]
    by_target = {
        name: [r for r in results if r["target"]["name"] == name] for name in ("s0", "s1", "s2")
    }
    assert [len(runs) for runs in by_target.values()] == [20, 20, 20]
    assert {r["verdict"] for r in by_target["s1"]} == {"error"}
    assert all("worker process running it died" in r["reason"] for r in by_target["s1"])
    assert all(r["internal_error"] for r in by_target["s1"])
    for name in ("s0", "s2"):  # the other workers' verdicts stand
        failed = [r["title"] for r in by_target[name] if r["verdict"] == "failed"]
        assert failed == ["c05", "c11", "c17"]
    assert (tmp_path / "j.xml").is_file()
