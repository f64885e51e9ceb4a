"""The embedded SMTP server: a small, sensibly configured MTA built on aiosmtpd.

`smtpscript serve` runs it in the foreground; the built-in target `sandbox`
starts it in-process on a free loopback port for one run. It behaves like a
Postfix set up for one domain, so the audit scenarios pass against it (and the
`open_relay` switch makes the relay audit fail, for demonstrations):

- local domain ``sandbox.test`` with mailboxes alice, bob and postmaster;
- STARTTLS with a fresh self-signed certificate (EC P-256, 90 days, names:
  the domain, ``localhost``, 127.0.0.1, ::1); ``Sandbox.cert_path`` is usable
  as a CA file by clients; optionally an implicit-TLS port (RFC 8314);
- AUTH PLAIN and LOGIN only over TLS, with these test users::

      alice / sandbox-alice-pw
      bob   / sandbox-bob-pw

- relaying only for authenticated sessions; SIZE enforced on MAIL and DATA;
- messages kept in memory (and, if asked, written to a Maildir).

It answers the audit library (scenarios/) the way a hardened MTA does:

- where an address leads is judged after the routing tricks that old MTAs
  honoured inside their own domain (a second or quoted ``@``, the percent
  hack ``user%outside@us``, UUCP bang paths ``outside!user``, source routes,
  our own IP literal ``[127.0.0.1]``), so every open-relay probe is refused
  with ``550 5.7.1`` (and, with ``open_relay``, accepted: a naive open relay);
- the null sender ``MAIL FROM:<>`` is accepted (bounces), ``RCPT TO:<>`` is not;
- a message with a bare CR or LF (not part of CRLF) is refused at the end of
  DATA with ``550 5.5.2`` (like Postfix's ``smtpd_forbid_bare_newline =
  reject``): only CRLF.CRLF ends DATA, so SMTP smuggling finds nothing;
- HELO/EHLO before MAIL (503), VRFY non-committal (252), EXPN not
  implemented (502), command lines over 512 octets and message lines over
  1000 refused (500), declared and actual SIZE over the limit refused (552).

The passwords are public constants: never expose the sandbox beyond loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hmac
import ipaddress
import logging
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_USERS: dict[str, str] = {"alice": "sandbox-alice-pw", "bob": "sandbox-bob-pw"}
IDENT = "ESMTP smtpscript sandbox"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
CERT_VALIDITY = datetime.timedelta(days=90)

SENDER_OK = "250 2.1.0 Sender OK"
RECIPIENT_OK = "250 2.1.5 Recipient OK"
UNKNOWN_USER = "550 5.1.1 <{address}>: Recipient address rejected: User unknown"
RELAY_DENIED = "550 5.7.1 Unable to relay"
QUEUED = "250 2.0.0 Ok: queued as {queue_id}"
SIZE_EXCEEDED = "552 5.3.4 Message size exceeds fixed maximum message size"
MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first"
AUTH_NOT_ENABLED = "503 5.5.1 Error: authentication not enabled"
TLS_ALREADY_ACTIVE = "554 5.5.1 Error: TLS already active"
VRFY_REPLY = "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"
BAD_RECIPIENT = "501 5.1.3 Bad recipient address syntax"
BARE_NEWLINE = "550 5.5.2 Error: bare <{what}> received"
WRITE_FAILED = "451 4.3.0 Error: queue file write error"


class SandboxError(RuntimeError):
    """The sandbox could not start (port taken, thread failed, start-up timed out)."""


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    tls_port: int | None = None  # implicit TLS; None = none, 0 = a free port
    domain: str = "sandbox.test"
    mailboxes: tuple[str, ...] = ("alice", "bob", "postmaster")
    users: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_USERS))
    max_size: int = 10_240_000
    open_relay: bool = False
    tls: bool = True
    maildir: Path | None = None


@dataclass(frozen=True)
class StoredMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # as received, un-dot-stuffed, CRLF line endings
    authenticated_user: str | None = None
    queue_id: str = ""


# aiosmtpd answers some commands without RFC 3463 codes; we advertise
# ENHANCEDSTATUSCODES, so every reply after EHLO must carry one (RFC 2034).
_ENHANCED_CODE = re.compile(r"\d{3} [245]\.\d{1,3}\.\d{1,3}( |$)")
_REPLACED_REPLIES = {
    "250 OK": "250 2.0.0 Ok",
    "221 Bye": "221 2.0.0 Bye",
    "220 Ready to start TLS": "220 2.0.0 Ready to start TLS",
    "552 Error: Too much mail data": SIZE_EXCEEDED,
    "552 Error: message size exceeds fixed maximum message size": SIZE_EXCEEDED,
}
_ENHANCED_BY_CODE = {
    "454": "4.7.0", "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1",
    "504": "5.5.4", "530": "5.7.0", "552": "5.3.4", "553": "5.1.3", "554": "5.7.0",
    "555": "5.5.4",
}  # fmt: skip


def _with_enhanced_code(reply: str) -> str:
    """Give one of aiosmtpd's own replies the enhanced status code an MTA would send."""
    if reply in _REPLACED_REPLIES:
        return _REPLACED_REPLIES[reply]
    code, sep, text = reply.partition(" ")
    # Only error replies get a default: 2xx lines include the banner and HELO
    # greeting, which must stay bare.
    if not sep or code not in _ENHANCED_BY_CODE or _ENHANCED_CODE.match(reply):
        return reply
    return f"{code} {_ENHANCED_BY_CODE[code]} {text}"


