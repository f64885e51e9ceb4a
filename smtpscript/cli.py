"""The command line: typer's options over the library API.

Only this module imports typer. Heavy modules (jsonschema, jinja2, yaml,
asyncio) are imported inside the commands that need them, so ``--help`` and
``--version`` stay fast. The error boundary (one line and an ExitStatus for
every exception, SIGTERM, ``| head``) is smtpscript.shell; typer's own
exceptions are turned into statuses here, in front of it.

Annotations are objects, not strings (no ``from __future__ import annotations``):
typer reads every parameter's type, and evaluating ~300 string annotations costs
~10 ms of each start; the names only imported for type checking are quoted.
"""

import contextlib
import copy
import enum
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smtpscript import __version__, commands, shell
from smtpscript.shell import REPORT_BUG, ExitStatus, Terminated

if TYPE_CHECKING:
    from smtpscript.api import ReportError, RunOutcome
    from smtpscript.library import TargetSpec
    from smtpscript.loadmode import LoadPlan
    from smtpscript.model import Scenario
    from smtpscript.results import RunResult


EXAMPLES = """Examples:

\b
  smtpscript init mylib && cd mylib && smtpscript run
  smtpscript run scenarios/ -t sandbox --html report.html
  smtpscript run -t @production --env production --tag relay -j 8
  smtpscript run -t mx1.example.com:25 -k "relay and not auth" --junit junit.xml
  smtpscript run --last-failed -x -v
  smtpscript validate && smtpscript list

\b
Exit status: 0 all passed; 1 a scenario failed (at --fail-on severity or worse) or
errored; 2 usage, validation or configuration error, or a report not written;
3 a bug in smtpscript; 130/143 interrupted (SIGINT/SIGTERM).

\b
The library config smtpscript.yaml is found by walking up from the working
directory (or --config); `smtpscript schema library` prints its schema.
"""

app = typer.Typer(
    name="smtpscript",
    help="Declarative SMTP scenarios: validate them, run them over raw sockets, report.",
    epilog=EXAMPLES,
    no_args_is_help=True,
    add_completion=True,
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


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="The library config (default: smtpscript.yaml here or in a parent)."
    ),
]


def _complete_targets(incomplete: str) -> list[str]:
    """-t completion: the library's names and @tags, all and sandbox (never an error)."""
    try:
        library = commands.library(None)
        names = set(library.targets)
        for environment in library.environments.values():
            names |= set(environment.targets or {})
        specs = [*library.targets.values()]
        for environment in library.environments.values():
            specs += list((environment.targets or {}).values())
        names |= {f"@{tag}" for spec in specs for tag in spec.tags}
    except Exception:  # completion must never print a traceback into the shell
        names = set()
    names |= {"all", "sandbox"}
    return sorted(name for name in names if name.startswith(incomplete))


def _complete_environments(incomplete: str) -> list[str]:
    try:
        names = commands.library(None).environments
    except Exception:
        return []
    return sorted(name for name in names if name.startswith(incomplete))


@app.command()
def validate(paths: PathsArg = None, var: VarOpt = None, config: ConfigOpt = None) -> None:
    """Check scenario files against the format; print every problem with file:line:column.

    Without PATH: the library's paths (smtpscript.yaml), else scenarios/. Variables the
    library defines (vars, vars_files, environments, targets) count as defined.
    """
    from smtpscript.commands import validate as validate_paths

    status = validate_paths(paths, var, config)
    if status:
        raise typer.Exit(status)


@app.command("list")
def list_(
    paths: PathsArg = None,
    config: ConfigOpt = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env", help="Show this environment's targets.", autocompletion=_complete_environments
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for machines.")] = False,
) -> None:
    """List the library's targets (name, address, tags) and scenarios (severity, title,
    tags, file)."""
    from smtpscript.console import scenario_table, target_table
    from smtpscript.loading import EVERY_NAME, load_paths

    library = commands.library(config)
    targets = library.targets_in(library.environment(env))
    paths = commands.scenario_paths(paths, library)
    result = load_paths(paths, extra_names=EVERY_NAME)  # listing, not validating
    shell.warn(getattr(result, "warnings", []))
    if as_json:
        shell.out(_listing_json(targets, result.scenarios))
    else:
        rows = [(spec.name, spec.where, ",".join(spec.tags)) for spec in targets.values()]
        for line in target_table(rows) + ([""] if rows else []) + scenario_table(result.scenarios):
            shell.out(line)
    for problem in result.problems:
        shell.err(str(problem))
    if result.problems:
        raise typer.Exit(ExitStatus.USAGE)


