"""Compile a scenario once into a plan that load mode runs without the general runner.

Load mode runs one scenario thousands of times. The general runner renders every
template, builds step records, checks extensions and escapes a transcript in every
session; for a plain delivery that is most of its CPU. A scenario made only of plain
steps (connect, also with implicit TLS; ehlo, helo, send, data, starttls) whose templates
read nothing that changes from one session to the next is rendered here once, its
commands encoded once, its TLS contexts made once and its expectations bound once;
smtpscript.fastpath then only writes bytes, parses replies and judges them.

Anything else (when, repeat, capture, includes, pipelines, PROXY, LMTP, AUTH,
templates reading ``reply``, ``caps``, ``index`` or captures...) is not compiled: load
mode then runs the general runner, and its summary says why (``compile`` returns the
reason instead of a plan). This module does no I/O.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from smtpscript import expectations, protocol
from smtpscript import model as m
from smtpscript.actions import default_expect, message
from smtpscript.patterns import CodePattern
from smtpscript.redaction import SecretTracker
from smtpscript.runner import QUIT_TIMEOUT, RunOptions, ScenarioRun, implicit_connect_step
from smtpscript.templating import is_template, names_used
from smtpscript.tlsinfo import make_context

Render = Callable[[str], str]  # a template source to its text
PLANNED_KINDS = frozenset({"connect", "ehlo", "helo", "send", "data", "starttls"})
CHAINED_KINDS = frozenset({"ehlo", "helo", "send", "data"})
# names whose value is the same in every session of a load run (vars are added per scenario)
STEADY_NAMES = frozenset({"env", "target", "mta_sts", "dane"})


@dataclass(frozen=True)
class PlanStep:
    """One step, ready to go on the wire."""

    step: m.Step
    command: bytes  # the command line with CRLF ("DATA\r\n" for data)
    line: str  # the command as text
    label: str  # the step's name in reports (its own, else the command)
    default: CodePattern  # what it expects when the step says nothing
    timeout: float  # per reply
    message: message.Message | None = None  # data: composed per session (Date, Message-ID)
    connect_timeout: float = 0.0  # connect steps
    host: str = ""
    port: int = 0
    # reply codes that pass outright (the expectation says nothing beyond codes)
    passing: frozenset[int] = frozenset()
    tls: ssl.SSLContext | None = None  # implicit TLS (connect), the upgrade (starttls)
    server_name: str = ""  # SNI and the name the certificate is checked against
    days_left: int | None = None  # tls.days_left, rendered
    # data: the payload made once, as bytes and the names of what each session fills in
    payload_parts: tuple[bytes | str, ...] | None = None
    is_connect: bool = field(default=False, init=False)
    # a plain exchange (command, data): run in callbacks (fastpath._Session._chain)
    chained: bool = field(default=False, init=False)

    @property
    def refusal_expected(self) -> bool:
        """A starttls step that expects the handshake to fail (tls.established: false)."""
        expect = self.step.expect.tls
        return bool(expect and expect.established is False)

    def __post_init__(self) -> None:
        # asked of every step of every session: answered once
        object.__setattr__(self, "is_connect", self.step.kind == "connect")
        object.__setattr__(self, "chained", self.step.kind in CHAINED_KINDS)

    def reason(self, text: str) -> str:
        """A failure's reason as the runner words it."""
        step = self.step
        return f"{step.pos.file}:{step.pos.line}: {step.path} ({self.label}): {text}"

    def check(self, reply: protocol.Reply | protocol.Closed) -> str | None:
        """expectations.check, with a shortcut for the code that passes (most replies)."""
        if type(reply) is protocol.Reply and reply.code in self.passing:
            return None
        return expectations.check(self.step.expect, self.default, reply)


