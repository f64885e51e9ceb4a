"""Run scenarios against targets: one scenario on one target, or many at once.

A ScenarioRun walks the model's steps over one Session, rendering templates
just before use, judging each reply (expectations.py) and recording a
StepResult per executed step. Results are redacted as a last pass, so nothing
that the SecretTracker learnt about during the run can leak into any output.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import threading
import time
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

from smtpscript import (
    __version__,
    expectations,
    extensions,
    notes,
    protocol,
    proxyheader,
    transcript,
)
from smtpscript import model as m
from smtpscript.actions import ACTIONS, default_expect
from smtpscript.actions.base import ScenarioSkipped, overlay
from smtpscript.envelope import Envelope
from smtpscript.errors import LimitExceeded, LocalProtocolError, RemoteProtocolError
from smtpscript.expectations import ConnectionGone, StepError, StepFailed
from smtpscript.failures import classify
from smtpscript.loops import loop_factory
from smtpscript.memo import by_identity
from smtpscript.patterns import CodePattern
from smtpscript.protocol import Reply
from smtpscript.redaction import EnvView, SecretTracker
from smtpscript.regexes import MatchTimeout
from smtpscript.results import (
    ReplyRecord,
    RunResult,
    ScenarioResult,
    StepResult,
    TargetInfo,
    Verdict,
)
from smtpscript.session import (
    Closed,
    ConnectError,
    KeptBudget,
    ReplyTimeout,
    SendTimeout,
    Session,
)
from smtpscript.stepcontext import RunStepContext
from smtpscript.templating import TemplateError, evaluate, render
from smtpscript.tlsinfo import make_context

MAX_REPEAT = 100_000
if TYPE_CHECKING:
    import ssl

QUIT_TIMEOUT = 2.0
# What one run may keep, so that nested repeats or a server sending 1 MiB replies
# without end cannot take gigabytes: step results, and bytes received (transcript).
MAX_STEPS_PER_RUN = 50_000
MAX_RECEIVED_PER_RUN = 16 * 1024 * 1024
MAX_SHOWN_SENT = 4096  # characters of one sent command or payload kept for display
MAX_SHOWN_LABEL = 80  # characters of a step's label (its command, when it has no name)


@dataclass
class RunOptions:
    """Everything a run needs besides scenarios and targets."""

    overrides: dict[str, Any] = field(default_factory=dict)  # --var, highest precedence
    # variables, lowest first: below a target's vars (library vars, vars files, the
    # environment's), and between them and --var (--vars-file)
    library_layers: tuple[m.VarLayer, ...] = ()
    override_layers: tuple[m.VarLayer, ...] = ()
    environ: Mapping[str, str] | None = None  # default: os.environ
    public_env: tuple[str, ...] = ()
    concurrency: int = 4
    # runs at once against one target where the target does not say (None: only -j)
    max_connections: int | None = None
    default_timeout: float | None = None  # per reply, where scenario and target say nothing
    exitfirst: bool = False  # -x: start no new run after the first failure or error
    loop: str | None = None  # --loop auto|asyncio|uvloop (None: $SMTPSCRIPT_LOOP, else auto)
    # a run ending with this verdict will be kept whole? (None: always; load mode asks)
    keep_transcript: Callable[[str], bool] | None = None


class Dial(NamedTuple):
    """ScenarioRun.dial: what a connect step connects to."""

    host: str
    port: int
    tls: ssl.SSLContext | None  # implicit TLS
    timeout: float  # for the TCP connect and the TLS handshake


@dataclass
class _Record:
    """A StepResult under construction."""

    result: StepResult
    started: float
    file: str  # where the step is written (a fragment's file for included steps)


class _SetupError(Exception):
    """The scenario could not start (a var or its when: did not render); positioned."""


class ScenarioRun:
    def __init__(self, scenario: m.Scenario, target: m.Target, options: RunOptions):
        self.scenario = scenario
        self.target = target
        self.options = options
        self.tracker = SecretTracker()
        self.session: Session | None = None
        self.clock = time.monotonic()  # transcript times are relative to this
        self.events: list[Any] = []
        self.marks: list[transcript.Mark] = []  # which step the events belong to
        self.violations: list[str] = []
        self.warnings: list[str] = []
        self.steps: list[StepResult] = []
        self.records: list[_Record] = []  # one per StepResult, with where the step is written
        self.pending: list[_Record] = []  # started, not finished: closed out if a run dies
        self.internal_error = False  # an exception nobody foresaw (a bug in smtpscript)
        self.expect_unread = False  # after raw bytes sent unread, early replies are expected
        self.budget = KeptBudget(MAX_RECEIVED_PER_RUN)
        self.envelope = Envelope()  # which recipients were accepted (LMTP replies per recipient)
        self.base_endpoint = _base_endpoint(scenario, target, options.default_timeout)
        env = EnvView(self.tracker, (*options.public_env, *scenario.public_env), options.environ)
        # names templates see: included fragments' `with` layers go in front of these two
        self.variables: dict[str, Any] = {}  # vars and captures
        self.builtins: dict[str, Any] = {
            "caps": {},
            "env": env,
            "reply": None,
            "target": self._target_info(),
            # domain targets (-t mx:DOMAIN): MTA-STS and DANE facts (smtpscript.domains)
            "mta_sts": target.facts.get("mta_sts"),
            "dane": target.facts.get("dane"),
        }
        self.scope: ChainMap[str, Any] = ChainMap(self.variables, self.builtins)
        # names the command line sets (--var, --vars-file): an include's with: cannot hide them
        self.pinned = set(options.overrides).union(*(lay.values for lay in options.override_layers))

    # --- the scenario --------------------------------------------------------------

    async def run(self) -> ScenarioResult:
        started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        t0 = time.monotonic()
        verdict, reason = await self._run_guarded()
        try:
            return self.make_result(verdict, reason, started_at, t0)
        except Exception as exc:  # even recording must not sink the other runs
            failure = classify(exc)
            self.internal_error |= failure.internal
            self.steps, self.events = [], []
            reason = f"{self.scenario.file}: recording the result failed: {failure.message}"
            return self.make_result("error", reason, started_at, t0)

    def make_result(
        self, verdict: Verdict, reason: str | None, started_at: str, t0: float
    ) -> ScenarioResult:
        """The run's ScenarioResult from what was recorded (also how fastpath.result_of
        records a compiled session: start_step, sent_command, finish_step, make_result)."""
        result = ScenarioResult(
            scenario_id=self.scenario.file,
            file=self.scenario.file,
            line=self.scenario.pos.line,
            title=self.scenario.title,
            description=self.scenario.description,
            severity=self.scenario.severity,
            tags=list(self.scenario.tags),
            references=list(self.scenario.references),
            remediation=self.scenario.remediation,
            finding=self.scenario.finding,
            target=self._target_result(),
            verdict=verdict,
            reason=reason,
            started_at=started_at,
            duration_ms=round((time.monotonic() - t0) * 1000, 3),
            steps=self.steps,
            transcript=self._transcript(verdict),
            protocol_violations=self.violations,
            warnings=self.warnings,
            internal_error=self.internal_error,
        )
        return _redacted(result, self.tracker)

    def _transcript(self, verdict: Verdict) -> list[Any]:
        """The conversation as display lines, unless nobody will look at it (load mode keeps
        a sample of whole sessions: the others need not pay for escaping every line)."""
        wanted = self.options.keep_transcript
        if wanted is not None and not wanted(verdict):
            return []
        return transcript.build(self.events, self.tracker, self.marks)

    async def _run_guarded(self) -> tuple[Verdict, str | None]:
        """Run the scenario; whatever goes wrong becomes this run's verdict, never an exception."""
        quit_first = True
        try:
            self.init_vars()
            if self.scenario.when is not None and not self._when(self.scenario.when):
                why = f"when: {self.scenario.when} is false"
                if self.scenario.skip_reason:
                    why = f"{self.scenario.skip_reason} ({why})"
                return "skipped", why
            if not self.base_endpoint.host:
                return "error", "no target host: pass --target HOST[:PORT] or 'sandbox'"
            await self._run_steps(self.scenario.steps)
        except _SetupError as exc:
            return "error", str(exc)
        except ScenarioSkipped as exc:  # a skip step: nothing to judge on this server
            for record in list(self.pending):
                self.finish_step(record, "skipped", str(exc))
            return "skipped", str(exc)
        except asyncio.CancelledError:  # Ctrl-C or SIGTERM: keep what this run did so far
            quit_first = False
            return self._abandon("interrupted")
        except LimitExceeded as exc:
            return self._abandon(str(exc))
        except Exception as exc:  # a run must never sink the others
            failure = classify(exc)
            self.internal_error |= failure.internal
            return self._abandon(failure.message)
        finally:
            self.marks.append(transcript.Mark(len(self.events), None))  # the steps are over
            with contextlib.suppress(Exception):
                await self._quit_and_close(quit_first)
        return self._verdict()

    def _abandon(self, message: str) -> tuple[Verdict, str | None]:
        """The run stops here: steps in progress end as errors with ``message``."""
        stopped = list(self.pending)
        for record in stopped:
            self.finish_step(record, "error", message)
        if stopped:
            return "error", self._reason(stopped[0])
        return "error", f"{self.scenario.file}: {message}"

    def _verdict(self) -> tuple[Verdict, str | None]:
        for record in self.records:
            if record.result.verdict in ("failed", "error"):
                return record.result.verdict, self._reason(record)
        return "passed", None

    @staticmethod
    def _reason(record: _Record) -> str:
        step = record.result
        name = step.name or step.kind
        return f"{record.file}:{step.line}: {step.path} ({name}): {step.message}"

    def init_vars(self) -> None:
        """Vars layered lowest first: scenario < library vars < vars files < environment
        < target < --vars-file < --var (RunOptions holds the layers in that order).

        Only the winning value of each name is rendered (a --var may stand in for a var
        that reads an unset env variable), in the order names first appear; a var named
        in ``secrets`` is secret from the moment it has a value, before later vars render.
        """
        secrets = set(self.scenario.secrets)
        for name, (layer, value) in self.var_winners().items():
            try:
                rendered = self.render(value) if isinstance(value, str) else value
            except Exception as exc:
                where = self._var_origin(name, layer)
                raise _SetupError(f"{where}: {self._explain(exc)}") from None
            self.variables[name] = rendered
            if name in secrets:
                self.tracker.add(rendered)

    def var_winners(self) -> dict[str, tuple[m.VarLayer, Any]]:
        """Each var's winning layer and value, in the order names first appear (the
        layers lowest first, as init_vars says)."""
        layers = [
            m.VarLayer("", self.scenario.vars),
            *self.options.library_layers,
            m.VarLayer(f"target {self.target.name} vars", self.target.vars),
            *self.options.override_layers,
            m.VarLayer("--var", self.options.overrides),
        ]
        winners: dict[str, tuple[m.VarLayer, Any]] = {}
        for layer in layers:
            for name, value in layer.values.items():
                winners[name] = (layer, value)
        return winners

    def _var_origin(self, name: str, layer: m.VarLayer) -> str:
        if not layer.label:  # the scenario's own
            return f"{self._mark('vars.' + name)}: vars.{name}"
        return f"{layer.label} {name}"

    def _mark(self, path: str) -> str:
        pos = self.scenario.marks.get(path, self.scenario.pos)
        return f"{pos.file}:{pos.line}"

    def _when(self, expression: str) -> bool:
        try:
            return bool(self._evaluate(expression))
        except Exception as exc:
            raise _SetupError(f"{self._mark('when')}: when: {self._explain(exc)}") from None

    def _explain(self, exc: Exception) -> str:
        """A template's own error as it is; anything else classified (and bugs flagged)."""
        if isinstance(exc, TemplateError):
            return str(exc)
        failure = classify(exc)
        self.internal_error |= failure.internal
        return failure.message

    # --- steps -----------------------------------------------------------------------

    async def _run_steps(self, steps: Iterable[m.Step]) -> bool:
        """Run steps in order; False when a failed step ends the scenario."""
        for step in steps:
            if not await self._run_step(step):
                return False
        return True

    async def _run_step(self, step: m.Step) -> bool:
        try:
            if step.when is not None and not self._evaluate(step.when):
                self._skip(step, f"when: {step.when} is false")
                return True
            count = self._repeat_count(step)
        except Exception as exc:
            key = "when" if step.when else "repeat"
            return self._fail_before(step, f"{key}: {self._explain(exc)}")
        for index in range(1, count + 1):
            # A step without repeat inside a repeated include keeps the include's index.
            if step.repeat is not None or "index" not in self.scope:
                self.scope.maps[0]["index"] = index
            ok = await self._run_once(step, index if step.repeat is not None else None)
            if not ok and not step.continue_on_fail:
                return False
        return True

    def _fail_before(self, step: m.Step, message: str) -> bool:
        """A step that could not even start (its when, repeat or with did not render)."""
        record = self.start_step(step, None)
        record.result.name = record.result.name or step.kind
        return self.finish_step(record, "error", message)

    def _repeat_count(self, step: m.Step) -> int:
        if step.repeat is None:
            return 1
        value = self.render(step.repeat) if isinstance(step.repeat, str) else step.repeat
        try:
            count = int(value)
        except (TypeError, ValueError):
            raise TemplateError(f"{value!r} is not a whole number") from None
        if not 1 <= count <= MAX_REPEAT:
            raise TemplateError(f"{count} is outside 1..{MAX_REPEAT}")
        return count

    async def _run_once(self, step: m.Step, repeat_index: int | None) -> bool:
        action = step.action
        if isinstance(action, m.Group):
            return await self._run_group(step, action)
        if isinstance(action, m.Pipeline):
            return await self._pipeline(step, action, repeat_index)
        spec = ACTIONS[step.kind]
        needs_connection = spec.needs_connection and self.session is None
        if needs_connection and not await self._implicit_connect(step):
            return False
        record = self.start_step(step, repeat_index)
        try:
            assert spec.run is not None  # groups were expanded above
            await spec.run(RunStepContext(self, step, record), action)
        except StepFailed as exc:
            return self.finish_step(record, "failed", str(exc))
        except SendTimeout as exc:  # alive but not reading: nothing to judge
            return self.finish_step(record, "error", str(exc))
        except (ConnectionGone, ConnectionError):
            # The server hung up before we could send: judged like a close instead of a reply
            # (whether the write or the read notices first is a race; the verdict must not be).
            closed = Closed()
            record.result.replies.append(reply_record(closed, 0.0, self.tracker))
            message = expectations.check(step.expect, default_expect(step.kind), closed)
            return self.finish_step(record, "failed" if message else "passed", message)
        except (
            StepError,
            ConnectError,
            ReplyTimeout,
            RemoteProtocolError,
            LocalProtocolError,
            TemplateError,
            MatchTimeout,
        ) as exc:
            verdict: Verdict = "failed" if getattr(exc, "verify_failed", False) else "error"
            return self.finish_step(record, verdict, str(exc))
        return self.finish_step(record, "passed", None)

    async def _run_group(self, step: m.Step, group: m.Group) -> bool:
        """An include: ``with`` over the scenario's names (but under --var and --vars-file,
        the highest layers), the fragment's own vars under everything, as defaults."""
        given = {k: v for k, v in group.with_vars.items() if k not in self.pinned}
        defaults: dict[str, Any] = {}
        self.scope.maps.insert(0, given)
        self.scope.maps.insert(len(self.scope.maps) - 1, defaults)  # just above the builtins
        try:
            try:
                for layer, values in ((given, given), (defaults, group.defaults)):
                    for name, value in values.items():
                        if layer is defaults and name in self.scope:
                            continue
                        layer[name] = self.render(value) if isinstance(value, str) else value
            except Exception as exc:
                return self._fail_before(step, f"with: {self._explain(exc)}")
            return await self._run_steps(group.steps)
        finally:
            self.scope.maps = [m for m in self.scope.maps if m is not given and m is not defaults]

    async def _implicit_connect(self, before: m.Step) -> bool:
        return await self._run_once(implicit_connect_step(before), None)

    # --- recording -----------------------------------------------------------------

    def start_step(self, step: m.Step, repeat_index: int | None) -> _Record:
        """A new step record, marked in the transcript (bounded: MAX_STEPS_PER_RUN)."""
        if len(self.steps) >= MAX_STEPS_PER_RUN:
            raise LimitExceeded(
                f"more than {MAX_STEPS_PER_RUN:,} steps in one run (the limit; nested "
                "repeats multiply)"
            )
        expected, included_from = _step_facts(step)
        result = StepResult(
            index=len(self.steps) + 1,
            path=step.path,
            kind=step.kind,
            name=self._name(step),
            line=step.pos.line,
            verdict="passed",
            expected=expected,
            repeat_index=repeat_index,
            file=step.pos.file,
            included_from=list(included_from),
        )
        record = _Record(result, time.monotonic(), step.pos.file)
        self.marks.append(transcript.Mark(len(self.events), result.index))
        self.steps.append(result)
        self.records.append(record)
        self.pending.append(record)
        return record

    def _name(self, step: m.Step) -> str:
        """The step's name, rendered; a name that cannot render is shown as written."""
        if not step.name:
            return ""
        try:
            return self.render(step.name)
        except TemplateError:
            return step.name

    def finish_step(self, record: _Record, verdict: Verdict, message: str | None) -> bool:
        """Close a step record with its verdict; True when it passed."""
        result = record.result
        result.verdict = verdict
        result.message = message
        result.duration_ms = round((time.monotonic() - record.started) * 1000, 3)
        pending = self.pending
        for n in range(len(pending) - 1, -1, -1):  # usually the last one
            if pending[n] is record:
                del pending[n]
                break
        return verdict == "passed"

    def _skip(self, step: m.Step, reason: str) -> None:
        record = self.start_step(step, None)
        record.result.name = record.result.name or step.kind
        self.finish_step(record, "skipped", reason)

    def label(self, record: _Record, text: str) -> None:
        if not record.result.name:
            record.result.name = self.shown_label(text)

    def shown_label(self, text: str) -> str:
        """A command as a step's label: redacted, then cut (a cut secret would no longer
        match as a whole)."""
        return expectations.shorten(self.tracker.redact(text), MAX_SHOWN_LABEL)

    # --- talking -------------------------------------------------------------------

    def timeout(self, step: m.Step) -> float:
        return step.timeout or self.timeout_default()

    def timeout_default(self) -> float:
        return self.base_endpoint.timeout or m.DEFAULT_TIMEOUT

    async def send_line(self, record: _Record, line: str, display: str | None = None) -> None:
        data = protocol.encode_command(line)
        await self.send(record, data, display if display is not None else line)
        self.sent_command(record.result.path, line)

    async def send(self, record: _Record, data: bytes, display: str) -> None:
        assert self.session is not None
        if not self.session.is_open:
            raise ConnectionGone("the connection is closed; cannot send")
        self._note_desync(record)
        shown = display if display != _raw_display(data) else None
        await self.session.send(data, shown, timeout=self.timeout_default())
        # redact before cutting: a cut secret would no longer match as a whole
        kept = expectations.shorten(self.tracker.redact(display), MAX_SHOWN_SENT)
        record.result.sent += kept.split("\n") if kept else [""]

    def _note_desync(self, record: _Record) -> None:
        """Bytes from the server before our command: a reply ahead of its command."""
        assert self.session is not None
        early = self.session.unread_bytes()
        if early and not self.expect_unread:
            self.violations.append(f"{record.result.path}: {notes.desynchronised(early)}")
        self.expect_unread = False

    def sent_command(self, path: str, line: str) -> None:
        """Follow the transaction, and check the command against the advertised extensions."""
        self.envelope.sent(line)
        caps = self.builtins["caps"]
        if not caps:
            return  # nothing advertised yet: nothing to check against
        violations, warnings = extensions.notes(line, caps)
        if violations:
            self.violations += [f"{path}: {note}" for note in violations]
        if warnings:
            self.warnings += [f"{path}: {note}" for note in warnings]

    async def read(self, step: m.Step, record: _Record) -> Reply | Closed:
        assert self.session is not None
        t0 = time.monotonic()
        if self.session.is_open:
            # the reply is this step's, even if its bytes came in an earlier step's read
            held = self.session.held_bytes
            self.marks.append(transcript.reply_mark(self.events, held, record.result.index))
            reply: Reply | Closed = await self.session.read_reply(self.timeout(step))
        else:
            reply = Closed()
        elapsed = round((time.monotonic() - t0) * 1000, 3)
        self.expect_unread = False
        record.result.replies.append(reply_record(reply, elapsed, self.tracker))
        self.envelope.replied(reply.code if isinstance(reply, Reply) else None)
        if isinstance(reply, Reply):
            if reply.bare_lf:
                self.violations.append(f"{step.path}: {notes.bare_lf(reply.code)}")
            self.builtins["reply"] = {
                "code": reply.code,
                "status": reply.status,
                "text": reply.text,
                "lines": list(reply.lines),
            }
        return reply

    def judge(
        self,
        step: m.Step,
        reply: Reply | Closed,
        default: CodePattern | None = None,
        record: _Record | None = None,
    ) -> None:
        message = expectations.check(step.expect, default or default_expect(step.kind), reply)
        if message:
            raise StepFailed(message)
        if step.capture and isinstance(reply, Reply):
            values, problem = expectations.capture(step.capture, reply.text)
            if problem:
                raise StepFailed(f"{problem}, got {expectations.got(reply)}")
            self.variables.update(values)  # captures outlive the include they were made in
            if record:
                record.result.captures.update(values)

    # --- connection ----------------------------------------------------------------

    async def open(self, endpoint: m.Endpoint, step: m.Step) -> None:
        await self._quit_and_close(quit_first=False)
        dial = self.dial(endpoint)
        self.session = Session(started=self.clock, budget=self.budget)
        self.session.events = self.events
        await self.session.open(
            dial.host,
            dial.port,
            timeout=dial.timeout,
            tls=dial.tls,
            server_name=endpoint.tls_options.server_name,
            source_address=endpoint.source_address,
            socket_path=endpoint.socket_path,
            preamble=proxyheader.preamble(endpoint.proxy),
        )
        self.builtins["caps"] = {}
        self.envelope = Envelope()

    def dial(self, endpoint: m.Endpoint) -> Dial:
        """Where and how a connect step connects: the host rendered, implicit TLS's
        context and port (the target's implicit_tls_port, unless the step names a port)."""
        host = self.render(endpoint.host or "")
        port = endpoint.port or m.DEFAULT_PORT
        tls = None
        if endpoint.tls == "implicit":
            tls = make_context(endpoint.tls_options)
            if self.target.implicit_tls_port and endpoint.port in (None, self.target.endpoint.port):
                port = self.target.implicit_tls_port
        timeout = endpoint.connect_timeout or endpoint.timeout or m.DEFAULT_TIMEOUT
        return Dial(host, port, tls, timeout)

    async def _quit_and_close(self, quit_first: bool = True) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        if quit_first and session.is_open and not self._quit_sent(session):
            with contextlib.suppress(Exception):
                # never wait longer for QUIT than the scenario allows for any reply
                wait = min(QUIT_TIMEOUT, self.timeout_default())
                await session.send(b"QUIT\r\n", timeout=wait)
                await session.read_reply(wait)
        await session.close()

    @staticmethod
    def _quit_sent(session: Session) -> bool:
        for event in reversed(session.events):
            if event.direction == "C":
                return isinstance(event.data, bytes) and event.data.upper() == b"QUIT\r\n"
        return False

    # --- templates -----------------------------------------------------------------

    def render(self, source: str) -> str:
        return render(source, self.scope)

    def _evaluate(self, expression: str) -> Any:
        return evaluate(expression, self.scope)

    def _target_info(self) -> dict[str, Any]:
        return {
            "name": self.target.name,
            "host": self.base_endpoint.host,
            "port": self.base_endpoint.port or m.DEFAULT_PORT,
            "domain": self.target.facts.get("domain"),  # mx:DOMAIN targets only, else None
            "mx": self.target.facts.get("mx"),
        }

    def _target_result(self) -> TargetInfo:
        info = self._target_info()
        facts = dict(self.target.facts) or None
        return TargetInfo(self.target.name, info["host"] or "", info["port"], facts)

    # --- pipeline --------------------------------------------------------------------

    async def _pipeline(self, step: m.Step, action: m.Pipeline, repeat_index: int | None) -> bool:
        if self.session is None and not await self._implicit_connect(step):
            return False
        records = [self.start_step(inner, repeat_index) for inner in action.steps]
        try:
            lines = [self.render(inner.action.line) for inner in action.steps]  # type: ignore[union-attr]
            data = b"".join(protocol.encode_command(line) for line in lines)
            assert self.session is not None
            sent_at = len(self.events)
            await self.session.send(data, "\n".join(lines), timeout=self.timeout(step))
        except (TemplateError, LocalProtocolError, ConnectionError) as exc:
            self._finish_rest(records[1:], "not sent: the pipeline could not be written")
            return self.finish_step(records[0], "error", str(exc))
        for n, (record, line) in enumerate(zip(records, lines, strict=True)):
            self.marks.append(transcript.Mark(sent_at, record.result.index, n))  # one line each
            self.sent_command(record.result.path, line)
            record.result.sent.append(line)
            self.label(record, line)
        ok = True
        for n, (inner, record) in enumerate(zip(action.steps, records, strict=True)):
            try:
                reply = await self.read(inner, record)
                self.judge(inner, reply, None, record)
            except StepFailed as exc:
                ok = self.finish_step(record, "failed", str(exc)) and ok
                continue
            except MatchTimeout as exc:
                ok = self.finish_step(record, "error", str(exc)) and ok
                continue
            except (ReplyTimeout, RemoteProtocolError) as exc:
                self._finish_rest(records[n + 1 :], "not judged: an earlier reply was missing")
                return self.finish_step(record, "error", str(exc))
            except ConnectionError as exc:
                self._finish_rest(records[n + 1 :], "not judged: the connection was lost")
                return self.finish_step(record, "error", str(exc))
            self.finish_step(record, "passed", None)
        return ok or step.continue_on_fail

    def _finish_rest(self, records: list[_Record], reason: str) -> None:
        """Pipelined commands after a fatal error: never judged, so never 'passed'."""
        for record in records:
            self.finish_step(record, "skipped", reason)


