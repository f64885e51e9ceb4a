"""Regular expressions for ``match:`` and ``capture:``, bounded in time and memory.

They run against replies a hostile server chose, so a pattern with
catastrophic backtracking (``(a|aa)+$``) must not hang a run. We use the
``regex`` package, which reads Python's ``re`` syntax (lookarounds and
backreferences included) and takes a time budget per search; Python's own
``re`` cannot be interrupted, and a linear-time engine (RE2) would refuse
lookarounds that scenarios use (``(?!.*^AUTH\\b)``). The trade-off: a
pathological pattern costs up to ``MATCH_TIMEOUT`` of CPU per search instead
of running in linear time, and then the step is an error, not a verdict on
the server.

``regex`` expands counted repeats when compiling (``a{1000000000}`` takes all
memory), so validation refuses counts whose nesting multiplies beyond
``MAX_REPEAT_PRODUCT`` before anything is compiled.
"""

from __future__ import annotations

import re
import re._constants as sre_constants
import re._parser as sre_parser
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import regex

MATCH_TIMEOUT = 1.0  # seconds of matching per search
MAX_REPEAT_PRODUCT = 10_000  # counted repeats, multiplied through their nesting
MAX_PATTERN_LENGTH = 10_000

_REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT}


class PatternProblem(ValueError):
    """A pattern we refuse; the message is user-facing."""


class MatchTimeout(Exception):
    """A search ran out of its time budget (catastrophic backtracking)."""


def check(pattern: str) -> None:
    """Raise PatternProblem unless ``pattern`` is valid and bounded."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternProblem(f"longer than {MAX_PATTERN_LENGTH:,} characters")
    try:
        tree = sre_parser.parse(pattern)
    except re.error as exc:
        raise PatternProblem(str(exc)) from None
    except (OverflowError, RecursionError) as exc:
        raise PatternProblem(f"{exc} (a repeat count or nesting too large)") from None
    product = _repeat_product(tree)
    if product > MAX_REPEAT_PRODUCT:
        raise PatternProblem(
            f"repeat counts multiply to {product:,}, over the limit of {MAX_REPEAT_PRODUCT:,} "
            "(use + or * instead of a large count)"
        )
    import regex

    try:
        compiled(pattern)
    except (regex.error, OverflowError, MemoryError) as exc:
        raise PatternProblem(str(exc)) from None


def _repeat_product(tree: Any) -> int:
    """The largest product of counted repeats along any nesting path."""
    worst = 1
    for op, arg in tree:
        if op in _REPEATS:
            low, high, inner = arg
            count = low if high == sre_constants.MAXREPEAT else high
            worst = max(worst, max(count, 1) * _repeat_product(inner))
        else:
            for inner in _children(op, arg):
                worst = max(worst, _repeat_product(inner))
    return worst


def _children(op: Any, arg: Any) -> list[Any]:
    if op is sre_constants.SUBPATTERN:
        return [arg[-1]]
    if op is sre_constants.BRANCH:
        return list(arg[1])
    if op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        return [arg[1]]
    if op is sre_constants.ATOMIC_GROUP:
        return [arg]
    if op is sre_constants.GROUPREF_EXISTS:
        return [p for p in arg[1:] if p is not None]
    return []


@lru_cache(maxsize=1024)
def compiled(pattern: str) -> regex.Pattern[str]:
    # imported when the first pattern is met (once compiled, patterns are cached): a
    # scenario without match: never pays for the engine, nor does validating it
    import regex

    return regex.compile(pattern, regex.VERSION0)


def search(pattern: str, text: str) -> regex.Match[str] | None:
    """``re.search`` semantics, within MATCH_TIMEOUT; MatchTimeout beyond it."""
    try:
        return compiled(pattern).search(text, timeout=MATCH_TIMEOUT)
    except TimeoutError:
        raise MatchTimeout(
            f"/{pattern}/ gave up after {MATCH_TIMEOUT:g} s of matching against a "
            f"{len(text):,}-character reply (catastrophic backtracking?)"
        ) from None
