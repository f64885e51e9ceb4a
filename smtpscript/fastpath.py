"""Run a compiled plan (smtpscript.plan): load mode's lean hot path.

One session is one asyncio.Protocol whose received bytes go straight into the
ReplyParser, commands that were encoded once when the plan was compiled, one timer
for the whole session (a read only moves its deadline), and a record of what happened
made of tuples. A run of command and data steps (and a greeting) goes on in the
transport's callbacks: the reply is judged and the next command written in the
callback that brought it, so the session's task wakes only to connect, to upgrade to
TLS, and to close. Nothing else is built while the session runs: a ``SessionOutcome``
carries the verdict, the reason, and each step's times, and only a session that load
mode keeps as evidence becomes a full ScenarioResult (``result_of``), built by the
general runner's own recording code from that record, so that it reads exactly like
a result of the general runner.

Verdicts, reasons and limits are the general runner's: the same expectation checks
(smtpscript.expectations), the same parser limits, the same per-run byte budget, the
same timeouts, the closing QUIT, and any exception nobody foresaw becomes the
session's error verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from smtpscript import expectations, notes, protocol, transcript
from smtpscript.actions import message
from smtpscript.errors import LimitExceeded, RemoteProtocolError
from smtpscript.expectations import StepError, check_tls, got
from smtpscript.failures import classify
from smtpscript.model import hostport
from smtpscript.plan import Plan, PlanStep
from smtpscript.protocol import Reply, ReplyParser
from smtpscript.regexes import MatchTimeout
from smtpscript.results import TlsFacts
from smtpscript.runner import MAX_SHOWN_SENT, ScenarioRun, reply_record
from smtpscript.session import (
    CLOSE_WAIT,
    MAX_KEPT_PER_SEND,
    Closed,
    ConnectError,
    KeptBudget,
    RawEvent,
    SendTimeout,
    connect_error,
    handshake_error,
)
from smtpscript.tlsinfo import facts_from

# an event: (seconds since the session started, "C" | "S" | "*", bytes or a note, display)
Event = tuple[float, str, Any, Any]
PAYLOAD = object()  # an event's display: a data step's message, shown as the runner shows it
MAX_HELD = 128 * 1024  # bytes received, not read yet, before reading pauses (as streams do)


class StepRecord:
    """One executed step: which, when, how it ended, and the replies it read.

    A plain class with slots, not a dataclass: seven of these are made in every session.
    """

    __slots__ = (
        "ended",
        "event",
        "message",
        "plan_step",
        "replies",
        "sent",
        "started",
        "tls",
        "verdict",
    )

    def __init__(self, plan_step: PlanStep, event: int, started: float) -> None:
        self.plan_step = plan_step
        self.event = event  # the index of the first event in its time
        self.started = started
        self.ended = 0.0
        self.verdict = "passed"
        self.message: str | None = None
        # (reply or Closed, ms waited, events before the read, bytes held then)
        self.replies: list[tuple[Any, float, int, int]] = []
        self.sent: list[Any] = []  # lines sent (payloads: PAYLOAD)
        self.tls: TlsFacts | None = None  # the TLS this step set up

    @property
    def duration_ms(self) -> float:
        return round(self.elapsed_ms, 3)

    @property
    def elapsed_ms(self) -> float:
        return (self.ended - self.started) * 1000


@dataclass
class SessionOutcome:
    verdict: str
    reason: str | None
    started_wall: float
    started: float
    duration_ms: float
    steps: list[StepRecord]
    events: list[Event]
    steps_end: int  # events before the closing QUIT
    violations: list[str]
    internal_error: bool = False


class _Wire(asyncio.Protocol):
    """The receiving half: bytes wait here until a read takes them (as a StreamReader
    holds them for the general runner), so the record is made in the same order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received: list[bytes] = []
        self.size = 0  # bytes in ``received``
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False  # connection_lost came
        self.reset = False  # ... with an error (a reset), not after a FIN
        self.paused = False  # reading paused until a read takes what came
        self.writable: asyncio.Future[None] | None = None  # set while writing is paused
        self.on_news: Callable[[], None] | None = None  # the session's chain, while it runs

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        self.size += len(data)
        if self.size > MAX_HELD and self.transport is not None:
            self.transport.pause_reading()  # bounded memory while nobody reads
            self.paused = True
        if self.on_news is not None:  # (_wake, inline: once a reply)
            self.on_news()
        else:
            self._wake()

    def take(self) -> bytes:
        if not self.received:
            return b""
        data = b"".join(self.received) if len(self.received) > 1 else self.received[0]
        self.received.clear()
        self.size = 0
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()
        return data

    def eof_received(self) -> bool:
        return False  # close our side too: the server is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reset = exc is not None
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self._wake()

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None
        if self.on_news is not None:
            self.on_news()

    def _wake(self) -> None:
        if self.on_news is not None:
            self.on_news()
            return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(_ReplyTimeout())


