"""Sandboxed Jinja templates, the CR/LF guard's partner, and secret tracking.

Every string in a scenario is a template. Templates come from files that may
be shared between teams, so they run in Jinja's sandbox with StrictUndefined:
a misspelt variable is an error, not an empty string sent to a server.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes

from smtpscript import jinjabounds
from smtpscript.errors import did_you_mean

# re-exported: the runner and tests know them from here
from smtpscript.redaction import EnvView as EnvView
from smtpscript.redaction import SecretTracker as SecretTracker

# Names every template may use besides variables and captures.
BUILTIN_NAMES = frozenset({"caps", "target", "env", "index", "reply", "mta_sts", "dane"})


class TemplateError(ValueError):
    """A template that cannot be parsed or rendered; the message is user-facing."""


def _b64(value: object) -> str:
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: object) -> str:
    return base64.b64decode(str(value)).decode("utf-8", "backslashreplace")


@lru_cache(maxsize=1)
def environment() -> jinjabounds.BoundedEnvironment:
    """The sandbox every scenario template runs in (its limits: see jinjabounds)."""
    return jinjabounds.BoundedEnvironment(
        filters={"b64": _b64, "b64decode": _b64decode},
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # SMTP text, not HTML; the HTML report escapes on its own
        keep_trailing_newline=True,
    )


def syntax_error(source: str) -> tuple[int, str] | None:
    """(line within the template, message) when ``source`` does not parse."""
    try:
        environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return exc.lineno, f"template error: {exc.message}"
    return None


def names_used(source: str, *, expression: bool = False) -> set[str]:
    """Top-level names a template (or expression) reads; empty if it does not parse."""
    text = "{{ " + source + " }}" if expression else source
    try:
        return set(meta.find_undeclared_variables(environment().parse(text)))
    except jinja2.TemplateSyntaxError:
        return set()


def unknown_name(tree: nodes.Template) -> tuple[int, str] | None:
    """(line, message) for the first filter or test the sandbox does not have.

    Jinja finds these only when compiling, which validation never does.
    """
    env = environment()
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        is_filter = isinstance(node, nodes.Filter)
        kind, known = ("filter", env.filters) if is_filter else ("test", env.tests)
        if node.name not in known:
            return node.lineno, f"no {kind} named '{node.name}'{did_you_mean(node.name, known)}"
    return None


def is_template(source: str) -> bool:
    return "{{" in source or "{%" in source or "{#" in source


@lru_cache(maxsize=4096)
def _compiled(source: str) -> jinja2.Template:
    return environment().from_string(source.replace("\r", _CR))


@lru_cache(maxsize=1024)
def _expression(source: str) -> Any:
    return environment().compile_expression(source, undefined_to_none=False)


# Jinja's lexer turns every CR, CRLF and LF of a template's text into LF; a raw: step
# must send the CRs it was written with (smuggling checks mix CRLF and bare LF), so a
# CR stands in disguise while Jinja reads the template.
_CR = "\U0010fffd"


@contextmanager
def _user_errors(kind: str, source: str) -> Iterator[None]:
    """Whatever goes wrong inside a user's template becomes one TemplateError line."""
    try:
        yield
    except jinja2.UndefinedError as exc:
        raise TemplateError(_undefined(exc.message or "")) from None
    except jinja2.TemplateAssertionError as exc:
        raise TemplateError(f"{kind}: {_assertion_message(exc, source)}") from None
    except RecursionError:
        raise TemplateError(f"{kind}: calls or values nested too deeply (recursion)") from None
    except MemoryError:
        raise TemplateError(f"{kind}: out of memory") from None
    except KeyError as exc:
        raise TemplateError(f"{kind}: no key {exc}") from None
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(f"{kind}: {exc}") from None
    except (AssertionError, RuntimeError) as exc:  # truncate asserts, cycler() raises
        raise TemplateError(f"{kind}: {exc}") from None


def _assertion_message(exc: jinja2.TemplateAssertionError, source: str) -> str:
    """Jinja's "No filter named 'x'." with a did-you-mean hint when we can find one."""
    try:
        found = unknown_name(environment().parse(source))
    except jinja2.TemplateSyntaxError:
        found = None
    return found[1] if found else str(exc.message or exc)


_MISSING_ENV = re.compile(r"EnvView object' has no (?:attribute|element) '([^']*)'")


def _undefined(message: str) -> str:
    """Jinja's wording, except for env: 'environment variable X is not set'."""
    missing = _MISSING_ENV.search(message)
    if missing:
        return f"environment variable {missing.group(1)} is not set"
    return f"undefined variable: {message}"


@lru_cache(maxsize=4096)
def _substitution(source: str) -> tuple[tuple[str, bool], ...] | None:
    """The pieces of a template that only puts variables into text (jinjabounds), parsed
    as _compiled parses it; None for any other template, or one that does not parse."""
    try:
        return jinjabounds.substitution(environment().parse(source.replace("\r", _CR)))
    except jinja2.TemplateSyntaxError:
        return None


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render one template string; plain strings are returned as they are, and templates
    that only put variables into text are filled in without Jinja (fast paths)."""
    if not is_template(source):
        return source
    pieces = _substitution(source)
    text = jinjabounds.substitute(pieces, context) if pieces is not None else None
    if text is not None:
        return text.replace(_CR, "\r") if "\r" in source else text
    with _user_errors("template error", source):
        text = jinjabounds.render(_compiled(source), context)
    return text.replace(_CR, "\r") if "\r" in source else text


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """Evaluate a ``when:`` expression."""
    with _user_errors("expression error", "{{ " + expression + " }}"):
        return jinjabounds.evaluate(_expression(expression), context)
