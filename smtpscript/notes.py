"""The words a session records: transcript notes, protocol violations, step messages.

Written once here for the two engines that run sessions (the general runner with
Session, and load mode's compiled plan in smtpscript.fastpath), so that a result
reads the same whichever ran it. wording.py recognises some of these sentences.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smtpscript.results import TlsFacts

# --- transcript notes -------------------------------------------------------------------

NOT_READING = "connection aborted: the server stopped reading"


def connected(where: str) -> str:
    return f"connected to {where}"


def closed_by_server(reset: bool) -> str:
    return "connection reset by the server" if reset else "connection closed by the server"


def tls_established(facts: TlsFacts) -> str:
    return f"TLS established: {facts.version} {facts.cipher}"


def starttls_leftover(size: int) -> str:
    return (
        f"protocol violation: {size} bytes after the STARTTLS reply, before TLS (response "
        "injection?) were discarded"
    )


def handshake_refused(error: Exception) -> str:
    return f"TLS handshake refused, as expected: {error}"


# --- protocol violations (each after "PATH: ") -------------------------------------------

STARTTLS_INJECTION = (
    "server sent data after its STARTTLS reply, before TLS (possible response injection)"
)


def desynchronised(size: int) -> str:
    return (
        f"the server sent {size} bytes before this command was sent (a reply ahead of its "
        "command: desynchronised)"
    )


def bare_lf(code: int) -> str:
    return f"reply {code} ended lines with bare LF instead of CRLF"


# --- step messages ------------------------------------------------------------------------


def no_reply(timeout: float) -> str:
    return f"no complete reply within {timeout:g} s"


def not_reading(timeout: float) -> str:
    return f"the server did not take our data within {timeout:g} s (it stopped reading)"


def data_refused(got: str) -> str:
    return f"expected 354 to DATA, got {got}"
