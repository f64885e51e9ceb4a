"""Where is the loopback Postfix test server? (started by ``bash tests/postfix/setup.sh``)

No pytest import: usable from scripts and benchmarks too.

The description comes from the ``SMTPSCRIPT_POSTFIX_*`` environment variables, falling
back to the ``env`` file that setup.sh writes into its state directory
(``$SMTPSCRIPT_POSTFIX_STATEDIR``, default ``/tmp/smtpscript-postfix``). Variables win
over the file, key by key.
"""

from __future__ import annotations

import os
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATEDIR = Path("/tmp/smtpscript-postfix")
PREFIX = "SMTPSCRIPT_POSTFIX_"
SETUP_HINT = "start it (as root) with: bash tests/postfix/setup.sh"


@dataclass(frozen=True)
class PostfixServer:
    """The private Postfix instance: see tests/postfix/setup.sh for what each port does.

    port: SMTP, STARTTLS offered, AUTH only after STARTTLS; loopback is an outsider
    (relay -> ``554 5.7.1 ... Relay access denied``).
    smtps_port: implicit TLS. submission_port: STARTTLS required, AUTH required.
    maildir: virtual mailbox base; alice's mail is in ``maildir/<domain>/alice/new``.
    ca_file: the CA that signed the server certificate (CN mx.postfix.test, SAN
    localhost and 127.0.0.1).
    user: SASL user (both ``alice`` and ``alice@postfix.test`` are accepted).
    """

    host: str
    port: int
    smtps_port: int
    submission_port: int
    maildir: Path
    ca_file: str
    domain: str
    user: str
    password: str
    mechs: tuple[str, ...]


def _read_env_file(path: Path) -> dict[str, str]:
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
            if sep and key.startswith(PREFIX):
                values[key] = value
    return values


def load_postfix_env(environ: dict[str, str] | None = None) -> dict | None:
    """The Postfix description as a dict of typed values, or None if none is configured.

    Keys: host, port, smtps_port, submission_port (int), maildir (Path), ca_file, domain,
    user, password, mechs (tuple of SASL mechanism names). Says nothing about whether the
    server is actually up: see :func:`is_reachable`.
    """
    env = os.environ if environ is None else environ
    statedir = Path(env.get(PREFIX + "STATEDIR") or DEFAULT_STATEDIR)
    raw = _read_env_file(statedir / "env")
    raw.update({k: v for k, v in env.items() if k.startswith(PREFIX) and v != ""})
    if not raw.get(PREFIX + "HOST") or not raw.get(PREFIX + "PORT"):
        return None
    try:
        port = int(raw[PREFIX + "PORT"])
        return {
            "host": raw[PREFIX + "HOST"],
            "port": port,
            "smtps_port": int(raw.get(PREFIX + "SMTPS_PORT", "10465")),
            "submission_port": int(raw.get(PREFIX + "SUBMISSION_PORT", "10587")),
            "maildir": Path(raw.get(PREFIX + "MAILDIR", str(statedir / "mail"))),
            "ca_file": raw.get(PREFIX + "CA", str(statedir / "ca.pem")),
            "domain": raw.get(PREFIX + "DOMAIN", "postfix.test"),
            "user": raw.get(PREFIX + "USER", "alice"),
            "password": raw.get(PREFIX + "PASSWORD", ""),
            "mechs": tuple(raw.get(PREFIX + "MECHS", "").split()),
        }
    except ValueError:
        return None


def is_reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_postfix() -> tuple[PostfixServer | None, str]:
    """(server, "") when configured and listening, else (None, why not)."""
    values = load_postfix_env()
    if values is None:
        return None, f"the loopback Postfix is not configured; {SETUP_HINT}"
    server = PostfixServer(**values)
    if not is_reachable(server.host, server.port):
        return None, (
            f"the loopback Postfix is not answering on {server.host}:{server.port}; {SETUP_HINT}"
        )
    return server, ""
