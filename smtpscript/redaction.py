"""Secrets: which values are secret, and blanking them out of any text we show.

A secret may reach output in many shapes: as written, base64-encoded (AUTH),
escaped for display (a TAB shows as ``\\t``, an invisible character as
``\\u200b``), or cut short by a label or message limit. The tracker knows each
shape, and a cut marker (``…``, ``...``) right after the start of a secret
blanks that start too.

What is a secret (and no more, so that redaction does not blank ordinary
words): passwords, tokens and AUTH payloads; vars named in ``secrets:``; and
values read from ``env`` that are not listed in ``public_env`` and are at least
``MIN_ENV_SECRET`` characters long (a port or a reply code such as ``220`` in
an env var is not a secret, and blanking it would blank every reply).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Iterator, Mapping

from smtpscript.protocol import _escape_text as escape_text
from smtpscript.protocol import escape_bytes

REDACTED = "********"  # what a secret is replaced by, everywhere it would be shown

MIN_ENV_SECRET = 4  # characters: shorter env values are not taken for secrets
MIN_CUT_PREFIX = 3  # characters of a secret's start shown before a cut marker
CUT_MARKERS = ("…", "...")


def b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8", "surrogatepass")).decode("ascii")


class SecretTracker:
    """Collects secret values and blanks them, in every shape they take, out of text."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._values: set[str] = set()
        self._sorted: list[str] | None = None  # longest first, so a longer secret wins
        self._bytes: list[bytes] | None = None
        for value in secrets:
            self.add(value)

    def add(self, value: object) -> None:
        """A secret value (a password, a token, a declared secret var)."""
        text = str(value) if value is not None else ""
        if not text:
            return
        shapes = {text, b64(text), escape_text(text)}
        shapes.add(escape_bytes(text.encode("utf-8", "surrogateescape")))
        self._values |= shapes
        self._sorted = self._bytes = None

    def add_payload(self, payload: str) -> None:
        """An AUTH payload as sent (base64). Its decoded parts are not added: the user
        name inside a PLAIN payload is no secret; the password is added on its own."""
        self.add(payload)

    def __bool__(self) -> bool:
        return bool(self._values)

    def _longest_first(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self._values, key=len, reverse=True)
        return self._sorted

    def redact(self, text: str) -> str:
        if not self._values or not text:
            return text
        for value in self._longest_first():
            if value in text:
                text = text.replace(value, REDACTED)
        return self._redact_cut_starts(text)

    def redact_bytes(self, data: bytes) -> bytes:
        """The same on raw bytes, before they are escaped for display."""
        if not self._values or not data:
            return data
        if self._bytes is None:
            shapes = (v.encode("utf-8", "surrogateescape") for v in self._longest_first())
            self._bytes = [s for s in shapes if s]
        for value in self._bytes:
            if value in data:
                data = data.replace(value, REDACTED.encode())
        return data

    def _redact_cut_starts(self, text: str) -> str:
        """Blank the start of a secret that a length limit cut off: 'pass hunter…'."""
        for marker in CUT_MARKERS:
            at = text.find(marker)
            while at > 0:
                head = text[:at]
                keep = self._cut_secret_start(head)
                if keep is not None:
                    text = head[:keep] + REDACTED + text[at:]
                    at = keep + len(REDACTED)
                at = text.find(marker, at + len(marker))
        return text

    def _cut_secret_start(self, head: str) -> int | None:
        """Where a secret's start begins at the end of ``head``, if one does."""
        best = None
        for value in self._longest_first():
            longest = min(len(value) - 1, len(head))
            for size in range(longest, MIN_CUT_PREFIX - 1, -1):
                if head.endswith(value[:size]):
                    start = len(head) - size
                    best = start if best is None else min(best, start)
                    break
        return best


class EnvView(Mapping[str, str]):
    """``env`` in templates: reading a value marks it secret unless listed as public."""

    def __init__(
        self,
        tracker: SecretTracker,
        public: Iterable[str] = (),
        source: Mapping[str, str] | None = None,
    ):
        self._tracker = tracker
        self._public = frozenset(public)
        self._source = os.environ if source is None else source

    def __getitem__(self, key: str) -> str:
        value = self._source[key]
        if key not in self._public and len(value) >= MIN_ENV_SECRET:
            self._tracker.add(value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)

    def __contains__(self, key: object) -> bool:
        return key in self._source
