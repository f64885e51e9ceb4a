"""Parse --target values: HOST, HOST:PORT, [IPv6]:PORT, or the built-in 'sandbox'."""

from __future__ import annotations

from smtpscript.errors import ConfigError
from smtpscript.model import Endpoint, Target

SANDBOX = "sandbox"


def parse_target(text: str) -> Target:
    """A target from ``HOST[:PORT]``; 'sandbox' is resolved by the caller who starts it."""
    value = text.strip()
    if not value:
        raise ConfigError("--target: empty value; use HOST, HOST:PORT, [IPv6]:PORT or sandbox")
    host, port = _split(value)
    return Target(name=value, endpoint=Endpoint(host=host, port=port))


def _split(value: str) -> tuple[str, int | None]:
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"--target {value!r}: expected [IPv6]:PORT")
        return host, _port(value, rest[1:]) if rest else None
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, _port(value, port)
    return value, None  # a bare host name, IPv4 or unbracketed IPv6 address


def _port(value: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(f"--target {value!r}: port must be a number from 1 to 65535")
    return int(text)


def sandbox_target(host: str, port: int, tls_port: int | None, ca_file: str | None) -> Target:
    """The embedded server as a target; its CA is trusted so verify: true works against it."""
    from smtpscript.model import TlsOptions

    return Target(
        name=SANDBOX,
        endpoint=Endpoint(host=host, port=port, tls_options=TlsOptions(ca_file=ca_file)),
        implicit_tls_port=tls_port,
    )
