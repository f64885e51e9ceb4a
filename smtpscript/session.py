"""One SMTP connection over asyncio: connect, TLS, send bytes, read one reply.

The session only moves bytes and keeps time; parsing is protocol.ReplyParser's
job and judging is the runner's. Every byte sent and received is recorded in a
transcript with monotonic timestamps. Limits (reply size, time) are enforced
here or in the parser, so a hostile server costs us at most one reply's worth
of memory and one timeout's worth of time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from smtpscript import notes
from smtpscript.errors import LimitExceeded, RemoteProtocolError
from smtpscript.model import hostport
from smtpscript.protocol import Closed, Reply, ReplyParser  # Closed: named here too
from smtpscript.proxyheader import describe
from smtpscript.results import TlsFacts
from smtpscript.tlsinfo import describe_verify_error, facts_from

T = TypeVar("T")

READ_CHUNK = 64 * 1024
CLOSE_WAIT = 2.0  # seconds a close may take (a TLS close_notify, the last bytes)
MAX_KEPT_PER_SEND = 64 * 1024  # the transcript keeps the start of a big payload, and its size


class ConnectError(Exception):
    """The connection (TCP or TLS handshake) could not be set up; message is user-facing."""

    def __init__(self, message: str, *, verify_failed: bool = False):
        super().__init__(message)
        self.verify_failed = verify_failed


def connect_error(exc: Exception, host: str, port: int, timeout: float) -> Exception:
    """What a failed connect (TCP, then TLS for implicit TLS) says to the user: a
    ConnectError, or ``exc`` itself when it is no connection problem."""
    where = hostport(host, port)
    if isinstance(exc, TimeoutError):
        return ConnectError(f"connection to {where} timed out after {timeout:g} s")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConnectError(describe_verify_error(exc), verify_failed=True)
    if isinstance(exc, ssl.SSLError):
        hint = (
            " (the server did not answer in TLS: plain SMTP on this port? implicit TLS "
            "usually listens on 465)"
            if exc.reason == "WRONG_VERSION_NUMBER"
            else ""
        )
        return ConnectError(f"TLS handshake with {where} failed: {exc.reason or exc}{hint}")
    if isinstance(exc, socket.gaierror):
        return ConnectError(f"cannot resolve host {host!r}: {exc.strerror}")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectError(f"connection refused by {where}")
    if isinstance(exc, OSError):
        return ConnectError(f"cannot connect to {where}: {exc.strerror or exc}")
    return exc


def handshake_error(exc: Exception, timeout: float) -> Exception:
    """What a failed STARTTLS handshake says: a ConnectError, or ``exc`` itself."""
    if isinstance(exc, TimeoutError):
        return ConnectError(f"TLS handshake timed out after {timeout:g} s")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConnectError(describe_verify_error(exc), verify_failed=True)
    if isinstance(exc, ssl.SSLError | ConnectionError):
        return ConnectError(f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}")
    return exc


class ReplyTimeout(Exception):
    """No complete reply within the timeout."""


class SendTimeout(ConnectionError):
    """The server stopped reading: our data did not leave within the timeout."""


@dataclass
class RawEvent:
    """A transcript event before redaction: what went over the wire, when."""

    t: float
    direction: str  # "C", "S" or "*"
    data: bytes | str  # bytes on the wire (the start of them, for big sends); str for notes
    display: str | None = None  # what to show instead of data (e.g. masked AUTH)
    size: int = 0  # bytes on the wire, when more were sent than ``data`` keeps


@dataclass
class KeptBudget:
    """Bytes received that a run may keep in its transcript (shared by its sessions)."""

    limit: int
    used: int = 0

    def take(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise LimitExceeded(
                f"the server sent more than {self.limit // (1024 * 1024)} MiB in this run "
                "(the limit of what one run keeps)"
            )


@dataclass
class Session:
    """A single connection; ``open`` it, then ``send``/``read_reply``; ``close`` when done."""

    started: float = field(default_factory=time.monotonic)
    events: list[RawEvent] = field(default_factory=list)
    budget: KeptBudget = field(default_factory=lambda: KeptBudget(1 << 62))
    tls: TlsFacts | None = None
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None
    _parser: ReplyParser = field(default_factory=ReplyParser)
    _eof: bool = False
    injected: int = 0  # bytes the server sent after its STARTTLS reply, before TLS

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._eof

    def note(self, text: str) -> None:
        self.events.append(RawEvent(self.now(), "*", text))

    def now(self) -> float:
        return time.monotonic() - self.started

    async def open(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
        source_address: str | None = None,
        socket_path: str | None = None,
        preamble: bytes | None = None,
    ) -> None:
        """Connect to host and port, or to a UNIX socket when ``socket_path`` is given.

        ``preamble`` (a PROXY protocol header) is written right after connecting, before
        the TLS handshake of implicit TLS and before the banner is read.
        """
        local = (source_address, 0) if source_address else None
        sni = (server_name or host) if tls else None
        if socket_path:
            host, port = socket_path, 0  # how errors and notes name it
        # with a preamble, TLS starts only after it: the proxy header precedes everything
        first_tls, first_sni = (None, None) if preamble else (tls, sni)
        try:
            opening = (
                asyncio.open_unix_connection(
                    socket_path, ssl=first_tls, server_hostname=first_sni, limit=READ_CHUNK
                )
                if socket_path
                else asyncio.open_connection(
                    host,
                    port,
                    ssl=first_tls,
                    server_hostname=first_sni,
                    local_addr=local,
                    limit=READ_CHUNK,
                )
            )
            # _within, not wait_for: no task of its own per connection
            self._reader, self._writer = await _within(
                timeout, self._preamble(opening, preamble, tls, sni)
            )
        except Exception as exc:
            raise connect_error(exc, host, port, timeout) from None
        self._parser = ReplyParser()
        self._eof = False
        peer = self._writer.get_extra_info("peername")
        if socket_path:
            self.note(notes.connected(f"unix:{socket_path}"))
        else:
            self.note(notes.connected(hostport(*peer[:2]) if peer else hostport(host, port)))
        if preamble:
            self.events.append(RawEvent(self.now(), "C", preamble, describe(preamble)))
        if tls:
            self._record_tls(server_name or host, tls)

    @staticmethod
    async def _preamble(
        opening: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
        preamble: bytes | None,
        tls: ssl.SSLContext | None,
        sni: str | None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open, write the preamble (if any), then start TLS (if the preamble delayed it)."""
        reader, writer = await opening
        if not preamble:
            return reader, writer
        try:
            writer.write(preamble)
            await writer.drain()
            if tls:
                await writer.start_tls(tls, server_hostname=sni)
        except BaseException:  # also a timeout's cancellation: the socket is ours to close
            writer.transport.abort()
            raise
        return reader, writer

    def _unread_bytes(self) -> int:
        """Bytes the parser holds: complete replies not pulled yet and an unfinished one."""
        count = 0
        with contextlib.suppress(RemoteProtocolError):
            while (reply := self._parser.next_reply()) is not None:
                count += len(reply.raw)
        return count + self._parser.buffered

    @property
    def held_bytes(self) -> int:
        """Received (and in the events) but not yet taken by a read: where the next reply
        starts, counted back from the end of what came."""
        return self._parser.held_bytes

    def unread_bytes(self) -> int:
        """Bytes the server sent that no read has taken yet (nothing is consumed)."""
        waiting = len(self._reader._buffer) if self._reader is not None else 0
        return waiting + self._parser.held_bytes

    def _record_tls(self, server_name: str, context: ssl.SSLContext) -> None:
        assert self._writer is not None
        ssl_object = self._writer.get_extra_info("ssl_object")
        verified = context.verify_mode != ssl.CERT_NONE
        self.tls = facts_from(ssl_object, server_name, verified)
        self.note(notes.tls_established(self.tls))

    async def starttls(self, context: ssl.SSLContext, server_name: str, timeout: float) -> None:
        """Upgrade after a 220 to STARTTLS. Bytes the server sent early are dropped, noted."""
        assert self._writer is not None and self._reader is not None
        leftover = self._unread_bytes() + len(self._reader._buffer)
        self.injected = leftover
        if leftover:
            self.note(notes.starttls_leftover(leftover))
            self._reader._buffer.clear()
        self._parser = ReplyParser()
        try:
            await asyncio.wait_for(
                self._writer.start_tls(context, server_hostname=server_name), timeout
            )
        except Exception as exc:
            raise handshake_error(exc, timeout) from None
        self._record_tls(server_name, context)

    async def send(
        self, data: bytes, display: str | None = None, timeout: float | None = None
    ) -> None:
        """Write bytes; ``display`` replaces them in the transcript (e.g. masked AUTH).

        A server that stops reading would block us forever once the socket buffers
        are full: after ``timeout`` seconds the connection is aborted (SendTimeout).
        """
        if self._writer is None:
            raise ConnectionError("not connected")
        kept = data if len(data) <= MAX_KEPT_PER_SEND else data[:MAX_KEPT_PER_SEND]
        self.events.append(RawEvent(self.now(), "C", kept, display, len(data)))
        self._writer.write(data)
        try:
            if self._drain_is_instant():
                await self._writer.drain()  # cannot wait, so no timer (a run's hot path)
            else:
                await _within(timeout, self._writer.drain())
        except TimeoutError:  # before OSError, of which it is a subclass
            self._eof = True
            self._writer.transport.abort()
            self.note(notes.NOT_READING)
            raise SendTimeout(notes.not_reading(timeout)) from None
        except (ConnectionError, OSError) as exc:
            self._eof = True
            raise ConnectionError(f"connection lost while sending: {exc}") from None

    def _drain_is_instant(self) -> bool:
        """Whether drain() returns without waiting: the transport open and not paused
        (StreamWriter.drain waits only for a closing transport or a paused protocol)."""
        assert self._writer is not None
        protocol = getattr(self._writer, "_protocol", None)
        paused = getattr(protocol, "_paused", True)  # unknown: assume it may wait
        return paused is False and not self._writer.transport.is_closing()

    async def read_reply(self, timeout: float) -> Reply | Closed:
        """One complete reply, or Closed; ReplyTimeout / RemoteProtocolError otherwise."""
        reply = self._parser.next_reply()  # pipelined replies may be here already: no timer needed
        if reply is not None:
            return reply
        try:
            # One deadline for the whole reply (a slowloris server cannot stretch it), and
            # no task per read as wait_for would create: this is the hot path of a run.
            return await _within(timeout, self._read_until_reply())
        except TimeoutError:
            raise ReplyTimeout(notes.no_reply(timeout)) from None

    async def _read_until_reply(self) -> Reply | Closed:
        assert self._reader is not None
        while True:
            reply = self._parser.next_reply()
            if reply is not None:
                return reply
            if self._eof:
                return Closed()
            try:
                data = await self._reader.read(READ_CHUNK)
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                return self._closed(reset=True)
            if not data:
                return self._closed(reset=False)
            self.budget.take(len(data))
            self.events.append(RawEvent(self.now(), "S", data))
            self._parser.feed(data)

    def _closed(self, *, reset: bool) -> Closed:
        partial = self._parser.unfinished
        self._eof = True
        self.note(notes.closed_by_server(reset))
        return Closed(partial=partial, reset=reset)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        self._eof = True
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(Exception):
            await _within(CLOSE_WAIT, writer.wait_closed())


