"""The reply-code pattern language.

A code pattern is one of:
- an integer or 3-digit string: ``250`` (exact);
- a 3-character string whose first digit is 2-5 and whose other places are
  digits or wildcards: ``"2xx"``, ``"25x"``, RFC 5321's ``"2yz"`` (``x``, ``y``
  and ``z`` all mean "any digit");
- ``"any"`` (any complete reply) or ``"closed"`` (the server closed the
  connection before sending a complete reply);
- a list of the above (any of them).

An enhanced status pattern (RFC 3463) is ``class.subject.detail`` where each
part is a number or ``x``: ``"5.7.1"``, ``"5.7.x"``, ``"2.x.x"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_CODE_RE = re.compile(r"^[2-5][0-9xyzXYZ][0-9xyzXYZ]$")
_STATUS_RE = re.compile(r"^[245x]\.(?:\d{1,3}|x)\.(?:\d{1,3}|x)$", re.IGNORECASE)

CODE_HINT = 'use e.g. 250, "2xx", "25x", "any" or "closed"'
STATUS_HINT = 'use e.g. "5.7.1" or "5.7.x"'


class PatternError(ValueError):
    """A pattern that the language does not allow; the message is user-facing."""


def _show(value: object) -> str:
    """A value as the user wrote it in YAML: '2x', 600, true, null, [1, 2], {a: 1}."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null (empty)"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return repr(value)


@dataclass(frozen=True)
class CodePattern:
    """Any-of set of reply-code alternatives, normalised to lower-case strings."""

    alternatives: tuple[str, ...]

    @property
    def expects_closed(self) -> bool:
        return "closed" in self.alternatives

    @property
    def accepts_any_reply(self) -> bool:
        return "any" in self.alternatives

    def matches(self, code: int) -> bool:
        return _matches(tuple(self.alternatives), code)

    def __str__(self) -> str:
        return " or ".join(self.alternatives)


@lru_cache(maxsize=4096)  # every reply of every run asks again about the same few codes
def _matches(alternatives: tuple[str, ...], code: int) -> bool:
    text = f"{code:03d}"
    return any(_code_alternative_matches(alt, text) for alt in alternatives)


def _code_alternative_matches(alternative: str, code: str) -> bool:
    if alternative == "any":
        return True
    if alternative == "closed":
        return False
    return all(p in "xyz" or p == c for p, c in zip(alternative, code, strict=True))


def parse_code_alternative(value: object) -> str:
    """Normalise one alternative (int or str) or raise PatternError."""
    if isinstance(value, bool):
        raise PatternError(f"{_show(value)} is not a reply-code pattern ({CODE_HINT})")
    if isinstance(value, int):
        if 200 <= value <= 599:
            return str(value)
        raise PatternError(f"{value} is not a reply code: codes run from 200 to 599 ({CODE_HINT})")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("any", "closed"):
            return text
        if _CODE_RE.match(text):
            return text
    raise PatternError(f"{_show(value)} is not a reply-code pattern ({CODE_HINT})")


def parse_code_pattern(value: object) -> CodePattern:
    """Parse an ``expect`` value (scalar or list) or raise PatternError."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise PatternError(f"an empty list matches no reply ({CODE_HINT})")
    return CodePattern(tuple(parse_code_alternative(item) for item in items))


@dataclass(frozen=True)
class StatusPattern:
    """An RFC 3463 enhanced status pattern such as 5.7.x."""

    text: str

    def matches(self, status: str | None) -> bool:
        if status is None:
            return False
        parts = status.split(".")
        want = self.text.split(".")
        if len(parts) != 3:
            return False
        # numbers, not text: "5.7.01" is 5.7.1, as the pattern's own "5.7.001" is
        return all(
            w == "x" or (p.isdigit() and int(p) == int(w)) for w, p in zip(want, parts, strict=True)
        )

    def __str__(self) -> str:
        return self.text


def parse_status_pattern(value: object) -> StatusPattern:
    if isinstance(value, str) and _STATUS_RE.match(value.strip()):
        parts = value.strip().lower().split(".")
        return StatusPattern(".".join(str(int(p)) if p != "x" else p for p in parts))
    raise PatternError(f"{_show(value)} is not an enhanced status pattern ({STATUS_HINT})")


DEFAULT_REPLY = CodePattern(("2xx", "3xx"))
ANY_REPLY = CodePattern(("any",))
