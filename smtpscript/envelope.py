"""The mail transaction as the client sees it: which recipients the server accepted.

Sans-IO: fed the command lines we send and, in the same order, the codes of the
replies we read (pipelining keeps that order, RFC 2920). LMTP (RFC 2033) answers
the end of a message once per accepted recipient, so the runner must know how
many it accepted. Bytes sent with `raw:` are not interpreted.
"""

from __future__ import annotations

import re
from collections import deque

_ADDRESS = re.compile(r"^\s*TO:\s*<([^>]*)>", re.IGNORECASE)


class Envelope:
    def __init__(self) -> None:
        self._pending: deque[str] = deque()  # commands sent whose reply is still to come
        self.recipients: list[str] = []  # accepted in this transaction, in RCPT order
        self.lmtp = False  # the session greeted with LHLO

    def sent(self, line: str) -> None:
        self._pending.append(line)

    def replied(self, code: int | None) -> None:
        """The reply to the oldest command not yet answered (None: the server closed)."""
        if not self._pending:
            return  # e.g. the end of a message: not a command of its own
        verb, _, rest = self._pending.popleft().partition(" ")
        verb = verb.upper()
        accepted = code is not None and 200 <= code < 300
        if verb in ("MAIL", "RSET", "EHLO", "HELO", "LHLO", "STARTTLS"):
            self.recipients = []
        if verb in ("EHLO", "HELO", "LHLO") and accepted:
            self.lmtp = verb == "LHLO"
        if verb == "RCPT" and accepted:
            found = _ADDRESS.match(rest)
            self.recipients.append(found.group(1) if found else rest.strip())

    def transaction_done(self) -> None:
        """The message was answered: the next one starts with MAIL again."""
        self.recipients = []
        self._pending.clear()