async def _within(timeout: float | None, work: Coroutine[Any, Any, T]) -> T:
    """``async with asyncio.timeout(timeout): return await work``, at half its cost: one
    timer, no state machine; the same cancellation bookkeeping, so a cancel from outside
    (Ctrl-C) stays a CancelledError and only our own timer's becomes a TimeoutError."""
    if timeout is None:
        return await work
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("Timeout should be used inside a task")
    loop = asyncio.get_running_loop()
    cancelling = task.cancelling()
    expired: list[bool] = []
    when = loop.time() + timeout
    if when <= loop.time():
        handle: asyncio.Handle = loop.call_soon(_expire, task, expired)
    else:
        handle = loop.call_at(when, _expire, task, expired)
    try:
        result = await work
    except asyncio.CancelledError:
        if expired and task.uncancel() <= cancelling:
            raise TimeoutError from None  # our own timer's cancel, and no one else's
        raise
    except BaseException:
        if expired:
            task.uncancel()
        raise
    finally:
        handle.cancel()
    if expired:  # the timer fired as the work ended: its cancel is taken back all the same
        task.uncancel()
    return result


def _expire(task: asyncio.Task[Any], expired: list[bool]) -> None:
    expired.append(True)
    task.cancel()


__all__ = [
    "Closed",
    "ConnectError",
    "RemoteProtocolError",
    "ReplyTimeout",
    "SendTimeout",
    "Session",
]
