"""The StepContext the runner gives an action's coroutine: one step's narrow view of its run.

An action module can send, read, judge, (re)connect, upgrade to TLS, learn
capabilities and mark secrets through it, and nothing else: it never holds the
runner, so actions and the runner do not import each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smtpscript import expectations, notes
from smtpscript import model as m
from smtpscript.actions import default_expect
from smtpscript.expectations import StepError, StepFailed
from smtpscript.patterns import CodePattern
from smtpscript.session import ConnectError
from smtpscript.tlsinfo import make_context

if TYPE_CHECKING:
    from smtpscript.runner import ScenarioRun, _Record


class RunStepContext:
    """Implements actions.base.StepContext for one step of one ScenarioRun."""

    def __init__(self, run: ScenarioRun, step: m.Step, record: _Record):
        self._run = run
        self.step = step
        self._record = record

    @property
    def base_endpoint(self) -> m.Endpoint:
        return self._run.base_endpoint

    def render(self, source: str) -> str:
        return self._run.render(source)

    def label(self, text: str) -> None:
        self._run.label(self._record, text)

    async def send_line(self, line: str, display: str | None = None) -> None:
        await self._run.send_line(self._record, line, display)

    async def send(self, data: bytes, display: str) -> None:
        await self._run.send(self._record, data, display)

    async def read(self) -> Any:
        return await self._run.read(self.step, self._record)

    def judge(self, reply: Any, default: CodePattern | None = None) -> None:
        self._run.judge(self.step, reply, default, self._record)

    def fail(self, message: str) -> None:
        raise StepFailed(message)

    def got(self, reply: Any) -> str:
        return expectations.got(reply)

    def expects_codes(self) -> bool:
        return self.step.expect.codes is not None

    async def open(self, endpoint: m.Endpoint) -> None:
        await self._run.open(endpoint, self.step)
        assert self._run.session is not None
        self._record.result.tls = self._run.session.tls

    async def starttls(self, options: m.TlsOptions) -> None:
        session = self._run.session
        assert session is not None
        server_name = options.server_name or self.render(self.base_endpoint.host or "")
        refusal_expected = self.step.expect.tls and self.step.expect.tls.established is False
        try:
            await session.starttls(make_context(options), server_name, self._run.timeout(self.step))
        except ConnectError as exc:
            if not refusal_expected or exc.verify_failed:
                raise
            # what the step asked for: the server would not speak this TLS; nothing more can
            # be said on this connection
            session.note(notes.handshake_refused(exc))
            await session.close()
            return
        finally:
            if session.injected:
                self.violation(notes.STARTTLS_INJECTION)
        self._record.result.tls = session.tls
        self.set_caps({})  # RFC 3207: forget what was learnt before TLS

    def check_tls(self) -> None:
        session = self._run.session
        expect = self.step.expect.tls
        if expect and session is not None:
            days = expect.days_left
            if isinstance(days, str):  # a template: rendered now, a whole number expected
                text = self.render(days).strip()
                if not (text.isascii() and text.isdigit()):
                    raise StepError(f"tls.days_left: {text!r} is not a whole number of days")
                days = int(text)
            problem = expectations.check_tls(expect, session.tls, days)
            if problem:
                raise StepFailed(problem)

    def lmtp_recipients(self) -> list[str] | None:
        """Recipients accepted in this transaction when the session greeted with LHLO."""
        envelope = self._run.envelope
        return list(envelope.recipients) if envelope.lmtp else None

    def check_recipient(self, reply: Any, index: int, recipient: str) -> str | None:
        """An LMTP reply for one recipient judged: by expect_each, else by expect."""
        each = self.step.expect.each
        default = default_expect(self.step.kind)
        if each is not None:
            if index >= len(each):
                return f"recipient {index + 1} <{recipient}>: no expect_each entry for it"
            default = each[index]
        expect = self.step.expect if each is None else m.Expectation(codes=default)
        message = expectations.check(expect, default, reply)
        return f"recipient {index + 1} <{recipient}>: {message}" if message else None

    def transaction_done(self) -> None:
        self._run.envelope.transaction_done()

    @property
    def caps(self) -> dict[str, str]:
        caps: dict[str, str] = self._run.builtins["caps"]
        return caps

    def set_caps(self, caps: dict[str, str]) -> None:
        self._run.builtins["caps"] = caps

    def secret(self, value: str) -> None:
        self._run.tracker.add(value)

    def secret_payload(self, payload: str) -> None:
        self._run.tracker.add_payload(payload)

    def replies_pending(self) -> None:
        self._run.expect_unread = True

    def violation(self, text: str) -> None:
        self._run.violations.append(f"{self.step.path}: {text}")
