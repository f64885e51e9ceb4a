"""Where is the loopback Postfix test server? (started by ``bash tests/postfix/setup.sh``)

No pytest import: usable from scripts and benchmarks too. The description is the ``env``
file setup.sh writes into its state directory (``$SMTPSCRIPT_POSTFIX_STATEDIR``, default
``/tmp/smtpscript-postfix``), overridden key by key by ``SMTPSCRIPT_POSTFIX_*`` environment
variables; finding and probing are server_env's.
"""

from __future__ import annotations

import ipaddress
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from server_env import LOG_WAIT, ServerSpec, listening, log_lines, log_size, read_env, wait_for_log
from server_env import is_reachable as is_reachable

DEFAULT_STATEDIR = Path("/tmp/smtpscript-postfix")
PREFIX = "SMTPSCRIPT_POSTFIX_"
SPEC = ServerSpec(PREFIX + "STATEDIR", DEFAULT_STATEDIR, "bash tests/postfix/setup.sh")
SETUP_HINT = SPEC.hint()
DELIVERY_WAIT = 15.0  # seconds for Postfix to move a queued message into the Maildir

_QUEUED_AS_RE = re.compile(r"queued as ([0-9A-Za-z]+)")


@dataclass(frozen=True)
class PostfixServer:
    """The private Postfix instance: see tests/postfix/setup.sh for what each port does.

    port: SMTP, STARTTLS offered, AUTH only after STARTTLS; loopback is an outsider
    (relay -> ``554 5.7.1 ... Relay access denied``).
    smtps_port: implicit TLS. submission_port: STARTTLS required, AUTH required.
    proxy_port: like port, but each connection must start with a HAProxy PROXY header
    (v1 or v2, see :func:`proxy_v1_header` and :func:`proxy_v2_header`); the address it
    claims is the client (maillog, ``Received:``), with no reverse DNS (name ``unknown``).
    xclient_port: like port, plus XCLIENT (NAME ADDR PROTO HELO ...) for 127.0.0.1.
    maildir: virtual mailbox base; alice's mail is in ``maildir/<domain>/alice/new``
    (``jörg@<domain>`` is an alias of alice; bob has a mailbox too).
    maillog: the log of every Postfix daemon (INFO and up, e.g. ``connect from NAME[ADDR]``).
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
    proxy_port: int = 10026
    xclient_port: int = 10027
    maillog: Path = DEFAULT_STATEDIR / "maillog"

    # ------------------------------------------------------------------ the maillog

    def maillog_size(self) -> int:
        """The maillog's current size in bytes: pass it as ``start`` to see only newer lines."""
        return log_size(self.maillog)

    def maillog_lines(self, start: int = 0) -> list[str]:
        """The maillog's complete lines from byte offset ``start`` (see :meth:`maillog_size`)."""
        return log_lines(self.maillog, start)

    def wait_for_maillog(
        self, pattern: str | re.Pattern[str], *, start: int = 0, timeout: float = LOG_WAIT
    ) -> re.Match[str]:
        """The first maillog line after ``start`` that ``pattern`` is found in (re.search).

        Waits up to ``timeout`` seconds (Postfix logs asynchronously), then raises
        AssertionError quoting the last lines seen.
        """
        return wait_for_log(self.maillog, pattern, start=start, timeout=timeout)

    # ------------------------------------------------------------------ delivered mail

    def mailbox(self, user: str = "alice") -> Path:
        """The directory Postfix delivers ``user@domain``'s new mail into (Maildir ``new/``)."""
        return self.maildir / self.domain / user / "new"

    def wait_for_message(
        self,
        user: str = "alice",
        *,
        queue_id: str | None = None,
        containing: bytes | None = None,
        since: float | None = None,
        timeout: float = DELIVERY_WAIT,
    ) -> bytes:
        """The newest message in ``user``'s mailbox that passes every filter given, as stored.

        queue_id: Postfix queued it under this id (its ``Received:`` says ``id QUEUE_ID``;
        see :func:`queue_id_of`). containing: these bytes are in the file. since: delivered
        at or after this ``time.time()``. Waits up to ``timeout`` seconds for one to arrive,
        then raises AssertionError. Postfix stores LF line endings, not CRLF.
        """
        marker = None
        if queue_id is not None:
            marker = re.compile(rb" id " + re.escape(queue_id.encode()) + rb"(?![0-9A-Za-z])")
        new = self.mailbox(user)
        deadline = time.monotonic() + timeout
        while True:
            for path in _newest_first(new, since):
                try:
                    data = path.read_bytes()
                except FileNotFoundError:  # moved to cur/ by someone else
                    continue
                if marker is not None and not marker.search(data.partition(b"\n\n")[0]):
                    continue
                if containing is not None and containing not in data:
                    continue
                return data
            if time.monotonic() >= deadline:
                wanted = ", ".join(
                    f"{name} {value!r}"
                    for name, value in (
                        ("queue id", queue_id),
                        ("containing", containing),
                        ("since", since),
                    )
                    if value is not None
                )
                raise AssertionError(f"no message ({wanted or 'any'}) in {new} after {timeout:g} s")
            time.sleep(0.1)


