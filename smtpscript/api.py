"""The library API behind the CLI: load, run, report, serve. Tests call these directly."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from smtpscript.errors import ConfigError, Problem, did_you_mean
from smtpscript.model import SEVERITIES, Endpoint, Scenario, Target, VarLayer
from smtpscript.results import RunResult, ScenarioResult

if TYPE_CHECKING:  # imported where used: `report` needs none of them
    from smtpscript.baseline import Comparison
    from smtpscript.console import ConsoleView
    from smtpscript.library import Library, TargetSpec
    from smtpscript.loadmode import LoadPlan
    from smtpscript.runner import RunOptions
    from smtpscript.selection import LastFailed, Selection, Shard


@dataclass
class RunOutcome:
    run: RunResult = field(default_factory=RunResult)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one line each, e.g. a file skipped
    signal: int | None = None  # SIGINT or SIGTERM stopped the run (run.incomplete says how)

    @property
    def internal_errors(self) -> list[ScenarioResult]:
        """Scenario runs that hit a bug in smtpscript (their reason names the exception)."""
        return [r for r in self.run.scenarios if r.internal_error]

    def failed(self, fail_on: str = "info") -> bool:
        """Exit status 1? Errors always count; failures from ``fail_on`` severity up."""
        threshold = SEVERITIES.index(fail_on)  # type: ignore[arg-type]
        for result in self.run.scenarios:
            if result.verdict == "error":
                return True
            if result.verdict == "failed" and SEVERITIES.index(result.severity) >= threshold:  # type: ignore[arg-type]
                return True
        return False


def unused_variables(variables: Mapping[str, Any], scenarios: Sequence[Scenario]) -> list[str]:
    """A --var that no selected scenario reads or defines is most likely a typo."""
    known: set[str] = set()
    for scenario in scenarios:
        known |= scenario.names_used | set(scenario.vars)
    return [
        f"--var {name}: no selected scenario uses it{did_you_mean(name, sorted(known))}"
        for name in variables
        if name not in known
    ]


DEFAULT_JOBS = 4
DEFAULT_MAX_CONNECTIONS = 2  # per target: a production MX is never hammered


@dataclass
class RunRequest:
    """What to run: the command line of ``smtpscript run``, as data."""

    paths: Sequence[str | Path] = ()  # empty: the library's paths (default scenarios/)
    targets: Sequence[str] = ()  # -t values; empty: the library's defaults.targets
    variables: Mapping[str, Any] = field(default_factory=dict)  # --var
    vars_files: Sequence[Path] = ()  # --vars-file
    environment: str | None = None  # --env
    selection: Selection | None = None  # None: every scenario
    last_failed: bool = False
    jobs: int | None = None  # None: the library's defaults.jobs, else DEFAULT_JOBS
    max_connections: int | None = None  # per target, where the target does not say
    ca_file: Path | None = None
    exitfirst: bool = False
    environ: Mapping[str, str] | None = None  # default: os.environ
    shard: Shard | None = None  # --shard I/N: this job's share of the scenario x target pairs
    load: LoadPlan | None = None  # --repeat/--duration: one scenario, one target, many times
    loop: str | None = None  # --loop: auto, asyncio or uvloop
    workers: int = 1  # --workers: processes, each with its own event loop
    resolver: str | None = None  # --resolver IP[:PORT]: the DNS server for mx:DOMAIN targets
    mta_sts_ca: Path | None = None  # --mta-sts-ca: trust this CA for MTA-STS policy fetches
    mta_sts_port: int = 443  # --mta-sts-port: where MTA-STS policies are fetched (tests)


def run_paths(
    paths: Sequence[str | Path] = (),
    *,
    library: Library | None = None,
    view: ConsoleView | None = None,
    **request: Any,
) -> RunOutcome:
    """Validate, then run every selected scenario on every target (``request``: the
    RunRequest fields). Without a ``library``, none is read: tests pass their own."""
    from smtpscript.library import Library

    return run_request(RunRequest(paths=paths, **request), library or Library.none(), view)


def run_request(
    request: RunRequest, library: Library, view: ConsoleView | None = None
) -> RunOutcome:
    """Validate, then run the request's scenarios on its targets, ``view`` printing as
    results come. Problems with scenarios or vars files come back in the outcome; a bad
    target, environment or option raises ConfigError."""
    from smtpscript.loading import load_paths
    from smtpscript.runner import Interrupted, RunOptions, run
    from smtpscript.selection import LastFailed, Selection, library_relative
    from smtpscript.targetnames import select_targets

    environment = library.environment(request.environment)
    overrides, problems = _vars_file_layers(request.vars_files)
    if problems:
        return RunOutcome(problems=problems)
    trust = str(request.ca_file) if request.ca_file else None
    if request.ca_file is not None and not request.ca_file.is_file():
        raise ConfigError(f"--ca-file {request.ca_file}: no such file")
    names = list(request.targets or library.defaults.targets)
    _check_domain_options(request)
    specs = select_targets(names, library, library.targets_in(environment), trust, request.resolver)
    layers = (*library.layers, *environment.layers)
    defined = {name for layer in (*layers, *overrides) for name in layer.values}
    defined |= {name for spec in specs for name in spec.target.vars} | set(request.variables)
    loaded = load_paths(request.paths or library.paths, extra_names=defined)
    warnings = list(loaded.warnings)
    if loaded.problems:
        return RunOutcome(problems=loaded.problems, warnings=warnings)
    selection = request.selection or Selection()
    scenarios = selection.apply(loaded.scenarios)
    if not scenarios:
        filters = selection.describe()
        raise ConfigError("no scenarios to run" + (f" with {filters}" if filters else ""))
    warnings += unused_variables(request.variables, scenarios)
    specs = _with_posture(specs, request)
    options = RunOptions(
        overrides=dict(request.variables),
        library_layers=layers,
        override_layers=overrides,
        environ=request.environ,
        public_env=library.public_env,
        concurrency=request.jobs or library.defaults.jobs or DEFAULT_JOBS,
        max_connections=(
            request.max_connections or library.defaults.max_connections or DEFAULT_MAX_CONNECTIONS
        ),
        default_timeout=library.defaults.timeout,
        exitfirst=request.exitfirst,
        loop=request.loop,
    )
    memory = LastFailed(library.state_dir, library.root)
    if request.workers > 1:
        from smtpscript.workers import check_workers

        check_workers(request.workers)
    if request.load is not None:
        return _run_load(request.load, scenarios, specs, options, view, warnings, request.workers)
    with _started_targets(specs, scenarios) as targets:
        pairs = [(s, t) for t in targets for s in scenarios]
        plan = {(s.file, t.name): i for i, (s, t) in enumerate(pairs)}
        if request.last_failed:
            pairs, note = _last_failed_pairs(pairs, memory)
            warnings.append(note)
        if request.shard is not None:
            shard, root = request.shard, library.root
            pairs = [
                (s, t) for s, t in pairs if shard.holds(library_relative(s.file, root), t.name)
            ]
        if view:
            view.start(len(pairs))
        try:
            if request.workers > 1:
                from smtpscript.workers import run_pairs

                result = run_pairs(pairs, targets, options, request.workers, _on_result(view))
            else:
                result = run(scenarios, targets, options, _on_result(view), pairs)
        except Interrupted as stop:
            _place(stop.result, plan)  # an interrupted shard still merges in order
            if view:
                view.summary(stop.result)
            return RunOutcome(run=stop.result, signal=stop.signum, warnings=warnings)
        except BaseException:
            if view:
                view.clear()  # no progress line left behind on the terminal
            raise
    _place(result, plan)
    if view:
        view.summary(result)
    failure = memory.update(result.scenarios)
    if failure and request.last_failed:
        warnings.append(failure)
    return RunOutcome(run=result, warnings=warnings)


def _place(run: RunResult, plan: dict[tuple[str, str], int]) -> None:
    """Each result's place in the whole plan, for merging shards back in order."""
    for result in run.scenarios:
        result.plan_index = plan.get((result.file, result.target.name))