def _listing_json(targets: "dict[str, TargetSpec]", scenarios: "list[Scenario]") -> str:
    import json

    listing = {
        "targets": [
            {
                "name": spec.name,
                "address": spec.where,
                "tags": list(spec.tags),
                "description": spec.description,
            }
            for spec in targets.values()
        ],
        "scenarios": [
            {
                "title": s.title,
                "severity": s.severity,
                "tags": list(s.tags),
                "file": s.file,
                "line": s.pos.line,
            }
            for s in scenarios
        ],
    }
    return json.dumps(listing, indent=2, ensure_ascii=False)


# the report options of run and report ('-' writes that one report to stdout)
JsonOpt = Annotated[
    Path | None, typer.Option("--json", help="Write JSON results ('-': to stdout).")
]
JsonIndentOpt = Annotated[
    int | None,
    typer.Option(
        "--json-indent",
        min=0,
        max=16,
        metavar="N",
        help="Indent the JSON results by N spaces, for humans (default: compact).",
    ),
]
HtmlOpt = Annotated[
    Path | None, typer.Option("--html", help="Write the HTML report ('-': to stdout).")
]
JunitOpt = Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML ('-': to stdout).")]
MarkdownOpt = Annotated[
    Path | None,
    typer.Option(
        "--markdown",
        help="Write a Markdown summary for CI job pages, e.g. $GITHUB_STEP_SUMMARY ('-': to "
        "stdout).",
    ),
]
BaselineOpt = Annotated[
    Path | None,
    typer.Option(
        "--baseline",
        help="Earlier JSON results: mark each finding new / still open, and list what was "
        "fixed (recap, HTML, Markdown).",
    ),
]
TitleOpt = Annotated[
    str | None,
    typer.Option("--title", help="The report's title (default: the library's description)."),
]

TargetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        "-t",
        help="A target of smtpscript.yaml (NAME, @TAG, all), HOST[:PORT], [IPv6]:PORT, "
        "smtp(s)://, lmtp://, unix:/PATH, mx:DOMAIN[:PORT] (its MX hosts) or sandbox "
        "(repeatable).",
        autocompletion=_complete_targets,
    ),
]


