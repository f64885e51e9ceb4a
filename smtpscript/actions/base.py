"""What an action module declares, and the two narrow interfaces it is given.

Each module in this package describes one step action in one place: its YAML
key and JSON Schema fragment, its model, how the model is built from the
validated YAML value, its default expectation, its semantic checks and its
coroutine. The registry (``__init__``) collects them; nothing else lists them.

A coroutine gets a ``StepContext`` (send, read, judge, the connection, the
capabilities), never the runner; a semantic check gets a ``Checker``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from smtpscript.memo import by_identity
from smtpscript.patterns import CodePattern

if TYPE_CHECKING:
    from smtpscript.model import Endpoint, Step, TlsOptions
    from smtpscript.protocol import Reply

JsonPath = tuple[str | int, ...]


class ScenarioSkipped(Exception):
    """Raised by a step to end its scenario as skipped; the message is the reason."""


class StepContext(Protocol):
    """What a running step may do; the runner provides it, one per step."""

    step: Step

    @property
    def base_endpoint(self) -> Endpoint: ...

    def render(self, source: str) -> str: ...

    def label(self, text: str) -> None:
        """The step's name in reports when the scenario gives none."""

    async def send_line(self, line: str, display: str | None = None) -> None:
        """Send a command; CRLF added, CR/LF inside refused; ``display`` masks it."""

    async def send(self, data: bytes, display: str) -> None:
        """Send exact bytes."""

    async def read(self) -> Reply | Any:
        """One reply (a protocol.Reply) or the server's close (session.Closed)."""

    def judge(self, reply: Reply | Any, default: CodePattern | None = None) -> None:
        """Check a reply against the step's expectation (and captures); fail the step."""

    def fail(self, message: str) -> None:
        """End the step as failed with this expected-vs-got sentence."""

    def got(self, reply: Reply | Any) -> str:
        """A reply as a failure message shows it."""

    def expects_codes(self) -> bool:
        """Whether the step says what reply code it expects (an explicit expect:)."""

    async def open(self, endpoint: Endpoint) -> None:
        """(Re)connect to this endpoint; records TLS facts of an implicit-TLS connection."""

    async def starttls(self, options: TlsOptions) -> None:
        """Upgrade the connection after a 220 to STARTTLS; forgets the capabilities."""

    def check_tls(self) -> None:
        """Judge the step's tls: expectation against the connection's TLS facts."""

    @property
    def caps(self) -> dict[str, str]:
        """What the last EHLO or LHLO advertised (empty before, and after STARTTLS)."""

    def set_caps(self, caps: dict[str, str]) -> None: ...

    def lmtp_recipients(self) -> list[str] | None:
        """Recipients accepted in this transaction, when the session greeted with LHLO."""

    def check_recipient(self, reply: Reply | Any, index: int, recipient: str) -> str | None:
        """Judge the LMTP reply for one recipient (expect_each, else expect); the problem."""

    def transaction_done(self) -> None:
        """The message has been answered: the next transaction starts afresh."""

    def secret(self, value: str) -> None:
        """A password or token: never shown, in any shape."""

    def secret_payload(self, payload: str) -> None:
        """An AUTH payload as sent."""

    def replies_pending(self) -> None:
        """Bytes were sent whose replies will be read later (not a desync)."""

    def violation(self, text: str) -> None:
        """Record a protocol violation by the server."""


class Checker(Protocol):
    """What a semantic check may do while validating a step's action value."""

    def template(self, source: str, path: JsonPath) -> None:
        """Check a template string (syntax, filters, names used)."""

    def add(self, path: JsonPath, message: str) -> None:
        """Report a problem at this path."""

    def is_block(self, path: JsonPath) -> bool:
        """Whether the value at this path was written as a literal block (key: |)."""


Run = Callable[[StepContext, Any], Awaitable[None]]
Check = Callable[[Any, JsonPath, Checker], None]


@dataclass(frozen=True)
class ActionSpec:
    """One step action, as the loader, the validator, the runner and the schema see it."""

    name: str  # the YAML key
    order: int  # where it stands in lists of actions (schema, messages)
    schema: dict[str, Any]  # JSON Schema of the key's value
    build: Callable[[Any], Any]  # the model, from the validated YAML value
    run: Run | None  # the coroutine; None for groups, which the runner expands itself
    default_expect: CodePattern | None  # None: it reads no reply of its own
    check: Check | None = None  # semantic checks beyond the schema
    needs_connection: bool = True  # an implicit connect comes first when there is none
    tls_expectations: bool = False  # may carry a tls: expectation
    per_recipient: bool = False  # ends a message: in LMTP one reply per recipient (expect_each)
    summary: str = ""  # one line for documentation


def templates(*keys: str) -> Check:
    """A check for a mapping value whose ``keys`` are templates (or a plain template)."""

    def check(value: Any, path: JsonPath, checker: Checker) -> None:
        if isinstance(value, str):
            checker.template(value, path)
        elif isinstance(value, dict):
            for key in keys:
                if isinstance(value.get(key), str):
                    checker.template(value[key], (*path, key))

    return check


def reason_action(
    name: str, order: int, description: str, example: str, run: Run, summary: str
) -> ActionSpec:
    """An action whose value is one sentence (a template), meant to go with when:
    (skip, fail): it needs no connection and reads no reply."""

    def check(value: Any, path: JsonPath, checker: Checker) -> None:
        if isinstance(value, str):
            checker.template(value, path)

    return ActionSpec(
        name=name,
        order=order,
        schema={
            "type": "string",
            "minLength": 1,
            "description": description,
            "examples": [example],
        },
        build=str,
        run=run,
        default_expect=None,
        check=check,
        needs_connection=False,
        summary=summary,
    )


@by_identity(maxsize=1024)
def overlay(base: Endpoint, inner: Endpoint) -> Endpoint:
    """``base.overlay(inner)``, made once per pair of endpoints, not once per run."""
    return base.overlay(inner)
