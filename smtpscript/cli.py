"""The command line: a thin error boundary over the library API.

Only this module imports typer. Heavy modules (jsonschema, jinja2, yaml,
asyncio) are imported inside the commands that need them, so ``--help`` and
``--version`` stay fast. Every user error becomes one line on stderr and an
exit code from ExitStatus; ``--traceback`` re-raises for debugging.
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

from smtpscript import __version__


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILED = 1  # a scenario failed or could not be judged
    USAGE = 2  # usage, validation or configuration error
    INTERRUPTED = 130


app = typer.Typer(
    name="smtpscript",
    help="Declarative SMTP scenarios: validate them, run them over raw sockets, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

PathsArg = Annotated[
    list[Path] | None,
    typer.Argument(help="Scenario files or folders (searched recursively for *.yaml, *.yml)."),
]
VarOpt = Annotated[
    list[str] | None,
    typer.Option("--var", help="Set a variable: --var NAME=VALUE (repeatable)."),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"smtpscript {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show Python tracebacks (for debugging).")
    ] = False,
) -> None:
    """smtpscript: know what your SMTP servers really do."""


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _paths(paths: list[Path] | None) -> list[Path]:
    """The paths given, else ./scenarios when there is one, else the working directory."""
    if paths:
        return paths
    return [Path("scenarios")] if Path("scenarios").is_dir() else [Path(".")]


def parse_vars(items: list[str] | None) -> dict[str, str]:
    from smtpscript.errors import ConfigError

    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise ConfigError(f"--var {item!r}: expected NAME=VALUE with NAME a plain identifier")
        out[name] = value
    return out


@app.command()
def validate(paths: PathsArg = None, var: VarOpt = None) -> None:
    """Check scenario files against the format; print every problem with file:line:column."""
    from smtpscript.loading import load_paths

    result = load_paths(_paths(paths), extra_names=parse_vars(var), keep_models=False)
    for problem in result.problems:
        _err(str(problem))
    bad_files = len({p.file for p in result.problems})
    summary = f"{_count(result.files, 'file')}: {_count(result.valid, 'valid scenario')}"
    if result.fragments:
        summary += f", {_count(len(result.fragments), 'fragment')}"
    if result.problems:
        problems = _count(len(result.problems), "problem")
        _err(f"{summary}; {problems} in {_count(bad_files, 'file')}")
        raise typer.Exit(ExitStatus.USAGE)
    if result.files == 0:
        _err("no scenario files found (*.yaml, *.yml)")
        raise typer.Exit(ExitStatus.USAGE)
    typer.echo(f"{summary}: all valid")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@app.command("list")
def list_(paths: PathsArg = None) -> None:
    """List scenarios: title, severity, tags and file."""
    from smtpscript.console import scenario_table
    from smtpscript.loading import EVERY_NAME, load_paths

    result = load_paths(_paths(paths), extra_names=EVERY_NAME)  # listing is not validating
    for line in scenario_table(result.scenarios):
        typer.echo(line)
    for problem in result.problems:
        _err(str(problem))
    if result.problems:
        raise typer.Exit(ExitStatus.USAGE)


TargetOpt = Annotated[
    list[str] | None,
    typer.Option("--target", "-t", help="HOST[:PORT], [IPv6]:PORT or 'sandbox' (repeatable)."),
]


class Severity(enum.StrEnum):
    """model.SEVERITIES, spelled out so that --help does not import the model (~25 ms)."""

    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


@app.command()
def run(
    paths: PathsArg = None,
    target: TargetOpt = None,
    var: VarOpt = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only scenarios with this tag (repeatable).")
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, max=512, help="Scenario runs at once.")
    ] = 4,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write JSON results.")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write the HTML report.")] = None,
    junit_out: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML.")] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", help="Trust this CA (PEM) for TLS to the -t HOST targets."),
    ] = None,
    fail_on: Annotated[
        Severity, typer.Option("--fail-on", help="Exit 1 only for findings this severe or worse.")
    ] = Severity.info,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the conversation.")
    ] = False,
) -> None:
    """Run scenarios against targets; print a line per scenario (the conversation with -v)."""
    from smtpscript.api import run_paths, write_reports

    outcome = run_paths(
        _paths(paths),
        targets=target or [],
        variables=parse_vars(var),
        tags=tag or [],
        concurrency=jobs,
        ca_file=ca_file,
        verbose=verbose,
    )
    if outcome.problems:
        for problem in outcome.problems:
            _err(str(problem))
        raise typer.Exit(ExitStatus.USAGE)
    write_reports(outcome.run, json_path=json_out, html_path=html_out, junit_path=junit_out)
    raise typer.Exit(ExitStatus.FAILED if outcome.failed(fail_on.value) else ExitStatus.OK)


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="results.json files (several merge).")],
    html_out: Annotated[Path | None, typer.Option("--html", help="Write the HTML report.")] = None,
    junit_out: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write merged JSON.")] = None,
) -> None:
    """Render reports again from saved JSON results (several files merge into one)."""
    from smtpscript.api import load_results, write_reports

    if not (html_out or junit_out or json_out):
        raise typer.BadParameter("give at least one of --html, --junit, --json")
    merged = load_results(results)
    write_reports(merged, json_path=json_out, html_path=html_out, junit_path=junit_out)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="SMTP port (STARTTLS offered).")] = 2525,
    tls_port: Annotated[int | None, typer.Option("--tls-port", help="Implicit-TLS port.")] = None,
    open_relay: Annotated[
        bool,
        typer.Option("--open-relay", help="Accept mail for any domain (to see an audit fail)."),
    ] = False,
    maildir: Annotated[
        Path | None, typer.Option(help="Also write accepted mail to this Maildir.")
    ] = None,
    domain: Annotated[str, typer.Option(help="Local mail domain.")] = "sandbox.test",
) -> None:
    """Run the embedded sandbox SMTP server until Ctrl-C."""
    from smtpscript.api import serve_sandbox

    serve_sandbox(
        typer.echo,
        host=host,
        port=port,
        tls_port=tls_port,
        open_relay=open_relay,
        maildir=maildir,
        domain=domain,
    )
    raise typer.Exit(ExitStatus.INTERRUPTED)


class SchemaName(enum.StrEnum):
    scenario = "scenario"
    results = "results"


@app.command()
def schema(
    name: Annotated[SchemaName, typer.Argument(help="Which schema.")] = SchemaName.scenario,
) -> None:
    """Print a JSON Schema (for editors: yaml-language-server, VS Code)."""
    from smtpscript.schemafile import schema_path

    typer.echo(schema_path(name.value).read_text(encoding="utf-8"), nl=False)


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (tests call this in-process)."""
    from smtpscript.errors import SmtpscriptError

    click_errors = _click_exceptions()
    args = list(sys.argv[1:] if argv is None else argv)
    show_traceback = "--traceback" in args
    try:
        status = typer.main.get_command(app).main(
            args=args, prog_name="smtpscript", standalone_mode=False
        )
    except (typer.Exit, click_errors.Exit) as exc:
        return int(exc.exit_code)
    except click_errors.ClickException as exc:
        exc.show()
        return ExitStatus.USAGE
    except (KeyboardInterrupt, typer.Abort, click_errors.Abort):
        _err("smtpscript: interrupted")
        return ExitStatus.INTERRUPTED
    except SmtpscriptError as exc:
        if show_traceback:
            raise
        _err(f"smtpscript: error: {exc}")
        return ExitStatus.USAGE
    except OSError as exc:  # a file we were told to read or write
        if show_traceback:
            raise
        _err(f"smtpscript: error: {exc.filename or ''}: {exc.strerror or exc}")
        return ExitStatus.USAGE
    # without standalone mode, click returns an Exit's code instead of raising it
    # (typer turns Ctrl-C into a silent Exit(130))
    if status == ExitStatus.INTERRUPTED:
        _err("smtpscript: interrupted")
    return status if isinstance(status, int) else ExitStatus.OK


def _click_exceptions():  # type: ignore[no-untyped-def]
    """Click's exception module: typer >= 0.2x vendors click as typer._click."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    for name, fallback in (("Exit", typer.Exit), ("Abort", typer.Abort)):
        if not hasattr(exceptions, name):
            setattr(exceptions, name, fallback)
    return exceptions


def main() -> None:
    sys.exit(run_cli())