# aiosmtpd logs client mistakes at WARNING; without a handler of its own, Python
# would print them on stderr in the middle of a `smtpscript run` on the sandbox.
# Whoever configures logging (e.g. `smtpscript serve`) still gets them, except
# the deprecation notice aiosmtpd triggers itself (session.login_data) on every AUTH.
class _DropLoginDataWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_aiosmtpd_log = logging.getLogger("mail.log")
_aiosmtpd_log.addHandler(logging.NullHandler())
_aiosmtpd_log.addFilter(_DropLoginDataWarning())


def _make_certificate(domain: str, directory: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate and its key; return (cert, key) paths."""
    # EC P-256 rather than RSA: key generation takes microseconds, not 100 ms.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    dns_names = dict.fromkeys([domain, "localhost"])
    ips = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    san = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ip) for ip in ips]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "sandbox-cert.pem", directory / "sandbox-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _server_tls_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


def _listen(host: str, port: int) -> socket.socket:
    """Bind and listen ourselves: aiosmtpd's Controller cannot use port 0."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        # proto must be IPPROTO_TCP (socket.create_server leaves 0) for asyncio to
        # set TCP_NODELAY on accepted connections: aiosmtpd writes each EHLO line
        # separately, and Nagle would hold the later ones back 40 ms.
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise SandboxError(f"cannot listen on {host} port {port}: {error}") from error
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # quick restarts
        sock.bind(address)
        sock.listen()
    except OSError as error:
        sock.close()
        raise SandboxError(f"cannot listen on {host} port {port}: {error}") from error
    return sock


# A path in angle brackets that RFC 5321 does not allow but old relays routed anyway
# (<user@outside@[192.0.2.1]>): taken as written, for the policy to judge where it leads.
_LENIENT_PATH = re.compile(r"\s*<([^<>\s]+)>(.*)\Z", re.DOTALL)
_BARE_CR = re.compile(rb"\r(?!\n)")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_MAX_ROUTE_HOPS = 8
NULL_SENDER = "<>"  # how aiosmtpd hands us MAIL FROM:<>


def _split_address(address: str) -> tuple[str, str | None]:
    """(local part without quotes, domain or None) of an address as the client wrote it."""
    if address.startswith('"'):
        local, escaped, end = [], False, None
        for n, char in enumerate(address[1:], 1):
            if escaped:
                local.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                end = n
                break
            else:
                local.append(char)
        if end is not None:
            rest = address[end + 1 :]
            return "".join(local), (rest[1:] if rest.startswith("@") else rest or None)
    local_part, at, domain = address.rpartition("@")
    return (local_part, domain) if at else (address, None)


def _own_literals(host: str) -> set[str]:
    """Our address literals (RFC 5321 4.1.3): mail to [our IP] is mail to us."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return set()
    return {f"[{ip}]" if ip.version == 4 else f"[ipv6:{ip}]"}


def _new_queue_id() -> str:
    return uuid.uuid4().hex[:12].upper()


class _Mailstore:
    """Received messages, shared between the server thread and its callers."""

    def __init__(self, maildir: Path | None) -> None:
        self._lock = threading.Lock()
        self._messages: list[StoredMessage] = []
        self._maildir = maildir

    def add(self, message: StoredMessage, mailboxes: list[str]) -> None:
        if self._maildir is not None:
            for mailbox in mailboxes:
                _deliver_to_maildir(self._maildir / mailbox, message)
        with self._lock:
            self._messages.append(message)

    def snapshot(self) -> list[StoredMessage]:
        with self._lock:
            return list(self._messages)


def _deliver_to_maildir(box: Path, message: StoredMessage) -> Path:
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    unique = f"{time.time_ns() // 1000}.{message.queue_id}.sandbox"
    staged = box / "tmp" / unique
    staged.write_bytes(message.data)
    # Write in tmp/, then rename into new/: a Maildir reader never sees half a message.
    return staged.replace(box / "new" / unique)


class _Policy:
    """The handler aiosmtpd calls: EHLO keywords, recipients, AUTH, storage."""

    def __init__(self, config: SandboxConfig, store: _Mailstore) -> None:
        self._config = config
        self._domain = config.domain.lower()
        self._literals = _own_literals(config.host)
        self._mailboxes = {m.lower(): m for m in config.mailboxes}
        self._store = store

    async def handle_EHLO(
        self, server: _SandboxSMTP, session: Session, envelope: Envelope,
        hostname: str, responses: list[str],
    ) -> list[str]:  # fmt: skip
        session.host_name = hostname  # with this hook, aiosmtpd leaves it to us
        keywords = [
            self._config.domain, f"SIZE {self._config.max_size}", "8BITMIME",
            "PIPELINING", "ENHANCEDSTATUSCODES",
        ]  # fmt: skip
        if server.tls_context and not server.tls_active:
            keywords.append("STARTTLS")
        if server.tls_active:
            keywords.append("AUTH PLAIN LOGIN")
        return [f"250-{k}" for k in keywords[:-1]] + [f"250 {keywords[-1]}"]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope,
        address: str, mail_options: list[str],
    ) -> str:  # fmt: skip
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return SENDER_OK

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope,
        address: str, rcpt_options: list[str],
    ) -> str:  # fmt: skip
        if address == NULL_SENDER:  # <> is a sender only
            return BAD_RECIPIENT
        reply = self.judge_recipient(address, authenticated=bool(session.authenticated))
        if reply == RECIPIENT_OK:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def handle_VRFY(
        self, server: SMTP, session: Session, envelope: Envelope, address: str
    ) -> str:
        return VRFY_REPLY

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        # aiosmtpd ends DATA only at CRLF.CRLF; a bare CR or LF stays in the message, where
        # a less careful next hop could take <LF>.<CR><LF> for the end (SMTP smuggling).
        for what, bare in (("LF", _BARE_LF), ("CR", _BARE_CR)):
            if bare.search(data):
                return BARE_NEWLINE.format(what=what)
        sender = envelope.mail_from or ""
        message = StoredMessage(
            mail_from="" if sender == NULL_SENDER else sender,
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            authenticated_user=session.auth_data if session.authenticated else None,
            queue_id=_new_queue_id(),
        )
        local = [box for box in map(self.mailbox_of, envelope.rcpt_tos) if box]
        try:
            self._store.add(message, list(dict.fromkeys(local)))
        except OSError:
            return WRITE_FAILED
        return QUEUED.format(queue_id=message.queue_id)

    def judge_recipient(self, address: str, *, authenticated: bool) -> str:
        """The RCPT reply for this address: local user, unknown user or relay."""
        local_part, remote = self.route(address)
        if remote is not None:
            relay_ok = authenticated or self._config.open_relay
            return RECIPIENT_OK if relay_ok else RELAY_DENIED
        if local_part.lower() not in self._mailboxes:
            return UNKNOWN_USER.format(address=address)
        return RECIPIENT_OK

    def mailbox_of(self, address: str) -> str | None:
        local_part, remote = self.route(address)
        if remote is not None:
            return None
        return self._mailboxes.get(local_part.lower())

    def route(self, address: str) -> tuple[str, str | None]:
        """Where the address leads: (local part, None) here, (local part, domain) elsewhere.

        Inside our own domain (or with no domain: a bare ``postmaster`` is ours, RFC 5321
        4.5.1) the routing syntax that old MTAs honoured is followed: a quoted or second
        ``@`` (``"user@outside"@us``), the percent hack (``user%outside@us``) and UUCP
        bang paths (``outside!user``). Each of the relay battery's tricks thus leads
        outside and is judged as relaying, never as an unknown local user.
        """
        for _ in range(_MAX_ROUTE_HOPS):
            local_part, domain = _split_address(address)
            if domain is not None and not self._is_local(domain):
                return local_part, domain
            if "@" in local_part:
                address = local_part
            elif "%" in local_part:
                head, _, tail = local_part.rpartition("%")
                address = f"{head}@{tail}"
            elif "!" in local_part:
                host, _, user = local_part.partition("!")
                address = f"{user}@{host}"
            else:
                return local_part, None
        return address, "(too many routing hops)"  # never delivered here

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode("utf-8", "replace")
            expected = self._config.users.get(user)
            # compare_digest: the sandbox should not teach timing leaks by example.
            if expected is not None and hmac.compare_digest(expected.encode(), auth_data.password):
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)  # aiosmtpd then sends 535 5.7.8

    def _is_local(self, domain: str) -> bool:
        domain = domain.lower()  # domains are case-insensitive
        return domain == self._domain or domain in self._literals


class _SandboxSMTP(SMTP):
    """aiosmtpd's SMTP with MTA-like replies and TLS-only AUTH on both ports."""

    def __init__(self, handler: _Policy, connections: set[_SandboxSMTP], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._connections = connections

    @property
    def tls_active(self) -> bool:
        # Covers STARTTLS and implicit TLS alike; aiosmtpd's own check sees only
        # STARTTLS (its issue #281), which is why we pass auth_require_tls=False.
        transport = self.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._connections.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._connections.discard(self)
        super().connection_lost(error)

    def abort(self) -> None:
        """Drop the connection now, without a TLS close handshake (used at stop)."""
        transport = self._original_transport or self.transport
        if transport is not None:
            transport.abort()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        address, rest = super()._getaddr(arg)
        if address is None and arg:
            lenient = _LENIENT_PATH.match(arg)
            if lenient:
                return lenient.group(1), lenient.group(2)
        return address, rest

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            await super().push(_with_enhanced_code(status))
        else:
            await super().push(status)

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.tls_active:  # aiosmtpd would start a second TLS layer inside the first
            await self.push(TLS_ALREADY_ACTIVE)
            return
        await super().smtp_STARTTLS(arg)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if not self.tls_active:
            await self.push(MUST_STARTTLS if self.tls_context else AUTH_NOT_ENABLED)
            return
        await super().smtp_AUTH(arg)


class Sandbox:
    """The server, run in a daemon thread with its own event loop.

    Use as a context manager, or call start() and stop(). `messages` returns a
    snapshot of what was received so far.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        if self.config.tls_port is not None and not self.config.tls:
            raise ValueError("tls_port needs tls=True")
        self.host = self.config.host
        self.port = self.config.port
        self.tls_port = self.config.tls_port
        self.cert_path: Path | None = None
        self._store = _Mailstore(self.config.maildir)
        self._policy = _Policy(self.config, self._store)
        self._connections: set[_SandboxSMTP] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._temp_dir: Path | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def messages(self) -> list[StoredMessage]:
        return self._store.snapshot()

    def start(self, timeout: float = READY_TIMEOUT) -> Sandbox:
        """Listen, start the server thread; return once connections are served."""
        with self._lock:
            if self._thread is not None:
                raise SandboxError("sandbox already started")
            try:
                self._start(timeout)
            except BaseException:
                self._cleanup()
                raise
        return self

    def stop(self) -> None:
        """Close the listeners and every connection; safe to call more than once."""
        with self._lock:
            self._cleanup()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self, timeout: float) -> None:
        plain = _listen(self.config.host, self.config.port)
        self.port = plain.getsockname()[1]
        sockets = [plain]
        try:
            context = self._prepare_tls()
            if self.config.tls_port is not None:
                sockets.append(_listen(self.config.host, self.config.tls_port))
                self.tls_port = sockets[1].getsockname()[1]
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self._launch(sockets, context, timeout)

    def _prepare_tls(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        self._temp_dir = Path(tempfile.mkdtemp(prefix="smtpscript-sandbox-"))
        cert_path, key_path = _make_certificate(self.config.domain, self._temp_dir)
        self.cert_path = cert_path
        return _server_tls_context(cert_path, key_path)

    def _launch(
        self, sockets: list[socket.socket], context: ssl.SSLContext | None, timeout: float
    ) -> None:
        self._ready.clear()
        self._failure = None
        self._thread = threading.Thread(
            target=self._run, args=(sockets, context), name="smtpscript-sandbox", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SandboxError(f"sandbox did not start within {timeout} s")
        if self._failure is not None:
            raise SandboxError(f"sandbox failed to start: {self._failure}") from self._failure

    def _run(self, sockets: list[socket.socket], context: ssl.SSLContext | None) -> None:
        try:
            asyncio.run(self._serve(sockets, context))
        except BaseException as error:  # report to start(), not to a thread nobody watches
            self._failure = error
        finally:
            for sock in sockets:  # no-op for sockets the servers already closed
                sock.close()
            self._ready.set()

    async def _serve(self, sockets: list[socket.socket], context: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        servers = [await loop.create_server(self._factory(context), sock=sockets[0])]
        if len(sockets) > 1:
            # Implicit TLS: TLS from the first byte, so no STARTTLS to offer here.
            tls_factory = self._factory(None)
            servers.append(await loop.create_server(tls_factory, sock=sockets[1], ssl=context))
        self._loop, self._stop_event = loop, asyncio.Event()
        self._ready.set()
        await self._stop_event.wait()
        for server in servers:
            server.close()
        for connection in list(self._connections):
            connection.abort()
        await asyncio.sleep(0)  # let aborted transports report connection_lost

    def _factory(self, starttls: ssl.SSLContext | None) -> Callable[[], _SandboxSMTP]:
        def make() -> _SandboxSMTP:
            return _SandboxSMTP(
                self._policy,
                self._connections,
                hostname=self.config.domain,
                ident=IDENT,
                data_size_limit=self.config.max_size,
                tls_context=starttls,
                auth_require_tls=False,  # we check TLS ourselves (see tls_active)
                authenticator=self._policy.authenticate,
                loop=asyncio.get_running_loop(),
            )

        return make

    def _cleanup(self) -> None:
        thread, self._thread = self._thread, None
        loop, event = self._loop, self._stop_event
        self._loop = self._stop_event = None
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(event.set)
        if thread is not None:
            thread.join(STOP_TIMEOUT)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
            self.cert_path = None

    def _wait(self) -> None:
        thread = self._thread
        while thread is not None and thread.is_alive():
            thread.join(0.5)  # short joins keep Ctrl-C responsive everywhere


def serve_forever(config: SandboxConfig, on_ready: Callable[[Sandbox], None] | None = None) -> None:
    """Run the sandbox in the foreground until Ctrl-C (KeyboardInterrupt), then stop."""
    sandbox = Sandbox(config).start()
    try:
        if on_ready is not None:
            on_ready(sandbox)
        sandbox._wait()
    except KeyboardInterrupt:
        pass  # the normal way to end `smtpscript serve`
    finally:
        sandbox.stop()