# --- helpers ------------------------------------------------------------------------


_KEPT_STEPS = 4096  # facts kept per step or endpoint (smtpscript.memo); then they start again


def _base_endpoint(scenario: m.Scenario, target: m.Target, timeout: float | None) -> m.Endpoint:
    """The target's endpoint over the scenario's, with the default timeout where neither
    gives one: the same object in every run of the pair (connect's overlay then is too)."""
    endpoint = overlay(scenario.target, target.endpoint)
    if endpoint.timeout is not None or timeout is None:
        return endpoint
    return _timed(endpoint, timeout)


@by_identity(_KEPT_STEPS)
def _timed(endpoint: m.Endpoint, timeout: float) -> m.Endpoint:
    # (the timeout is the run's options' own object: the same in every run)
    return replace(endpoint, timeout=timeout)


@by_identity(_KEPT_STEPS)
def _step_facts(step: m.Step) -> tuple[str, tuple[str, ...]]:
    """What the step's results say in every run: its expectation in words, and the
    include steps that brought it in."""
    default = ACTIONS[step.kind].default_expect
    expected = expectations.describe(step.expect, default) if default else ""
    included_from = tuple(f"{pos.file}:{pos.line}" for pos in step.included_from)
    return expected, included_from


@by_identity(_KEPT_STEPS)
def implicit_connect_step(before: m.Step) -> m.Step:
    """The connect step run before ``before`` when no connection is open: one per step,
    not one per run."""
    return m.Step(
        action=ACTIONS["connect"].build({}),
        kind="connect",
        path=before.path,
        pos=before.pos,
        name="connect (implicit)",
    )


