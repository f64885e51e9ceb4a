"""Judging replies: does a reply meet a step's expectation, and if not, why not.

Every failure is one sentence of the form "expected X, got Y" so that console,
JUnit and HTML can show it as it is.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from smtpscript.model import Expectation, TlsExpectation
from smtpscript.patterns import ANY_REPLY, CodePattern
from smtpscript.protocol import Closed, Reply
from smtpscript.regexes import search

if TYPE_CHECKING:  # validate's cold start does without the results model
    from smtpscript.results import TlsFacts

ANY = ANY_REPLY


class StepError(Exception):
    """The step could not be judged (connection, TLS, template, protocol): verdict error."""


class ConnectionGone(StepError):
    """The server closed the connection before we could send."""


class StepFailed(Exception):
    """An expectation was not met: verdict failed. The message is the expected-vs-got line."""


def codes_of(expect: Expectation, default: CodePattern) -> CodePattern:
    return expect.codes or default


@lru_cache(maxsize=4096)  # per step, every session: the same few expectations again and again
def describe(expect: Expectation, default: CodePattern) -> str:
    """Human wording of an expectation: '550 or 554, status 5.7.x, matching /relay/'."""
    parts = [str(codes_of(expect, default))]
    if expect.each:
        parts = ["per recipient " + ", ".join(str(codes) for codes in expect.each)]
    if expect.status:
        parts.append(f"status {expect.status}")
    if expect.match:
        parts.append(f"matching /{expect.match}/")
    return ", ".join(parts)


def got(reply: Reply | Closed) -> str:
    return reply.describe() if isinstance(reply, Closed) else shorten(reply.short())


def shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check(expect: Expectation, default: CodePattern, reply: Reply | Closed) -> str | None:
    """None when the reply meets the expectation, else the expected-vs-got sentence."""
    codes = expect.codes or default
    if isinstance(reply, Closed):
        if codes.expects_closed:
            return None
        return f"expected {describe(expect, default)}, got {got(reply)}"
    if tuple(codes.alternatives) == ("closed",):
        return f"expected the server to close the connection, got {got(reply)}"
    if not _code_ok(codes, reply):
        return f"expected {describe(expect, default)}, got {got(reply)}"
    if expect.status and not expect.status.matches(reply.status):
        status = reply.status or "no enhanced status code"
        return f"expected status {expect.status}, got {status} in {got(reply)}"
    if expect.match and not search(expect.match, reply.text):
        return f"expected a reply matching /{expect.match}/, got {got(reply)}"
    return None


def _code_ok(codes: CodePattern, reply: Reply) -> bool:
    return codes.accepts_any_reply or codes.matches(reply.code)


def capture(patterns: tuple[tuple[str, str], ...], text: str) -> tuple[dict[str, str], str | None]:
    """Values for ``capture:`` (first group, else whole match) or the failure sentence."""
    values: dict[str, str] = {}
    for name, pattern in patterns:
        found = search(pattern, text)
        if not found:
            return values, f"expected the reply to contain /{pattern}/ to capture {name}"
        # a group that took no part in the match captured nothing: "", never the text "None"
        values[name] = (found.group(1) or "") if found.re.groups else found.group(0)
    return values, None


def check_tls(
    expect: TlsExpectation, facts: TlsFacts | None, days_left: int | None = None
) -> str | None:
    """The TLS facts against the expectation; ``days_left``: expect.days_left rendered."""
    if expect.established is False:
        if facts is None:
            return None
        return (
            f"expected the server to refuse the TLS handshake, got {facts.version} ({facts.cipher})"
        )
    if facts is None:
        return "expected a TLS session, got none"
    problems = []
    days = days_left if days_left is not None else expect.days_left
    from smtpscript.tlsinfo import version_at_least  # ssl: not for validate's cold start

    if expect.min_version and not version_at_least(facts.version, expect.min_version):
        problems.append(f"expected TLS {expect.min_version} or newer, got {facts.version}")
    if expect.verified is not None and facts.verified != expect.verified:
        state = "verified" if facts.verified else f"not verified ({facts.verify_error})"
        problems.append(
            f"expected the certificate {'' if expect.verified else 'not '}to verify, got {state}"
        )
    if isinstance(days, int) and (facts.days_left is None or facts.days_left < days):
        problems.append(
            f"expected the certificate valid for at least {days} more "
            f"days, got {facts.days_left} (expires {facts.not_after})"
        )
    if expect.name_matches is not None and facts.name_matches != expect.name_matches:
        problems.append(
            f"expected the certificate {'' if expect.name_matches else 'not '}to "
            f"match {facts.server_name}, got names {', '.join(facts.sans) or 'none'}"
        )
    return "; ".join(problems) or None
