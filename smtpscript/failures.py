"""What an exception raised inside one scenario run means for that run's verdict.

The runner judges the failures it expects (replies, timeouts, refused
connections) itself. Anything else that escapes a step still ends only that
run: some exceptions are the scenario's or the machine's doing and get a
plain sentence (a lone surrogate that cannot be sent, a TLS file that is not
there, memory, nesting); the rest are bugs in smtpscript, marked internal so
the CLI can say so and exit 3.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class Unforeseen:
    message: str
    internal: bool  # a bug in smtpscript, not in the scenario or the server


def classify(exc: BaseException) -> Unforeseen:
    """One line for an exception that escaped a step, and whether it is our bug."""
    if isinstance(exc, UnicodeEncodeError):
        bad = exc.object[exc.start : exc.end]
        return Unforeseen(
            f"cannot encode {bad!a} as {exc.encoding} ({exc.reason}): a lone surrogate "
            "cannot be sent; write the character itself, or bytes with \\x escapes",
            internal=False,
        )
    if isinstance(exc, MemoryError):
        return Unforeseen("out of memory while running this step", internal=False)
    if isinstance(exc, RecursionError):
        return Unforeseen("nesting too deep (recursion limit reached)", internal=False)
    if isinstance(exc, ssl.SSLError):
        return Unforeseen(f"TLS setup failed: {exc.reason or exc}", internal=False)
    if isinstance(exc, OSError):  # the machine's doing (files, sockets), not ours
        if exc.filename is not None:
            return Unforeseen(f"cannot read {exc.filename}: {exc.strerror or exc}", False)
        return Unforeseen(f"system error: {exc.strerror or exc}", internal=False)
    text = str(exc) or "(no message)"
    return Unforeseen(f"internal error: {type(exc).__name__}: {text}", internal=True)