def _raw_display(data: bytes) -> str:
    return data.decode("utf-8", "replace").rstrip("\r\n")


MAX_SHOWN_REPLY_LINE = 2000  # characters of one reply line kept for reports


def reply_record(reply: Reply | Closed, elapsed_ms: float, tracker: SecretTracker) -> ReplyRecord:
    """A reply (or a close) as results keep it: secrets redacted."""
    if isinstance(reply, Closed):
        shown = tracker.redact(reply.describe())
        return ReplyRecord(code=None, status=None, lines=[shown], elapsed_ms=elapsed_ms)
    # with no secret known yet there is nothing to redact, and plain text needs no escaping
    lines = None if tracker else _plain_lines(reply.lines)
    if lines is None:
        lines = []
        for raw_line in reply.raw.split(b"\n"):
            if raw_line:
                # redact before escaping and cutting, either of which would hide a secret's shape
                text = protocol.escape_bytes(tracker.redact_bytes(raw_line.rstrip(b"\r")[4:]))
                lines.append(expectations.shorten(text, MAX_SHOWN_REPLY_LINE))
    return ReplyRecord(
        code=reply.code,
        status=reply.status,
        lines=lines,
        elapsed_ms=elapsed_ms,
        bare_lf=reply.bare_lf,
    )


def _plain_lines(texts: tuple[str, ...]) -> list[str] | None:
    """A reply's lines as reply_record shows them, when every line is printable ASCII
    without a backslash (then escaping changes nothing, and the parser's text is the raw
    line's); None when one is not."""
    lines = []
    for text in texts:
        if not (text.isascii() and text.isprintable()) or "\\" in text:
            return None
        lines.append(expectations.shorten(text, MAX_SHOWN_REPLY_LINE))
    return lines