class Colour(enum.StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


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
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            help="Environment of smtpscript.yaml (its targets and vars).",
            autocompletion=_complete_environments,
        ),
    ] = None,
    var: VarOpt = None,
    vars_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--vars-file",
            help="YAML file of variables (repeatable; over the library's, under --var).",
        ),
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only scenarios with this tag (any of).")
    ] = None,
    skip_tag: Annotated[
        list[str] | None, typer.Option("--skip-tag", help="Not scenarios with this tag.")
    ] = None,
    keyword: Annotated[
        str | None,
        typer.Option(
            "-k",
            help="Only scenarios whose title or file matches: words with "
            "and/or/not, e.g. -k 'relay and not auth'.",
        ),
    ] = None,
    severity_min: Annotated[
        Severity | None,
        typer.Option("--severity-min", help="Only scenarios this severe or worse."),
    ] = None,
    last_failed: Annotated[
        bool,
        typer.Option(
            "--last-failed", "--lf", help="Run again what failed last time (all if nothing did)."
        ),
    ] = False,
    exitfirst: Annotated[
        bool, typer.Option("--exitfirst", "-x", help="Start no new run after a failure.")
    ] = False,
    repeat: Annotated[
        int | None,
        typer.Option(
            "--repeat",
            min=1,
            max=100_000_000,
            help="Load mode: run the one scenario N times on the one target, -j at once; "
            "prints latency per session and per step.",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", min=0.001, max=86_400, help="Load mode: run for S seconds."),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate", min=0.001, max=1_000_000, help="Load mode: start R sessions a second."
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            metavar="compiled|general",
            help="Load mode: 'compiled' runs a scenario of plain steps from a plan compiled "
            "once (the default; others fall back to the general runner, and the summary says "
            "why); 'general' runs every session on the general runner.",
        ),
    ] = "compiled",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Processes, each with its own event loop: targets are shared out among "
            "them (a load run's sessions are split).",
        ),
    ] = 1,
    loop: Annotated[
        str | None,
        typer.Option(
            "--loop",
            metavar="auto|asyncio|uvloop",
            help="Event loop: uvloop when installed (pip install 'smtpscript[fast]'), "
            "else asyncio (default auto; $SMTPSCRIPT_LOOP).",
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            help="Run job I's stable share of N (scenario x target pairs by hash); "
            "'smtpscript report shard-*.json' merges the jobs' results.",
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, max=512, help="Scenario runs at once (default 4)."),
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(
            "--max-connections",
            min=1,
            max=512,
            help="Runs at once against one "
            "target, where the target does not set max_connections (default 2).",
        ),
    ] = None,
    json_out: JsonOpt = None,
    json_indent: JsonIndentOpt = None,
    html_out: HtmlOpt = None,
    junit_out: JunitOpt = None,
    markdown_out: MarkdownOpt = None,
    baseline: BaselineOpt = None,
    title: TitleOpt = None,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", help="Trust this CA (PEM) for TLS to targets that name none."),
    ] = None,
    resolver: Annotated[
        str | None,
        typer.Option(
            "--resolver",
            metavar="IP[:PORT]",
            help="DNS server for mx:DOMAIN targets (MX, MTA-STS, TLSA; default: the system's).",
        ),
    ] = None,
    mta_sts_ca: Annotated[
        Path | None,
        typer.Option("--mta-sts-ca", help="Trust this CA (PEM) for MTA-STS policy fetches."),
    ] = None,
    mta_sts_port: Annotated[
        int,
        typer.Option(
            "--mta-sts-port", min=1, max=65535, help="HTTPS port of MTA-STS policies (tests)."
        ),
    ] = 443,
    fail_on: Annotated[
        Severity | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 only for failures this severe or worse (default info: any failure).",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the conversation, steps labelled.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only the failures and the summary.")
    ] = False,
    color: Annotated[
        Colour,
        typer.Option(
            "--color",
            help="Colour: auto (a terminal, unless NO_COLOR or "
            "TERM=dumb; FORCE_COLOR forces it), always or never.",
        ),
    ] = Colour.auto,
    config: ConfigOpt = None,
) -> None:
    """Run scenarios against targets; print a line per run, in a stable order, and a
    recap of every failure.

    Without PATH: the library's paths; without -t: its defaults.targets. Variables,
    lowest first: scenario vars < library vars < vars_files < environment < target vars
    < --vars-file < --var. Exit 0 all passed, 1 a scenario failed or errored, 2 bad
    input or a report not written, 3 a bug in smtpscript, 130/143 interrupted (the
    reports are still written, marked incomplete).
    """
    from smtpscript.api import RunRequest, check_report_paths, run_request, write_reports
    from smtpscript.console import ConsoleView, colour_wanted
    from smtpscript.selection import Selection, Shard

    library = commands.library(config)
    defaults = library.defaults
    json_out = json_out or _report_folder(defaults.json)
    html_out = html_out or _report_folder(defaults.html)
    junit_out = junit_out or _report_folder(defaults.junit)
    reports = {"--json": json_out, "--html": html_out, "--junit": junit_out}
    reports["--markdown"] = markdown_out
    check_report_paths(reports)  # before connecting anywhere
    previous = _baseline(baseline)  # a bad baseline file: said before connecting anywhere
    # A report on stdout keeps stdout to itself: the console lines go to stderr.
    on_stdout = any(str(path) == "-" for path in reports.values() if path is not None)
    out = sys.stderr if on_stdout else sys.stdout
    request = RunRequest(
        paths=commands.scenario_paths(paths, library),
        targets=target or [],
        variables=commands.parse_vars(var),
        vars_files=vars_file or [],
        environment=env,
        selection=Selection(
            tags=tuple(tag or ()),
            skip_tags=tuple(skip_tag or ()),
            keyword=keyword,
            severity_min=severity_min.value if severity_min else None,
        ),
        last_failed=last_failed,
        jobs=jobs,
        max_connections=max_connections,
        ca_file=ca_file,
        resolver=resolver,
        mta_sts_ca=mta_sts_ca,
        mta_sts_port=mta_sts_port,
        exitfirst=exitfirst,
        shard=Shard.parse(shard) if shard is not None else None,
        load=_load_plan(repeat, duration, rate, jobs or library.defaults.jobs, engine),
        loop=loop,
        workers=workers,
    )
    threshold = fail_on.value if fail_on else defaults.fail_on or "info"
    view = ConsoleView(
        out,
        verbose=verbose,
        quiet=quiet,
        colour=colour_wanted(color.value, out),
        fail_on=threshold,
    )
    view.baseline = previous
    outcome = run_request(request, library, view)
    outcome.run.title = title or library.description
    shell.warn(outcome.warnings)
    if outcome.problems:
        for problem in outcome.problems:
            shell.err(str(problem))
        raise typer.Exit(ExitStatus.USAGE)
    with _signals_deferred() as late:  # what finished is on its way to disk: let it land
        failures = write_reports(
            outcome.run,
            json_path=json_out,
            html_path=html_out,
            junit_path=junit_out,
            markdown_path=markdown_out,
            baseline=previous,
            json_indent=json_indent,
        )
    for failure in failures:
        shell.err(f"smtpscript: error: {failure.message}")
    if outcome.signal is None:
        outcome.signal = late.signum
    raise typer.Exit(_run_status(outcome, threshold, failures))