class _ReplyTimeout(Exception):
    pass


# what a step's exchange may raise that makes the step's verdict error (the rest end the
# session: the runner's own split)
STEP_ERRORS = (StepError, RemoteProtocolError, MatchTimeout, ConnectionError)
# where a chain of plain exchanges is (_Session._chain)
_START, _DRAIN, _READ, _DONE = range(4)


class _Session:
    """One run of a plan."""

    def __init__(self, plan: Plan, budget_bytes: int) -> None:
        self.plan = plan
        self.loop = asyncio.get_running_loop()
        self.t0 = time.monotonic()
        self.events: list[Event] = []
        self.budget = KeptBudget(budget_bytes)
        self.wire: _Wire | None = None
        self.parser = ReplyParser()
        self.violations: list[str] = []
        self.steps: list[StepRecord] = []
        self.last_command = b""
        self.eof_seen = False  # a read found the connection closed: nothing more to send
        self.tls: TlsFacts | None = None  # the connection's TLS, once established
        self.deadline: float | None = None  # loop time by which the awaited news must come
        self.timer: asyncio.TimerHandle | None = None  # the session's one timer (_wait)
        self.timer_at = 0.0  # when it fires
        self.waiting: _Wire | None = None  # the wire _wait waits on
        self.connecting: asyncio.Task[Any] | None = None  # the task _connect is in
        self.connect_expired = False  # ... and the timer cancelled it
        # a chain of plain exchanges run in callbacks (_chain): where it is
        self.chain: asyncio.Future[int] | None = None  # its end: the next step's index
        self.chain_index = 0  # the step it is at
        self.phase = _START
        self.record: StepRecord | None = None  # that step's record
        self.sending: tuple[bytes, Any] = (b"", None)  # what it wrote last, and as what
        self.payload = b""  # a data step's message, made when the step starts
        self.read_mark = (0, 0)  # events and bytes held when the read began, and when
        self.read_t0 = 0.0
        self.advancing = False

    # --- the conversation ------------------------------------------------------------

    async def run(self) -> SessionOutcome:
        wall = time.time()
        verdict, reason, internal = "passed", None, False
        try:
            steps = self.plan.steps
            index = 0
            while index < len(steps):
                plan_step = steps[index]
                if plan_step.chained:
                    index = await self._chain(index)
                    continue
                record = StepRecord(plan_step, len(self.events), time.monotonic())
                self.steps.append(record)
                if plan_step.is_connect:
                    if await self._connect_step(plan_step, record):
                        index = await self._chain(index, record)  # its reply, and on
                        continue
                else:
                    await self._starttls_step(plan_step, record)
                record.ended = time.monotonic()
                if record.verdict != "passed" and not plan_step.step.continue_on_fail:
                    break
                index += 1
        except asyncio.CancelledError:  # Ctrl-C: this session ends as the runner's would
            self._abandon("interrupted")
            self.eof_seen = True  # no QUIT: a second Ctrl-C should not wait for it
        except LimitExceeded as exc:
            self._abandon(str(exc))
        except Exception as exc:  # a session never sinks the run
            failure = classify(exc)
            internal = failure.internal
            self._abandon(failure.message)
        finally:
            steps_end = len(self.events)
            with contextlib.suppress(Exception):  # the verdict is made; so is the record
                await self._quit_and_close()
            if self.timer is not None:
                self.timer.cancel()
        for record in self.steps:
            if record.verdict in ("failed", "error"):
                verdict = record.verdict
                reason = record.plan_step.reason(record.message or "")
                break
        tracker = self.plan.tracker
        if reason and tracker:
            reason = tracker.redact(reason)
        duration = round((time.monotonic() - self.t0) * 1000, 3)
        return SessionOutcome(
            verdict,
            reason,
            wall,
            self.t0,
            duration,
            self.steps,
            self.events,
            steps_end,
            self.violations,
            internal,
        )

    def _abandon(self, message: str) -> None:
        record = self.steps[-1] if self.steps else None
        if record is not None and not record.ended:
            record.verdict, record.message, record.ended = "error", message, time.monotonic()

    async def _connect_step(self, plan_step: PlanStep, record: StepRecord) -> bool:
        """Connect; True when connected (the chain then reads the greeting)."""
        try:
            await self._connect(plan_step, record)
            return True
        except (ConnectError, *STEP_ERRORS) as exc:
            _step_failed(record, exc)
        return False

    async def _starttls_step(self, plan_step: PlanStep, record: StepRecord) -> None:
        try:
            await self._starttls(plan_step, record)
        except _ReplyTimeout:
            record.verdict = "error"
            record.message = notes.no_reply(plan_step.timeout)
        except (ConnectError, *STEP_ERRORS) as exc:
            _step_failed(record, exc)

    # --- plain exchanges, in the transport's callbacks ------------------------------------
    # Command and data steps one after another run as a chain: a reply that comes is
    # judged and the next command written in the callback that brought it, without waking
    # the session's task (one wake-up per chain instead of one per reply). The chain does
    # what _command, _read and _drain do, in the same order, through the same helpers.

    async def _chain(self, index: int, connected: StepRecord | None = None) -> int:
        """Run the plain exchanges from step ``index`` on; the index of the step to run
        next (the number of steps when one failed and the scenario stops there).

        ``connected``: step ``index`` is a connect step that has just connected (its
        record): the chain begins with reading its greeting.
        """
        self.chain = chain = self.loop.create_future()
        self.chain_index, self.phase = index, _START
        if connected is not None:
            self.record, self.sending = connected, (b"", None)
            self._begin_read()
        wire = self.wire
        if wire is not None:
            wire.on_news = self._advance
        try:
            self._advance()
            return await chain
        finally:
            self.chain = None
            self.deadline = None
            if wire is not None:
                wire.on_news = None

    def _advance(self) -> None:
        """Go on as far as what has come allows; an exception that is not a step's own
        ends the chain (the session's task raises it, as a coroutine step would)."""
        chain = self.chain
        if chain is None or chain.done() or self.advancing:
            return  # (advancing: news while moving is seen by the move in progress)
        self.advancing = True
        try:
            while True:
                try:
                    while self._move():
                        pass
                    return
                except STEP_ERRORS as exc:
                    self._step_error(str(exc))
        except Exception as exc:
            chain.set_exception(exc)
        finally:
            self.advancing = False

    def _move(self) -> bool:
        """One move of the chain: False when it waits for news, or has ended."""
        phase = self.phase
        record = self.record
        if phase == _READ:
            assert record is not None
            reply = self._poll()
            if reply is None:
                if self.deadline is None:
                    self._arm(self.loop.time() + record.plan_step.timeout)
                return False
            self.deadline = None
            if type(reply) is Reply and not reply.bare_lf:  # (_got, inline: most replies)
                waited = (time.monotonic() - self.read_t0) * 1000
                record.replies.append((reply, waited, *self.read_mark))
            else:
                self._got(record, reply)
            return self._replied(record, reply)
        if phase == _START:
            return self._start_step()
        if phase == _DRAIN:
            writable = self.wire.writable if self.wire is not None else None
            if writable is not None and not writable.done():
                return False
            self.deadline = None
            self._sent()
            return True
        assert record is not None  # _DONE
        record.ended = time.monotonic()
        assert self.chain is not None
        if record.verdict != "passed" and not record.plan_step.step.continue_on_fail:
            self.chain.set_result(len(self.plan.steps))
            return False
        self.chain_index += 1
        self.phase = _START
        return self._start_step()

    def _start_step(self) -> bool:
        steps, index = self.plan.steps, self.chain_index
        assert self.chain is not None
        if index >= len(steps) or not steps[index].chained:
            self.chain.set_result(index)
            return False
        plan_step = steps[index]
        self.record = record = StepRecord(plan_step, len(self.events), time.monotonic())
        self.steps.append(record)
        self.phase = _DONE  # where a step error leaves it
        self.sending = (b"", None)  # nothing written for this step yet
        if plan_step.message is not None:
            self.payload = self.plan.payload(plan_step)  # first: a failure leaves no read
        gone = self._gone(record)
        if gone is not None:  # judged as the step's reply (a data step's too, as the runner)
            self._judge(record, gone)
            return True
        self._check_early(plan_step)
        return self._write_chained(plan_step.command, None)

    def _write_chained(self, data: bytes, display: Any) -> bool:
        """Write; True when there is more to do at once (False: the reply is awaited)."""
        self.sending = (data, display)
        if self._write(data, display):  # the buffer is full: wait until it drains
            assert self.record is not None
            timeout = self._drain_timeout(data, self.record.plan_step)
            self._arm(self.loop.time() + timeout)
            self.phase = _DRAIN
            return True
        self._sent()
        wire = self.wire
        assert wire is not None
        # most often nothing has come since the command went: no use looking for a reply
        return wire.closed or wire.size > 0 or self.read_mark[1] > 0

    def _sent(self) -> None:
        """What was written has left: note it, and read the reply."""
        record = self.record
        assert record is not None
        data, display = self.sending
        if display is PAYLOAD:
            record.sent.append(PAYLOAD)
        else:
            record.sent.append(record.plan_step.line)
            self.last_command = data
        self._begin_read()

    def _begin_read(self) -> None:
        self.read_mark = (len(self.events), self.parser.held_bytes)
        self.read_t0 = time.monotonic()
        self.phase = _READ
        assert self.record is not None
        self._arm(self.loop.time() + self.record.plan_step.timeout)  # one deadline, as _read

    def _replied(self, record: StepRecord, reply: Any) -> bool:
        """A reply (or a close) for the step: judge it, or send a data step's message."""
        self.phase = _DONE
        plan_step = record.plan_step
        if plan_step.message is None or self.sending[1] is PAYLOAD:
            self._judge(record, reply)  # a command's reply, the message's, the greeting
            if plan_step.is_connect:
                self._check_tls(plan_step, record)
            return True
        if type(reply) is Reply and reply.code == 354:  # DATA's: go ahead
            return self._write_chained(self.payload, PAYLOAD)
        self._data_refused(record, reply)
        return True

    def _data_refused(self, record: StepRecord, reply: Any) -> None:
        """DATA got no 354: a failure, unless the step expects exactly that reply."""
        if record.plan_step.step.expect.codes is None:
            record.verdict, record.message = "failed", notes.data_refused(got(reply))
        else:
            self._judge(record, reply)  # e.g. expect: 554 for "no valid recipients"

    def _step_error(self, message: str) -> None:
        record = self.record
        assert record is not None
        record.verdict, record.message = "error", message
        self.deadline = None
        self.phase = _DONE

    def _chain_expired(self) -> None:
        """The chain's deadline passed: no reply, or the server stopped reading."""
        record = self.record
        assert record is not None
        if self.phase == _DRAIN:
            timeout = self._drain_timeout(self.sending[0], record.plan_step)
            self._drain_failed(timeout)
            self._step_error(notes.not_reading(timeout))
        else:
            self._step_error(notes.no_reply(record.plan_step.timeout))
        self._advance()

    def _judge(self, record: StepRecord, reply: Any) -> None:
        message = record.plan_step.check(reply)
        if message:
            record.verdict, record.message = "failed", message

    def _check_tls(self, plan_step: PlanStep, record: StepRecord) -> None:
        """The step's tls: expectation against this connection's TLS (after its reply)."""
        expect = plan_step.step.expect.tls
        if expect is None or record.verdict != "passed" or self.wire is None:
            return
        problem = check_tls(expect, self.tls, plan_step.days_left)
        if problem:
            record.verdict, record.message = "failed", problem

    async def _starttls(self, plan_step: PlanStep, record: StepRecord) -> None:
        """STARTTLS, and on a 220 the upgrade of the same connection (as the starttls
        action and Session.starttls do)."""
        reply = await self._command(plan_step, record, plan_step.command)
        self._judge(record, reply)
        if record.verdict != "passed" or not (isinstance(reply, Reply) and reply.code == 220):
            return
        wire = self.wire
        assert wire is not None and wire.transport is not None and plan_step.tls is not None
        leftover = wire.size + self.parser.held_bytes
        if leftover:
            self._note(notes.starttls_leftover(leftover))
            wire.take()
        self.parser = ReplyParser()
        timeout = plan_step.timeout
        try:
            async with asyncio.timeout(timeout):
                transport = await self.loop.start_tls(
                    wire.transport, wire, plan_step.tls, server_hostname=plan_step.server_name
                )
        except Exception as exc:
            error = handshake_error(exc, timeout)
            if not isinstance(error, ConnectError):
                raise
            wire.closed = True  # the handshake's failure closed the transport
            if not plan_step.refusal_expected or error.verify_failed:
                raise error from None
            self._note(notes.handshake_refused(error))
            self.eof_seen = True  # closed on purpose: no more reads, no QUIT
            self._check_tls(plan_step, record)
            return
        finally:
            if leftover:
                self.violations.append(f"{plan_step.step.path}: {notes.STARTTLS_INJECTION}")
        wire.transport = transport  # type: ignore[assignment]
        record.tls = self._tls_established(transport, plan_step)
        self._check_tls(plan_step, record)

    def _tls_established(self, transport: asyncio.BaseTransport, plan_step: PlanStep) -> TlsFacts:
        assert plan_step.tls is not None
        verified = plan_step.tls.verify_mode != ssl.CERT_NONE
        ssl_object = transport.get_extra_info("ssl_object")
        self.tls = facts_from(ssl_object, plan_step.server_name, verified)
        self._note(notes.tls_established(self.tls))
        return self.tls

    async def _command(self, plan_step: PlanStep, record: StepRecord, data: bytes) -> Any:
        """Send a command and read its reply; a connection already gone is its reply (the
        general runner's write fails then, and the step is judged as a close)."""
        gone = self._gone(record)
        if gone is not None:
            return gone
        self._check_early(plan_step)
        if self._write(data, None):
            await self._drain(data, plan_step)
        record.sent.append(plan_step.line)
        self.last_command = data
        return await self._read(plan_step, record)

    def _gone(self, record: StepRecord) -> Closed | None:
        """Closed (recorded as the step's reply) when the connection is already gone."""
        wire = self.wire
        if wire is None or self.eof_seen or wire.closed:
            closed = Closed()
            record.replies.append((closed, 0.0, len(self.events), 0))
            return closed
        return None

    def _check_early(self, plan_step: PlanStep) -> None:
        """Bytes that came before the command was sent: the server talks out of turn."""
        assert self.wire is not None
        early = self.wire.size + self.parser.held_bytes
        if early:
            self.violations.append(f"{plan_step.step.path}: {notes.desynchronised(early)}")

    async def _send(self, data: bytes, plan_step: PlanStep, display: Any) -> None:
        if self._write(data, display):
            await self._drain(data, plan_step)

    def _write(self, data: bytes, display: Any) -> bool:
        """Record and write; True when the buffer is full (the caller must drain)."""
        wire = self.wire
        assert wire is not None and wire.transport is not None
        self.events.append((time.monotonic() - self.t0, "C", data, display))
        if wire.closed:
            return False  # the read that follows finds the close, as the general runner's does
        wire.transport.write(data)
        return wire.writable is not None

    async def _drain(self, data: bytes, plan_step: PlanStep) -> None:
        """Wait until the server reads (one timeout, then the connection is aborted)."""
        wire = self.wire
        assert wire is not None and wire.transport is not None
        if wire.writable is not None:
            timeout = self._drain_timeout(data, plan_step)
            try:
                async with asyncio.timeout(timeout):
                    await wire.writable
            except TimeoutError:
                self._drain_failed(timeout)
                raise SendTimeout(notes.not_reading(timeout)) from None

    def _drain_timeout(self, data: bytes, plan_step: PlanStep) -> float:
        return self.plan.quit_timeout if data == b"QUIT\r\n" else plan_step.timeout

    def _drain_failed(self, timeout: float) -> None:
        """The server did not read what we wrote in time: the connection is aborted."""
        wire = self.wire
        assert wire is not None and wire.transport is not None
        wire.transport.abort()
        self.eof_seen = True
        self._note(notes.NOT_READING)

    async def _read(self, plan_step: PlanStep, record: StepRecord | None) -> Any:
        """The next reply, or Closed; one deadline for all of it (as the general runner)."""
        wire = self.wire
        assert wire is not None
        self.read_mark = (len(self.events), self.parser.held_bytes)
        self.read_t0 = time.monotonic()
        deadline = None
        try:
            while (reply := self._poll()) is None:
                if deadline is None:
                    deadline = self.loop.time() + plan_step.timeout
                await self._wait(wire, deadline)
        finally:
            self.deadline = None
        if record is not None:
            self._got(record, reply)
        return reply

    def _poll(self) -> Any:
        """The reply that has come (or Closed); None while it is not complete."""
        wire, parser = self.wire, self.parser
        assert wire is not None
        while True:
            if self.eof_seen:
                return Closed()
            reply = parser.next_reply()
            if reply is not None:
                return reply
            if not wire.size:
                return self._closed(wire) if wire.closed else None
            data = wire.take()
            self.budget.take(len(data))
            self.events.append((time.monotonic() - self.t0, "S", data, None))
            parser.feed(data)

    def _got(self, record: StepRecord, reply: Any) -> None:
        """Record the reply a read (begun at ``read_mark``, ``read_t0``) brought."""
        waited = (time.monotonic() - self.read_t0) * 1000
        record.replies.append((reply, waited, *self.read_mark))
        if type(reply) is Reply and reply.bare_lf:
            path = record.plan_step.step.path
            self.violations.append(f"{path}: {notes.bare_lf(reply.code)}")

    def _closed(self, wire: _Wire) -> Closed:
        self.eof_seen = True
        partial = self.parser.unfinished
        reset = wire.reset
        self._note(notes.closed_by_server(reset))
        return Closed(partial=partial, reset=reset)

    # --- the connection --------------------------------------------------------------

    async def _connect(self, plan_step: PlanStep, record: StepRecord) -> None:
        await self._close()
        host, port = plan_step.host, plan_step.port
        timeout = plan_step.connect_timeout
        tls = plan_step.tls
        sni = plan_step.server_name if tls else None
        # the session's one timer, not asyncio.timeout (~6 us a session): on expiry it
        # cancels this task, and the cancellation becomes the timeout as asyncio.timeout's
        # would, unless somebody else cancelled too (Ctrl-C)
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        self.connecting, self.connect_expired = task, False
        self._arm(self.loop.time() + timeout)
        try:
            transport, wire = await self.loop.create_connection(
                _Wire, host, port, ssl=tls, server_hostname=sni
            )
        except asyncio.CancelledError:
            if not self.connect_expired or task.uncancel() > cancelling:
                raise
            raise connect_error(TimeoutError(), host, port, timeout) from None
        except Exception as exc:
            raise connect_error(exc, host, port, timeout) from None
        finally:
            self.connecting = None
            self.deadline = None
        self.wire = wire
        self.parser = ReplyParser()
        self.last_command = b""
        self.eof_seen = False
        self.tls = None
        peer = transport.get_extra_info("peername")
        where = hostport(*peer[:2]) if peer else hostport(host, port)
        self._note(notes.connected(where))
        if tls is not None:
            record.tls = self._tls_established(transport, plan_step)

    async def _quit_and_close(self) -> None:
        wire = self.wire
        if wire is None:
            return
        if not self.eof_seen and self.last_command.upper() != b"QUIT\r\n":
            quit_step = replace(self.plan.steps[-1], timeout=self.plan.quit_timeout)
            # the verdict is made: a QUIT that fails changes nothing
            with contextlib.suppress(Exception):
                await self._send(b"QUIT\r\n", quit_step, None)
                self.last_command = b"QUIT\r\n"
                if not wire.closed:  # else the general runner's write fails: no read
                    await self._read(quit_step, None)
        await self._close()

    async def _close(self) -> None:
        """Close, and wait (boundedly, as the general runner) until the socket is closed:
        a TLS close_notify sent, nothing left for the end of the run to find open."""
        wire, self.wire = self.wire, None
        if wire is None or wire.transport is None:
            return
        wire.transport.close()
        if wire.closed:
            return
        try:
            await self._wait(wire, self.loop.time() + CLOSE_WAIT)
        except _ReplyTimeout:
            wire.transport.abort()  # a server that does not take our last bytes
        finally:
            self.deadline = None

    async def _wait(self, wire: _Wire, deadline: float) -> None:
        """Until the wire has news, or ``deadline`` (loop time) passes: _ReplyTimeout.

        One timer serves the whole session: a read only moves ``self.deadline``, and the
        timer, when it fires before that, sets itself again for it (sessions are short,
        timeouts long: a session's timer seldom fires at all).
        """
        self._arm(deadline)
        self.waiting = wire
        wire.waiter = self.loop.create_future()
        try:
            await wire.waiter
        finally:
            wire.waiter = None
            self.waiting = None

    def _arm(self, deadline: float) -> None:
        """Expire what waits at ``deadline`` (loop time): the session's one timer."""
        self.deadline = deadline
        if self.timer is None or self.timer_at > deadline:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(deadline, self._on_timer)
            self.timer_at = deadline

    def _on_timer(self) -> None:
        self.timer = None
        deadline = self.deadline
        if deadline is None:
            return  # nobody waits: nothing to expire
        if self.loop.time() < deadline:  # the deadline moved on since the timer was set
            self.timer = self.loop.call_at(deadline, self._on_timer)
            self.timer_at = deadline
        elif self.chain is not None:
            self._chain_expired()
        elif self.waiting is not None:
            self.waiting.expire()
        elif self.connecting is not None:
            self.connect_expired = True
            self.connecting.cancel()

    def _note(self, text: str) -> None:
        self.events.append((time.monotonic() - self.t0, "*", text, None))