def _redacted(result: ScenarioResult, tracker: SecretTracker) -> ScenarioResult:
    """Blank every secret out of every text field of a result (the last line of defence)."""
    if not tracker:
        return result
    redact = tracker.redact
    result.reason = redact(result.reason) if result.reason else result.reason
    for step in result.steps:
        step.name = redact(step.name)
        step.message = redact(step.message) if step.message else step.message
        step.sent = [redact(s) for s in step.sent]
        step.captures = {k: redact(v) for k, v in step.captures.items()}
        for reply in step.replies:
            reply.lines = [redact(line) for line in reply.lines]
    for entry in result.transcript:
        entry.text = redact(entry.text)
    return result


# --- many scenarios ----------------------------------------------------------------


async def run_scenario(
    scenario: m.Scenario, target: m.Target, options: RunOptions | None = None
) -> ScenarioResult:
    return await ScenarioRun(scenario, target, options or RunOptions()).run()


def lost_result(
    scenario: m.Scenario, target: m.Target, options: RunOptions, reason: str
) -> ScenarioResult:
    """The error result of a run that was lost before it could say anything (its worker
    process died): an internal error, so the CLI says it is a bug and exits 3."""
    lost = ScenarioRun(scenario, target, options)
    lost.internal_error = True
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return lost.make_result("error", f"{scenario.file}: {reason}", started_at, time.monotonic())


