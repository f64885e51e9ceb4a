"""The library config, smtpscript.yaml: where a team's scenarios are, the servers
they run against (named targets, environments), shared variables and defaults.

Found by walking up from the working directory (or named with --config), read
with the same safe loader as scenarios and validated against
schemas/library.schema.json, with every problem placed at file:line:column and
its JSON path. Paths in it are relative to its folder, so a command means the
same from any folder of the library.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from smtpscript import model as m
from smtpscript.errors import ConfigError, Problem, ScenarioError, did_you_mean
from smtpscript.model import VarLayer
from smtpscript.schemaparts import NAME_PATTERN
from smtpscript.yamlsource import Document, JsonPath, read_document

CONFIG_NAME = "smtpscript.yaml"
DEFAULT_PATHS = ("scenarios",)
STATE_DIR = ".smtpscript"  # next to the config: what --last-failed reads
_TLS_FILES = ("ca_file", "client_cert", "client_key")


@dataclass(frozen=True)
class TargetSpec:
    """A named target as the config defines it; ``build`` makes the runner's Target."""

    name: str
    where: str  # display address: host:port, unix:/path or "sandbox"
    target: m.Target  # for a sandbox target: its endpoint is filled in when it starts
    sandbox: bool = False
    description: str = ""

    @property
    def tags(self) -> tuple[str, ...]:
        return self.target.tags


