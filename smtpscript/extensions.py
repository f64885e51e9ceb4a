"""Commands checked against the extensions the server advertised (sans-IO).

A client that sends a UTF-8 address to a server that did not offer SMTPUTF8
(RFC 6531 3.4), or DSN parameters to one that did not offer DSN (RFC 3461 4),
is using the protocol wrongly; the server's reply alone may hide it. Checked
only once capabilities are known (after EHLO or LHLO).
"""

from __future__ import annotations

import re

_ENVELOPE = re.compile(r"^(MAIL FROM|RCPT TO):\s*<([^>]*)>(.*)$", re.IGNORECASE | re.DOTALL)
_DSN_PARAMS = re.compile(r"(?:^|\s)(NOTIFY|RET|ENVID|ORCPT)=", re.IGNORECASE)


def violations(line: str, caps: dict[str, str]) -> list[str]:
    """Our own protocol slips in a command line: UTF-8 without SMTPUTF8."""
    if not caps:
        return []
    return _violations(_ENVELOPE.match(line), caps)


def warnings(line: str, caps: dict[str, str]) -> list[str]:
    """Extension parameters used although the server did not offer them: DSN."""
    if not caps:
        return []
    return _warnings(_ENVELOPE.match(line), caps)


def notes(line: str, caps: dict[str, str]) -> tuple[list[str], list[str]]:
    """``(violations(line, caps), warnings(line, caps))``, matching the line once."""
    if not caps:
        return [], []
    found = _ENVELOPE.match(line)
    return _violations(found, caps), _warnings(found, caps)


def _violations(found: re.Match[str] | None, caps: dict[str, str]) -> list[str]:
    if not found:
        return []
    verb, address, params = found.groups()
    if address.isascii() and params.isascii():
        return []
    if "SMTPUTF8" not in caps:
        return [
            f"{verb.upper()} carries non-ASCII but the server did not advertise SMTPUTF8 (RFC 6531)"
        ]
    if verb.upper() == "MAIL FROM" and "SMTPUTF8" not in params.upper().split():
        return ["MAIL FROM carries non-ASCII without the SMTPUTF8 parameter (RFC 6531 3.4)"]
    return []


def _warnings(found: re.Match[str] | None, caps: dict[str, str]) -> list[str]:
    if not found or "DSN" in caps:
        return []
    used = sorted({p.upper() for p in _DSN_PARAMS.findall(found.group(3))})
    if not used:
        return []
    return [
        f"DSN parameters ({', '.join(used)}) used but the server did not advertise DSN (RFC 3461)"
    ]
