"""The pytest plugin: each scenario x target is a test item (as Tavern does for HTTP).

    pytest scenarios/ --smtpscript-target sandbox -m relay --junitxml junit.xml

Off unless asked for: YAML files are collected only when a ``--smtpscript-*``
option is given or the ini setting ``smtpscript_collect = true`` says so, and
then only files whose top level has the ``smtpscript:`` key (not fragments, not
smtpscript.yaml), so other projects' YAML is never touched. Scenarios run
through the same library pieces as ``smtpscript run``: the library config,
targets, variables and the runner; the sandbox starts once per session, when
the first item needs it. A failure's reason is the one-line assertion message
and its report shows the conversation, escaped; no traceback of smtpscript.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from smtpscript.commands import parse_vars
from smtpscript.errors import ConfigError, ScenarioError, SmtpscriptError
from smtpscript.loading import LIBRARY_CONFIG, SCENARIO_SUFFIXES

if TYPE_CHECKING:
    from smtpscript.library import Library, TargetSpec
    from smtpscript.model import Scenario, Target
    from smtpscript.results import ScenarioResult
    from smtpscript.runner import RunOptions
    from smtpscript.sandbox import Sandbox

INI_COLLECT = "smtpscript_collect"
OPTIONS = ("smtpscript_target", "smtpscript_var", "smtpscript_env", "smtpscript_config")
# a scenario (or fragment) names its format version at the top level: `smtpscript: 1`
_SCENARIO_KEY = re.compile(rb"""^["']?smtpscript["']?[ \t]*:""", re.MULTILINE)
_SNIFF_BYTES = 1024 * 1024
# A tag becomes a marker when -m can name it, and never when it would change what
# pytest does with the item (a scenario tagged "skip" must still run).
_MARKER_TAG = re.compile(r"[A-Za-z0-9][\w.+/-]*")
_PYTEST_MARKS = frozenset(
    [
        "skip",
        "skipif",
        "xfail",
        "parametrize",
        "usefixtures",
        "filterwarnings",
        "tryfirst",
        "trylast",
    ]
)
# our one-line errors name the CLI's options; under pytest they are these
_OPTION_NAMES = {
    "-t ": "--smtpscript-target ",
    "--env ": "--smtpscript-env ",
    "--config ": "--smtpscript-config ",
    "--var ": "--smtpscript-var ",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smtpscript", "smtpscript scenarios (YAML) as tests")
    group.addoption(
        "--smtpscript-target",
        action="append",
        default=[],
        metavar="TARGET",
        help="Run each scenario on TARGET (repeatable): sandbox, HOST[:PORT], or a name, "
        "@tag or 'all' of smtpscript.yaml. Turns on collecting scenario YAML files.",
    )
    group.addoption(
        "--smtpscript-var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="Set a scenario variable (repeatable), as smtpscript run --var.",
    )
    group.addoption("--smtpscript-env", metavar="NAME", help="An environment of smtpscript.yaml.")
    group.addoption(
        "--smtpscript-config",
        metavar="FILE",
        help="The library config (default: smtpscript.yaml from the working directory up, "
        "else from the rootdir up).",
    )
    parser.addini(
        INI_COLLECT,
        type="bool",
        default=False,
        help="Collect smtpscript scenario YAML files without a --smtpscript-* option.",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not _enabled(config):
        return
    config.addinivalue_line("markers", "smtpscript: a scenario run on a target by smtpscript")
    config.pluginmanager.register(_Plugin(config), "smtpscript-collect")


def _enabled(config: pytest.Config) -> bool:
    given = any(config.getoption(name) for name in OPTIONS)
    return given or bool(config.getini(INI_COLLECT))


class _Plugin:
    """Registered only when collection is on: every hook here acts on scenario files."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.runs: _Runs | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        try:
            self.runs = _Runs.from_config(self.config)
        except ScenarioError as exc:  # smtpscript.yaml: every problem, one line each
            raise pytest.UsageError(f"smtpscript: {exc}") from None
        except ConfigError as exc:
            raise pytest.UsageError(f"smtpscript: {_pytest_wording(str(exc))}") from None

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> pytest.File | None:
        if self.runs is None or not is_scenario_file(file_path):
            return None
        return ScenarioFile.from_parent(parent, path=file_path, runs=self.runs)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.runs is not None:
            self.runs.close()


def is_scenario_file(path: Path) -> bool:
    """A regular *.yaml/*.yml file (not smtpscript.yaml) with the top-level key
    ``smtpscript``: a scenario, or a fragment (which yields no items)."""
    if path.suffix not in SCENARIO_SUFFIXES or path.name == LIBRARY_CONFIG:
        return False
    try:
        if not path.is_file():  # never open a FIFO or a device
            return False
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return False
    return _SCENARIO_KEY.search(head) is not None


def _pytest_wording(message: str) -> str:
    for cli, ours in _OPTION_NAMES.items():
        if message.startswith(cli):
            return ours + message[len(cli) :]
    return message


# --- what the session runs on --------------------------------------------------------


@dataclass
class _Runs:
    """The session's targets, variables and run options; the sandbox once it is needed."""

    specs: list[TargetSpec]
    options: RunOptions
    defined: frozenset[str]  # variable names the scenarios may use without defining
    markers: set[str] = field(default_factory=set)  # tags registered as markers so far
    _started: dict[str, Target] = field(default_factory=dict)
    _sandbox: Sandbox | None = None
    _sandbox_error: str | None = None

    @classmethod
    def from_config(cls, config: pytest.Config) -> _Runs:
        from smtpscript.runner import RunOptions
        from smtpscript.targetnames import select_targets

        library = _library(config)
        environment = library.environment(config.getoption("smtpscript_env"))
        names = config.getoption("smtpscript_target") or list(library.defaults.targets)
        specs = select_targets(names, library, library.targets_in(environment))
        variables = parse_vars(config.getoption("smtpscript_var"))  # as run --var
        layers = (*library.layers, *environment.layers)
        defined = {name for layer in layers for name in layer.values} | set(variables)
        defined |= {name for spec in specs for name in spec.target.vars}
        options = RunOptions(
            overrides=dict(variables),
            library_layers=layers,
            public_env=library.public_env,
            default_timeout=library.defaults.timeout,
        )
        return cls(specs=specs, options=options, defined=frozenset(defined))

    def targets_for(self, scenario: Scenario) -> list[TargetSpec]:
        """Where the scenario runs: the chosen targets, else its own ``target:`` host."""
        if self.specs:
            return self.specs
        if scenario.target.host:
            from smtpscript.library import TargetSpec
            from smtpscript.model import Endpoint, Target

            own = Target(name="scenario", endpoint=Endpoint())
            return [TargetSpec(name="scenario", where=scenario.target.host, target=own)]
        raise ConfigError(
            f"{scenario.file}: no target: pass --smtpscript-target NAME (a target of "
            "smtpscript.yaml), HOST[:PORT] or sandbox, or set defaults.targets"
        )

    def run(self, scenario: Scenario, spec: TargetSpec) -> ScenarioResult:
        from smtpscript.runner import run

        target = self._target(spec)
        return run([scenario], [target], self.options, pairs=[(scenario, target)]).scenarios[0]

    def _target(self, spec: TargetSpec) -> Target:
        if spec.name not in self._started:
            self._started[spec.name] = self._sandboxed(spec) if spec.sandbox else spec.target
        return self._started[spec.name]

    def _sandboxed(self, spec: TargetSpec) -> Target:
        """The spec's target on the session's sandbox, which starts on first use."""
        from smtpscript.sandbox import Sandbox, SandboxConfig, SandboxError
        from smtpscript.targets import sandbox_target

        if self._sandbox_error:
            raise ConfigError(self._sandbox_error)
        if self._sandbox is None:
            try:
                self._sandbox = Sandbox(SandboxConfig(port=0, tls_port=0)).start()
            except SandboxError as exc:
                self._sandbox_error = f"cannot start the sandbox server: {exc}"
                raise ConfigError(self._sandbox_error) from None
        box = self._sandbox
        cert = str(box.cert_path) if box.cert_path else None
        started = sandbox_target(box.host, box.port, box.tls_port, cert)
        return replace(
            spec.target, endpoint=started.endpoint, implicit_tls_port=started.implicit_tls_port
        )

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.stop()
            self._sandbox = None


def _library(config: pytest.Config) -> Library:
    """--smtpscript-config, else smtpscript.yaml from the working directory up, else from
    the rootdir up, else none (scenarios/ and no named targets)."""
    from smtpscript.library import find_config, load_library

    named = config.getoption("smtpscript_config")
    if named:
        return load_library(Path(named))
    found = find_config() or find_config(config.rootpath)
    return load_library(found)


# --- collection --------------------------------------------------------------------


class ScenarioFile(pytest.File):
    """One scenario file: an item per target; invalid, a collection error."""

    def __init__(self, *, runs: _Runs, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs = runs

    def collect(self) -> Iterator[ScenarioItem]:
        from smtpscript.loading import load_file

        scenario = load_file(self.path, self.runs.defined)
        if isinstance(scenario, str):
            return  # a fragment: included by scenarios, not run on its own
        specs = self.runs.targets_for(scenario)
        markers = self._register(scenario.tags)
        for spec in specs:
            yield ScenarioItem.from_parent(
                self, name=spec.name, scenario=scenario, spec=spec, markers=markers
            )

    def _register(self, tags: tuple[str, ...]) -> list[str]:
        """The tags that become markers, registered so --strict-markers accepts them."""
        markers = [t for t in tags if _MARKER_TAG.fullmatch(t) and t not in _PYTEST_MARKS]
        for tag in markers:
            if tag not in self.runs.markers:
                self.runs.markers.add(tag)
                self.config.addinivalue_line("markers", f"{tag}: smtpscript scenario tag")
        return markers

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:  # type: ignore[override]
        if isinstance(excinfo.value, SmtpscriptError):
            return str(excinfo.value)  # file:line:col: path: message, one problem a line
        return super().repr_failure(excinfo)


class ScenarioFailed(Exception):
    """A run's verdict was failed or error; the report is built from its result."""

    def __init__(self, result: ScenarioResult) -> None:
        super().__init__(result.reason)
        self.result = result


class ScenarioItem(pytest.Item):
    """One scenario on one target."""

    def __init__(
        self, *, scenario: Scenario, spec: TargetSpec, markers: list[str], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.spec = spec
        self.result: ScenarioResult | None = None
        self.add_marker("smtpscript")
        for name in markers:
            self.add_marker(name)

    @property
    def runs(self) -> _Runs:
        parent = self.parent
        assert isinstance(parent, ScenarioFile)
        return parent.runs

    def runtest(self) -> None:
        self.result = self.runs.run(self.scenario, self.spec)
        if self.result.verdict == "skipped":
            skip = pytest.skip.Exception(self.result.reason or "skipped")
            skip._use_item_location = True  # the scenario's file:line, not this module's
            raise skip
        if self.result.verdict in ("failed", "error"):
            raise ScenarioFailed(self.result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:  # type: ignore[override]
        if isinstance(excinfo.value, ScenarioFailed):
            return FailureRepr(excinfo.value.result)
        if isinstance(excinfo.value, SmtpscriptError):  # no target, sandbox did not start
            return _pytest_wording(str(excinfo.value))
        return super().repr_failure(excinfo)  # a bug in smtpscript: its traceback helps

    def reportinfo(self) -> tuple[Path, int, str]:
        from smtpscript.protocol import escape_controls

        title = escape_controls(f"{self.scenario.title} on {self.name}")
        return self.path, self.scenario.pos.line - 1, title


# --- the failure report ----------------------------------------------------------------


@dataclass
class _Crash:
    """What pytest shows as a failure's one-line message (short summary, JUnit)."""

    path: str
    lineno: int
    message: str

    def toterminal(self, tw: Any) -> None:
        tw.line(self.message)  # the reason already starts with file:line

    def __str__(self) -> str:
        return self.message


class FailureRepr:
    """A failed or errored run as pytest reports it: the reason, the verdict, the
    conversation as ``smtpscript run -v`` prints it, then the scenario's remedy."""

    def __init__(self, result: ScenarioResult) -> None:
        self.result = result
        self.reprcrash = _crash(result)

    def toterminal(self, tw: Any) -> None:
        from smtpscript.console import ConsoleView
        from smtpscript.protocol import escape_controls

        result = self.result
        colour = bool(getattr(tw, "hasmarkup", False))
        out = io.StringIO()
        ConsoleView(out, colour=colour, progress=False).conversation(result)
        tw.line(self.reprcrash.message, red=True, bold=True)
        where = f"{result.file}:{result.line}"
        tw.line(escape_controls(f"{result.verdict} [{result.severity}] {where}"))
        tw.write(out.getvalue())
        if result.verdict == "failed" and result.remediation:
            tw.line(f"fix: {escape_controls(result.remediation)}")

    def __str__(self) -> str:
        out = io.StringIO()
        self.toterminal(_PlainWriter(out))
        return out.getvalue()


class _PlainWriter:
    """Enough of pytest's TerminalWriter to render a report as plain text."""

    hasmarkup = False

    def __init__(self, out: io.StringIO) -> None:
        self.out = out

    def line(self, text: str = "", **markup: Mapping[str, bool]) -> None:
        self.out.write(text + "\n")

    def write(self, text: str, **markup: Mapping[str, bool]) -> None:
        self.out.write(text)


def _crash(result: ScenarioResult) -> _Crash:
    """The reason (an error's marked as such), at the step that failed, else the scenario."""
    from smtpscript.protocol import escape_controls

    reason = escape_controls(result.reason or result.verdict)
    message = f"error: {reason}" if result.verdict == "error" else reason
    bad = [s for s in result.steps if s.verdict in ("failed", "error")]
    if bad:
        return _Crash(bad[0].file or result.file, bad[0].line, message)
    return _Crash(result.file, result.line, message)