def _run_load(
    plan: LoadPlan,
    scenarios: list[Scenario],
    specs: list[TargetSpec],
    options: RunOptions,
    view: ConsoleView | None,
    warnings: list[str],
    workers: int = 1,
) -> RunOutcome:
    """Load mode: the one scenario on the one target, as the plan says."""
    from smtpscript import loadmode
    from smtpscript.runner import Interrupted

    if len(scenarios) != 1 or len(specs) > 1:
        raise ConfigError(
            f"--repeat/--duration run one scenario on one target; this selects "
            f"{_plural(len(scenarios), 'scenario')} and {_plural(len(specs), 'target')} "
            "(name one file, or narrow with -k or --tag)"
        )
    with _started_targets(specs, scenarios) as (target,):
        cap = target.max_connections
        if cap is not None and cap < plan.concurrency:
            warnings.append(
                f"{target.name}: max_connections {cap} caps -j {plan.concurrency} in load mode"
            )
            plan = replace(plan, concurrency=cap)
        try:
            result = loadmode.run(scenarios[0], target, options, plan, workers)
        except Interrupted as stop:
            if view:
                view.summary(stop.result)
            return RunOutcome(run=stop.result, signal=stop.signum, warnings=warnings)
    if view:
        view.summary(result)
    return RunOutcome(run=result, warnings=warnings)