def _step_failed(record: StepRecord, exc: Exception) -> None:
    """A step's own error is its verdict: failed when a certificate did not verify."""
    record.verdict = "failed" if getattr(exc, "verify_failed", False) else "error"
    record.message = str(exc)


def run_plan(plan: Plan, budget_bytes: int) -> Coroutine[Any, Any, SessionOutcome]:
    """One session of the plan, to await; never raises (but for cancellation outside a
    session). The session's own coroutine: one frame fewer to resume at each wake-up."""
    return _Session(plan, budget_bytes).run()


# --- a kept session, as the general runner would have recorded it ------------------------


def result_of(plan: Plan, options: Any, outcome: SessionOutcome) -> Any:
    """The ScenarioResult of a session, recorded by the general runner's own code."""
    run = ScenarioRun(plan.scenario, plan.target, replace(options, keep_transcript=None))
    run.tracker = plan.tracker
    events = []
    for t, direction, data, display in outcome.events:
        if direction != "C":
            events.append(RawEvent(t, direction, data))
            continue
        shown = message.display(data) if display is PAYLOAD else display
        kept = data[:MAX_KEPT_PER_SEND]
        events.append(RawEvent(t, direction, kept, shown, len(data)))
    run.events = events
    for number, step in enumerate(outcome.steps, start=1):
        plan_step = step.plan_step
        record = run.start_step(plan_step.step, None)
        run.marks[-1] = transcript.Mark(step.event, number)
        record.result.name = plan_step.label
        for sent in step.sent:
            line = message.display(_payload_of(outcome.events, step)) if sent is PAYLOAD else sent
            if sent is not PAYLOAD:
                run.sent_command(plan_step.step.path, sent)
            kept = expectations.shorten(run.tracker.redact(line), MAX_SHOWN_SENT)
            record.result.sent += kept.split("\n") if kept else [""]
        for reply, elapsed, before, held in step.replies:
            run.marks.append(transcript.reply_mark(events[:before], held, number))
            record.result.replies.append(reply_record(reply, round(elapsed, 3), run.tracker))
            if plan_step.step.kind == "ehlo" and isinstance(reply, Reply) and reply.code == 250:
                run.builtins["caps"] = protocol.parse_ehlo(reply)
        record.result.tls = step.tls
        if plan_step.step.kind == "starttls" and step.tls is not None:
            run.builtins["caps"] = {}  # RFC 3207: what was learnt before TLS is forgotten
        run.finish_step(record, step.verdict, step.message)  # type: ignore[arg-type]
        record.result.duration_ms = step.duration_ms
    run.marks.append(transcript.Mark(outcome.steps_end, None))
    run.violations += outcome.violations
    run.internal_error = outcome.internal_error
    started_at = dt.datetime.fromtimestamp(outcome.started_wall, dt.UTC)
    result = run.make_result(
        outcome.verdict,  # type: ignore[arg-type]
        outcome.reason,
        started_at.isoformat(timespec="seconds"),
        outcome.started,
    )
    result.duration_ms = outcome.duration_ms
    return result


def _payload_of(events: list[Event], step: StepRecord) -> bytes:
    """The message a data step sent (whole, not the transcript's start of it)."""
    for _, direction, data, display in events[step.event :]:
        if direction == "C" and display is PAYLOAD:
            return data  # type: ignore[no-any-return]
    return b""
