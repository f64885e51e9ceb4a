"""Find scenario files, validate them, resolve includes and build the model.

This is the library API behind ``smtpscript validate``, ``list`` and ``run``:
``load_paths`` returns every scenario it could build plus every problem it
found, across all files, so one call reports everything at once.
"""

from __future__ import annotations

import functools
import os
import stat
import threading
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smtpscript import model as m
from smtpscript.actions import ACTIONS
from smtpscript.errors import ConfigError, Problem, ScenarioError
from smtpscript.patterns import parse_code_pattern, parse_status_pattern
from smtpscript.semantics import IncludeInfo, fragment_interface
from smtpscript.validation import validate
from smtpscript.yamlsource import Document, JsonPath, file_kind, format_path, read_document

SCENARIO_SUFFIXES = (".yaml", ".yml")
LIBRARY_CONFIG = "smtpscript.yaml"
MAX_INCLUDE_DEPTH = 10


@dataclass
class LoadResult:
    """What loading scenario files found: the scenarios, fragments and problems."""

    scenarios: list[m.Scenario] = field(default_factory=list)
    fragments: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: int = 0
    valid: int = 0  # valid scenarios (also counted when the models are not kept)
    warnings: list[str] = field(default_factory=list)  # files skipped while walking folders

    @property
    def ok(self) -> bool:
        return not self.problems


