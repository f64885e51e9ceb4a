"""What the commands do, where it needs no typer: ``validate``'s body and the helpers
the commands share. smtpscript.cli parses the options and calls these; __main__ calls
``validate`` directly for plain ``smtpscript validate [PATH...]``."""

from pathlib import Path
from typing import TYPE_CHECKING

from smtpscript.shell import ExitStatus, count, err, out, warn

if TYPE_CHECKING:
    from smtpscript.library import Library


def library(config: Path | None) -> "Library":
    """The library config: ``config``, else smtpscript.yaml here or in a parent."""
    from smtpscript.library import load_library

    return load_library(config)


def scenario_paths(paths: list[Path] | None, library: "Library") -> list[Path]:
    """The paths given, else the library's (default scenarios/), never the whole working
    directory: a recursive scan of a home folder finds docker-compose.yml and FIFOs."""
    if paths:
        return paths
    if library.path is None and not all(p.is_dir() for p in library.paths):
        from smtpscript.errors import ConfigError

        raise ConfigError(
            "no PATH given, no scenarios/ folder here and no smtpscript.yaml here or above: "
            "name scenario files or folders, or create a library with 'smtpscript init DIR'"
        )
    return list(library.paths)


def parse_vars(items: list[str] | None) -> dict[str, str]:
    from smtpscript.errors import ConfigError

    found: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise ConfigError(f"--var {item!r}: expected NAME=VALUE with NAME a plain identifier")
        found[name] = value
    return found


def validate(paths: list[Path] | None, var: list[str] | None, config: Path | None) -> int:
    """Every problem of the scenario files, one line each with file:line:column, then a
    summary; the exit status (USAGE when there is a problem or no scenario file)."""
    from smtpscript.loading import load_paths

    found = library(config)
    names = set(parse_vars(var)) | found.variable_names()
    result = load_paths(scenario_paths(paths, found), extra_names=names, keep_models=False)
    warn(getattr(result, "warnings", []))
    for problem in result.problems:
        err(str(problem))
    bad_files = len({p.file for p in result.problems})
    summary = f"{count(result.files, 'file')}: {count(result.valid, 'valid scenario')}"
    if result.fragments:
        summary += f", {count(len(result.fragments), 'fragment')}"
    if result.problems:
        problems = count(len(result.problems), "problem")
        err(f"{summary}; {problems} in {count(bad_files, 'file')}")
        return ExitStatus.USAGE
    if result.files == 0:
        err("no scenario files found (*.yaml, *.yml)")
        return ExitStatus.USAGE
    out(f"{summary}: all valid")
    return ExitStatus.OK