def _load_plan(
    repeat: int | None,
    duration: float | None,
    rate: float | None,
    jobs: int | None,
    engine: str = "compiled",
) -> "LoadPlan | None":
    if engine not in ("compiled", "general"):
        from smtpscript.errors import ConfigError

        raise ConfigError(f"--engine {engine!r}: use 'compiled' or 'general'")
    if repeat is None and duration is None:
        if rate is not None:
            from smtpscript.errors import ConfigError

            raise ConfigError("--rate paces a load run: give --repeat N or --duration S too")
        return None
    from smtpscript.loadmode import LoadPlan

    return LoadPlan(
        repeat=repeat,
        duration=duration,
        rate=rate,
        concurrency=jobs or 1,
        compiled=engine == "compiled",
    )


def _report_folder(path: Path | None) -> Path | None:
    """A report path from smtpscript.yaml: its folder (reports/) is made when missing."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _run_status(outcome: "RunOutcome", fail_on: str, failures: "list[ReportError]") -> int:
    """Interrupted beats a bug, a bug beats a finding, a finding beats a lost report."""
    if outcome.signal is not None:
        return 128 + outcome.signal
    internal = outcome.internal_errors
    if internal or any(f.internal for f in failures):
        if internal:
            runs = f"{len(internal)} scenario run{'' if len(internal) == 1 else 's'}"
            shell.err(f"smtpscript: internal error in {runs}: {internal[0].reason or ''}")
        shell.err(REPORT_BUG)
        return ExitStatus.INTERNAL
    if outcome.failed(fail_on):
        return ExitStatus.FAILED
    return ExitStatus.USAGE if failures else ExitStatus.OK


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="results.json files (several merge).")],
    html_out: HtmlOpt = None,
    junit_out: JunitOpt = None,
    json_out: JsonOpt = None,
    json_indent: JsonIndentOpt = None,
    markdown_out: MarkdownOpt = None,
    baseline: BaselineOpt = None,
    title: TitleOpt = None,
) -> None:
    """Render reports again from saved JSON results (several files merge into one; a
    scenario run found twice is counted once, with a warning)."""
    from smtpscript.api import check_report_paths, load_results, write_reports

    if not (html_out or junit_out or json_out or markdown_out):
        raise typer.BadParameter("give at least one of --html, --junit, --json, --markdown")
    reports = {"--json": json_out, "--html": html_out, "--junit": junit_out}
    check_report_paths(reports | {"--markdown": markdown_out})
    warnings: list[str] = []
    merged = load_results(results, warnings)
    shell.warn(warnings)
    previous = _baseline(baseline)
    if title is not None:
        merged.title = title
    with _signals_deferred() as late:
        failures = write_reports(
            merged,
            json_path=json_out,
            html_path=html_out,
            junit_path=junit_out,
            markdown_path=markdown_out,
            baseline=previous,
            json_indent=json_indent,
        )
    for failure in failures:
        shell.err(f"smtpscript: error: {failure.message}")
    if late.signum is not None:
        raise typer.Exit(128 + late.signum)
    if any(f.internal for f in failures):
        shell.err(REPORT_BUG)
        raise typer.Exit(ExitStatus.INTERNAL)
    if failures:
        raise typer.Exit(ExitStatus.USAGE)


def _baseline(path: Path | None) -> "RunResult | None":
    """--baseline FILE: earlier results (several runs' duplicates counted once)."""
    if path is None:
        return None
    from smtpscript.api import load_results

    warnings: list[str] = []
    previous = load_results([path], warnings)
    shell.warn([f"--baseline {line}" for line in warnings])
    return previous


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


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to create the library.")] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the library's files if they exist.")
    ] = False,
) -> None:
    """Create a scenario library (config, scenarios, CI jobs) that passes `smtpscript run`."""
    from smtpscript.scaffold import create_library

    written = create_library(directory, force=force)
    for path in written:
        shell.out(f"  created {path}")
    where = "" if directory == Path(".") else f"cd {directory} && "
    shell.out(f"next: {where}smtpscript run   (against the embedded sandbox; see smtpscript.yaml)")