async def run_many(
    scenarios: list[m.Scenario],
    targets: list[m.Target],
    options: RunOptions | None = None,
    on_result: Callable[[int, ScenarioResult], None] | None = None,
    stop: StopSignals | None = None,
    pairs: Sequence[tuple[m.Scenario, m.Target]] | None = None,
) -> RunResult:
    """Every scenario on every target (or just ``pairs``), target by target.

    At most ``options.concurrency`` runs at once, and at most a target's
    ``max_connections`` (else ``options.max_connections``) against any one target.
    ``on_result(index, result)`` hears of each run as it ends, ``index`` being its
    place in the planned order. Once ``stop`` has caught a signal, runs not started
    never start and runs in flight are cancelled; with ``options.exitfirst`` a failure
    or error stops new runs from starting. Either way the result holds what finished
    and says it is ``incomplete``.
    """
    options = options or RunOptions()
    limit = asyncio.Semaphore(max(1, options.concurrency))
    per_target = {
        id(t): asyncio.Semaphore(t.max_connections or options.max_connections or 1 << 30)
        for t in targets
    }
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    halted: list[ScenarioResult] = []  # -x: the run that stopped the others

    async def one(index: int, scenario: m.Scenario, target: m.Target) -> ScenarioResult | None:
        # the target's own limit first: a run waiting for its target holds no -j slot
        async with per_target[id(target)], limit:
            if halted:
                return None
            result = await run_scenario(scenario, target, options)
        if options.exitfirst and result.verdict in ("failed", "error") and not halted:
            halted.append(result)
        if on_result:
            on_result(index, result)
        return result

    if pairs is None:
        pairs = [(s, t) for t in targets for s in scenarios]
    tasks = [asyncio.create_task(one(i, s, t)) for i, (s, t) in enumerate(pairs)]
    if stop is not None:
        stop.watch(tasks)
    await asyncio.gather(*tasks, return_exceptions=True)  # cancelled runs must not end it
    results = _results(tasks)
    run = RunResult(
        tool_version=__version__,
        started_at=started.isoformat(timespec="seconds"),
        finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        duration_ms=round((time.monotonic() - t0) * 1000, 3),
        targets=_target_infos(targets, pairs, tasks) if pairs else [],
        scenarios=results,
    )
    if stop is not None and stop.signum is not None:
        finished = sum(1 for t in tasks if not t.cancelled() and not t.cancelling())
        run.incomplete = (
            f"interrupted by {signal.Signals(stop.signum).name}: "
            f"{finished} of {len(tasks)} scenario runs finished"
        )
    elif halted and len(results) < len(tasks):
        first = halted[0]
        run.incomplete = (
            f"stopped after the first failure (-x: {first.title} on {first.target.name}): "
            f"{len(results)} of {len(tasks)} scenario runs finished"
        )
    return run


