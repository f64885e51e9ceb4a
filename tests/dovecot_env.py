"""Where is the loopback Dovecot LMTP server? (started by ``bash tests/dovecot/setup.sh``)

No pytest import: usable from scripts and benchmarks too. Found like the Postfix (see
postfix_env and server_env): the ``env`` file in ``$SMTPSCRIPT_DOVECOT_STATEDIR`` (default
``/tmp/smtpscript-dovecot``), ``SMTPSCRIPT_DOVECOT_*`` environment variables winning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from server_env import ServerSpec, listening, read_env

DEFAULT_STATEDIR = Path("/tmp/smtpscript-dovecot")
PREFIX = "SMTPSCRIPT_DOVECOT_"
SPEC = ServerSpec(PREFIX + "STATEDIR", DEFAULT_STATEDIR, "bash tests/dovecot/setup.sh")
SETUP_HINT = SPEC.hint()


@dataclass(frozen=True)
class DovecotServer:
    """The private Dovecot LMTP instance: see tests/dovecot/setup.sh.

    host/port: LMTP over TCP (127.0.0.1:10024 by default). socket_path: the same LMTP
    service on a UNIX socket (STATEDIR/lmtp.sock). hostname: the name in the banner
    (``220 <hostname> Dovecot (Debian) ready.``) and in the LHLO reply.
    users: the mailboxes that accept mail (``alice``, ``bob``), all ``@domain``.
    full_user: accepted at RCPT, refused after DATA with
    ``552 5.2.2 <full@lmtp.test> Quota exceeded (mailbox for user is full)``.
    Any other local part is refused at RCPT with ``550 5.1.1``.
    maildir: the base of the Maildirs; alice's is ``maildir/<domain>/alice`` (new/, cur/).
    Stored messages keep CRLF line endings; Dovecot prepends Return-Path: and Received:.
    """

    host: str
    port: int
    socket_path: Path
    hostname: str
    domain: str
    users: tuple[str, ...]
    full_user: str
    maildir: Path
    log_path: Path

    def address(self, user: str) -> str:
        """``user@domain``."""
        return f"{user}@{self.domain}"

    def mailbox(self, user: str) -> Path:
        """The Maildir of one user (holds new/, cur/, tmp/)."""
        return self.maildir / self.domain / user

    def messages(self, user: str) -> list[Path]:
        """The delivered message files of one user, oldest first (new/ and cur/)."""
        return list_messages(self.mailbox(user))

    def newest_message(self, user: str) -> bytes | None:
        """The bytes of the most recently delivered message of a mailbox, None if empty."""
        files = self.messages(user)
        return files[-1].read_bytes() if files else None

    def find_message(self, user: str, needle: bytes) -> bytes | None:
        """The newest message of a mailbox that contains needle (say a unique Message-ID)."""
        for path in reversed(self.messages(user)):
            data = path.read_bytes()
            if needle in data:
                return data
        return None


def list_messages(mailbox: Path) -> list[Path]:
    """Message files of a Maildir, oldest first: by modification time, then by name
    (Dovecot's names start with the delivery time in seconds and microseconds)."""
    files: list[Path] = []
    for sub in ("new", "cur"):
        try:
            files += [p for p in (mailbox / sub).iterdir() if p.is_file()]
        except FileNotFoundError:
            continue
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def split_message(data: bytes) -> tuple[bytes, bytes]:
    """(header block, body) of a stored message: split at the first empty line (CRLF or LF).
    The header block keeps its last line ending, the body starts after the empty line."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = data.partition(sep)
        if found:
            return head + sep[: len(sep) // 2], body
    return data, b""


def load_dovecot_env(environ: dict[str, str] | None = None) -> dict | None:
    """The Dovecot description as a dict of DovecotServer's fields, or None if none is
    configured. Says nothing about whether the server is up: see :func:`find_dovecot`."""
    statedir, raw = read_env(SPEC, PREFIX, environ, overrides=True)
    if not raw.get("HOST") or not raw.get("LMTP_PORT"):
        return None
    try:
        return {
            "host": raw["HOST"],
            "port": int(raw["LMTP_PORT"]),
            "socket_path": Path(raw.get("SOCKET", str(statedir / "lmtp.sock"))),
            "hostname": raw.get("HOSTNAME", "lmtp.lmtp.test"),
            "domain": raw.get("DOMAIN", "lmtp.test"),
            "users": tuple(raw.get("USERS", "alice bob").split()),
            "full_user": raw.get("FULL_USER", "full"),
            "maildir": Path(raw.get("MAILDIR", str(statedir / "mail"))),
            "log_path": Path(raw.get("LOG", str(statedir / "dovecot.log"))),
        }
    except ValueError:
        return None


def find_dovecot(timeout: float = 3.0) -> tuple[DovecotServer | None, str]:
    """(server, "") when configured and both listeners answer, else (None, why not)."""
    values = load_dovecot_env()
    if values is None:
        return None, f"the loopback Dovecot LMTP is not configured; {SETUP_HINT}"
    server = DovecotServer(**values)
    return listening(
        server,
        "the loopback Dovecot LMTP",
        SETUP_HINT,
        (server.host, server.port),
        str(server.socket_path),
        banner=True,
        timeout=timeout,
    )
