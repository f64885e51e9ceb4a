"""The real servers the audit library (scenarios/, issue 11) is checked against.

Three private loopback MTAs, each started by a script that writes an ``env`` file into its
state directory:

==================  =====================================  ======================  ==========
name                started by (as root)                   state dir (env var)      ports
==================  =====================================  ======================  ==========
postfix-hardened    tests/postfix_audit/setup.sh DIR       SMTPSCRIPT_POSTFIX_     10125 SMTP
                    hardened                               HARDENED_STATEDIR       + STARTTLS,
                                                                                   10165 smtps
postfix-weak        tests/postfix_audit/setup.sh DIR weak  SMTPSCRIPT_POSTFIX_     10225 SMTP
                                                           WEAK_STATEDIR
exim                tests/exim/setup.sh DIR                SMTPSCRIPT_EXIM_        10325 SMTP
                                                           STATEDIR                + STARTTLS
==================  =====================================  ======================  ==========

State dirs default to /tmp/smtpscript-postfix-hardened, /tmp/smtpscript-postfix-weak and
/tmp/smtpscript-exim. What each server is configured to do is described at the top of its
setup script; tests/test_audit_servers.py proves it, reply by reply.

No pytest import at module level: usable from scripts too. :func:`require_audit_server`
is the pytest entry point: a missing server is a skip, or a failure when CI is set (as the
``postfix`` fixture in conftest.py does). Finding and probing are server_env's.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from server_env import LOG_WAIT, ServerSpec, listening, log_lines, log_size, read_env, require
from server_env import in_ci as in_ci
from server_env import is_reachable as is_reachable
from server_env import wait_for_log as _wait_for_log

ENV_PREFIX = "SMTPSCRIPT_AUDIT_"
DELIVERY_WAIT = 15.0  # seconds for Postfix to move a queued message into a Maildir


SERVERS: dict[str, ServerSpec] = {
    "postfix-hardened": ServerSpec(
        "SMTPSCRIPT_POSTFIX_HARDENED_STATEDIR",
        Path("/tmp/smtpscript-postfix-hardened"),
        "bash tests/postfix_audit/setup.sh {statedir} hardened",
    ),
    "postfix-weak": ServerSpec(
        "SMTPSCRIPT_POSTFIX_WEAK_STATEDIR",
        Path("/tmp/smtpscript-postfix-weak"),
        "bash tests/postfix_audit/setup.sh {statedir} weak",
    ),
    "exim": ServerSpec(
        "SMTPSCRIPT_EXIM_STATEDIR",
        Path("/tmp/smtpscript-exim"),
        "bash tests/exim/setup.sh {statedir}",
    ),
}


@dataclass(frozen=True)
class AuditServer:
    """One running audit server, as its setup script described it.

    name: a key of :data:`SERVERS`. kind: ``postfix`` or ``exim``. profile: ``hardened``,
    ``weak`` or ``exim``. port: SMTP (STARTTLS offered on hardened and exim, not on weak).
    smtps_port: implicit TLS (hardened only, else None). hostname: the server's name, which
    its certificate carries (SAN also ``localhost`` and ``127.0.0.1``). domain: its local
    mail domain, with the users ``postmaster`` and ``alice``. ca_file: the private CA that
    signed the certificate. user/password: SASL credentials (Postfix only; None for Exim):
    on hardened AUTH is offered only after STARTTLS, on weak in the clear too. log: Postfix's
    maillog or Exim's mainlog. maildir: Postfix's virtual mailbox base (None for Exim, which
    stores nothing). version: Postfix's mail_version or Exim's version number.
    """

    name: str
    kind: str
    profile: str
    statedir: Path
    host: str
    port: int
    smtps_port: int | None
    hostname: str
    domain: str
    ca_file: str
    user: str | None
    password: str | None
    log: Path
    maildir: Path | None
    version: str

    # ------------------------------------------------------------------ for smtpscript

    @property
    def target(self) -> str:
        """``--target`` for the SMTP port, e.g. ``127.0.0.1:10125`` (use with ``--ca-file``)."""
        return f"{self.host}:{self.port}"

    @property
    def smtps_target(self) -> str | None:
        """``--target`` for the implicit-TLS port (``smtps://127.0.0.1:10165``), if any."""
        return None if self.smtps_port is None else f"smtps://{self.host}:{self.smtps_port}"

    def tls_context(self) -> ssl.SSLContext:
        """A client context trusting (only) this server's private CA, names checked."""
        return ssl.create_default_context(cafile=self.ca_file)

    # ------------------------------------------------------------------ the log

    def log_size(self) -> int:
        """The log's current size in bytes: pass it as ``start`` to see only newer lines."""
        return log_size(self.log)

    def log_lines(self, start: int = 0) -> list[str]:
        """The log's complete lines from byte offset ``start``."""
        return log_lines(self.log, start)

    def wait_for_log(
        self, pattern: str | re.Pattern[str], *, start: int = 0, timeout: float = LOG_WAIT
    ) -> re.Match[str]:
        """The first log line after ``start`` that ``pattern`` is found in (re.search).

        Waits up to ``timeout`` seconds, then raises AssertionError quoting the last lines.
        """
        return _wait_for_log(self.log, pattern, start=start, timeout=timeout)

    # ------------------------------------------------------------------ delivered mail

    def mailbox(self, user: str = "alice") -> Path:
        """Where Postfix delivers ``user@domain``'s new mail (Maildir ``new/``)."""
        if self.maildir is None:
            raise ValueError(f"{self.name} stores no mail")
        return self.maildir / self.domain / user / "new"

    def wait_for_message(
        self, containing: bytes, user: str = "alice", *, timeout: float = DELIVERY_WAIT
    ) -> bytes:
        """The first message in ``user``'s mailbox containing ``containing``, as stored."""
        deadline = time.monotonic() + timeout
        while True:
            if found := self.messages_containing(containing, user):
                return found[0]
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"no message containing {containing!r} in {self.mailbox(user)}"
                )
            time.sleep(0.1)

    def messages_containing(self, containing: bytes, user: str = "alice") -> list[bytes]:
        """Every message in ``user``'s mailbox (new/) containing ``containing``, now."""
        new = self.mailbox(user)
        found = []
        for path in sorted(new.glob("*")) if new.is_dir() else ():
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            if containing in data:
                found.append(data)
        return found