@dataclass(frozen=True)
class Plan:
    scenario: m.Scenario
    target: m.Target
    steps: tuple[PlanStep, ...]
    rendered: dict[str, str]  # template source -> its text (data steps' parts)
    tracker: SecretTracker  # the secrets rendering met (env values, secret vars)
    quit_timeout: float  # the QUIT the runner sends when the scenario did not

    def payload(self, step: PlanStep) -> bytes:
        """A data step's message with a fresh Date and Message-ID (where it has none of its
        own): filled into the payload made once, else composed anew."""
        parts = step.payload_parts
        if parts is None:
            assert step.message is not None
            text = message.compose(step.message, self.rendered.__getitem__)
            return protocol.message_payload(text)
        return b"".join(
            part if type(part) is bytes else _STAMPS[part]().encode()  # type: ignore[index]
            for part in parts
        )


def compile_plan(scenario: m.Scenario, target: m.Target, options: RunOptions) -> Plan | str:
    """The plan, or why the scenario needs the general runner.

    ``options``: the run's vars layers, environment and timeouts.
    """
    why = _unplannable(scenario)
    if why:
        return why
    probe = ScenarioRun(scenario, target, options)  # vars rendered as a session would
    try:
        probe.init_vars()
    except Exception as exc:  # the general runner reports it, positioned
        return f"its vars do not render ({type(exc).__name__}: each session says where)"
    steady = _steady_vars(probe)
    endpoint = probe.base_endpoint
    if endpoint.proxy or endpoint.socket_path or endpoint.source_address:
        return "its target uses PROXY, a UNIX socket or a source address"
    if not endpoint.host:
        return "no target host"
    rendered: dict[str, str] = {}

    def render(source: str) -> str:
        if is_template(source) and not names_used(source) <= steady:
            raise _Unsteady(source)
        rendered[source] = probe.render(source)
        return rendered[source]

    steps: list[PlanStep] = []
    try:
        if scenario.steps[0].kind != "connect":  # the runner connects first, implicitly
            steps.append(_connect_step(implicit_connect_step(scenario.steps[0]), probe, render))
        for step in scenario.steps:
            steps.append(_plan_step(step, probe, render))
    except _Unsteady as exc:
        return f"a template reads what changes between sessions: {exc}"
    except Exception as exc:  # a template error, CR/LF in a command: the runner's to report
        return f"a step does not render ({type(exc).__name__}: each session says where)"
    timeout = probe.timeout_default()
    return Plan(scenario, target, tuple(steps), rendered, probe.tracker, min(QUIT_TIMEOUT, timeout))


class _Unsteady(Exception):
    """A template reads a name whose value may change from session to session."""


def _unplannable(scenario: m.Scenario) -> str | None:
    if not scenario.steps:
        return "it has no steps"
    if scenario.when is not None:
        return "it has a when: condition"
    for step in scenario.steps:
        if step.kind not in PLANNED_KINDS:
            return f"{step.path}: {step.kind} steps are not compiled"
        if step.when is not None or step.repeat is not None or step.capture:
            return f"{step.path} has when:, repeat: or capture:"
        if step.expect.each is not None:
            return f"{step.path} expects LMTP replies"
        if step.kind == "connect":
            inner = step.action.endpoint  # type: ignore[union-attr]
            if inner.proxy or inner.socket_path or inner.source_address:
                return f"{step.path} connects with PROXY, a UNIX socket or a source address"
    return None


def _steady_vars(probe: ScenarioRun) -> frozenset[str]:
    """Names that render the same in every session: vars reading only steady names (in the
    order the runner renders them, so a var may read an earlier one)."""
    steady = set(STEADY_NAMES)
    for name, (_, value) in probe.var_winners().items():
        if not (isinstance(value, str) and is_template(value)) or names_used(value) <= steady:
            steady.add(name)
    return frozenset(steady)


def _plan_step(step: m.Step, probe: ScenarioRun, render: Render) -> PlanStep:
    if step.kind == "connect":
        return _connect_step(step, probe, render)
    if step.kind == "data":
        line = "DATA"
        action: message.Message = step.action  # type: ignore[assignment]
        message.compose(action, render)  # renders (and checks) every part once
        plan_step = _step(step, probe, render, line, "DATA", message=action)
        return replace(plan_step, payload_parts=_payload_parts(action, render))
    if step.kind == "starttls":
        options = probe.base_endpoint.tls_options.overlay(step.action.tls_options)  # type: ignore[union-attr]
        server_name = options.server_name or render(probe.base_endpoint.host or "")
        plan_step = _step(step, probe, render, "STARTTLS", "STARTTLS")
        return replace(plan_step, tls=make_context(options), server_name=server_name)
    if step.kind in ("ehlo", "helo"):
        line = f"{step.action.verb} {render(step.action.name)}"  # type: ignore[union-attr]
    else:
        line = render(step.action.line)  # type: ignore[union-attr]
    return _step(step, probe, render, line, line)