@dataclass(frozen=True)
class Environment:
    """A named environment of the library: its targets and vars layers."""

    name: str
    targets: dict[str, TargetSpec] | None  # None: the library's targets
    layers: tuple[VarLayer, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Defaults:
    """The library's defaults for run options (smtpscript.yaml ``defaults:``)."""

    targets: tuple[str, ...] = ()
    environment: str | None = None
    jobs: int | None = None
    max_connections: int | None = None
    timeout: float | None = None
    fail_on: str | None = None
    json: Path | None = None
    html: Path | None = None
    junit: Path | None = None


@dataclass(frozen=True)
class Library:
    """A loaded smtpscript.yaml; ``Library.none(cwd)`` when there is none."""

    path: Path | None  # the config file
    root: Path  # its folder: paths, vars files, TLS files and reports are relative to it
    paths: tuple[Path, ...]
    targets: dict[str, TargetSpec] = field(default_factory=dict)
    environments: dict[str, Environment] = field(default_factory=dict)
    layers: tuple[VarLayer, ...] = ()
    public_env: tuple[str, ...] = ()
    defaults: Defaults = field(default_factory=Defaults)
    description: str = ""  # what the library is for: the reports' default title

    @classmethod
    def none(cls, cwd: Path | None = None) -> Library:
        """No config: scenarios/ under the working directory, no named targets."""
        root = cwd or Path.cwd()
        return cls(path=None, root=root, paths=tuple(root / p for p in DEFAULT_PATHS))

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def environment(self, name: str | None) -> Environment:
        """The environment chosen by --env (or defaults.environment); ConfigError if unknown."""
        name = name or self.defaults.environment
        if name is None:
            return Environment(name="", targets=None)
        if name in self.environments:
            return self.environments[name]
        known = sorted(self.environments)
        where = f"{self.path}" if self.path else "no smtpscript.yaml found"
        listed = f"environments: {', '.join(known)}" if known else "it defines no environments"
        raise ConfigError(
            f"--env {name}: no such environment ({where}; {listed}){did_you_mean(name, known)}"
        )

    def variable_names(self) -> set[str]:
        """Every name the library may give a scenario, in any environment or target
        (validation counts them as defined)."""
        layers = [*self.layers]
        specs = list(self.targets.values())
        for environment in self.environments.values():
            layers += environment.layers
            specs += (environment.targets or {}).values()
        names = {name for layer in layers for name in layer.values}
        return names | {name for spec in specs for name in spec.target.vars}

    def targets_in(self, environment: Environment) -> dict[str, TargetSpec]:
        return self.targets if environment.targets is None else environment.targets


def find_config(start: Path | None = None) -> Path | None:
    """smtpscript.yaml in ``start`` (default: the working directory) or the nearest
    folder above it that has one."""
    folder = (start or Path.cwd()).absolute()
    for candidate in (folder, *folder.parents):
        path = candidate / CONFIG_NAME
        try:
            if path.is_file():
                return path
        except OSError:  # a folder we may not look into: keep walking up
            continue
    return None


def load_library(config: Path | None = None, *, cwd: Path | None = None) -> Library:
    """The library config named (``--config``), else the one found from ``cwd``, else none.

    Raises ScenarioError with every problem of the config and its vars files, each at
    file:line:column with its JSON path.
    """
    if config is None:
        config = find_config(cwd)
        if config is None:
            return Library.none(cwd)
    elif not config.exists():
        raise ConfigError(f"--config {config}: no such file")
    doc = read_document(config, _display(config, cwd))
    problems = list(doc.problems)
    if not isinstance(doc.data, dict):
        raise ScenarioError(
            [doc.problem((), "the top level must be a mapping (smtpscript: 1, ...)")]
        )
    from smtpscript.validation import schema_problems

    problems += schema_problems(doc, "library")
    if problems:
        raise ScenarioError(problems)
    reader = _Reader(doc, config.absolute().parent, cwd)
    library = reader.library(config)
    if reader.problems:
        raise ScenarioError(reader.problems)
    return library


def _display(path: Path, cwd: Path | None) -> str:
    try:
        return str(path.absolute().relative_to((cwd or Path.cwd()).absolute()))
    except ValueError:
        return str(path)


class _Reader:
    """Builds a Library from a schema-valid document, collecting the problems the schema
    cannot see (a target with both host and address, a bad address, a missing vars file,
    a template that does not parse)."""

    def __init__(self, doc: Document, root: Path, cwd: Path | None):
        self.doc = doc
        self.root = root
        self.cwd = cwd
        self.problems: list[Problem] = []

    def library(self, config: Path) -> Library:
        data = self.doc.data
        targets = self.targets(data.get("targets", {}), ("targets",))
        environments = {
            name: self.environment(name, env, ("environments", name))
            for name, env in data.get("environments", {}).items()
        }
        layers = self.layers(data, (), "smtpscript.yaml")
        raw = data.get("defaults", {})
        defaults = Defaults(
            targets=tuple(raw.get("targets", ())),
            environment=raw.get("environment"),
            jobs=raw.get("jobs"),
            max_connections=raw.get("max_connections"),
            timeout=raw.get("timeout"),
            fail_on=raw.get("fail_on"),
            **{key: self.root / raw[key] for key in ("json", "html", "junit") if key in raw},
        )
        if defaults.environment is not None and defaults.environment not in environments:
            self.problem(
                ("defaults", "environment"),
                f"no environment named {defaults.environment!r}"
                + did_you_mean(defaults.environment, sorted(environments)),
            )
        return Library(
            path=config,
            root=self.root,
            paths=tuple(self.root / p for p in data.get("paths", DEFAULT_PATHS)),
            targets=targets,
            environments=environments,
            layers=layers,
            public_env=tuple(data.get("public_env", ())),
            defaults=defaults,
            description=data.get("description", "").strip(),
        )

    def problem(self, path: JsonPath, message: str, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, key=key))

    add = problem  # the Checker interface, for the connect action's PROXY header check

    def environment(self, name: str, data: dict[str, Any], path: JsonPath) -> Environment:
        targets = self.targets(data["targets"], (*path, "targets")) if "targets" in data else None
        return Environment(
            name=name,
            targets=targets,
            layers=self.layers(data, path, f"environment {name}"),
            description=data.get("description", ""),
        )

    def targets(self, data: dict[str, Any], path: JsonPath) -> dict[str, TargetSpec]:
        specs = {}
        for name, spec in data.items():
            if name == "all":
                self.problem(
                    (*path, name), "'all' is reserved: -t all means every target", key=True
                )
                continue
            built = self.target(name, spec, (*path, name))
            if built is not None:
                specs[name] = built
        return specs

    def target(self, name: str, data: dict[str, Any], path: JsonPath) -> TargetSpec | None:
        kinds = [key for key in ("host", "address", "sandbox") if key in data]
        if len(kinds) != 1:
            found = " and ".join(kinds) if kinds else "none"
            self.problem(
                path,
                f"a target needs exactly one of host, address or sandbox: true (found {found})",
            )
            return None
        if "address" in data or "sandbox" in data:
            clash = [k for k in ("port", "tls", "socket_path") if k in data]
            if clash:
                self.problem(
                    (*path, clash[0]),
                    f"'{clash[0]}' goes with host, not with {kinds[0]} (write it into the address)",
                )
                return None
        if "host" in data:
            from smtpscript.targets import host_problem

            problem = host_problem(data["host"])
            if problem:
                self.problem((*path, "host"), problem)
                return None
        from smtpscript.actions.connect import check_proxy

        before = len(self.problems)
        check_proxy(data.get("proxy"), (*path, "proxy"), self)
        if len(self.problems) > before:
            return None
        settings = dict(data)
        for key in _TLS_FILES:  # relative to the config, wherever smtpscript runs from
            if key in settings:
                settings[key] = str(self.root / settings[key])
        endpoint = m.endpoint_from(settings)
        self.problems += template_problems(data.get("vars", {}), (*path, "vars"), self.doc)
        if "address" in data:
            from smtpscript.targets import parse_target

            try:
                parsed = parse_target(data["address"]).endpoint
            except ConfigError as exc:
                self.problem((*path, "address"), str(exc).replace("--target ", "", 1))
                return None
            endpoint = replace(
                parsed,
                tls_options=parsed.tls_options.overlay(endpoint.tls_options),
                timeout=endpoint.timeout,
                connect_timeout=endpoint.connect_timeout,
                source_address=endpoint.source_address,
                proxy=endpoint.proxy,
            )
        target = m.Target(
            name=name,
            endpoint=endpoint,
            vars=dict(data.get("vars", {})),
            tags=tuple(data.get("tags", ())),
            max_connections=data.get("max_connections"),
        )
        return TargetSpec(
            name=name,
            where="sandbox" if "sandbox" in data else endpoint.where(),
            target=target,
            sandbox="sandbox" in data,
            description=data.get("description", ""),
        )

    def layers(self, data: dict[str, Any], path: JsonPath, label: str) -> tuple[VarLayer, ...]:
        """vars, then each of vars_files over it (later files win)."""
        layers = []
        if "vars" in data:
            self.problems += template_problems(data["vars"], (*path, "vars"), self.doc)
            layers.append(VarLayer(f"{label} vars", dict(data["vars"])))
        for i, name in enumerate(data.get("vars_files", ())):
            values = self.vars_file(name, (*path, "vars_files", i))
            if values is not None:
                layers.append(VarLayer(f"vars file {name}", values))
        return tuple(layers)

    def vars_file(self, name: str, path: JsonPath) -> dict[str, Any] | None:
        file = self.root / name
        if not file.exists():
            self.problem(
                path,
                f"vars file {name} does not exist (paths are relative to {self.doc.file})",
            )
            return None
        values, problems = read_vars_file(file, _display(file, self.cwd))
        self.problems += problems
        return values


def read_vars_file(
    path: Path, display: str | None = None
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The variables of a vars file (a mapping NAME: value), or None and its problems."""
    try:
        doc = read_document(path, display)
    except ScenarioError as exc:
        return None, list(exc.problems)
    problems = list(doc.problems)
    if doc.data is None:  # an empty file: no variables
        return {}, problems
    if not isinstance(doc.data, dict):
        return None, [doc.problem((), "a vars file is a mapping of NAME: value")]
    for key in doc.data:
        if not isinstance(key, str) or not re.match(NAME_PATTERN, key):
            message = (
                f"{key!r} is not a valid variable name: use letters, digits and _, "
                "not starting with a digit"
            )
            problems.append(doc.problem((key,), message, key=True))
    problems += template_problems(doc.data, (), doc)
    return (None if problems else dict(doc.data)), problems


def template_problems(values: Any, path: JsonPath, doc: Document) -> list[Problem]:
    """Templates in variable values must parse (they render in each scenario)."""
    from smtpscript.semantics import template_problem

    found = []
    for where, text in _strings(values, path):
        problem = template_problem(text)
        if problem:
            found.append(doc.problem(where, problem))
    return found


def _strings(value: Any, path: JsonPath) -> Iterator[tuple[JsonPath, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*path, i))