def _on_result(view: ConsoleView | None) -> Callable[[int, ScenarioResult], None] | None:
    return view.result if view else None


def _check_domain_options(request: RunRequest) -> None:
    if request.resolver is not None:
        from smtpscript.domains import parse_resolver

        parse_resolver(request.resolver)
    if request.mta_sts_ca is not None and not request.mta_sts_ca.is_file():
        raise ConfigError(f"--mta-sts-ca {request.mta_sts_ca}: no such file")


def _with_posture(specs: list[TargetSpec], request: RunRequest) -> list[TargetSpec]:
    """Domain targets with their MTA-STS and DANE facts, looked up once before the runs."""
    if not any(spec.target.facts for spec in specs):
        return specs
    from smtpscript.domains import PostureSettings, add_posture

    ca = str(request.mta_sts_ca) if request.mta_sts_ca else None
    settings = PostureSettings(request.resolver, ca, request.mta_sts_port)
    return add_posture(specs, settings)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _vars_file_layers(files: Sequence[Path]) -> tuple[tuple[VarLayer, ...], list[Problem]]:
    """--vars-file F...: one layer each, later files winning; problems positioned in them."""
    from smtpscript.library import read_vars_file

    layers, problems = [], []
    for path in files:
        if not Path(path).exists():
            raise ConfigError(f"--vars-file {path}: no such file")
        values, found = read_vars_file(Path(path))
        problems += found
        if values is not None:
            layers.append(VarLayer(f"--vars-file {path}", values))
    return tuple(layers), problems


def _last_failed_pairs(
    pairs: list[tuple[Scenario, Target]], memory: LastFailed
) -> tuple[list[tuple[Scenario, Target]], str]:
    """The pairs that failed last time; all of them (with a note) when none did."""
    failed = memory.read()
    again = [(s, t) for s, t in pairs if memory.key(s.file, t.name) in failed]
    if not again:
        return pairs, "--last-failed: no failures recorded for these scenarios: running all"
    return again, f"--last-failed: running {len(again)} of {len(pairs)} scenario runs again"


@contextlib.contextmanager
def _started_targets(specs: list[TargetSpec], scenarios: list[Scenario]) -> Iterator[list[Target]]:
    """The runner's targets; a sandbox target starts the embedded server for the run
    (one server, however many sandbox targets)."""
    if not specs:
        if all(s.target.host for s in scenarios):
            yield [Target(name="scenario", endpoint=Endpoint())]
            return
        raise ConfigError(
            "no target: pass -t NAME (a target of smtpscript.yaml), -t HOST[:PORT], or "
            "-t sandbox to try the embedded server"
        )
    if not any(spec.sandbox for spec in specs):
        yield [spec.target for spec in specs]
        return
    from smtpscript.targets import sandbox_target

    with _sandbox() as sandbox:
        cert = str(sandbox.cert_path) if sandbox.cert_path else None
        started = sandbox_target(sandbox.host, sandbox.port, sandbox.tls_port, cert)
        yield [
            replace(
                spec.target, endpoint=started.endpoint, implicit_tls_port=started.implicit_tls_port
            )
            if spec.sandbox
            else spec.target
            for spec in specs
        ]


@contextlib.contextmanager
def _sandbox():  # type: ignore[no-untyped-def]
    from smtpscript.sandbox import Sandbox, SandboxConfig, SandboxError

    try:
        sandbox = Sandbox(SandboxConfig(port=0, tls_port=0)).start()
    except SandboxError as exc:
        raise ConfigError(f"cannot start the sandbox server: {exc}") from None
    try:
        yield sandbox
    finally:
        sandbox.stop()


