"""Why a scenario run failed, in words: the one source of the sentences every view shows.

The HTML report, the console recap, JUnit's ``<failure message>`` and the Markdown
summary all tell a finding the same way: first what happened, in plain words a
manager can read ("the server accepted RCPT TO:<victim@example.net> where a refusal
was expected"), then beneath it the technical expectation an auditor can check
("step 4, RCPT TO:<victim@example.net>: expected 550 or 554, got 250 2.1.5 Ok").

The words come from the step data alone (the expectation, the command, the reply),
so they need nothing from the runner; a scenario may say it better with its own
``finding:`` sentence, which then comes first. Everything here is plain text: each
view escapes it for its own medium.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smtpscript.results import ScenarioResult, StepResult

_REFUSAL = ("4", "5")
_ACCEPTANCE = ("2", "3")
_LIMIT = 160  # a command or reply quoted inside a sentence


@dataclass(frozen=True)
class Story:
    """One run's reason, told once: ``words`` first, ``technical`` beneath.

    ``words``: a sentence for anyone ("The server accepted ... where a refusal was
    expected."); empty for a passed run. ``technical``: the expectation and what came
    ("expected 5xx, got 250 2.0.0 Ok"), empty when there is nothing more to say.
    ``step``: the step it happened at, if any. ``check``: that step's own name when the
    scenario gave it one (it says what the step checks), else empty.
    """

    words: str
    technical: str = ""
    step: StepResult | None = None
    check: str = ""

    @property
    def where(self) -> str:
        """``step 4`` and, when the scenario named it and the words do not already say
        it, what it checks: ``step 4 (EHLO advertises STARTTLS)``."""
        if self.step is None:
            return ""
        named = self.check and self.check not in self.words
        return f"step {self.step.index}" + (f" ({self.check})" if named else "")

    @property
    def beneath(self) -> str:
        """The technical line: ``step 4 (...): expected 5xx, got 250 2.0.0 Ok``; for a
        run that could not be judged, only where (the words say why)."""
        if not self.technical:
            return self.where
        return f"{self.where}: {self.technical}" if self.where else self.technical

    def line(self) -> str:
        """Both on one line, words first (JUnit message, one-line views)."""
        return f"{self.words} [{self.beneath}]" if self.beneath else self.words


def story(result: ScenarioResult) -> Story:
    """The reason of a failed, errored or skipped run (passed: empty words)."""
    if result.verdict == "passed":
        return Story("")
    step = failing_step(result)
    if result.verdict == "skipped":
        return Story(_sentence(f"skipped: {_plain_reason(result)}"))
    own = (getattr(result, "finding", "") or "").strip()
    if step is None:
        reason = _plain_reason(result) or "no reason recorded"
        if result.verdict == "error":
            return Story(_sentence(f"could not be judged: {reason}"))
        return Story(_sentence(own or reason))
    if result.verdict == "error":
        return Story(_sentence(own or _error_words(step)), "", step, step_check(step))
    words = _sentence(own or _failure_words(step, result))
    return Story(words, step.message or "", step, step_check(step))


def failing_step(result: ScenarioResult) -> StepResult | None:
    """The step the verdict came from: the first that failed or errored."""
    return next((s for s in result.steps if s.verdict in ("failed", "error")), None)


def step_check(step: StepResult) -> str:
    """The step's own name when the scenario gave it one; empty for a generated label
    (the command itself, ``connect HOST:PORT``, the action's kind)."""
    name = step.name.strip()
    generated = {step.kind, f"{step.kind} (implicit)", *(s.strip() for s in step.sent[:1])}
    if not name or name in generated or name.startswith(f"{step.kind} "):
        return ""
    if step.sent and _clip(step.sent[0], 80) == name:
        return ""
    return name


def command(step: StepResult) -> str:
    """What the client did at this step, as a reader would name it."""
    first = step.sent[0].strip() if step.sent else ""
    if step.kind == "connect":
        return "the connection"
    if step.kind == "data":
        return "the message" if _answered_data(step) else "DATA"
    if step.kind == "bdat":
        return "the message (BDAT)"
    if step.kind == "read":
        return "the wait for its next reply"
    if step.kind == "starttls":
        return "STARTTLS"
    return _clip(first) if first else step.kind.upper()


# --- failed: the expectation against the reply -----------------------------------------


def _failure_words(step: StepResult, result: ScenarioResult) -> str:
    message = step.message or ""
    reply = step.replies[-1] if step.replies else None
    what = command(step)
    check = step_check(step)
    if step.tls is not None and _is_tls_message(message):
        return _tls_words(message, step)
    if reply is None:
        return f"{_subject(step)} did not meet the expectation"
    if reply.code is None:
        return f"the server closed the connection instead of answering {what}"
    code = str(reply.code)
    if message.startswith(("expected a reply matching", "expected the reply to contain")):
        if check:
            return f"{_subject(step)} fails the check: {check}"
        return f"{_subject(step)} did not say what the check looks for"
    wanted = _wanted_classes(step.expected)
    if wanted and wanted <= set(_REFUSAL) and code[0] in _ACCEPTANCE:
        if step.kind == "connect":
            return "the server greeted the client where it should have turned it away"
        if _answered_data(step):
            what = _message_for(result, step)
        return f"the server accepted {what} where a refusal was expected"
    if wanted and wanted <= set(_ACCEPTANCE) and code[0] in _REFUSAL:
        how = "temporarily refused" if code[0] == "4" else "refused"
        if step.kind == "connect":
            return f"the server {how} the connection where it should have greeted the client"
        return f"the server {how} {what} where it should have accepted it"
    if message.startswith("expected status"):
        return f"the server answered {what} with another enhanced status than expected"
    if check:
        return f"the server answered {what} with {code} where the check expects: {check}"
    return f"the server answered {what} with {code}, not with the reply expected"


def _message_for(result: ScenarioResult, data: StepResult) -> str:
    """``the message for <victim@example.net>``: the recipients the server took before
    this data step (RCPT TO lines answered 2xx), else just ``the message``."""
    recipients = []
    for step in result.steps:
        if step is data:
            break
        for sent, reply in zip(step.sent, step.replies, strict=False):
            if sent.upper().startswith("RCPT TO:") and reply.code and reply.code < 300:
                recipients.append(sent[len("RCPT TO:") :].strip().split(" ")[0])
    if not recipients:
        return "the message"
    shown = ", ".join(_clip(r, 80) for r in recipients[:3])
    more = f" and {len(recipients) - 3} more" if len(recipients) > 3 else ""
    return f"the message for {shown}{more}"


def _subject(step: StepResult) -> str:
    if step.kind == "connect":
        return "the server's greeting"
    return f"the server's reply to {command(step)}"


def _answered_data(step: StepResult) -> bool:
    """A data step judged on the reply to the message (354 came first), not to DATA."""
    return len(step.replies) > 1 and step.replies[0].code == 354


def _wanted_classes(expected: str) -> set[str]:
    """The reply classes ("2", "5") an expectation allows, from its wording ("550 or
    554, status 5.7.x"); empty when it allows a close, any reply, or is per recipient."""
    head = expected.split(", ")[0].strip()
    if head.startswith("per recipient"):
        return set()
    classes = set()
    for alternative in head.split(" or "):
        alternative = alternative.strip()
        if not alternative or not alternative[0].isdigit():
            return set()  # closed, any: no acceptance/refusal story to tell
        classes.add(alternative[0])
    return classes


_TLS_MESSAGES = ("expected TLS", "expected the certificate", "expected a TLS session")


def _is_tls_message(message: str) -> bool:
    return message.startswith(_TLS_MESSAGES)


def _tls_words(message: str, step: StepResult) -> str:
    tls = step.tls
    assert tls is not None
    parts = []
    for problem in message.split("; "):
        if problem.startswith("expected TLS"):
            parts.append(
                f"the server negotiated {tls.version or 'no TLS version'}, older "
                "than the check allows"
            )
        elif "to verify" in problem and "not to verify" not in problem:
            parts.append(f"its certificate did not verify ({tls.verify_error or 'not verified'})")
        elif "not to verify" in problem:
            parts.append("its certificate verified where the check expected it not to")
        elif "valid for at least" in problem:
            left = tls.days_left
            when = f"expires in {left} days" if left is not None and left >= 0 else "has expired"
            parts.append(f"its certificate {when} ({tls.not_after or 'date unknown'})")
        elif "to match" in problem:
            names = ", ".join(tls.sans) or "no names"
            parts.append(f"its certificate does not name {tls.server_name} (it names {names})")
        elif problem.startswith("expected a TLS session"):
            parts.append("no TLS session was established")
        else:
            parts.append(problem)
    return "TLS: " + "; ".join(parts)


# --- error: the check could not be judged ------------------------------------------------


def _error_words(step: StepResult) -> str:
    message = _strip_location(step.message or "no reason recorded")
    what = command(step)
    if message.startswith("no complete reply within"):
        return (
            f"the server did not answer {what} in time ({message}); the check could not be judged"
        )
    if message.startswith("server closed") or message.startswith("server reset"):
        return f"the {message[len('server ') :]} during {what}; the check could not be judged"
    return f"the check could not be judged: {message}"


# --- helpers -------------------------------------------------------------------------------

_LOCATION = re.compile(r"^\S+:\d+: \S+ \([^)]*\): ")


def _strip_location(text: str) -> str:
    """``file:line: steps[3] (name): message`` -> ``message`` (a run's reason)."""
    return _LOCATION.sub("", text, count=1)


def _plain_reason(result: ScenarioResult) -> str:
    return _strip_location(result.reason or "")


def _clip(text: str, limit: int = _LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sentence(text: str) -> str:
    """Capitalised, ending in a full stop (or the punctuation it has)."""
    text = text.strip()
    if not text:
        return text
    text = text[:1].upper() + text[1:]
    return text if text[-1] in ".!?…" else text + "."