def _results(tasks: list[asyncio.Task[ScenarioResult | None]]) -> list[ScenarioResult]:
    """What the runs returned, in order; cancelled runs, and runs -x kept from starting,
    are missing."""
    results = []
    for task in tasks:
        if task.cancelled():
            continue
        error = task.exception()
        if error is not None:
            raise error  # not a scenario's failure (ScenarioRun keeps those): a bug
        result = task.result()
        if result is not None:
            results.append(result)
    return results


def _target_infos(
    targets: list[m.Target],
    pairs: Sequence[tuple[m.Scenario, m.Target]],
    tasks: list[asyncio.Task[ScenarioResult | None]],
) -> list[TargetInfo]:
    """Each target run against, as its first finished run saw it, else as given."""
    seen: dict[int, TargetInfo] = {}
    for (_, target), task in zip(pairs, tasks, strict=True):
        finished = task.done() and not task.cancelled() and task.exception() is None
        result = task.result() if finished else None
        if result is not None:
            seen.setdefault(id(target), result.target)
    used = {id(t) for _, t in pairs}
    infos = []
    for target in targets:
        if id(target) in used:
            port = target.endpoint.port or m.DEFAULT_PORT
            given = TargetInfo(target.name, target.endpoint.host or "", port, target.facts or None)
            infos.append(seen.get(id(target), given))
    return infos