class SchemaName(enum.StrEnum):
    scenario = "scenario"
    library = "library"
    results = "results"


@app.command()
def schema(
    name: Annotated[SchemaName, typer.Argument(help="Which schema.")] = SchemaName.scenario,
) -> None:
    """Print a JSON Schema (for editors: yaml-language-server, VS Code)."""
    from smtpscript.schemafile import schema_path

    shell.out(schema_path(name.value).read_text(encoding="utf-8"), nl=False)


class _Deferred:
    """A signal handler that notes the first SIGINT/SIGTERM and stops only on a second."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        self.signum = signum


@contextlib.contextmanager
def _signals_deferred() -> Iterator[_Deferred]:
    """While reports are written, a first signal waits for them (the exit status says it)."""
    deferred = _Deferred()
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = [signal.signal(sig, deferred) for sig in signals]
    except ValueError:  # not the main thread
        yield deferred
        return
    try:
        yield deferred
    finally:
        for sig, handler in zip(signals, previous, strict=True):
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (tests call this in-process)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shell.run_guarded(lambda: _click_status(args), show_traceback="--traceback" in args)


def _click_status(args: list[str]) -> int:
    """The command's exit status, with click's and typer's exceptions turned into one
    (the others are shell's); Ctrl-C reaches here as click's Abort."""
    click_errors = _click_exceptions()
    try:
        status = _command(args).main(args=args, prog_name="smtpscript", standalone_mode=False)
    except (typer.Exit, click_errors.Exit) as exc:
        return int(exc.exit_code)
    except click_errors.ClickException as exc:
        exc.show()
        return ExitStatus.USAGE
    except (typer.Abort, click_errors.Abort):
        return ExitStatus.INTERRUPTED
    # without standalone mode, click returns an Exit's code instead of raising it
    # (typer turns Ctrl-C into a silent Exit(130))
    return status if isinstance(status, int) else ExitStatus.OK


def _command(args: list[str]) -> Any:
    """The click command for ``args``: when they name a command, a group of that one
    command only, so that the others' options are not built (``run`` alone has ~40,
    ~20 ms of every start); the group itself, its options and help are the same.

    Every option of the group is a flag, so the first word that is not an option names
    the command; anything else (a misspelt command, ``--``, no command) gets them all.
    """
    name = next((arg for arg in args if not arg.startswith("-") or arg == "--"), None)
    chosen = [info for info in app.registered_commands if _command_name(info) == name]
    if not chosen:
        return typer.main.get_command(app)
    one = copy.copy(app)  # the list replaced, not changed: app keeps every command
    one.registered_commands = chosen
    return typer.main.get_command(one)


def _command_name(info: Any) -> str:
    return info.name or typer.main.get_command_name(info.callback.__name__)


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
    shell.exit_with(run_cli())