def _newest_first(directory: Path, since: float | None) -> list[Path]:
    found = []
    for path in directory.glob("*") if directory.is_dir() else ():
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            continue
        if since is None or mtime >= since * 1e9:
            found.append((mtime, path.name, path))
    return [path for *_, path in sorted(found, reverse=True)]


def queue_id_of(reply_text: str) -> str:
    """The queue id in Postfix's reply to the end of DATA or BDAT LAST.

    ``250 2.0.0 Ok: queued as 3614A20C346`` or ``250 2.0.0 Ok: 38 bytes queued as ...``.
    """
    match = _QUEUED_AS_RE.search(reply_text)
    if match is None:
        raise AssertionError(f"no queue id in {reply_text!r}")
    return match.group(1)


def split_message(message: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """A stored message as ([(name, value)] in order, body): folded values are unfolded.

    Names keep their case; values are decoded as UTF-8 (SMTPUTF8 headers are raw UTF-8),
    with the folding line breaks removed and the whitespace after them kept.
    """
    head, _, body = message.partition(b"\n\n")
    headers: list[tuple[str, str]] = []
    for line in head.decode("utf-8", "replace").split("\n"):
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + line)
        else:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
    return headers, body


def header_values(message: bytes, name: str) -> list[str]:
    """Every (unfolded) value of header ``name`` (any case) in a stored message, in order."""
    return [value for key, value in split_message(message)[0] if key.lower() == name.lower()]


# ---------------------------------------------------------------------- PROXY protocol

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1_header(src: str, dst: str, src_port: int, dst_port: int) -> bytes:
    """A HAProxy PROXY protocol v1 line: ``PROXY TCP4 SRC DST SPORT DPORT\\r\\n`` (or TCP6)."""
    family = "TCP4" if ipaddress.ip_address(src).version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {src_port} {dst_port}\r\n".encode("ascii")


def proxy_v2_header(src: str, dst: str, src_port: int, dst_port: int) -> bytes:
    """A HAProxy PROXY protocol v2 header (binary) for a TCP connection, no TLVs.

    12-byte signature, 0x21 (version 2, command PROXY), 0x11 (AF_INET, STREAM) or 0x21
    (AF_INET6, STREAM), 16-bit big-endian length of what follows (12 or 36), then source
    and destination addresses (4 or 16 bytes each), source and destination ports (16-bit
    big-endian each).
    """
    source, destination = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if source.version != destination.version:
        raise ValueError("source and destination must both be IPv4 or both IPv6")
    family = 0x11 if source.version == 4 else 0x21
    payload = source.packed + destination.packed + struct.pack("!HH", src_port, dst_port)
    return PROXY_V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(payload)) + payload


def load_postfix_env(environ: dict[str, str] | None = None) -> dict | None:
    """The Postfix description as a dict of typed values, or None if none is configured.

    Keys: host, port, smtps_port, submission_port, proxy_port, xclient_port (int), maildir,
    maillog (Path), ca_file, domain, user, password, mechs (tuple of SASL mechanism names).
    An env file from an older setup.sh lacks the proxy and xclient ports: the defaults
    (10026, 10027) are assumed, and nothing listens there. Says nothing about whether the
    server is actually up: see :func:`find_postfix`.
    """
    statedir, raw = read_env(SPEC, PREFIX, environ, overrides=True)
    if not raw.get("HOST") or not raw.get("PORT"):
        return None
    try:
        return {
            "host": raw["HOST"],
            "port": int(raw["PORT"]),
            "smtps_port": int(raw.get("SMTPS_PORT", "10465")),
            "submission_port": int(raw.get("SUBMISSION_PORT", "10587")),
            "proxy_port": int(raw.get("PROXY_PORT", "10026")),
            "xclient_port": int(raw.get("XCLIENT_PORT", "10027")),
            "maildir": Path(raw.get("MAILDIR", str(statedir / "mail"))),
            "maillog": Path(raw.get("MAILLOG", str(statedir / "maillog"))),
            "ca_file": raw.get("CA", str(statedir / "ca.pem")),
            "domain": raw.get("DOMAIN", "postfix.test"),
            "user": raw.get("USER", "alice"),
            "password": raw.get("PASSWORD", ""),
            "mechs": tuple(raw.get("MECHS", "").split()),
        }
    except ValueError:
        return None


def find_postfix() -> tuple[PostfixServer | None, str]:
    """(server, "") when configured and listening, else (None, why not)."""
    values = load_postfix_env()
    if values is None:
        return None, f"the loopback Postfix is not configured; {SETUP_HINT}"
    server = PostfixServer(**values)
    return listening(server, "the loopback Postfix", SETUP_HINT, (server.host, server.port))
