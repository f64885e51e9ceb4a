"""Finding the private loopback test servers that the tests/*/setup.sh scripts start.

Shared by postfix_env.py, dovecot_env.py and audit_servers.py. No pytest import at module
level: usable from scripts too (:func:`require` imports it when called).

Each setup script writes an ``env`` file into its state directory: shell syntax, one
``PREFIX_KEY=value`` a line (tests/servers.sh, ``write_env``). A :class:`ServerSpec` says
where that directory is (an environment variable, else a default) and how to start the
server; :func:`read_env` reads the file, :func:`listening` probes the ports and
:func:`require` turns a missing server into a skip, or a failure under CI.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

LOG_WAIT = 10.0  # seconds for a log line (Postfix's postlogd, Exim's mainlog) to appear

Server = TypeVar("Server")
Address = tuple[str, int] | str  # (host, port), or the path of a UNIX socket


@dataclass(frozen=True)
class ServerSpec:
    """Where a server's state dir is looked for, and how to start it."""

    statedir_var: str
    default_statedir: Path
    setup: str  # the command line, with {statedir} for the state dir (or without it)

    def statedir(self, environ: Mapping[str, str] | None = None) -> Path:
        env = os.environ if environ is None else environ
        return Path(env.get(self.statedir_var) or self.default_statedir)

    def hint(self, statedir: Path | None = None) -> str:
        statedir = self.default_statedir if statedir is None else statedir
        return "start it (as root) with: " + self.setup.format(statedir=statedir)


# ---------------------------------------------------------------------- the env file


def read_env_file(path: Path, prefix: str) -> dict[str, str]:
    """The ``PREFIX...=value`` assignments of a shell-syntax env file, keyed without PREFIX.

    A missing or unreadable file is empty; lines shlex cannot split are passed over.
    """
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return values
    for line in text.splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        for token in tokens:
            key, sep, value = token.partition("=")
            if sep and key.startswith(prefix):
                values[key.removeprefix(prefix)] = value
    return values


def read_env(
    spec: ServerSpec,
    prefix: str,
    environ: Mapping[str, str] | None = None,
    *,
    overrides: bool = False,
) -> tuple[Path, dict[str, str]]:
    """(state dir, its env file's values keyed without ``prefix``).

    overrides: non-empty ``PREFIX...`` environment variables win over the file, key by key.
    """
    env = os.environ if environ is None else environ
    statedir = spec.statedir(env)
    values = read_env_file(statedir / "env", prefix)
    if overrides:
        values.update(
            {k.removeprefix(prefix): v for k, v in env.items() if k.startswith(prefix) and v != ""}
        )
    return statedir, values


# ---------------------------------------------------------------------- is it up?


def is_reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def greets(address: Address, timeout: float = 3.0) -> bool:
    """True when a connection to address (TCP or a UNIX socket) gets a ``220`` banner."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            banner = sock.recv(512)
            sock.sendall(b"QUIT\r\n")
        except OSError:
            return False
    return banner.startswith(b"220")


def listening(
    server: Server,
    what: str,
    hint: str,
    *addresses: Address,
    banner: bool = False,
    timeout: float = 3.0,
) -> tuple[Server | None, str]:
    """(server, "") when every address answers, else (None, why not).

    Answering: accepting a TCP connection, or with banner=True sending a 220 banner (see
    :func:`greets`). Why not: ``WHAT is not answering on ADDRESS; HINT``.
    """
    for address in addresses:
        if banner:
            answers = greets(address, timeout)
        else:
            host, port = address
            answers = is_reachable(host, port, timeout)
        if not answers:
            where = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
            return None, f"{what} is not answering on {where}; {hint}"
    return server, ""


def in_ci() -> bool:
    """CI is set (to anything but empty, 0, false or no): missing servers are failures."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(found: tuple[Server | None, str]) -> Server:
    """For fixtures, given a find_*() result: the server, else pytest.fail under CI and
    pytest.skip otherwise."""
    import pytest

    server, why = found
    if server is None:
        if in_ci():
            pytest.fail(f"CI is set but {why}", pytrace=False)
        pytest.skip(why)
    return server


# ---------------------------------------------------------------------- a server's log


def log_size(path: Path) -> int:
    """A log's current size in bytes: pass it as ``start`` to see only newer lines."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def log_lines(path: Path, start: int = 0) -> list[str]:
    """A log's complete lines from byte offset ``start`` (see :func:`log_size`)."""
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            data = handle.read()
    except FileNotFoundError:
        return []
    complete = data[: data.rfind(b"\n") + 1]  # the writer may be halfway through a line
    return complete.decode("utf-8", "replace").splitlines()


def wait_for_log(
    path: Path, pattern: str | re.Pattern[str], *, start: int = 0, timeout: float = LOG_WAIT
) -> re.Match[str]:
    """The first line of a log after ``start`` that ``pattern`` is found in (re.search).

    Waits up to ``timeout`` seconds (servers log asynchronously), then raises AssertionError
    quoting the last lines seen.
    """
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    deadline = time.monotonic() + timeout
    while True:
        lines = log_lines(path, start)
        for line in lines:
            if match := regex.search(line):
                return match
        if time.monotonic() >= deadline:
            tail = "\n".join(lines[-15:])
            raise AssertionError(
                f"no line matching {regex.pattern!r} in {path} after {timeout:g} s;"
                f" last lines:\n{tail}"
            )
        time.sleep(0.05)