STDOUT = "-"  # as a report path: write that report to standard output


def check_report_paths(paths: dict[str, Path | None]) -> None:
    """Before anything runs: every report can be written where asked, else ConfigError.

    ``paths`` maps an option name (``--json``) to its path; ``-`` is stdout, for one
    report at most. So a typo in a path costs a second, not a whole run's results.
    """
    given = {option: path for option, path in paths.items() if path is not None}
    to_stdout = [option for option, path in given.items() if str(path) == STDOUT]
    if len(to_stdout) > 1:
        raise ConfigError(f"{' and '.join(to_stdout)}: only one report can go to stdout ('-')")
    seen: dict[str, str] = {}
    for option, path in given.items():
        if str(path) == STDOUT:
            continue
        problem = _unwritable(path)
        if problem:
            raise ConfigError(f"{option} {path}: {problem}")
        where = os.path.abspath(path)
        if where in seen:
            raise ConfigError(f"{option} {path}: the same file as {seen[where]}")
        seen[where] = option


def _unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be written (as a new or replaced file), or None."""
    if path.is_dir():
        return "is a directory"
    if path.exists():
        return None if os.access(path, os.W_OK) else "cannot write to it (permission denied)"
    parent = path.parent
    if not parent.exists():
        return f"directory {parent} does not exist"
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create files in {parent} (permission denied)"
    return None


@dataclass(frozen=True)
class ReportError:
    """A report that could not be written; ``internal``: a bug in its renderer."""

    message: str
    internal: bool = False


def write_reports(
    run: RunResult,
    *,
    json_path: Path | None = None,
    html_path: Path | None = None,
    junit_path: Path | None = None,
    markdown_path: Path | None = None,
    baseline: RunResult | None = None,
    stdout: TextIO | None = None,
    json_indent: int | None = None,
) -> list[ReportError]:
    """Write the requested views of a run; ``-`` writes one to ``stdout``.

    The JSON results are compact unless ``json_indent`` is given, and streamed: written
    one scenario result at a time, never held whole in memory (results.iter_json).

    ``baseline``: earlier results; the HTML report and the Markdown summary then mark
    each finding new or still open and list what was fixed (smtpscript.baseline).
    One that cannot be written (disk full, a directory removed mid-run) does not stop
    the others: every failure comes back as one ReportError, in the order asked for.
    """
    from smtpscript.baseline import compare

    comparison = compare(run, baseline) if baseline is not None else None
    views: list[tuple[str, Path | None, Callable[[], str | Iterable[str]]]] = [
        ("JSON results", json_path, lambda: _json_chunks(run, json_indent)),
        ("HTML report", html_path, lambda: _html_text(run, comparison)),
        ("JUnit XML", junit_path, lambda: _junit_text(run)),
        ("Markdown summary", markdown_path, lambda: _markdown_text(run, comparison)),
    ]
    errors = []
    for what, path, render in views:
        if path is None:
            continue
        try:
            _write_view(path, render(), stdout)
        except OSError as exc:
            detail = exc.strerror or str(exc)
            errors.append(ReportError(f"cannot write the {what} to {path}: {detail}"))
        except Exception as exc:  # a renderer bug must not cost the other reports
            message = f"cannot write the {what} to {path}: {type(exc).__name__}: {exc}"
            errors.append(ReportError(message, internal=True))
    return errors


def _json_chunks(run: RunResult, indent: int | None = None) -> Iterator[str]:
    from smtpscript.results import iter_json

    return iter_json(run, indent)


def _html_text(run: RunResult, comparison: Comparison | None = None) -> str:
    from smtpscript.report import render_html

    return render_html(run, comparison)


def _junit_text(run: RunResult) -> str:
    from smtpscript.report import render_junit

    return render_junit(run)


def _markdown_text(run: RunResult, comparison: Comparison | None = None) -> str:
    from smtpscript.report import render_markdown

    return render_markdown(run, comparison)


def _write_view(path: Path, text: str | Iterable[str], stdout: TextIO | None) -> None:
    """Write a view: one string, or the pieces of a streamed one (JSON results)."""
    chunks = [text] if isinstance(text, str) else text
    if str(path) == STDOUT:
        out = stdout or sys.stdout
        try:
            out.flush()
            binary = getattr(out, "buffer", None)
            if binary is not None:  # a report is UTF-8 (it says so), whatever the terminal is
                for chunk in chunks:
                    binary.write(chunk.encode("utf-8"))
                binary.flush()
            else:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
        except BrokenPipeError:
            pass  # the reader went away (| head): its choice, not a failed report
        return
    opened = False
    try:
        with open(path, "w", encoding="utf-8") as handle:
            opened = True
            for chunk in chunks:
                handle.write(chunk)
    except BaseException:
        # Disk full mid-write, or a streamed view that failed half-way (a bug, ^C): a
        # truncated report would mislead, so remove it (only what we truncated, and
        # only a regular file: never a device like /dev/full).
        if opened:
            with contextlib.suppress(OSError):
                if path.is_file():
                    path.unlink()
        raise


def load_results(paths: Sequence[Path], warnings: list[str] | None = None) -> RunResult:
    """Saved JSON results, validated against the results schema, merged into one run.

    Any file that is not plain smtpscript results (not a regular file, too large, not
    UTF-8, not JSON, NaN, huge numbers, deep nesting, lone surrogates) is a ConfigError
    naming it: these files may come from elsewhere (a CI artefact, a shard). A scenario
    run read twice (the same file given twice, or two files holding the same run) is
    counted once, and ``warnings`` gets a line naming both files (see dedupe_runs).
    """
    from smtpscript.results import RESULTS_FORMAT, from_dict, merge, paused_gc
    from smtpscript.schemafile import reader_fast_check, reader_validator

    runs = []
    for path in paths:
        with paused_gc():  # a million small objects, no cycles: no collection walks them
            data = _results_json(Path(path))
        if not isinstance(data, dict):
            kind = {list: "a list", str: "a string"}.get(type(data), "a single value")
            raise ConfigError(
                f"{path}: not smtpscript results: the top level is {kind}, not an object"
            )
        if data.get("format") not in (None, RESULTS_FORMAT):
            raise ConfigError(
                f"{path}: unsupported results format {_short(repr(data['format']))} (this "
                f"smtpscript reads format {RESULTS_FORMAT})"
            )
        fast = reader_fast_check("results")
        try:
            # the compiled check says "valid" quickly; jsonschema (slow on big files)
            # only explains a rejection, or checks every file if the schema won't compile
            error = None
            if fast is None or not fast(data):
                error = next(iter(reader_validator("results").iter_errors(data)), None)
        except RecursionError:
            raise ConfigError(f"{path}: not smtpscript results: nested too deeply") from None
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            message = _short(error.message, 300)
            raise ConfigError(f"{path}: {where}: not smtpscript results: {message}")
        runs.append(from_dict(data))
    if not runs:
        raise ConfigError("no results files given")
    kept, found = dedupe_runs(list(zip(paths, runs, strict=True)))
    if warnings is not None:
        warnings.extend(found)
    return merge(kept)


def dedupe_runs(named: list[tuple[Path, RunResult]]) -> tuple[list[RunResult], list[str]]:
    """Each scenario run once: the same scenario on the same target started at the same
    moment is the same run, however many files hold it (``report a.json a.json``, or
    an artefact downloaded twice). Later copies are dropped, with one warning line per
    file naming the file that had them first; a file left with no runs is dropped whole
    (its duration would count twice)."""
    seen: dict[tuple[str, str, str], Path] = {}
    kept: list[RunResult] = []
    warnings = []
    for path, run in named:
        if run.load is not None:  # a load run's samples are many sessions of one pair
            key = (run.load.scenario, run.load.target, f"load run {run.started_at}")
            if key in seen:
                warnings.append(f"{path}: the same load run as {seen[key]}: counted once")
            else:
                seen[key] = Path(path)
                kept.append(run)
            continue
        unique: list[ScenarioResult] = []
        copies: dict[Path, list[ScenarioResult]] = {}
        for result in run.scenarios:
            key = (result.scenario_id, result.target.name, result.started_at)
            first = seen.get(key) if result.started_at else None  # no time: cannot tell
            if first is None:
                seen.setdefault(key, Path(path))
                unique.append(result)
            else:
                copies.setdefault(first, []).append(result)
        for first, results in copies.items():
            warnings.append(_duplicates_warning(Path(path), first, results))
        if unique or not run.scenarios:
            kept.append(run if not copies else replace(run, scenarios=unique))
    return kept or [named[0][1]], warnings


def _duplicates_warning(path: Path, first: Path, results: list[ScenarioResult]) -> str:
    named = [f"{r.scenario_id} on {r.target.name}" for r in results[:3]]
    more = f" and {len(results) - 3} more" if len(results) > 3 else ""
    runs = f"{len(results)} scenario run{'' if len(results) == 1 else 's'}"
    return (
        f"{path}: {runs} already read from {first} (same scenario, target and start time): "
        f"counted once: {', '.join(named)}{more}"
    )


MAX_RESULTS_BYTES = 512 * 1024 * 1024  # far beyond any real run; bounds memory on a bad file
MAX_NUMBER_DIGITS = 100  # results hold counts, ports and milliseconds
# \uD800-\uDFFF: a surrogate's escape (also matches "\\udcXX", our text form: a false
# alarm costs a full check, never a miss)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _NotPlainJson(ValueError):
    """A JSON value smtpscript never writes (NaN, infinity, an endless number)."""


def _results_json(path: Path) -> Any:
    """The parsed JSON of a results file, or ConfigError with one line naming it."""
    import json

    from smtpscript.yamlsource import FileTooLarge, NotRegularFile, read_bounded

    try:
        raw = read_bounded(path, MAX_RESULTS_BYTES)
        text = raw.decode("utf-8")
        data = json.loads(
            text, parse_constant=_refuse_constant, parse_int=_int, parse_float=_finite_float
        )
        # lone surrogates ("\ud800") parse, but no report could encode them; they can
        # only come from such an escape (UTF-8 text holds none), so look when one is there
        if _SURROGATE_ESCAPE.search(text):
            json.dumps(data, ensure_ascii=False).encode("utf-8")
    except FileTooLarge:
        limit = MAX_RESULTS_BYTES // 1024 // 1024
        raise ConfigError(f"{path}: larger than {limit} MiB: not a results file") from None
    except NotRegularFile as exc:
        raise ConfigError(f"{path}: not a regular file ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        where = f"byte 0x{byte:02x} at offset {exc.start}" if isinstance(byte, int) else "text"
        raise ConfigError(f"{path}: not UTF-8 text ({where})") from None
    except UnicodeEncodeError:
        raise ConfigError(f"{path}: a string holds a lone surrogate (\\udXXX escape)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    except _NotPlainJson as exc:
        raise ConfigError(f"{path}: not JSON smtpscript writes: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not smtpscript results: nested too deeply") from None
    return data


def _refuse_constant(name: str) -> Any:
    raise _NotPlainJson(f"{name} is not a JSON number")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _NotPlainJson(f"a number with more than {MAX_NUMBER_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e999 overflows to infinity
        raise _NotPlainJson(f"{_short(text)} is too large a number")
    return value


def _short(text: str, limit: int = 60) -> str:
    """Text from a file, cut so that one error line stays one short line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def serve_sandbox(echo: Callable[[str], None], **settings: Any) -> None:
    """Run the sandbox until Ctrl-C; ``settings`` are SandboxConfig fields."""
    from smtpscript.sandbox import DEFAULT_USERS, SandboxConfig, SandboxError, serve_forever

    config = SandboxConfig(**settings)
    host, domain, open_relay = config.host, config.domain, config.open_relay

    def ready(sandbox) -> None:  # type: ignore[no-untyped-def]
        echo(
            f"smtpscript sandbox: SMTP on {host}:{sandbox.port} (STARTTLS)"
            + (f", implicit TLS on {host}:{sandbox.tls_port}" if sandbox.tls_port else "")
        )
        echo(
            f"  domain {domain}; mailboxes {', '.join(config.mailboxes)}; AUTH users "
            + ", ".join(f"{u}/{p}" for u, p in DEFAULT_USERS.items())
            + (" ; OPEN RELAY" if open_relay else "")
        )
        echo(f"  CA certificate: {sandbox.cert_path}")
        echo("  Ctrl-C to stop")

    try:
        serve_forever(config, on_ready=ready)
    except SandboxError as exc:
        raise ConfigError(f"cannot start the sandbox server: {exc}") from None