def _step(
    step: m.Step,
    probe: ScenarioRun,
    render: Render,
    line: str,
    label: str,
    message: message.Message | None = None,
) -> PlanStep:
    return PlanStep(
        step=step,
        command=protocol.encode_command(line),
        line=line,
        label=_label(step, probe, render, label),
        default=default_expect(step.kind),
        timeout=probe.timeout(step),
        message=message,
        passing=_passing(step, default_expect(step.kind)),
        days_left=_days_left(step, render),
    )


def _connect_step(step: m.Step, probe: ScenarioRun, render: Render) -> PlanStep:
    endpoint = probe.base_endpoint.overlay(step.action.endpoint)  # type: ignore[union-attr]
    render(endpoint.host or "")  # the host must be steady: rendered through the plan's render
    dial = probe.dial(endpoint)
    label = f"connect {endpoint.where()}"
    return PlanStep(
        step=step,
        command=b"",
        line="",
        label=_label(step, probe, render, label),
        default=default_expect("connect"),
        timeout=probe.timeout(step),
        passing=_passing(step, default_expect("connect")),
        connect_timeout=dial.timeout,
        host=dial.host,
        port=dial.port,
        tls=dial.tls,
        server_name=(endpoint.tls_options.server_name or dial.host) if dial.tls else "",
        days_left=_days_left(step, render),
    )


# what compose adds to a message that has none (smtpscript.actions.message), marked in the
# payload made once and filled in for each session
_MARKS = {"date": "\ue000date\ue000", "message_id": "\ue000message-id\ue000"}
_STAMPS = {"date": message.new_date, "message_id": message.new_message_id}


def _payload_parts(action: message.Message, render: Render) -> tuple[bytes | str, ...] | None:
    """The payload with the marks cut out: (bytes, "date", bytes, "message_id", bytes),
    or None when a mark is not found exactly where it went (composed per session then)."""
    text = message.compose(action, render, _MARKS["date"], _MARKS["message_id"])
    payload = protocol.message_payload(text)
    parts: list[bytes | str] = [payload]
    for name, mark in _MARKS.items():
        found = [n for n, part in enumerate(parts) if type(part) is bytes and mark.encode() in part]
        if not found:
            continue  # the message has its own
        where = found[0]
        pieces = parts[where].split(mark.encode())  # type: ignore[union-attr]
        if len(found) > 1 or len(pieces) != 2:
            return None  # the text itself holds a mark: compose per session
        parts[where : where + 1] = [pieces[0], name, pieces[1]]
    return tuple(parts)


def _days_left(step: m.Step, render: Render) -> int | None:
    """tls.days_left, a template rendered once (the general runner's check, in check_tls)."""
    expect = step.expect.tls
    if expect is None or not isinstance(expect.days_left, str):
        return None
    text = render(expect.days_left).strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError("tls.days_left is not a whole number")  # the runner's to report
    return int(text)


def _passing(step: m.Step, default: CodePattern) -> frozenset[int]:
    """The codes expectations.check passes whatever else the reply says; none when the step
    also checks status or text (then every reply is checked in full)."""
    expect = step.expect
    if expect.status or expect.match or expect.each:
        return frozenset()
    codes = expectations.codes_of(expect, default)
    if tuple(codes.alternatives) == ("closed",):
        return frozenset()
    replies = range(200, 600)  # every code the parser lets through (RFC 5321 4.2)
    return frozenset(c for c in replies if codes.accepts_any_reply or codes.matches(c))


def _label(step: m.Step, probe: ScenarioRun, render: Render, text: str) -> str:
    """The runner's label: the step's name rendered, else the command, redacted and cut."""
    if step.name:
        return render(step.name)
    return probe.shown_label(text)