def discover(paths: Sequence[str | Path], warnings: list[str] | None = None) -> list[Path]:
    """Scenario files named or found (recursively) under the given paths, in a stable order.

    A path named here must be a regular file or a folder (ConfigError otherwise). In
    folders, FIFOs, devices, sockets and broken links are skipped with a line added
    to ``warnings``: reading a FIFO would hang, a device may never end.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        mode, why = _stat(path)
        if mode is not None and stat.S_ISDIR(mode):
            found += sorted(_walk(path, warnings if warnings is not None else []))
        elif mode is not None and stat.S_ISREG(mode):
            found.append(path)
        elif mode is not None:
            raise ConfigError(f"{raw}: not a regular file or directory ({file_kind(mode)})")
        else:
            raise ConfigError(f"{raw}: {why}")
    return list(dict.fromkeys(found))


def _walk(root: Path, warnings: list[str]) -> Iterable[Path]:
    """Scenario files under ``root``; os.walk does not follow links to folders, so a
    link loop cannot make it go round for ever."""

    def unreadable(exc: OSError) -> None:
        warnings.append(f"{exc.filename}: skipped: cannot read folder: {exc.strerror}")

    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.endswith(SCENARIO_SUFFIXES) and name != LIBRARY_CONFIG:
                path = Path(folder) / name
                mode, why = _stat(path)
                if mode is not None and stat.S_ISREG(mode):
                    yield path
                elif mode is not None:
                    warnings.append(f"{path}: skipped: not a regular file ({file_kind(mode)})")
                else:
                    warnings.append(f"{path}: skipped: {why}")


def _stat(path: Path) -> tuple[int | None, str]:
    """The file mode (links followed), else why there is none."""
    try:
        return os.stat(path).st_mode, ""
    except FileNotFoundError:
        return None, "broken symbolic link" if path.is_symlink() else "no such file or directory"
    except OSError as exc:  # a link loop, no permission, a name too long
        return None, f"cannot read: {exc.strerror or exc}"


def _absolute(path: Path) -> Path:
    """Absolute and normalised without asking the file system (resolve() costs syscalls per
    path component, which showed in validating thousands of files)."""
    return Path(os.path.abspath(path))


def display_name(path: Path, resolved: Path | None = None, cwd: Path | None = None) -> str:
    """Path as the user would type it: relative to the working directory when inside it."""
    try:
        return str((resolved or path.resolve()).relative_to(cwd or Path.cwd()))
    except ValueError:
        return str(path)


class _EveryName(frozenset):
    """As ``extra_names``: every variable counts as defined (for listing, not validating)."""

    def __contains__(self, item: object) -> bool:
        return True


EVERY_NAME: frozenset[str] = _EveryName()
PARALLEL_FROM = 200  # files; below this, starting worker processes costs more than it saves
_VALID = 1  # stands for a valid scenario when only counting (validate)


def load_paths(
    paths: Sequence[str | Path], extra_names: Iterable[str] = (), *, keep_models: bool = True
) -> LoadResult:
    """Validate and build every scenario under ``paths``; collect all problems.

    ``keep_models=False`` (``smtpscript validate``) only counts the valid scenarios;
    a large library is then checked by one process per core, each taking an
    interleaved share of the files (shipping models back costs more than it saves).
    """
    warnings: list[str] = []
    files = discover(paths, warnings)
    result = LoadResult(files=len(files), warnings=warnings)
    problems: set[Problem] = set()  # a fragment's problems count once, however often included
    for outcome in _load_all(files, extra_names, keep_models):
        if isinstance(outcome, m.Scenario):
            result.scenarios.append(outcome)
        elif isinstance(outcome, str):
            result.fragments.append(outcome)
        elif isinstance(outcome, list):
            problems.update(outcome)
        result.valid += outcome is _VALID or isinstance(outcome, m.Scenario)
    result.problems = sorted(problems)
    return result


Outcome = m.Scenario | str | list[Problem] | int


def _load_chunk(
    files: Sequence[Path], extra_names: Iterable[str], keep_models: bool = True
) -> list[Outcome]:
    session = _Session(extra_names)
    outcomes: list[Outcome] = []
    for path in files:
        try:
            item = session.load(path)
        except ScenarioError as exc:
            outcomes.append(exc.problems)
            continue
        outcomes.append(item if keep_models or isinstance(item, str) else _VALID)
    return outcomes


def _load_all(files: list[Path], extra_names: Iterable[str], keep_models: bool) -> list[Outcome]:
    workers = min(os.cpu_count() or 1, 8)
    if keep_models or len(files) < PARALLEL_FROM or workers < 2 or not _can_fork():
        return _load_chunk(files, extra_names, keep_models)
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    shares = [files[i::workers] for i in range(workers)]
    import multiprocessing  # only for many files: a cold start does without it

    context = multiprocessing.get_context("fork")
    try:
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            done = list(pool.map(_load_chunk, shares, [extra_names] * workers, [False] * workers))
    except (OSError, BrokenProcessPool):  # no processes to be had: do it here, just slower
        return _load_chunk(files, extra_names, keep_models)
    outcomes: list[Outcome] = [_VALID] * len(files)
    for i, share in enumerate(done):  # the interleaved shares back in file order
        outcomes[i::workers] = share
    return outcomes


def _can_fork() -> bool:
    """Fork only where it is safe and cheap: POSIX, and no other thread is running (a fork
    copies locks held by other threads; the CLI loads before it starts any)."""
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


def load_file(path: Path, extra_names: Iterable[str] = ()) -> m.Scenario | str:
    """One scenario (or, for a fragment file, its name), or ScenarioError."""
    return _Session(extra_names).load(path)


class _Session:
    """One load: reads each file once (fragments are shared by many scenarios)."""

    def __init__(self, extra_names: Iterable[str]):
        self.extra_names = (
            extra_names if isinstance(extra_names, AbstractSet) else frozenset(extra_names)
        )
        self.fragments: dict[Path, Document | ScenarioError] = {}
        self.cwd = Path.cwd()
        self._resolved: dict[Path, Path] = {}  # file system answers, asked once per load
        self._is_file: dict[Path, bool] = {}

    def load(self, path: Path) -> m.Scenario | str:
        resolved = _absolute(path)
        doc = read_document(path, display_name(path, resolved, self.cwd))
        lookup = functools.partial(self.include_info, resolved, (resolved,))
        names_used: set[str] = set()
        problems = validate(doc, self.extra_names, lookup, names_used)
        if problems:
            # every problem at once: the includes too, not only once the rest is fixed
            raise ScenarioError(problems + self._include_problems(doc, resolved))
        builder = _Builder(self, doc, resolved, (resolved,), names_used=names_used)
        if doc.data.get("fragment") is True:
            builder.steps(doc.data["steps"], ("steps",))  # finds its broken includes
            item: m.Scenario | str = doc.file
        else:
            item = builder.scenario()
        if builder.problems:
            raise ScenarioError(builder.problems)
        return item

    def resolve(self, path: Path) -> Path:
        if path not in self._resolved:
            self._resolved[path] = _absolute(path)
        return self._resolved[path]

    def is_file(self, path: Path) -> bool:
        if path not in self._is_file:
            self._is_file[path] = path.is_file()
        return self._is_file[path]

    def fragment(self, path: Path) -> Document:
        """A validated fragment-or-scenario document, read once; ScenarioError if invalid."""
        if path not in self.fragments:
            try:
                doc = read_document(path, display_name(path, path, self.cwd))
                problems = validate(doc)
                self.fragments[path] = ScenarioError(problems) if problems else doc
            except ScenarioError as exc:
                self.fragments[path] = exc
        found = self.fragments[path]
        if isinstance(found, ScenarioError):
            raise found
        return found

    def include_info(
        self, including: Path, stack: tuple[Path, ...], target: str
    ) -> IncludeInfo | None:
        """What the fragment ``target`` captures and needs (None: cannot tell)."""
        path = self.resolve(including.parent / target)
        if path in stack or len(stack) > MAX_INCLUDE_DEPTH or not self.is_file(path):
            return None
        try:
            doc = self.fragment(path)
        except ScenarioError:
            return None
        if doc.data.get("fragment") is not True:
            return None
        lookup = functools.partial(self.include_info, path, (*stack, path))
        return fragment_interface(doc, lookup)

    def open_include(
        self, step: tuple[Document, JsonPath], stack: tuple[Path, ...], target: str
    ) -> tuple[Path, Document | None, list[Problem]]:
        """The fragment an include step names, or the problems that keep it out.

        ``step``: the including document and the include value's path in it;
        ``stack``: the files including each other so far, the including one last.
        """
        doc, where = step
        path = self.resolve(stack[-1].parent / target)
        if path in stack:
            why = f"include cycle: {target} includes itself (directly or indirectly)"
        elif len(stack) > MAX_INCLUDE_DEPTH:
            why = f"includes nested deeper than {MAX_INCLUDE_DEPTH}"
        elif not self.is_file(path):
            why = _not_includable(path, target)
        else:
            try:
                fragment = self.fragment(path)
            except ScenarioError as exc:
                return path, None, list(exc.problems)
            if fragment.data.get("fragment") is True:
                return path, fragment, []
            why = f"{target} is not a fragment (add 'fragment: true' to it)"
        return path, None, [doc.problem(where, why)]

    def _include_problems(self, doc: Document, path: Path) -> list[Problem]:
        """Problems of the include steps of a document that failed validation."""
        problems: list[Problem] = []
        steps = doc.data.get("steps") if isinstance(doc.data, dict) else None
        for i, step in enumerate(steps if isinstance(steps, list) else []):
            if isinstance(step, dict) and isinstance(step.get("include"), str):
                where = ("steps", i, "include")
                problems += self.open_include((doc, where), (path,), step["include"])[2]
        return problems


def _not_includable(path: Path, target: str) -> str:
    try:
        mode = path.stat().st_mode
    except OSError:
        return f"included file not found: {target}"
    return f"included file {target} is not a regular file ({file_kind(mode)})"


class _Builder:
    """Builds the model from one validated document (and the fragments it includes).

    Include problems (missing file, cycle, not a fragment, a broken fragment) are
    collected in ``problems``; the caller raises them all at once.
    """

    def __init__(
        self,
        session: _Session,
        doc: Document,
        path: Path,
        stack: tuple[Path, ...],
        prefix: JsonPath = (),
        names_used: set[str] | None = None,
        chain: tuple[m.SourcePos, ...] = (),
    ):
        self.session = session
        self.doc = doc
        self.path = path
        self.stack = stack
        self.prefix = prefix  # path of the include step, for fragments
        self.names_used = frozenset(names_used or ())
        self.chain = chain  # the include steps that led here, outermost first
        self.problems: list[Problem] = []

    def pos(self, path: JsonPath) -> m.SourcePos:
        line, column = self.doc.mark(path)
        return m.SourcePos(self.doc.file, line, column)

    def scenario(self) -> m.Scenario:
        data = self.doc.data
        return m.Scenario(
            version=data["smtpscript"],
            title=data["title"],
            file=self.doc.file,
            pos=self.pos(()),
            steps=self.steps(data["steps"], ("steps",)),
            description=data.get("description", ""),
            severity=data.get("severity", "medium"),
            tags=tuple(data.get("tags", ())),
            references=tuple(data.get("references", ())),
            remediation=data.get("remediation", ""),
            finding=data.get("finding", ""),
            skip_reason=data.get("skip_reason", ""),
            target=m.endpoint_from(data.get("target") or {}),
            vars=dict(data.get("vars") or {}),
            secrets=tuple(data.get("secrets", ())),
            public_env=tuple(data.get("public_env", ())),
            when=data.get("when"),
            marks=self._marks(),
            names_used=self.names_used,
        )

    def _marks(self) -> dict[str, m.SourcePos]:
        paths: list[JsonPath] = [("when",)]
        paths += [("vars", name) for name in self.doc.data.get("vars") or {}]
        return {format_path(path): self.pos(path) for path in paths}

    def steps(self, items: list[dict[str, Any]], path: JsonPath) -> tuple[m.Step, ...]:
        return tuple(self.step(item, (*path, i)) for i, item in enumerate(items))

    def step(self, data: dict[str, Any], path: JsonPath) -> m.Step:
        kind = next(k for k in data if k in ACTIONS)
        return m.Step(
            action=self.action(kind, data, path),
            kind=kind,
            path=format_path((*self.prefix, *path)),
            pos=self.pos(path),
            name=data.get("name"),
            expect=expectation(data),
            capture=tuple((data.get("capture") or {}).items()),
            timeout=data.get("timeout"),
            when=data.get("when"),
            repeat=data.get("repeat"),
            continue_on_fail=bool(data.get("continue_on_fail", False)),
            included_from=self.chain,
        )

    def action(self, kind: str, data: dict[str, Any], path: JsonPath) -> m.Action:
        value = data[kind]
        if kind == "include":
            return self.include(value, data.get("with") or {}, (*path, "include"))
        if kind == "pipeline":
            return m.Pipeline(self.steps(value, (*path, "pipeline")))
        return ACTIONS[kind].build(value)

    def include(self, target: str, with_vars: dict[str, Any], path: JsonPath) -> m.Group:
        fragment_path, doc, found = self.session.open_include((self.doc, path), self.stack, target)
        if doc is None:
            self.problems += found
            return m.Group(source=target, steps=(), with_vars=dict(with_vars))
        # inner steps show as a path through the include: steps[0].include.steps[1]
        inner = _Builder(
            self.session,
            doc,
            fragment_path,
            (*self.stack, fragment_path),
            (*self.prefix, *path),
            chain=(*self.chain, self.pos(path)),
        )
        steps = inner.steps(doc.data["steps"], ("steps",))
        self.problems += inner.problems
        defaults = dict(doc.data.get("vars") or {})
        return m.Group(source=doc.file, steps=steps, with_vars=dict(with_vars), defaults=defaults)


def expectation(data: dict[str, Any]) -> m.Expectation:
    tls = data.get("tls")
    return m.Expectation(
        codes=parse_code_pattern(data["expect"]) if "expect" in data else None,
        status=parse_status_pattern(data["status"]) if "status" in data else None,
        match=data.get("match"),
        tls=m.TlsExpectation(**tls) if tls else None,
        each=tuple(map(parse_code_pattern, data["expect_each"])) if "expect_each" in data else None,
    )