# ---------------------------------------------------------------------- finding them


def load_audit_server(name: str, environ: Mapping[str, str] | None = None) -> AuditServer | None:
    """The server ``name`` as its state dir's env file describes it, or None if none does.

    Says nothing about whether it is running: see :func:`find_audit_server`.
    """
    statedir, raw = read_env(SERVERS[name], ENV_PREFIX, environ)
    if not raw.get("HOST") or not raw.get("PORT"):
        return None
    try:
        return AuditServer(
            name=name,
            kind=raw.get("KIND", ""),
            profile=raw.get("PROFILE", ""),
            statedir=statedir,
            host=raw["HOST"],
            port=int(raw["PORT"]),
            smtps_port=int(raw["SMTPS_PORT"]) if raw.get("SMTPS_PORT") else None,
            hostname=raw.get("HOSTNAME", ""),
            domain=raw.get("DOMAIN", ""),
            ca_file=raw.get("CA") or str(statedir / "ca.pem"),
            user=raw.get("USER") or None,
            password=raw.get("PASSWORD") or None,
            log=Path(raw.get("MAILLOG") or statedir / "maillog"),
            maildir=Path(raw["MAILDIR"]) if raw.get("MAILDIR") else None,
            version=raw.get("VERSION", ""),
        )
    except ValueError:
        return None


def find_audit_server(name: str) -> tuple[AuditServer | None, str]:
    """(server, "") when described and listening, else (None, why not)."""
    spec = SERVERS[name]
    statedir = spec.statedir()
    server = load_audit_server(name)
    if server is None:
        return None, f"the {name} test server is not set up in {statedir}; {spec.hint(statedir)}"
    what = f"the {name} test server"
    return listening(server, what, spec.hint(statedir), (server.host, server.port))


def require_audit_server(name: str) -> AuditServer:
    """For fixtures: the running server, else pytest.fail under CI and pytest.skip otherwise."""
    return require(find_audit_server(name))


# ---------------------------------------------------------------------- raw SMTP


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: its code and its lines (text after the code and separator)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __str__(self) -> str:
        return "\n".join(f"{self.code} {line}" for line in self.lines)


class ConnectionClosed(AssertionError):
    """The server closed the connection while a reply was expected."""


class RawSmtp:
    """A byte-exact SMTP client over a plain socket (and STARTTLS), for behaviour tests.

    Unlike smtplib it sends exactly the bytes given (bare LF, NUL, pipelined commands) and
    reads replies one at a time, so a test sees every reply the server sends.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self.host = host
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            (host, port), timeout=timeout
        )
        self._buffer = b""

    def __enter__(self) -> RawSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ConnectionClosed(f"connection closed while sending: {exc}") from exc

    def _readline(self) -> bytes:
        while b"\n" not in self._buffer:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ConnectionClosed(f"connection closed; unterminated data: {self._buffer!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def reply(self) -> Reply:
        """The next (possibly multi-line) reply; ConnectionClosed if the server hung up."""
        lines: list[str] = []
        while True:
            raw = self._readline().decode("utf-8", "replace")
            if len(raw) < 3 or not raw[:3].isdigit():
                raise AssertionError(f"not an SMTP reply line: {raw!r}")
            lines.append(raw[4:])
            if raw[3:4] != "-":
                return Reply(int(raw[:3]), tuple(lines))

    def command(self, line: str | bytes) -> Reply:
        """Send one command line (CRLF appended) and read its reply."""
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.send(data + b"\r\n")
        return self.reply()

    def closed(self, timeout: float = 5.0) -> bool:
        """True if the server has closed the connection (reads, with nothing left unread)."""
        if self._buffer:
            return False
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def starttls(self, context: ssl.SSLContext, server_hostname: str) -> Reply:
        """STARTTLS; on 220 the socket is wrapped (handshake checked against the context)."""
        reply = self.command("STARTTLS")
        if reply.code == 220:
            assert not self._buffer, f"data after the STARTTLS reply: {self._buffer!r}"
            self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        return reply