def run(
    scenarios: list[m.Scenario],
    targets: list[m.Target],
    options: RunOptions | None = None,
    on_result: Callable[[int, ScenarioResult], None] | None = None,
    pairs: Sequence[tuple[m.Scenario, m.Target]] | None = None,
) -> RunResult:
    """Synchronous entry point for the CLI and tests.

    SIGINT (Ctrl-C) and SIGTERM stop the run early: it then raises Interrupted, a
    KeyboardInterrupt that carries the RunResult of what finished, so that the caller
    can still write every report (and clean up) before it exits.
    """
    stop = StopSignals()
    with (
        asyncio.Runner(loop_factory=loop_factory(options.loop if options else None)) as runner,
        stop.installed(runner.get_loop()),
    ):
        result = runner.run(run_many(scenarios, targets, options, on_result, stop, pairs))
    if stop.signum is not None:
        raise Interrupted(result, stop.signum)
    return result


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped run(); ``result`` holds the scenario runs that finished."""

    def __init__(self, result: RunResult, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.result = result
        self.signum = signum


class StopSignals:
    """SIGINT and SIGTERM during one run: remember the first, cancel the scenario runs.

    A Python-level handler (not loop.add_signal_handler) so that it also works where
    the loop has no signal support, and so that the previous handlers (the CLI's) come
    back afterwards. A second signal cancels again: a QUIT still in progress is dropped.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._tasks: list[asyncio.Task[ScenarioResult]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, tasks: list[asyncio.Task[ScenarioResult]]) -> None:
        self._tasks = tasks
        if self.signum is not None:  # the signal came before the runs were created
            self._cancel()

    @contextlib.contextmanager
    def installed(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # only the main thread receives signals
            return
        self._loop = loop
        previous = {sig: signal.signal(sig, self._caught) for sig in self.SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)
            self._loop = None

    def _caught(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        for task in self._tasks:
            if not task.done():
                task.cancel()
