"""The library API behind the CLI: load, run, report, serve. Tests call these directly."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from smtpscript.errors import ConfigError, Problem
from smtpscript.model import SEVERITIES, Endpoint, Scenario, Target
from smtpscript.results import RunResult


@dataclass
class RunOutcome:
    run: RunResult = field(default_factory=RunResult)
    problems: list[Problem] = field(default_factory=list)

    def failed(self, fail_on: str = "info") -> bool:
        """Exit status 1? Errors always count; failures from ``fail_on`` severity up."""
        threshold = SEVERITIES.index(fail_on)  # type: ignore[arg-type]
        for result in self.run.scenarios:
            if result.verdict == "error":
                return True
            if result.verdict == "failed" and SEVERITIES.index(result.severity) >= threshold:  # type: ignore[arg-type]
                return True
        return False


def select(scenarios: list[Scenario], tags: Sequence[str]) -> list[Scenario]:
    if not tags:
        return scenarios
    wanted = set(tags)
    return [s for s in scenarios if wanted & set(s.tags)]


def run_paths(
    paths: Sequence[str | Path],
    *,
    targets: Sequence[str] = (),
    variables: dict[str, str] | None = None,
    tags: Sequence[str] = (),
    concurrency: int = 4,
    ca_file: Path | None = None,
    verbose: bool = False,
    out: TextIO | None = None,
    quiet: bool = False,
) -> RunOutcome:
    """Validate, then run every selected scenario on every target, printing as results come."""
    from smtpscript.console import ConsoleView
    from smtpscript.loading import load_paths
    from smtpscript.runner import RunOptions, run

    variables = variables or {}
    loaded = load_paths(paths, extra_names=variables)
    if loaded.problems:
        return RunOutcome(problems=loaded.problems)
    scenarios = select(loaded.scenarios, tags)
    if not scenarios:
        raise ConfigError("no scenarios to run" + (f" with tag {', '.join(tags)}" if tags else ""))
    view = None if quiet else ConsoleView(out, verbose=verbose)
    options = RunOptions(overrides=dict(variables), concurrency=concurrency)
    with resolved_targets(targets, scenarios, ca_file) as resolved:
        result = run(scenarios, resolved, options, view.scenario if view else None)
    if view:
        view.summary(result)
    return RunOutcome(run=result)


@contextlib.contextmanager
def resolved_targets(
    names: Sequence[str], scenarios: list[Scenario], ca_file: Path | None = None
) -> Iterator[list[Target]]:
    """Targets for the run; 'sandbox' starts the embedded server for the run's duration."""
    from smtpscript.targets import SANDBOX, parse_target, sandbox_target

    if ca_file is not None and not ca_file.is_file():
        raise ConfigError(f"--ca-file {ca_file}: no such file")
    trust = str(ca_file) if ca_file else None

    if not names:
        if all(s.target.host for s in scenarios):
            yield [Target(name="scenario", endpoint=Endpoint())]
            return
        raise ConfigError(
            "no target: pass --target HOST[:PORT] (or --target sandbox to try the embedded server)"
        )
    targets = [parse_target(n, trust) for n in names if n != SANDBOX]
    if SANDBOX not in names:
        yield targets
        return
    with _sandbox() as sandbox:
        yield [
            sandbox_target(
                sandbox.host,
                sandbox.port,
                sandbox.tls_port,
                str(sandbox.cert_path) if sandbox.cert_path else None,
            ),
            *targets,
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


def write_reports(
    run: RunResult,
    *,
    json_path: Path | None = None,
    html_path: Path | None = None,
    junit_path: Path | None = None,
) -> None:
    """Write the requested views of a run (each renderer imported only when asked for)."""
    if json_path:
        from smtpscript.results import write_json

        write_json(run, json_path)
    if html_path:
        from smtpscript.report import write_html

        write_html(run, html_path)
    if junit_path:
        from smtpscript.report import write_junit

        write_junit(run, junit_path)


def load_results(paths: Sequence[Path]) -> RunResult:
    """Saved JSON results, validated against the results schema, merged into one run."""
    import json

    from smtpscript.results import RESULTS_FORMAT, from_dict, merge
    from smtpscript.schemafile import validator

    runs = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
        if isinstance(data, dict) and data.get("format") not in (None, RESULTS_FORMAT):
            raise ConfigError(
                f"{path}: unsupported results format {data['format']!r} (this "
                f"smtpscript reads format {RESULTS_FORMAT})"
            )
        error = next(iter(validator("results").iter_errors(data)), None)
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            raise ConfigError(f"{path}: {where}: not smtpscript results: {error.message}")
        runs.append(from_dict(data))
    if not runs:
        raise ConfigError("no results files given")
    return merge(runs)


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
